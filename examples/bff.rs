//! A minimal HTTP BFF (backend for frontend): the mini program speaks JSON
//! over HTTPS to it, and it speaks gRPC to wxauth.
//!
//! | mini program                                   | wxauth       |
//! |------------------------------------------------|--------------|
//! | `POST /login {code}`                           | ExchangeCode |
//! | `POST /phone {phone_code}` or `{encrypted_data, iv}`, with `Authorization: Bearer` | BindPhone |
//! | `GET /me` with `Authorization: Bearer`         | VerifyToken  |
//!
//! Errors are `{"error": REASON, "hint"?: ...}` with the reason of wxauth's
//! `google.rpc.ErrorInfo` and an HTTP status the mini program can branch
//! on: 401 means log in again, 409 (SESSION_KEY_STALE) means wx.login and
//! POST /login before getPhoneNumber again, 429 comes with Retry-After.
//!
//! ```sh
//! cargo run --example bff -- --wxauth http://127.0.0.1:50051 --listen 127.0.0.1:3000
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_types::StatusExt;
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::bind_phone_request::Source;
use wxauth::grpc::pb::{BindPhoneRequest, EncryptedPhone, ExchangeCodeRequest, VerifyTokenRequest};

type Wxauth = AuthServiceClient<Channel>;

/// The BFF's routes, over a wxauth client.
pub fn router(wxauth: Wxauth) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/phone", post(phone))
        .route("/me", get(me))
        .with_state(wxauth)
}

#[derive(Deserialize)]
struct LoginBody {
    /// From `wx.login()`.
    code: String,
}

#[derive(Deserialize)]
struct PhoneBody {
    /// The getPhoneNumber button's `e.detail.code`...
    phone_code: Option<String>,
    /// ...or its legacy `e.detail.encryptedData` and `e.detail.iv`.
    encrypted_data: Option<String>,
    iv: Option<String>,
    /// Optional fresh `wx.login()` code sent along: wxauth refreshes the
    /// session_key with it first, so the legacy payload always opens.
    #[serde(default)]
    login_code: String,
}

/// What the mini program sees of a user. No openid: it has no use for it,
/// and internal services key on `user_id`.
#[derive(Serialize)]
struct UserJson {
    user_id: String,
    unionid: String,
    phone_number: String,
    country_code: String,
    nickname: String,
    avatar_url: String,
}

async fn login(State(mut wxauth): State<Wxauth>, Json(body): Json<LoginBody>) -> Result<Response, ApiError> {
    let r = wxauth
        .exchange_code(ExchangeCodeRequest {
            code: body.code,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(json!({
        "token": r.session_token,
        "expires_at": rfc3339(r.expires_at),
        "created": r.created,
        "user": r.user.map(user_json),
    }))
    .into_response())
}

async fn phone(
    State(mut wxauth): State<Wxauth>,
    headers: HeaderMap,
    Json(body): Json<PhoneBody>,
) -> Result<Response, ApiError> {
    let session_token = bearer(&headers)?;
    // Neither given: wxauth answers INVALID_ARGUMENT naming the field.
    let source = match (body.phone_code, body.encrypted_data, body.iv) {
        (Some(code), _, _) => Some(Source::PhoneCode(code)),
        (None, Some(encrypted_data), iv) => Some(Source::EncryptedPhone(EncryptedPhone {
            encrypted_data,
            iv: iv.unwrap_or_default(),
        })),
        (None, None, _) => None,
    };
    let r = wxauth
        .bind_phone(BindPhoneRequest {
            session_token,
            source,
            login_code: body.login_code,
        })
        .await?
        .into_inner();
    Ok(Json(json!({ "user": r.user.map(user_json), "changed": r.changed })).into_response())
}

async fn me(State(mut wxauth): State<Wxauth>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session_token = bearer(&headers)?;
    let r = wxauth
        .verify_token(VerifyTokenRequest {
            session_token,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(json!({ "user": r.user.map(user_json), "expires_at": rfc3339(r.expires_at) })).into_response())
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim().to_owned())
        .ok_or(ApiError {
            status: StatusCode::UNAUTHORIZED,
            reason: "TOKEN_MISSING".into(),
            retry_after: None,
        })
}

fn user_json(u: wxauth::grpc::pb::User) -> UserJson {
    UserJson {
        user_id: u.user_id,
        unionid: u.unionid,
        phone_number: u.phone_number,
        country_code: u.country_code,
        nickname: u.nickname,
        avatar_url: u.avatar_url,
    }
}

fn rfc3339(t: Option<prost_types::Timestamp>) -> Option<String> {
    let t = SystemTime::try_from(t?).ok()?;
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// A wxauth refusal as the mini program sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    retry_after: Option<Duration>,
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let details = status.get_error_details();
        // No ErrorInfo: the call never reached wxauth (down, or too slow).
        let reason = details.error_info().map_or_else(
            || match status.code() {
                Code::Unavailable | Code::DeadlineExceeded => "WXAUTH_UNAVAILABLE".to_owned(),
                _ => "INTERNAL".to_owned(),
            },
            |info| info.reason.clone(),
        );
        let http = http_status(status.code());
        if http.is_server_error() {
            // wxauth's messages never hold secrets; this is the BFF's log.
            eprintln!("wxauth: {:?} {reason}: {}", status.code(), status.message());
        }
        Self {
            status: http,
            reason,
            retry_after: details.retry_info().and_then(|r| r.retry_delay),
        }
    }
}

fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        // SESSION_KEY_STALE, PHONE_DATA_EXPIRED: redo the steps in the hint.
        Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What the mini program should do about a reason, when it is not obvious.
fn hint(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "TOKEN_MISSING" | "TOKEN_INVALID" | "TOKEN_EXPIRED" | "TOKEN_REVOKED" => {
            "call wx.login and POST /login again"
        }
        "CODE_INVALID" | "CODE_USED" => "call wx.login again for a fresh code",
        "SESSION_KEY_STALE" => "call wx.login, POST /login (or send login_code), then getPhoneNumber again",
        "PHONE_DATA_EXPIRED" | "PHONE_CODE_INVALID" => "call getPhoneNumber again",
        "PHONE_REQUIRED" => "show the getPhoneNumber button, then POST /phone",
        _ => return None,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.reason });
        if let Some(hint) = hint(&self.reason) {
            body["hint"] = hint.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(delay) = self.retry_after {
            let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[derive(Parser)]
struct Args {
    /// wxauth's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    wxauth: String,
    /// Where the BFF serves HTTP.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Every call gets a deadline (wxauth never waits on WeChat past it);
    // lazy, so the BFF starts while wxauth is still starting.
    let channel = Endpoint::from_shared(args.wxauth)?
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("BFF listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(AuthServiceClient::new(channel))).await?;
    Ok(())
}
