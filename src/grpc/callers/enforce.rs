//! The service wrapper that puts AuthService behind the caller policy.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;

use super::{Callers, Refusal};

impl Refusal {
    /// Logs the refusal (never the key) and answers it.
    fn into_response(self) -> http::Response<Body> {
        let reason = self.error.reason();
        match &self.caller {
            Some(caller) => {
                tracing::warn!(caller = %caller, method = self.method, "caller refused: method not in its policy");
            }
            None => tracing::info!(
                method = self.method,
                "caller refused: no known API key or certificate"
            ),
        }
        crate::domain::metrics::caller_refused(reason, self.method);
        tonic::Status::from(self.error).into_http()
    }
}

/// AuthService behind the caller policy.
#[derive(Clone)]
pub struct RequireCaller<S> {
    inner: S,
    callers: Arc<Callers>,
}

impl<S> RequireCaller<S> {
    pub fn new(inner: S, callers: Arc<Callers>) -> Self {
        Self { inner, callers }
    }
}

impl<S: NamedService> NamedService for RequireCaller<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for RequireCaller<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Checked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.callers.authorize(&request) {
            Ok(admitted) => {
                let caller = admitted.name.clone();
                // For handlers that check more than the method (operators).
                request.extensions_mut().insert(admitted);
                Checked::Admitted {
                    inner: self.inner.call(request),
                    caller: Some(caller),
                }
            }
            Err(refusal) => Checked::Refused(Some(refusal)),
        }
    }
}

/// The response of [`RequireCaller`]: the service's, or a refusal. The work
/// that needs the request's span (recording the caller, logging a refusal)
/// happens when it is first polled, inside that span.
pub enum Checked<F> {
    Admitted { inner: F, caller: Option<Arc<str>> },
    Refused(Option<Refusal>),
}

impl<F, E> Future for Checked<F>
where
    F: Future<Output = Result<http::Response<Body>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Checked::Admitted { inner, caller } => {
                if let Some(caller) = caller.take() {
                    tracing::Span::current().record("caller", tracing::field::display(&caller));
                }
                Pin::new(inner).poll(cx)
            }
            Checked::Refused(refusal) => {
                let refusal = refusal.take().expect("a refusal is answered once");
                Poll::Ready(Ok(refusal.into_response()))
            }
        }
    }
}
