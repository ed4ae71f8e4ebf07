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
//!
//! This module owns the accept loop ([`serve`]) and the [`Limits`]; [`connection`] serves one
//! connection and its requests, [`cap`] keeps the table of connections and chooses whom to
//! evict, [`shutdown`] stops the connections and bounds the wait for them.

mod cap;
mod connection;
mod progress;
mod shutdown;

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use tokio::{net::TcpListener, task::JoinSet};
use tracing::{debug, warn};

use self::{cap::Connections, shutdown::Shutdown};
use super::Web;

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
    let stopping = Shutdown::new();
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
                // Unacknowledged data (a client gone, or one whose window stays shut) ends the
                // connection after the request timeout, in the kernel too.
                let _timeout = user_timeout(&stream, limits.request_timeout);
                tasks.spawn(connection::run(
                    stream,
                    router.clone(),
                    Arc::clone(&web),
                    limits,
                    slot,
                    stopping.stop(),
                ));
            }
        }
    }
    drop(listener);
    stopping.drain(tasks, limits.shutdown_timeout).await;
    Ok(())
}

/// Accept errors that a busy or short-of-descriptors server waits out.
/// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged (zero-window probes
/// included) before the kernel closes the connection.
fn user_timeout(stream: &tokio::net::TcpStream, timeout: Duration) -> nix::Result<()> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::TcpUserTimeout, &ms)
}

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

#[cfg(test)]
mod tests;
