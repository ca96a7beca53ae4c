//! Typed gRPC (and `/metrics`) calls on a `TestApp`, and assertions on the
//! `ErrorInfo` reason of a failed call.
use tonic::transport::Channel;
use tonic_types::StatusExt;
use wxauth::grpc::pb::bind_phone_request::Source;
use wxauth::grpc::pb::find_users_request::Key as FindKey;
use wxauth::grpc::pb::{delete_user_request, export_user_request};
use wxauth::grpc::pb::{
    BindPhoneRequest, BindPhoneResponse, CheckSessionRequest, CheckSessionResponse, EncryptedPhone,
    ExchangeCodeRequest, ExchangeCodeResponse, RevokeTokenRequest, VerifyTokenRequest, VerifyTokenResponse,
};
use wxauth::grpc::pb::{
    DeleteUserRequest, DeleteUserResponse, ExportUserRequest, ExportUserResponse, UpdateProfileRequest,
};
use wxauth::grpc::pb::{FindUsersRequest, GetAccessTokenRequest, GetAccessTokenResponse, UnbindPhoneRequest};
use wxauth::sim::PhoneResponse;

use super::TestApp;

impl TestApp {
    pub async fn exchange(&self, code: &str) -> Result<ExchangeCodeResponse, tonic::Status> {
        self.client
            .clone()
            .exchange_code(ExchangeCodeRequest {
                code: code.into(),
                app_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Logs a brand-new user in and returns the response.
    pub async fn login_new_user(&self) -> ExchangeCodeResponse {
        let code = self.sim.new_code().await.code;
        self.exchange(&code).await.unwrap()
    }

    pub async fn verify(&self, token: &str) -> Result<VerifyTokenResponse, tonic::Status> {
        self.verify_for(token, "").await
    }

    /// VerifyToken asking "is this a token of `app_id`?" (empty: any app).
    pub async fn verify_for(&self, token: &str, app_id: &str) -> Result<VerifyTokenResponse, tonic::Status> {
        self.client
            .clone()
            .verify_token(VerifyTokenRequest {
                session_token: token.into(),
                app_id: app_id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn find(&self, key: FindKey) -> Result<Vec<wxauth::grpc::pb::User>, tonic::Status> {
        self.find_raw(Some(key)).await
    }

    pub async fn find_raw(&self, key: Option<FindKey>) -> Result<Vec<wxauth::grpc::pb::User>, tonic::Status> {
        self.client
            .clone()
            .find_users(FindUsersRequest { key })
            .await
            .map(|r| r.into_inner().users)
    }

    pub async fn access_token(&self, app_id: &str) -> Result<GetAccessTokenResponse, tonic::Status> {
        self.client
            .clone()
            .get_access_token(GetAccessTokenRequest {
                app_id: app_id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// The Prometheus text this instance serves.
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("metrics are on in tests");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn bind(&self, request: BindPhoneRequest) -> Result<BindPhoneResponse, tonic::Status> {
        self.client
            .clone()
            .bind_phone(request)
            .await
            .map(|r| r.into_inner())
    }

    /// BindPhone with the legacy payload of a `/sim/phone` answer.
    pub async fn bind_encrypted(
        &self,
        token: &str,
        phone: &PhoneResponse,
        login_code: &str,
    ) -> Result<BindPhoneResponse, tonic::Status> {
        self.bind(BindPhoneRequest {
            session_token: token.into(),
            source: Some(Source::EncryptedPhone(EncryptedPhone {
                encrypted_data: phone.encrypted_data.clone(),
                iv: phone.iv.clone(),
            })),
            login_code: login_code.into(),
        })
        .await
    }

    /// BindPhone with a phone code.
    pub async fn bind_code(&self, token: &str, code: &str) -> Result<BindPhoneResponse, tonic::Status> {
        self.bind(BindPhoneRequest {
            session_token: token.into(),
            source: Some(Source::PhoneCode(code.into())),
            login_code: String::new(),
        })
        .await
    }

    /// UnbindPhone: the user, phone fields empty.
    pub async fn unbind(&self, token: &str) -> Result<wxauth::grpc::pb::User, tonic::Status> {
        self.client
            .clone()
            .unbind_phone(UnbindPhoneRequest {
                session_token: token.into(),
            })
            .await
            .map(|r| r.into_inner().user.expect("UnbindPhone answers with the user"))
    }

    /// FindUsers by phone number: the users' ids, in the order found.
    pub async fn find_by_phone(&self, number: &str) -> Result<Vec<String>, tonic::Status> {
        let users = self.find(FindKey::PhoneNumber(number.into())).await?;
        Ok(users.into_iter().map(|u| u.user_id).collect())
    }

    pub async fn check(&self, token: &str) -> Result<CheckSessionResponse, tonic::Status> {
        self.client
            .clone()
            .check_session(CheckSessionRequest {
                session_token: token.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn revoke(&self, token: &str, all_sessions: bool) -> Result<u32, tonic::Status> {
        self.client
            .clone()
            .revoke_token(RevokeTokenRequest {
                session_token: token.into(),
                all_sessions,
            })
            .await
            .map(|r| r.into_inner().revoked)
    }
}

impl TestApp {
    /// DeleteUser: the user's own (a token) or an operator's (`user_id:...`).
    pub async fn delete_user(
        &self,
        subject: Subject<'_>,
        reason: &str,
    ) -> Result<DeleteUserResponse, tonic::Status> {
        let subject = match subject {
            Subject::Token(t) => delete_user_request::Subject::SessionToken(t.into()),
            Subject::UserId(u) => delete_user_request::Subject::UserId(u.into()),
        };
        self.client
            .clone()
            .delete_user(DeleteUserRequest {
                subject: Some(subject),
                reason: reason.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn export_user(&self, subject: Subject<'_>) -> Result<ExportUserResponse, tonic::Status> {
        let subject = match subject {
            Subject::Token(t) => export_user_request::Subject::SessionToken(t.into()),
            Subject::UserId(u) => export_user_request::Subject::UserId(u.into()),
        };
        self.client
            .clone()
            .export_user(ExportUserRequest {
                subject: Some(subject),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn update_profile(
        &self,
        token: &str,
        nickname: &str,
        avatar_url: &str,
    ) -> Result<wxauth::grpc::pb::User, tonic::Status> {
        self.client
            .clone()
            .update_profile(UpdateProfileRequest {
                session_token: token.into(),
                nickname: nickname.into(),
                avatar_url: avatar_url.into(),
            })
            .await
            .map(|r| r.into_inner().user.unwrap())
    }

    /// ExchangeCode with `restore_user`.
    pub async fn exchange_restoring(&self, code: &str) -> Result<ExchangeCodeResponse, tonic::Status> {
        self.client
            .clone()
            .exchange_code(ExchangeCodeRequest {
                code: code.into(),
                restore_user: true,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }
}

/// Whose account DeleteUser or ExportUser act on.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Token(&'a str),
    UserId(&'a str),
}

/// The `google.rpc.ErrorInfo` reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .expect("every wxauth error carries ErrorInfo");
    assert_eq!(info.domain, "wxauth");
    info.reason.clone()
}

/// Asserts a call failed with this code and reason.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, expected: &str) {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected, "{status:?}");
}
