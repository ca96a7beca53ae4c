//! `/metrics` on its own port, for Prometheus.
use std::sync::Arc;

use crate::domain::listener::{serve_http, Listener};
use crate::domain::metrics;
use crate::store::Store;

/// Serves `/metrics` on its own listener until the task is aborted.
pub async fn serve(listener: Listener, store: Arc<dyn Store>) {
    use axum::{routing::get, Router};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let store = store.clone();
            async move {
                let (size, idle, max) = store.pool_stats();
                metrics::pool(size, idle, max);
                metrics::handle().render()
            }
        }),
    );
    serve_http(listener, app, std::future::pending()).await;
}
