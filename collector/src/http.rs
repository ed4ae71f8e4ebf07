//! The HTTP endpoints: `/metrics` (OpenMetrics or Prometheus text by content negotiation),
//! `/healthz` (the process serves) and `/readyz` (the first routing pass is done).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use crate::metrics::{Format, encode};

/// Refreshes the snapshot before a scrape is encoded.
pub trait Refresh: Send + Sync + 'static {
    /// Collects every backend and publishes a fresh snapshot.
    fn refresh(&self) -> impl Future<Output = ()> + Send;
}

/// What the handlers share.
pub struct AppState<R> {
    /// Collects before each scrape.
    pub refresher: R,
    /// The registry holding linkmeter's collector.
    pub registry: prometheus_client::registry::Registry,
    /// Set after the first routing pass.
    pub ready: AtomicBool,
}

/// Serves the endpoints on `listener` until `shutdown` completes.
///
/// # Errors
///
/// The server fails (the listener breaks).
pub async fn serve<R: Refresh>(
    listener: TcpListener,
    state: Arc<AppState<R>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics::<R>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<R>))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics<R: Refresh>(
    State(state): State<Arc<AppState<R>>>,
    headers: HeaderMap,
) -> Response {
    state.refresher.refresh().await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match encode(&state.registry, format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {err}\n"),
        )
            .into_response(),
    }
}

async fn readyz<R: Refresh>(State(state): State<Arc<AppState<R>>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "routing interfaces\n").into_response()
    }
}
