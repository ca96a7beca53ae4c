//! `wxauth.v1.AuthService`.
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::callers::Admitted;
use super::convert::{self, timestamp, user_to_proto};
use super::pb::{self, auth_service_server::AuthService};
use super::requests;
use crate::domain::deadline::with_caller_deadline;
use crate::domain::error::{Error, Result};
use crate::domain::input::Subject;
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
        observe("ExchangeCode", async move {
            let deadline = caller_deadline(&request);
            let req = requests::exchange_code(request.into_inner())?;
            let outcome = within_deadline(
                deadline,
                self.wxauth
                    .exchange_code(&req.code, &req.app_id, &req.options, req.phone.as_ref()),
            )
            .await?;
            let expires_at = self.wxauth.expires_at(&outcome.session);
            Ok(Response::new(pb::ExchangeCodeResponse {
                session_token: outcome.token.expose().clone(),
                expires_at: Some(timestamp(expires_at)),
                user: Some(user_to_proto(outcome.user)),
                created: outcome.created,
            }))
        })
        .await
    }

    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        observe("VerifyToken", async move {
            let req = requests::verify_token(request.into_inner())?;
            let (session, user) = self
                .wxauth
                .verify_token(&req.session_token, req.app_id.as_ref())
                .await?;
            Ok(Response::new(pb::VerifyTokenResponse {
                user: Some(user_to_proto(user)),
                expires_at: Some(timestamp(self.wxauth.expires_at(&session))),
            }))
        })
        .await
    }

    async fn bind_phone(
        &self,
        request: Request<pb::BindPhoneRequest>,
    ) -> Result<Response<pb::BindPhoneResponse>, Status> {
        observe("BindPhone", async move {
            let deadline = caller_deadline(&request);
            let req = requests::bind_phone(request.into_inner())?;
            let binding = within_deadline(
                deadline,
                self.wxauth
                    .bind_phone(&req.session_token, req.source, req.login_code.as_ref()),
            )
            .await?;
            Ok(Response::new(pb::BindPhoneResponse {
                user: Some(user_to_proto(binding.user)),
                previous_phone_number: binding.previous.unwrap_or_default(),
                changed: binding.changed,
            }))
        })
        .await
    }

    async fn check_session(
        &self,
        request: Request<pb::CheckSessionRequest>,
    ) -> Result<Response<pb::CheckSessionResponse>, Status> {
        observe("CheckSession", async move {
            let deadline = caller_deadline(&request);
            let req = request.into_inner();
            let token = requests::session_token(req.session_token)?;
            let check = within_deadline(deadline, self.wxauth.check_session(&token)).await?;
            Ok(Response::new(convert::session_check(check)))
        })
        .await
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        observe("RevokeToken", async move {
            let req = request.into_inner();
            let token = requests::session_token(req.session_token)?;
            let revoked = self.wxauth.revoke_token(&token, req.all_sessions).await?;
            Ok(Response::new(pb::RevokeTokenResponse {
                revoked: u32::try_from(revoked).unwrap_or(u32::MAX),
            }))
        })
        .await
    }

    async fn find_users(
        &self,
        request: Request<pb::FindUsersRequest>,
    ) -> Result<Response<pb::FindUsersResponse>, Status> {
        observe("FindUsers", async move {
            let key = requests::find_users(request.into_inner())?;
            let users = self.wxauth.find_users(&key).await?;
            Ok(Response::new(pb::FindUsersResponse {
                users: users.into_iter().map(user_to_proto).collect(),
            }))
        })
        .await
    }

    async fn get_access_token(
        &self,
        request: Request<pb::GetAccessTokenRequest>,
    ) -> Result<Response<pb::GetAccessTokenResponse>, Status> {
        observe("GetAccessToken", async move {
            let deadline = caller_deadline(&request);
            let app_id = requests::get_access_token(request.into_inner())?;
            let (app_id, token) = within_deadline(deadline, self.wxauth.access_token(&app_id)).await?;
            Ok(Response::new(pb::GetAccessTokenResponse {
                app_id,
                access_token: token.token.expose().clone(),
                expires_at: Some(timestamp(token.expires_at)),
            }))
        })
        .await
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        observe("DeleteUser", async move {
            let caller = request.extensions().get::<Admitted>().cloned();
            let req = requests::delete_user(request.into_inner())?;
            may_name_users(caller.as_ref(), &req.subject, "DeleteUser by user_id")?;
            let deletion = self.wxauth.delete_user(&req.subject, &req.reason).await?;
            Ok(Response::new(convert::deletion(deletion)))
        })
        .await
    }

    async fn export_user(
        &self,
        request: Request<pb::ExportUserRequest>,
    ) -> Result<Response<pb::ExportUserResponse>, Status> {
        observe("ExportUser", async move {
            let caller = request.extensions().get::<Admitted>().cloned();
            let subject = requests::export_user(request.into_inner())?;
            may_name_users(caller.as_ref(), &subject, "ExportUser by user_id")?;
            let export = self.wxauth.export_user(&subject).await?;
            Ok(Response::new(convert::export(export)))
        })
        .await
    }

    async fn unbind_phone(
        &self,
        request: Request<pb::UnbindPhoneRequest>,
    ) -> Result<Response<pb::UnbindPhoneResponse>, Status> {
        observe("UnbindPhone", async move {
            let token = requests::session_token(request.into_inner().session_token)?;
            let user = self.wxauth.unbind_phone(&token).await?;
            Ok(Response::new(pb::UnbindPhoneResponse {
                user: Some(user_to_proto(user)),
            }))
        })
        .await
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        observe("UpdateProfile", async move {
            let req = requests::update_profile(request.into_inner())?;
            let user = self
                .wxauth
                .update_profile(&req.session_token, &req.profile)
                .await?;
            Ok(Response::new(pb::UpdateProfileResponse {
                user: Some(user_to_proto(user)),
            }))
        })
        .await
    }
}

/// Naming a user by id acts on someone else's account: with `[[callers]]`
/// only an operator (`operator = true`) may; without, the port is open
/// (plain mode) and so is this. A session token speaks for its own user.
fn may_name_users(caller: Option<&Admitted>, subject: &Subject, what: &'static str) -> Result<()> {
    match (caller, subject) {
        (Some(caller), Subject::UserId(_)) if !caller.operator => {
            tracing::warn!(caller = %caller.name, method = what, "caller refused: not an operator");
            crate::domain::metrics::caller_refused("CALLER_FORBIDDEN", what);
            Err(Error::CallerForbidden { method: what })
        }
        _ => Ok(()),
    }
}

/// The caller's deadline from the `grpc-timeout` header (e.g. `500m`), so
/// that no WeChat call made for this request outlives it.
fn caller_deadline<T>(request: &Request<T>) -> Option<tokio::time::Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    tokio::time::Instant::now().checked_add(timeout)
}

/// How long before the caller's deadline the answer leaves: time for it to
/// reach the caller, whose own timer would otherwise turn it into CANCELLED.
const ANSWER_MARGIN: Duration = Duration::from_millis(100);

/// Runs a domain call under the caller's deadline and answers in time even
/// when the database is slow: WeChat calls stop short of the deadline
/// (`domain::deadline`), and what must still finish once the answer has left
/// (settling a claimed code) runs on a task of its own.
async fn within_deadline<T>(
    deadline: Option<tokio::time::Instant>,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let call = with_caller_deadline(deadline, call);
    let Some(deadline) = deadline else {
        return call.await;
    };
    let answer_by = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
    tokio::time::timeout_at(answer_by, call)
        .await
        .unwrap_or(Err(Error::DeadlineExceeded))
}

/// Records the RPC's status code and latency.
async fn observe<T>(
    method: &'static str,
    call: impl std::future::Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    let started = std::time::Instant::now();
    let result = call.await;
    let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
    crate::domain::metrics::rpc(method, code, started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_headers_parse() {
        let mut request = Request::new(());
        assert!(caller_deadline(&request).is_none());
        request
            .metadata_mut()
            .insert("grpc-timeout", "1500m".parse().unwrap());
        let left = caller_deadline(&request).unwrap() - tokio::time::Instant::now();
        assert!(left <= Duration::from_millis(1500) && left > Duration::from_millis(1000));
        request
            .metadata_mut()
            .insert("grpc-timeout", "bogus".parse().unwrap());
        assert!(caller_deadline(&request).is_none());
    }
}
