//! `wxauth.v1.AuthService`.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{timestamp, user_to_proto};
use super::pb::{self, auth_service_server::AuthService};
use crate::service::Wxauth;

pub struct AuthApi {
    wxauth: Arc<Wxauth>,
}

impl AuthApi {
    pub fn new(wxauth: Arc<Wxauth>) -> Self {
        Self { wxauth }
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn exchange_code(
        &self,
        request: Request<pb::ExchangeCodeRequest>,
    ) -> Result<Response<pb::ExchangeCodeResponse>, Status> {
        let req = request.into_inner();
        let outcome = self.wxauth.exchange_code(&req.code, &req.app_id).await?;
        let expires_at = outcome.session.effective_expiry(&self.wxauth.policy);
        Ok(Response::new(pb::ExchangeCodeResponse {
            session_token: outcome.token.expose().clone(),
            expires_at: Some(timestamp(expires_at)),
            user: Some(user_to_proto(outcome.user)),
            created: outcome.created,
        }))
    }

    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let req = request.into_inner();
        let (session, user) = self.wxauth.verify_token(&req.session_token).await?;
        Ok(Response::new(pb::VerifyTokenResponse {
            user: Some(user_to_proto(user)),
            expires_at: Some(timestamp(session.effective_expiry(&self.wxauth.policy))),
        }))
    }
}
