//! One connection and its requests: the TLS handshake and each request's header within
//! `header_timeout`, authentication, the answer within `request_timeout`, the configured
//! headers; the connection ends when the client leaves, on a timeout, on eviction or at
//! shutdown.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, Response, StatusCode, header},
};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use tower::ServiceExt as _;
use tracing::debug;

use super::{
    Limits,
    cap::{Busy, Shared, Slot},
    progress::{Progress, Tracked},
    shutdown::Stop,
};
use crate::web::{Web, auth::Verdict};

/// Paths answered without authentication: the kubelet's probes, which reveal nothing.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];
/// Largest request header accepted (hyper's read buffer; hyper's minimum is 8 KiB).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One connection: the TLS handshake (if configured), then HTTP/1.1 until the client leaves, a
/// timeout, eviction or shutdown.
pub(super) async fn run(
    stream: TcpStream,
    router: Router,
    web: Arc<Web>,
    limits: Limits,
    slot: Slot,
    stop: Stop,
) {
    let stop = stop.stopped();
    let evicted = slot.shared.evicted();
    tokio::pin!(stop, evicted);
    evicted.as_mut().enable();
    let source = stream.peer_addr().ok().map(|a| a.ip());
    let active = web.current();
    let io = match &active.tls {
        None => Either::Left(stream),
        Some(tls) => {
            let accept = tokio_rustls::TlsAcceptor::from(Arc::clone(tls)).accept(stream);
            let stream = tokio::select! {
                () = &mut stop => return,
                () = &mut evicted => return,
                handshake = tokio::time::timeout(limits.header_timeout, accept) => match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        debug!(error = %err, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        debug!("TLS handshake timed out");
                        return;
                    }
                },
            };
            Either::Right(Box::new(stream))
        }
    };
    drop(active);
    let shared = Arc::clone(&slot.shared);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        handle(
            request,
            router.clone(),
            Arc::clone(&web),
            limits,
            (Arc::clone(&shared), source),
        )
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        // One flattened buffer per write, as hyper advises for TLS transports. `Either`
        // reports both streams as vectored, which would switch hyper to queued `writev`s.
        .writev(false);
    let progress = Progress::new();
    let conn = builder.serve_connection(
        TokioIo::new(Tracked::new(io, Arc::clone(&progress))),
        service,
    );
    tokio::pin!(conn);
    let stalled = stalled(&progress, limits.request_timeout);
    tokio::pin!(stalled);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                debug!(error = %err, "connection ended");
            }
        }
        // A response the client does not read for `request_timeout`: closed, its buffers freed.
        () = &mut stalled => debug!("closing a connection whose client stopped reading"),
        // Evicted while a request came in after all: that request is answered first, within
        // the header timeout (its response may be stuck on a client that does not read).
        () = &mut evicted => if slot.shared.in_flight() {
            conn.as_mut().graceful_shutdown();
            let _ended = tokio::time::timeout(limits.header_timeout, conn).await;
        },
        () = &mut stop => {
            conn.as_mut().graceful_shutdown();
            let _ended = conn.await;
        }
    }
    // `slot` leaves the registry as the connection ends.
}

/// Completes once the connection's writes have been blocked for `deadline` with no byte going
/// out (its client stopped reading).
async fn stalled(progress: &Progress, deadline: Duration) {
    let mut tick = tokio::time::interval(
        deadline.clamp(Duration::from_millis(10), Duration::from_millis(250)),
    );
    loop {
        tick.tick().await;
        if progress.stuck() >= deadline {
            return;
        }
    }
}

/// One request: authentication, the route within the request timeout, the configured headers.
async fn handle(
    request: Request<Incoming>,
    router: Router,
    web: Arc<Web>,
    limits: Limits,
    (shared, source): (Arc<Shared>, Option<std::net::IpAddr>),
) -> Result<Response<Body>, Infallible> {
    let active = web.current();
    let open = OPEN_PATHS.contains(&request.uri().path());
    // A request waiting for its password check leaves its connection evictable: only
    // authorised requests (and the open probes) make a connection busy.
    let verdict = if open || !active.users.required() {
        Verdict::Allowed
    } else {
        let authorization = request.headers().get(header::AUTHORIZATION);
        active
            .users
            .check(authorization.map(|v| v.as_bytes()), source)
            .await
    };
    let busy = Busy::new(&shared);
    let mut response = if let Some(denied) = verdict.denied() {
        denied
    } else {
        let request = request.map(Body::new);
        match tokio::time::timeout(limits.request_timeout, router.oneshot(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                let mut response = Response::new(Body::from("request timed out\n"));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
        }
    };
    for (name, value) in &active.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    // The connection stays busy until hyper has taken the whole body: the guard goes with it.
    Ok(response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _in_flight = &busy;
            frame
        }))
    }))
}
