//! The WeChat-facing HTTP handlers: WeChat's paths, WeChat's answers
//! (HTTP 200 with errcode bodies). Armed faults apply before anything else,
//! and every call counts, whatever its outcome.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;

use super::errmsg::errmsg;
use super::session_key::SignedQuery;
use super::state::{Code2Session, SimState};

type Sim = State<Arc<SimState>>;

/// Applies an armed fault: waits, then answers with the fault's HTTP status,
/// errcode or body. `None` means: go on and answer normally.
async fn apply_fault(state: &SimState, endpoint: &str) -> Option<Response> {
    let fault = state.record_call(endpoint)?;
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = fault.http_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some((status, "simulated failure").into_response());
    }
    if let Some(body) = fault.body {
        // As WeChat labels some answers: JSON, whatever the body is.
        return Some(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    fault.errcode.map(error_body)
}

/// WeChat's error shape: HTTP 200, `{"errcode", "errmsg"}`.
fn error_body(errcode: i64) -> Response {
    Json(json!({ "errcode": errcode, "errmsg": errmsg(errcode) })).into_response()
}

/// Runs `answer` unless a fault for `endpoint` answers first.
async fn serve(state: &SimState, endpoint: &str, answer: impl FnOnce() -> Response) -> Response {
    match apply_fault(state, endpoint).await {
        Some(faulted) => faulted,
        None => answer(),
    }
}

pub(super) async fn jscode2session(State(state): Sim, Query(q): Query<HashMap<String, String>>) -> Response {
    serve(&state, "jscode2session", || {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        if get("grant_type") != "authorization_code" {
            return error_body(40002);
        }
        match state.jscode2session(get("appid"), get("secret"), get("js_code")) {
            // Like WeChat: no errcode on success, unionid only when bound.
            Code2Session::Ok {
                openid,
                unionid: Some(unionid),
                session_key,
            } => Json(json!({ "session_key": session_key, "openid": openid, "unionid": unionid }))
                .into_response(),
            Code2Session::Ok {
                openid, session_key, ..
            } => Json(json!({ "session_key": session_key, "openid": openid })).into_response(),
            Code2Session::Err(errcode) => error_body(errcode),
        }
    })
    .await
}

#[derive(Deserialize)]
struct StableTokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    force_refresh: bool,
}

/// `POST /cgi-bin/stable_token`; the body is JSON whatever the Content-Type.
pub(super) async fn stable_token(State(state): Sim, body: Bytes) -> Response {
    serve(&state, "stable_token", || {
        let Ok(req) = serde_json::from_slice::<StableTokenRequest>(&body) else {
            return error_body(47001);
        };
        if req.grant_type != "client_credential" {
            return error_body(40002);
        }
        // Like WeChat: no errcode on success.
        match state.stable_token(&req.appid, &req.secret, req.force_refresh) {
            Ok(token) => Json(token).into_response(),
            Err(errcode) => error_body(errcode),
        }
    })
    .await
}

pub(super) async fn stable_token_get(State(state): Sim) -> Response {
    serve(&state, "stable_token", || error_body(43002)).await
}

#[derive(Deserialize)]
struct PhoneCodeBody {
    #[serde(default)]
    code: String,
    /// Optional: the code must then have been issued to this user.
    #[serde(default)]
    openid: String,
}

/// `POST /wxa/business/getuserphonenumber?access_token=`, body `{"code"}`
/// or `{"code", "openid"}`.
pub(super) async fn get_user_phone_number(
    State(state): Sim,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    serve(&state, "getuserphonenumber", || {
        let Ok(req) = serde_json::from_slice::<PhoneCodeBody>(&body) else {
            return error_body(47001);
        };
        let token = q.get("access_token").map(String::as_str).unwrap_or("");
        let openid = Some(req.openid.as_str()).filter(|o| !o.is_empty());
        match state.get_user_phone_number(token, &req.code, openid) {
            Ok(info) => Json(json!({ "errcode": 0, "errmsg": "ok", "phone_info": info })).into_response(),
            Err(errcode) => error_body(errcode),
        }
    })
    .await
}

/// `GET /wxa/checksession` (POST with the same query is accepted too).
pub(super) async fn check_session(State(state): Sim, Query(q): Query<SignedQuery>) -> Response {
    serve(&state, "checksession", || match state.check_session(&q) {
        Ok(()) => Json(json!({ "errcode": 0, "errmsg": "ok" })).into_response(),
        Err(errcode) => error_body(errcode),
    })
    .await
}

/// `GET /wxa/resetusersessionkey` (POST with the same query is accepted too).
pub(super) async fn reset_session_key(State(state): Sim, Query(q): Query<SignedQuery>) -> Response {
    serve(&state, "resetusersessionkey", || {
        match state.reset_session_key(&q) {
            Ok(key) => Json(json!({ "errcode": 0, "errmsg": "ok", "openid": q.openid, "session_key": key }))
                .into_response(),
            Err(errcode) => error_body(errcode),
        }
    })
    .await
}
