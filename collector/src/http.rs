//! The HTTP endpoints: `/metrics` (OpenMetrics or Prometheus text by content negotiation),
//! `/healthz` (the process serves and follows link events: 503 while the link-event
//! subscription is lost and cannot be opened again) and `/readyz` (the first routing pass is
//! done). A scrape asks
//! the owner task for a collection through [`Scrapes`] (the owner holds the receiving end) and
//! never touches the node itself.

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

use tokio::sync::{mpsc, oneshot};

use crate::{
    metrics::{Encoding, Exposition, Format, View},
    web::{
        Web,
        server::{self, Limits},
    },
};

/// A scrape's request: where to send the collection that answers it.
pub(crate) type Request = oneshot::Sender<Arc<Exposition>>;

/// How scrapes reach the owner task.
#[derive(Clone, Debug)]
pub(crate) struct Scrapes(mpsc::Sender<Request>);

impl Scrapes {
    /// The collection that answers this request: the next one the owner finishes after the
    /// request is queued (it may have started before, when scrapes coalesce). `None` once the
    /// owner has stopped.
    pub(crate) async fn collect(&self) -> Option<Arc<Exposition>> {
        let (reply, answer) = oneshot::channel();
        self.0.send(reply).await.ok()?;
        answer.await.ok()
    }
}

/// Scrapes that may wait for the owner at once; more wait to be queued.
const QUEUED_SCRAPES: usize = 256;

/// A channel for scrapes: the handle for the HTTP side, the receiver for the owner.
pub(crate) fn scrapes() -> (Scrapes, mpsc::Receiver<Request>) {
    let (sender, receiver) = mpsc::channel(QUEUED_SCRAPES);
    (Scrapes(sender), receiver)
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    scrapes: Scrapes,
    ready: Arc<AtomicBool>,
    healthy: Arc<AtomicBool>,
}

impl Endpoints {
    /// Endpoints answering scrapes through `scrapes`, ready once `ready` is set, healthy while
    /// `healthy` is.
    pub(crate) const fn new(
        scrapes: Scrapes,
        ready: Arc<AtomicBool>,
        healthy: Arc<AtomicBool>,
    ) -> Self {
        Self {
            scrapes,
            ready,
            healthy,
        }
    }
}

/// The routes.
pub(crate) fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/peers", get(peer_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoints)
}

/// Serves the endpoints on `listener` under the web configuration `web` and `limits` until
/// `shutdown` completes.
///
/// # Errors
///
/// The server fails (the listener breaks).
pub(crate) async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    web: Arc<Web>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(endpoints), web, limits, shutdown).await
}

async fn metrics(State(endpoints): State<Endpoints>, headers: HeaderMap) -> Response {
    answer(&endpoints, &headers, View::All).await
}

/// `/metrics/peers`: the overlay traffic per peer, for a scrape of its own.
async fn peer_metrics(State(endpoints): State<Endpoints>, headers: HeaderMap) -> Response {
    answer(&endpoints, &headers, View::Peers).await
}

/// A scrape of `view`: one collection shared with the scrapes that arrive meanwhile, the
/// format and content coding negotiated.
async fn answer(endpoints: &Endpoints, headers: &HeaderMap, view: View) -> Response {
    let Some(exposition) = endpoints.scrapes.collect().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let accept_encoding = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let Some(encoding) = Encoding::negotiate(accept_encoding) else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "no acceptable content coding: linkmeter answers gzip, zstd or identity\n",
        )
            .into_response();
    };
    let Some(body) = exposition.encoded(view, format, encoding) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept-Encoding"),
        ],
        body,
    )
        .into_response();
    if let Some(coding) = encoding.header() {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            axum::http::HeaderValue::from_static(coding),
        );
    }
    response
}

async fn healthz(State(endpoints): State<Endpoints>) -> Response {
    if endpoints.healthy.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the link event subscription is lost\n",
        )
            .into_response()
    }
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    if endpoints.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "routing interfaces\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// Endpoints whose owner answers every scrape with an empty snapshot (`owner`), or that
    /// have no owner at all.
    fn endpoints(owner: bool) -> (Endpoints, Arc<AtomicBool>) {
        let (endpoints, ready, _) = endpoints_with_health(owner);
        (endpoints, ready)
    }

    /// As [`endpoints`], with the health flag too.
    fn endpoints_with_health(owner: bool) -> (Endpoints, Arc<AtomicBool>, Arc<AtomicBool>) {
        let (scrapes, mut requests) = scrapes();
        if owner {
            tokio::spawn(async move {
                while let Some(reply) = requests.recv().await {
                    let _gone = reply.send(Arc::new(Exposition::new(Default::default())));
                }
            });
        } else {
            drop(requests);
        }
        let ready = Arc::new(AtomicBool::new(false));
        let healthy = Arc::new(AtomicBool::new(true));
        let endpoints = Endpoints::new(scrapes, Arc::clone(&ready), Arc::clone(&healthy));
        (endpoints, ready, healthy)
    }

    /// `GET path` with `headers`: status, response headers, body.
    async fn send(
        endpoints: &Endpoints,
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
        let mut request = axum::http::Request::get(path);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = router(endpoints.clone())
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    }

    async fn get(
        endpoints: &Endpoints,
        path: &str,
        accept: Option<&str>,
    ) -> (StatusCode, String, String) {
        let headers: Vec<_> = accept.map(|a| (header::ACCEPT, a)).into_iter().collect();
        let (status, headers, body) = send(endpoints, path, &headers).await;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn metrics_are_negotiated_between_openmetrics_and_prometheus_text() {
        let (endpoints, _) = endpoints(true);
        let (status, content_type, body) = get(&endpoints, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, Format::Prometheus.content_type());
        assert!(body.contains("linkmeter_build_info{"), "{body}");
        assert!(!body.contains("# EOF"));
        let (_, content_type, body) = get(
            &endpoints,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        )
        .await;
        assert_eq!(content_type, Format::OpenMetrics.content_type());
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn metrics_are_compressed_as_the_client_asks_and_say_so() {
        let (endpoints, _) = endpoints(true);
        let fetch = |coding: &'static str| {
            let endpoints = endpoints.clone();
            async move {
                let (status, headers, body) =
                    send(&endpoints, "/metrics", &[(header::ACCEPT_ENCODING, coding)]).await;
                let encoding = headers
                    .get(header::CONTENT_ENCODING)
                    .map(|v| v.to_str().unwrap_or("").to_owned());
                (status, encoding, headers.get(header::VARY).cloned(), body)
            }
        };
        let (_, plain_encoding, _, plain) = fetch("identity").await;
        assert_eq!(plain_encoding, None);
        let (status, encoding, vary, gz) = fetch("gzip").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(encoding.as_deref(), Some("gzip"));
        assert_eq!(
            vary.as_ref().and_then(|v| v.to_str().ok()),
            Some("Accept-Encoding")
        );
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .expect("gunzip");
        assert_eq!(text, plain);
        let (_, encoding, _, zs) = fetch("zstd, gzip;q=0.9").await;
        assert_eq!(encoding.as_deref(), Some("zstd"));
        assert_eq!(zstd::stream::decode_all(&zs[..]).expect("unzstd"), plain);
        let (status, ..) = fetch("identity;q=0").await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    }

    #[tokio::test]
    async fn readiness_follows_the_first_routing_pass_and_health_the_event_subscription() {
        let (endpoints, ready, healthy) = endpoints_with_health(true);
        assert_eq!(
            get(&endpoints, "/readyz", None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&endpoints, "/healthz", None).await.0, StatusCode::OK);
        ready.store(true, Ordering::Release);
        assert_eq!(get(&endpoints, "/readyz", None).await.0, StatusCode::OK);
        healthy.store(false, Ordering::Release);
        let (status, _, body) = get(&endpoints, "/healthz", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("link event subscription"), "{body}");
    }

    #[tokio::test]
    async fn a_scrape_after_the_owner_stopped_is_unavailable_not_a_hang() {
        let (endpoints, _) = endpoints(false);
        let (status, _, body) = get(&endpoints, "/metrics", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "shutting down\n");
    }
}
