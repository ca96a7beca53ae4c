//! A WeChat simulator: a real HTTP server that answers WeChat's paths the way
//! WeChat does (HTTP 200 with errcode bodies, single-use codes, quotas), plus
//! a JSON control API under `/sim/` for development and tests:
//!
//! - `POST /sim/login` mints a wx.login code for a new or given user;
//! - `POST /sim/faults` makes the next N calls of an endpoint fail;
//! - `GET /sim/calls` counts calls per endpoint.
//!
//! It never logs request URLs: they carry the app secret and codes.
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::clock::Clock;
pub use state::{Code2Session, Fault, LoginRequest, LoginResponse, SimState, CODE_TTL_MS};

/// A running simulator; dropping it does not stop it, call [`Simulator::stop`].
pub struct Simulator {
    addr: SocketAddr,
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
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Self { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .route("/sim/login", post(sim_login))
        .route("/sim/faults", post(sim_faults))
        .route("/sim/calls", get(sim_calls))
        .with_state(state)
}

/// Applies an armed fault: waits, then answers with the fault's HTTP status
/// or errcode. `None` means: go on and answer normally.
async fn apply_fault(state: &SimState, endpoint: &str) -> Option<Response> {
    let fault = state.record_call(endpoint)?;
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = fault.http_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some((status, "simulated failure").into_response());
    }
    fault.errcode.map(error_body)
}

/// WeChat's error shape: HTTP 200, `{"errcode", "errmsg"}`.
fn error_body(errcode: i64) -> Response {
    Json(json!({ "errcode": errcode, "errmsg": state::errmsg(errcode) })).into_response()
}

async fn jscode2session(
    State(state): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = apply_fault(&state, "jscode2session").await {
        return r;
    }
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
        } => {
            Json(json!({ "session_key": session_key, "openid": openid, "unionid": unionid })).into_response()
        }
        Code2Session::Ok {
            openid, session_key, ..
        } => Json(json!({ "session_key": session_key, "openid": openid })).into_response(),
        Code2Session::Err(errcode) => error_body(errcode),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn sim_login(State(state): State<Arc<SimState>>, body: Option<Json<LoginRequest>>) -> Response {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    match state.login(req) {
        Ok(r) => Json(r).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn sim_faults(State(state): State<Arc<SimState>>, Json(fault): Json<Fault>) -> Response {
    match state.add_fault(fault) {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn sim_calls(State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(json!(state.calls()))
}
