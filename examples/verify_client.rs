//! How an internal service learns who is calling: a tower layer that takes
//! the `authorization: Bearer <session token>` of every incoming request,
//! asks wxauth's VerifyToken, and hands the handler the [`User`] in the
//! request's extensions, or answers wxauth's error itself.
//!
//! It is a tower layer rather than a tonic `Interceptor` because
//! interceptors are synchronous and verifying a token is an RPC. In a tonic
//! server:
//!
//! ```ignore
//! tonic::transport::Server::builder()
//!     .layer(RequireUserLayer::new(wxauth_client))
//!     .add_service(OrdersServer::new(orders))
//! // in a handler: request.extensions().get::<User>()
//! ```
//!
//! Do not cache the answer for long: a revoked token fails VerifyToken at
//! once, and a cache would keep it alive.
//!
//! Run it against a wxauth (e.g. `cargo run --release`, simulator mode) with
//! a token from ExchangeCode; it sends one request through the layer to a
//! stand-in handler and prints the user, or the reason wxauth refused:
//!
//! ```sh
//! cargo run --example verify_client -- --wxauth http://127.0.0.1:50051 wxa1_...
//! ```
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use clap::Parser;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use tonic::transport::Channel;
use tonic::Status;
use tonic_types::StatusExt;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use wxauth::grpc::pb::auth_service_client::AuthServiceClient;
use wxauth::grpc::pb::{User, VerifyTokenRequest};

/// Verifies the bearer token of every request with wxauth.
#[derive(Clone)]
pub struct RequireUserLayer {
    wxauth: AuthServiceClient<Channel>,
}

impl RequireUserLayer {
    pub fn new(wxauth: AuthServiceClient<Channel>) -> Self {
        Self { wxauth }
    }
}

impl<S> Layer<S> for RequireUserLayer {
    type Service = RequireUser<S>;

    fn layer(&self, inner: S) -> RequireUser<S> {
        RequireUser {
            inner,
            wxauth: self.wxauth.clone(),
        }
    }
}

/// The service [`RequireUserLayer`] wraps around the internal service.
#[derive(Clone)]
pub struct RequireUser<S> {
    inner: S,
    wxauth: AuthServiceClient<Channel>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireUser<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // `self.inner` is the instance poll_ready readied: this call takes
        // it and leaves a fresh clone for the next one (tower's usual swap).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let wxauth = self.wxauth.clone();
        Box::pin(async move {
            match verify(wxauth, request.headers()).await {
                Ok(user) => {
                    request.extensions_mut().insert(user);
                    inner.call(request).await
                }
                // wxauth's status, ErrorInfo included, goes back to the caller.
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The user whose session token the request's headers carry.
pub async fn verify(mut wxauth: AuthServiceClient<Channel>, headers: &HeaderMap) -> Result<User, Status> {
    let token = bearer(headers)
        .ok_or_else(|| Status::unauthenticated("expected authorization: Bearer <session token>"))?;
    let mut request = tonic::Request::new(VerifyTokenRequest {
        session_token: token.to_owned(),
        ..Default::default()
    });
    // wxauth puts the caller's request id on its log lines, so both
    // services' lines of one call can be found together.
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        if let Ok(id) = id.parse() {
            request.metadata_mut().insert("x-request-id", id);
        }
    }
    let response = wxauth.verify_token(request).await?.into_inner();
    response
        .user
        .ok_or_else(|| Status::internal("wxauth answered without a user"))
}

/// The token of `authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The reason of the status's `google.rpc.ErrorInfo`, if it has one.
pub fn reason(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

#[derive(Parser)]
struct Args {
    /// wxauth's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    wxauth: String,
    /// A session token from ExchangeCode.
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wxauth = AuthServiceClient::connect(args.wxauth).await?;
    let internal = ServiceBuilder::new()
        .layer(RequireUserLayer::new(wxauth))
        .service_fn(whoami);
    let request = Request::builder()
        .uri("/example.v1.Orders/List")
        .header(AUTHORIZATION, format!("Bearer {}", args.token))
        .body(())?;
    let response = internal.oneshot(request).await?;
    // A refusal is a gRPC status in the response headers, as a tonic
    // client would receive it.
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != tonic::Code::Ok {
            let reason = reason(&status).unwrap_or_else(|| "none".into());
            eprintln!(
                "refused: {:?} reason={reason}: {}",
                status.code(),
                status.message()
            );
            std::process::exit(1);
        }
    }
    Ok(())
}

/// A stand-in for the internal service's handlers: they only read the user.
async fn whoami(request: Request<()>) -> Result<Response<()>, Infallible> {
    let user = request
        .extensions()
        .get::<User>()
        .expect("RequireUser puts the user in");
    println!(
        "user_id={} app_id={} unionid={:?} phone={:?}",
        user.user_id, user.app_id, user.unionid, user.phone_number
    );
    Ok(Response::new(()))
}
