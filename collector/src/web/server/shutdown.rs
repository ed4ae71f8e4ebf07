//! The bounded shutdown: the stop every connection watches, and the drain that gives in-flight
//! requests `shutdown_timeout` to finish before every connection still open is dropped, so a
//! slow client cannot hold the pod past its termination grace period.

use std::time::Duration;

use tokio::{sync::watch, task::JoinSet};
use tracing::warn;

/// Starts the shutdown of the connections and bounds it.
#[derive(Debug)]
pub(super) struct Shutdown {
    stopping: watch::Sender<bool>,
    // A watch, not a Notify: a connection task that has not run yet still sees the stop.
    stop: watch::Receiver<bool>,
}

/// What a connection watches to learn that the server stops.
#[derive(Debug)]
pub(super) struct Stop(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown not yet started.
    pub(super) fn new() -> Self {
        let (stopping, stop) = watch::channel(false);
        Self { stopping, stop }
    }

    /// The stop for a new connection.
    pub(super) fn stop(&self) -> Stop {
        Stop(self.stop.clone())
    }

    /// Tells every connection to stop (each closes once its requests are answered), gives
    /// `tasks` `timeout` to end, then drops the connections still open.
    pub(super) async fn drain(self, mut tasks: JoinSet<()>, timeout: Duration) {
        let _receivers_may_be_gone = self.stopping.send(true);
        let drained = tokio::time::timeout(timeout, async {
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
    }
}

impl Stop {
    /// Completes once the shutdown has started, or its [`Shutdown`] is gone.
    pub(super) async fn stopped(mut self) {
        // The value is not kept: its guard must not live across an await.
        let _stopped = self.0.wait_for(|stop| *stop).await.is_ok();
    }
}
