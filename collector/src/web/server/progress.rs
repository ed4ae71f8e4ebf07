//! Write progress of a connection: since when its writes have been blocked, so that a response
//! stuck on a client that does not read (pipelined requests, never read) is cut off after a
//! deadline instead of pinning kernel send buffers for as long as the client likes.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// Since when the connection's writes have been blocked (the client's window is shut), as
/// milliseconds since it opened plus one; 0 while they are not.
#[derive(Debug)]
pub(super) struct Progress {
    opened: Instant,
    blocked_since: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            blocked_since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn blocked(&self) {
        let now = self.now();
        let _first =
            self.blocked_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn wrote(&self) {
        self.blocked_since.store(0, Ordering::Relaxed);
    }

    /// How long the writes have been blocked without a byte going out; zero when they are not.
    pub(super) fn stuck(&self) -> Duration {
        match self.blocked_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(self.now().saturating_sub(since)),
        }
    }
}

/// An I/O stream that records its write progress.
#[derive(Debug)]
pub(super) struct Tracked<IO> {
    io: IO,
    progress: Arc<Progress>,
}

impl<IO> Tracked<IO> {
    pub(super) const fn new(io: IO, progress: Arc<Progress>) -> Self {
        Self { io, progress }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        match &polled {
            Poll::Ready(Ok(n)) if *n > 0 => self.progress.wrote(),
            Poll::Pending => self.progress.blocked(),
            Poll::Ready(_) => {}
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
