//! The caller's deadline: the gRPC edge sets it for the request it serves
//! ([`with_caller_deadline`]), the WeChat client reads it
//! ([`caller_deadline`]) so that no WeChat call outlives the caller, and work
//! that must finish after the caller stops waiting keeps it
//! ([`spawn_with_caller_deadline`]). A task-local, so that no domain
//! signature carries it.
use std::time::Duration;

tokio::task_local! {
    /// The deadline of the gRPC call being served, if the caller set one.
    static CALLER_DEADLINE: Option<tokio::time::Instant>;
}

/// Runs `f` with the caller's deadline in scope for every WeChat call it makes.
pub async fn with_caller_deadline<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    f: F,
) -> F::Output {
    CALLER_DEADLINE.scope(deadline, f).await
}

/// Spawns `f` as a task of its own under the current caller's deadline and
/// log span (request id): work that must finish even when the caller stops
/// waiting (a claimed code is always settled) runs there.
pub fn spawn_with_caller_deadline<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let deadline = CALLER_DEADLINE.try_with(|d| *d).ok().flatten();
    tokio::spawn(CALLER_DEADLINE.scope(deadline, tracing::Instrument::in_current_span(f)))
}

/// The caller's deadline, less a margin to settle claims and answer (the
/// gRPC layer answers 100 ms before the deadline, see `grpc::auth`).
pub fn caller_deadline() -> Option<tokio::time::Instant> {
    const MARGIN: Duration = Duration::from_millis(150);
    CALLER_DEADLINE
        .try_with(|d| *d)
        .ok()
        .flatten()
        .map(|d| d.checked_sub(MARGIN).unwrap_or(d))
}
