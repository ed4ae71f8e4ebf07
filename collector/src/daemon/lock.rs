//! One daemon per node: a daemon holds an abstract Unix socket named `linkmeter-daemon` in its
//! network namespace for as long as it runs. Abstract names belong to the network namespace, so
//! this is one lock per node (the DaemonSet runs in the host's namespace, as does a manual `run`
//! beside it), it needs no file (the container's root is read-only), and the kernel lets it go
//! when the process ends, however it ends. Two daemons on one node would otherwise take turns
//! removing each other's legacy tc filters at every resync. `list --attach`, `watch` and `dump`
//! take no lock: they attach with handles of their own.

use std::{
    io,
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    time::{Duration, Instant},
};

use std::os::unix::net::{UnixListener, UnixStream};

/// The abstract socket's name.
const NAME: &[u8] = b"linkmeter-daemon";

/// How long a starting daemon waits for the lock: the previous pod of a rolling update may still
/// be shutting down (within its 10 s grace period).
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(12);

/// The lock, held while this value lives.
#[derive(Debug)]
pub(crate) struct NodeLock {
    _socket: UnixListener,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another daemon holds it.
    #[error(
        "another linkmeter daemon{} runs in this network namespace (this node); one daemon per node: stop it first (`list --attach` and `watch` work beside it)",
        .holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// Its pid, when the kernel told it.
        holder: Option<i32>,
    },
    /// The socket could not be made.
    #[error("taking the one-daemon-per-node lock")]
    Io(#[source] io::Error),
}

/// Takes the lock, waiting up to `wait` for a daemon that holds it to end. `Ok(None)`: the
/// name is held by a process of another user — not a daemon of ours (abstract names have no
/// permissions: any local user can bind one) — said at WARN; the daemon runs without the lock
/// rather than let an unprivileged process keep it from starting.
///
/// # Errors
///
/// [`LockError::Held`] when another daemon still holds it after `wait`.
pub(crate) fn take(wait: Duration) -> Result<Option<NodeLock>, LockError> {
    let addr = SocketAddr::from_abstract_name(NAME).map_err(LockError::Io)?;
    let start = Instant::now();
    loop {
        match UnixListener::bind_addr(&addr) {
            Ok(socket) => return Ok(Some(NodeLock { _socket: socket })),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let holder = holder(&addr);
                if let Some((pid, uid)) = holder
                    && uid != nix::unistd::geteuid().as_raw()
                {
                    tracing::warn!(
                        pid,
                        uid,
                        "the one-daemon-per-node lock is held by a process of another user, not a linkmeter daemon; running without it"
                    );
                    return Ok(None);
                }
                if start.elapsed() >= wait {
                    return Err(LockError::Held {
                        holder: holder.map(|(pid, _)| pid),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(LockError::Io(e)),
        }
    }
}

/// The pid and uid of the process holding `addr` (`SO_PEERCRED` of a connection to it).
fn holder(addr: &SocketAddr) -> Option<(i32, u32)> {
    let stream = UnixStream::connect_addr(addr).ok()?;
    let cred =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    Some((cred.pid(), cred.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_who_holds_the_lock() {
        // Unit tests share one network namespace with anything else on this machine: a daemon
        // may hold the name already; then the first take fails the same way, which is the point.
        let Ok(Some(first)) = take(Duration::ZERO) else {
            println!("skipped: a linkmeter daemon runs in this network namespace");
            return;
        };
        let err = take(Duration::from_millis(300)).expect_err("held");
        assert!(
            matches!(err, LockError::Held { holder: Some(pid) } if pid == std::process::id() as i32),
            "{err}"
        );
        assert!(err.to_string().contains("one daemon per node"), "{err}");
        drop(first);
        take(Duration::ZERO).expect("free once dropped");
    }
}
