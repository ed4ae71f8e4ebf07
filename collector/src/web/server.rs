//! The accept loop and its limits, on hyper directly (axum's `serve` has no header timeout and
//! no connection cap):
//!
//! - a TLS handshake and a request's header must each arrive within `header_timeout`; that is
//!   also how long a kept-alive connection may sit idle (as Go's `ReadHeaderTimeout` without an
//!   `IdleTimeout`);
//! - a request is answered within `request_timeout` or gets a 503;
//! - at most `max_connections` connections are kept. When a new one comes in at the cap, a
//!   connection with no request in flight (idle, still sending its header, or waiting for its
//!   password to be checked) is closed to make room: the oldest of the source address that holds
//!   the most connections, so one noisy client evicts its own connections first. When every
//!   connection has an authorised request in flight, the new one is closed. So idle or slow
//!   clients can neither exhaust descriptors nor keep a scraper out;
//! - at shutdown no connection is accepted, in-flight requests get `shutdown_timeout` to
//!   finish, then every connection is dropped, so a slow client cannot hold the pod past its
//!   termination grace period.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    future::Future,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Request, Response, StatusCode, header},
};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinSet,
};
use tokio_util::either::Either;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::{Web, auth::Verdict};

/// The limits of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Time for a TLS handshake, for a request's header, and for an idle kept-alive connection.
    pub(crate) header_timeout: Duration,
    /// Time to answer a request.
    pub(crate) request_timeout: Duration,
    /// Connections kept at once.
    pub(crate) max_connections: usize,
    /// Time in-flight requests get at shutdown.
    pub(crate) shutdown_timeout: Duration,
}

/// Paths answered without authentication: the kubelet's probes, which reveal nothing.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];
/// Largest request header accepted (hyper's read buffer; hyper's minimum is 8 KiB).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` under `web` and `limits` until `shutdown` completes.
///
/// # Errors
///
/// The listener fails for good (not for a lack of descriptors or an aborted connection, which
/// are waited out).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    web: Arc<Web>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Connections::new(limits.max_connections));
    // A watch, not a Notify: a connection task that has not run yet still sees the stop.
    let (stopping, stop) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) if transient_accept_error(&err) => {
                        warn!(error = %err, "accepting a connection failed; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                let Some(slot) = connections.admit(peer.ip()) else {
                    debug!("every connection has a request in flight; refusing a new one");
                    continue;
                };
                let _nodelay = stream.set_nodelay(true);
                tasks.spawn(connection(
                    stream,
                    router.clone(),
                    Arc::clone(&web),
                    limits,
                    slot,
                    stop.clone(),
                ));
            }
        }
    }
    drop(listener);
    let _receivers_may_be_gone = stopping.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = tasks.len(),
            "connections still open after the shutdown timeout are closed"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// Accept errors that a busy or short-of-descriptors server waits out.
fn transient_accept_error(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
        )
    )
}

/// One connection: the TLS handshake (if configured), then HTTP/1.1 until the client leaves, a
/// timeout, eviction or shutdown.
async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    web: Arc<Web>,
    limits: Limits,
    slot: Slot,
    mut stopping: watch::Receiver<bool>,
) {
    let stop = async move {
        // The value is not kept: its guard must not live across an await.
        let _stopped = stopping.wait_for(|stop| *stop).await.is_ok();
    };
    let evicted = slot.shared.evict.notified();
    tokio::pin!(stop, evicted);
    evicted.as_mut().enable();
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
            Arc::clone(&shared),
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
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                debug!(error = %err, "connection ended");
            }
        }
        // Evicted while a request came in after all: that request is answered first, within
        // the header timeout (its response may be stuck on a client that does not read).
        () = &mut evicted => if slot.shared.in_flight.load(Ordering::Acquire) > 0 {
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

/// One request: authentication, the route within the request timeout, the configured headers.
async fn handle(
    request: Request<Incoming>,
    router: Router,
    web: Arc<Web>,
    limits: Limits,
    shared: Arc<Shared>,
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
            .check(authorization.map(|v| v.as_bytes()))
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

/// The connections kept, oldest first, for eviction.
#[derive(Debug)]
struct Connections {
    max: usize,
    next: AtomicUsize,
    open: Mutex<BTreeMap<usize, Arc<Shared>>>,
}

/// What a connection shares with the registry.
#[derive(Debug)]
struct Shared {
    /// The client's address.
    ip: IpAddr,
    /// Authorised requests in flight (from the password check until hyper has taken the last
    /// frame of the response body).
    in_flight: AtomicUsize,
    /// Closes the connection.
    evict: Notify,
}

/// A connection's place in the registry; leaves it when dropped.
#[derive(Debug)]
struct Slot {
    id: usize,
    shared: Arc<Shared>,
    connections: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            max,
            next: AtomicUsize::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// A slot for a new connection from `ip`. At the cap, an idle connection makes room: the
    /// oldest of the address with the most connections. `None` when every connection has a
    /// request in flight.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max {
            let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
            for shared in open.values() {
                *per_ip.entry(shared.ip).or_default() += 1;
            }
            // Oldest first, so among the busiest addresses the oldest idle one is taken.
            let idle = open
                .iter()
                .filter(|(_, s)| s.in_flight.load(Ordering::Acquire) == 0)
                .max_by_key(|(id, s)| (per_ip[&s.ip], std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)?;
            if let Some(shared) = open.remove(&idle) {
                shared.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            ip,
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        open.insert(id, Arc::clone(&shared));
        Some(Slot {
            id,
            shared,
            connections: Arc::clone(self),
        })
    }
}

/// Marks a request in flight on its connection while alive.
#[derive(Debug)]
struct Busy(Arc<Shared>);

impl Busy {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(shared))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
