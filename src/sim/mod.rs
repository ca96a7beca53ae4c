//! A WeChat simulator: a real HTTP server that answers WeChat's paths the way
//! WeChat does (HTTP 200 with errcode bodies, single-use codes, token
//! rotation, quotas, AES payloads), plus a JSON control API under `/sim/`
//! for development and tests:
//!
//! - `POST /sim/login` mints a wx.login code for a new or given user;
//! - `POST /sim/phone` is the getPhoneNumber button: encryptedData + iv
//!   under the user's current session_key, and a phone code;
//! - `POST /sim/rotate` makes WeChat replace a user's session_key;
//! - `POST /sim/faults` makes the next N calls of an endpoint fail;
//! - `GET /sim/calls` counts calls per endpoint ([`ENDPOINTS`]);
//! - `POST /sim/push` sends a privacy event to the app's push URL as WeChat
//!   does, in the configured mode and format ([`PushTarget`]), and answers
//!   what the receiver answered; `POST /sim/push/verify` checks the URL
//!   with `echostr` as the console does.
//!
//! WeChat paths: `/sns/jscode2session`, `/cgi-bin/stable_token`,
//! `/wxa/business/getuserphonenumber`, `/wxa/checksession`,
//! `/wxa/resetusersessionkey`. Handlers are in `api.rs`, the model in
//! `state.rs` (users, login codes), `tokens.rs`, `phone.rs`,
//! `session_key.rs`, `faults.rs` and `push.rs`.
//!
//! It never logs request URLs: they carry the app secret, codes and tokens.
mod api;
#[cfg(test)]
mod client_tests;
mod errmsg;
mod faults;
mod phone;
mod push;
mod session_key;
mod state;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::domain::clock::Clock;
use crate::domain::listener::{serve_http, ConnLimits, Listener};
pub use faults::{Fault, ENDPOINTS};
pub use phone::{PhoneData, PhoneRequest, PhoneResponse, Watermark, PHONE_CODE_TTL_MS};
pub use push::{PushFormat, PushMode, PushRequest, PushResponse, PushTarget, VerifyRequest};
pub use session_key::{RotateRequest, RotateResponse, SignedQuery};
pub use state::{Code2Session, LoginRequest, LoginResponse, SimState, CODE_TTL_MS};
pub use tokens::{IssuedToken, FORCE_DAILY_LIMIT, FORCE_INTERVAL_MS, RENEW_WINDOW_MS, TOKEN_TTL_MS};

/// How long [`Simulator::stop`] waits for calls in flight.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A running simulator; dropping it does not stop it, call [`Simulator::stop`].
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Binds `addr` and serves in the background. `apps` maps app id to secret.
    pub async fn start(addr: SocketAddr, clock: Clock, apps: Vec<(String, String)>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(clock, apps));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Capped, with handshake and idle timeouts, like every listener.
        let listener = Listener::new(listener, "simulator", ConnLimits::DEFAULT);
        let task = tokio::spawn(serve_http(listener, router(state.clone()), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            state,
            stop,
            task,
        })
    }

    /// Sets an app's push URL, Token, EncodingAESKey, mode and format, as
    /// its console's 消息推送 page does.
    pub fn set_push_target(&self, app_id: &str, target: PushTarget) {
        self.state.push_targets.set(app_id, target);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets answers being written finish, and cuts calls
    /// a `delay_ms` fault still holds after [`STOP_WAIT`]: a delayed call
    /// must not keep the simulator (and a wxauth that runs it, past its
    /// shutdown grace) from stopping.
    pub async fn stop(mut self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(STOP_WAIT, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/sns/jscode2session", get(api::jscode2session))
        .route(
            "/cgi-bin/stable_token",
            post(api::stable_token).get(api::stable_token_get),
        )
        .route(
            "/wxa/business/getuserphonenumber",
            post(api::get_user_phone_number),
        )
        .route(
            "/wxa/checksession",
            get(api::check_session).post(api::check_session),
        )
        .route(
            "/wxa/resetusersessionkey",
            get(api::reset_session_key).post(api::reset_session_key),
        )
        .route("/sim/login", post(sim_login))
        .route("/sim/logins", post(sim_logins))
        .route("/sim/phone", post(sim_phone))
        .route("/sim/rotate", post(sim_rotate))
        .route("/sim/faults", post(sim_faults))
        .route("/sim/calls", get(sim_calls))
        .route("/sim/push", post(sim_push))
        .route("/sim/push/verify", post(sim_push_verify))
        .with_state(state)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// Parses a control API body and answers with `op`'s result; malformed
/// JSON is a 400 with a JSON error too.
fn control<Req: DeserializeOwned, Resp: Serialize>(
    body: &[u8],
    op: impl FnOnce(Req) -> Result<Resp, String>,
) -> Response {
    match serde_json::from_slice(body) {
        Ok(req) => reply(op(req)),
        Err(e) => bad_request(format!("bad request body: {e}")),
    }
}

/// Answers a control API call: the result as JSON, or a 400.
fn reply<T: Serialize>(result: Result<T, String>) -> Response {
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn sim_login(State(state): State<Arc<SimState>>, body: Option<Json<LoginRequest>>) -> Response {
    reply(state.login(body.map(|Json(b)| b).unwrap_or_default()))
}

/// `POST /sim/logins` `{"count"?, "app_id"?, "openids"?}`: many wx.logins
/// at once (load tests): a code for each given openid (returning users),
/// then `count` codes for new users.
async fn sim_logins(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    control(&body, |req: BulkLoginRequest| {
        let one = |openid| {
            state.login(LoginRequest {
                app_id: req.app_id.clone(),
                openid,
                ..Default::default()
            })
        };
        let returning = req.openids.iter().map(|o| one(Some(o.clone())));
        let new = (0..req.count.min(100_000)).map(|_| one(None));
        let logins = returning.chain(new).collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "logins": logins }))
    })
}

#[derive(serde::Deserialize)]
struct BulkLoginRequest {
    #[serde(default)]
    count: usize,
    app_id: Option<String>,
    #[serde(default)]
    openids: Vec<String>,
}

async fn sim_phone(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    control(&body, |req| state.phone(req))
}

async fn sim_rotate(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    control(&body, |req| state.rotate(req))
}

async fn sim_faults(State(state): State<Arc<SimState>>, Json(fault): Json<Fault>) -> Response {
    reply(state.add_fault(fault).map(|()| json!({ "ok": true })))
}

async fn sim_push(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<PushRequest>(&body) {
        Ok(req) => reply(state.push(req).await),
        Err(e) => bad_request(format!("bad request body: {e}")),
    }
}

async fn sim_push_verify(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let req = if body.is_empty() {
        Ok(VerifyRequest::default())
    } else {
        serde_json::from_slice::<VerifyRequest>(&body)
    };
    match req {
        Ok(req) => reply(state.verify_push_url(req).await),
        Err(e) => bad_request(format!("bad request body: {e}")),
    }
}

async fn sim_calls(State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(json!(state.calls()))
}
