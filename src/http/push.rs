//! WeChat's message-push URL, `/wechat/push/{app_id}` on
//! `--wechat-push-listen`: the GET that verifies the URL, and the POSTed
//! privacy events. [`crate::wechat::push`] verifies and parses;
//! [`crate::service::Wxauth::privacy_event`] acts; this module chooses the
//! HTTP answers (README "WeChat's privacy events"):
//!
//! | case | status |
//! |---|---|
//! | verified event, handled, repeated, or one wxauth does nothing about | 200 `success` |
//! | URL check with a valid `signature` | 200, the `echostr` |
//! | app not configured, or without push secrets | 404 |
//! | malformed query or body; `Encrypt` does not open | 400 |
//! | bad or missing `signature` / `msg_signature`; `timestamp` outside `--wechat-push-max-age` | 401 |
//! | decrypted appid is another app's; plaintext-mode event | 403 |
//! | body over 64 KiB | 413 |
//! | the store failed | 500 (WeChat retries) |
//!
//! Logs name the app, the event kind and what was done: never the openid,
//! the token or the body.
use std::sync::Arc;
use std::time::Duration;

use axum::{
    body::{to_bytes, Body},
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::domain::apps::App;
use crate::domain::listener::{serve_http, Listener};
use crate::domain::metrics;
use crate::service::Wxauth;
use crate::users::privacy::Outcome;
use crate::wechat::push::{self, PushApp, PushQuery, Refusal, Window, MAX_BODY};

/// What a plaintext-mode event gets back: the fix, in the console's words.
pub const PLAINTEXT_REFUSAL: &str = "wxauth refuses plaintext-mode pushes: nothing signs their body, so \
anyone who saw one signed URL could forge events. In the WeChat console (开发管理 > 消息推送), set \
the encryption mode (消息加密方式) to safe mode (安全模式) or compatible mode (兼容模式) and enter \
the EncodingAESKey wxauth is configured with.";

#[derive(Clone)]
struct Endpoint {
    wxauth: Arc<Wxauth>,
    max_age: Duration,
}

/// Serves the push URL on its own listener until `shutdown` resolves.
pub async fn serve(
    listener: Listener,
    wxauth: Arc<Wxauth>,
    max_age: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_http(listener, router(wxauth, max_age), shutdown).await;
}

pub fn router(wxauth: Arc<Wxauth>, max_age: Duration) -> Router {
    Router::new()
        .route("/wechat/push/{app_id}", get(verify_url).post(receive))
        .with_state(Endpoint { wxauth, max_age })
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, headers, body.into()).into_response()
}

/// The app behind a push URL, if it takes pushes.
fn push_app<'a>(endpoint: &'a Endpoint, app_id: &str) -> Option<(&'a App, PushApp<'a>)> {
    let app = endpoint.wxauth.apps().get(app_id)?;
    let creds = app.push.as_ref()?;
    let push = PushApp {
        app_id: app.id(),
        token: creds.token.expose(),
        key: &creds.key,
    };
    Some((app, push))
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "no WeChat push endpoint for this app")
}

/// GET: the console's URL check.
async fn verify_url(
    State(endpoint): State<Endpoint>,
    Path(app_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some((app, push)) = push_app(&endpoint, &app_id) else {
        return not_found();
    };
    let query = PushQuery::parse(raw.as_deref().unwrap_or_default());
    match query.and_then(|q| push::verify_url(&q, push.token).map(str::to_owned)) {
        Ok(echostr) => {
            tracing::info!(app_id = %app.id(), "WeChat push URL verified");
            text(StatusCode::OK, echostr)
        }
        Err(refusal) => refuse(app.id(), refusal),
    }
}

/// POST: a push.
async fn receive(
    State(endpoint): State<Endpoint>,
    Path(app_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((app, push)) = push_app(&endpoint, &app_id) else {
        return not_found();
    };
    let query = match PushQuery::parse(raw.as_deref().unwrap_or_default()) {
        Ok(query) => query,
        Err(refusal) => return refuse(app.id(), refusal),
    };
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        metrics::wechat_push(app.id(), "malformed");
        return text(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB");
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let window = Window {
        now_secs: endpoint.wxauth.clock().now_ms() / 1000,
        max_age_secs: i64::try_from(endpoint.max_age.as_secs()).unwrap_or(i64::MAX),
    };
    let verified = match push::open(&query, content_type, &body, &push, window) {
        Ok(verified) => verified,
        Err(refusal) => return refuse(app.id(), refusal),
    };
    let kind = verified.event.kind.name().to_owned();
    let mode = format!("{:?}", verified.mode).to_lowercase();
    let unhandled = crate::users::privacy::unhandled_revocations(&verified.event.kind);
    if !unhandled.is_empty() {
        tracing::info!(app_id = %app.id(), event = %kind, revoke_info = ?unhandled, "WeChat privacy event: RevokeInfo values wxauth holds no data for");
    }
    match endpoint.wxauth.privacy_event(app.id(), &verified.event).await {
        Ok(outcome) => {
            let (label, done) = match &outcome {
                Outcome::Done(actions) => (
                    "handled",
                    actions.iter().map(|a| a.name()).collect::<Vec<_>>().join(","),
                ),
                Outcome::Repeat => ("repeat", "nothing (a repeated delivery)".to_owned()),
                Outcome::Nothing(why) => ("ignored", format!("nothing ({why})")),
            };
            metrics::wechat_push(app.id(), label);
            tracing::info!(app_id = %app.id(), event = %kind, %mode, done = %done, "WeChat privacy event");
            text(StatusCode::OK, "success")
        }
        Err(e) => {
            metrics::wechat_push(app.id(), "failed");
            tracing::error!(app_id = %app.id(), event = %kind, error = %e, "WeChat privacy event failed; WeChat will retry");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The answer to a refused push (or URL check), logged and counted.
fn refuse(app_id: &str, refusal: Refusal) -> Response {
    let (status, label, body) = match refusal {
        Refusal::Malformed(why) => (StatusCode::BAD_REQUEST, "malformed", why),
        Refusal::Undecryptable => (
            StatusCode::BAD_REQUEST,
            "malformed",
            "Encrypt does not decrypt with this app's EncodingAESKey",
        ),
        Refusal::BadSignature => (StatusCode::UNAUTHORIZED, "refused_signature", "bad signature"),
        Refusal::Stale => (
            StatusCode::UNAUTHORIZED,
            "refused_stale",
            "timestamp outside the accepted window",
        ),
        Refusal::WrongApp => (
            StatusCode::FORBIDDEN,
            "refused_app",
            "the message is for another app",
        ),
        Refusal::Plaintext => (StatusCode::FORBIDDEN, "refused_plaintext", PLAINTEXT_REFUSAL),
    };
    metrics::wechat_push(app_id, label);
    match refusal {
        Refusal::Plaintext => tracing::warn!(
            app_id,
            "refused a plaintext-mode WeChat push: set the console's 消息推送 to safe or compatible mode"
        ),
        Refusal::WrongApp | Refusal::Undecryptable => {
            tracing::warn!(app_id, reason = body, "refused a signed WeChat push")
        }
        _ => tracing::info!(app_id, reason = body, "refused a WeChat push"),
    }
    text(status, body)
}
