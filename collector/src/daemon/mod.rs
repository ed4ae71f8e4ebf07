//! `linkmeter run`: one owner task holds the node and `select!`s over link events, the resync
//! tick, scrape requests and shutdown. Routing, probing and attaching happen on events and
//! resyncs; a scrape request only collects. Scrapes that arrive while a collection runs are
//! answered by that collection, so concurrent scrapers cost about one collection (the
//! collection yields to the runtime now and then, so that the server takes them in).

pub(crate) mod lock;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{Stream, StreamExt as _};
use tokio::{
    net::TcpListener,
    sync::{Notify, mpsc},
    time::MissedTickBehavior,
};
use tracing::{debug, info, warn};

use crate::{
    Report,
    backend::{
        ebpf::{TcCounter, load_or_explain},
        ethtool::EthtoolIo,
    },
    config::Config,
    discovery::{self, DiscoveryError, LinkEvent, Links},
    http::{self, Request, scrapes},
    metrics::Exposition,
    node::{Done, Node, OpenError, ResyncReason},
};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    /// The node's netlink or ethtool sockets cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The link event subscription cannot be opened.
    #[error("subscribing to link events")]
    Events(#[source] DiscoveryError),
    /// The HTTP server failed.
    #[error("serving HTTP")]
    Http(#[source] std::io::Error),
}

/// Seconds between attempts to subscribe to link events again after the subscription was lost.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// How long shutting down waits for the detaches: within the DaemonSet's termination grace
/// period of 10 s, beside the server's own shutdown (at most `http_shutdown_timeout_seconds`,
/// 3 s by default, at the same time) and the runtime's 1 s. A TCX detach waits for an RCU grace
/// period (some 20 ms), so a few hundred TCX interfaces take seconds.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(8);

/// The owner of the node's state.
pub(crate) struct Owner<I, E, L, S, F> {
    /// The node.
    pub(crate) node: Node<I, E, L>,
    /// Link events; `None` while the subscription is lost.
    pub(crate) events: Option<S>,
    /// Subscribes to link events again after the subscription ended.
    pub(crate) subscribe: F,
    /// Cleared while the link-event subscription is lost (`/healthz` answers 503).
    pub(crate) healthy: Arc<AtomicBool>,
    /// Scrape requests.
    pub(crate) requests: mpsc::Receiver<Request>,
    /// Period of the full resync.
    pub(crate) resync_interval: Duration,
    /// Set once the first routing pass is done.
    pub(crate) ready: Arc<AtomicBool>,
    /// Whether what earlier daemons left has been settled (after the first successful dump:
    /// settling on an empty or failed one would free every adopted counter).
    pub(crate) settled: bool,
}

impl<I, E, L, S, F> Owner<I, E, L, S, F>
where
    I: EthtoolIo,
    E: TcCounter,
    L: Links + Clone + 'static,
    S: Stream<Item = LinkEvent> + Unpin,
    F: FnMut() -> Result<S, DiscoveryError>,
{
    /// [`Owner::serve`], then [`Owner::stop`] (the daemon lets the server drain in between).
    #[cfg(test)]
    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()>) {
        self.serve(shutdown).await;
        self.stop().await;
    }

    /// Routes every interface, then serves events, resyncs, the kernel's answers and scrapes
    /// until `shutdown` completes. Scrapes are answered from the start with what is routed so
    /// far; `/readyz` says when the first routing pass is done.
    pub(crate) async fn serve(&mut self, shutdown: impl Future<Output = ()>) {
        self.node.start_resync();
        let mut resync = tokio::time::interval(self.resync_interval);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        resync.tick().await;
        // One timer for the whole loop: a sleep made anew each turn would be reset by every
        // scrape and never fire under steady scraping.
        let mut resubscribe = tokio::time::interval(RESUBSCRIBE_EVERY);
        resubscribe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                // In this order when several are ready: shutdown, then events, so that a scrape
                // answered in the same turn sees them (a storm of link events delays scrapes
                // until it is routed), then the resync, then the kernel's answers, then scrapes.
                biased;
                () = &mut shutdown => break,
                event = next_event(&mut self.events), if self.events.is_some() => match event {
                    Some(LinkEvent::Lost) => {
                        warn!("link events were lost (the kernel overran the event socket); resynchronising");
                        self.node.count_resync(ResyncReason::EventsLost);
                        self.node.start_resync();
                    }
                    Some(event) => self.node.apply(event),
                    None => {
                        warn!("the link event subscription ended; subscribing again");
                        self.events = None;
                        self.healthy.store(false, Ordering::Release);
                        self.resubscribe();
                    }
                },
                _ = resubscribe.tick(), if self.events.is_none() => self.resubscribe(),
                _ = resync.tick() => self.node.start_resync(),
                Some(done) = self.node.next_done(), if self.node.is_busy() => self.finish(done),
                Some(first) = self.requests.recv() => self.answer(first).await,
            }
        }
    }

    /// Detaches everything (or leaves it pinned), waiting at most [`SHUTDOWN_WAIT`]. What is
    /// still attached then goes as the process ends (TCX links close with it); legacy tc
    /// filters left are removed by the next daemon at start, or by `linkmeter cleanup`.
    pub(crate) async fn stop(mut self) {
        info!("shutting down");
        if tokio::time::timeout(SHUTDOWN_WAIT, self.node.shutdown())
            .await
            .is_err()
        {
            warn!(waited = ?SHUTDOWN_WAIT,
                "not every attachment was detached in time; TCX links close as the process \
                 ends, legacy tc filters are removed by the next daemon (or linkmeter cleanup)");
        }
    }

    /// Subscribes to link events again; on success the node is resynchronised (events were
    /// missed meanwhile) and `/healthz` is ok again.
    fn resubscribe(&mut self) {
        match (self.subscribe)() {
            Ok(events) => {
                info!("subscribed to link events again");
                self.events = Some(events);
                self.healthy.store(true, Ordering::Release);
                self.node.count_resync(ResyncReason::Resubscribed);
                self.node.start_resync();
            }
            Err(err) => {
                debug!(error = %Report(&err), "subscribing to link events failed; trying again");
            }
        }
    }

    /// Puts what the kernel answered into effect. After the first resync whose dump succeeds,
    /// settles what earlier daemons left; once the first routing pass is done, ready.
    fn finish(&mut self, done: Done) {
        match self.node.finish(done) {
            Some(Ok(_)) if !self.settled => {
                self.node.settle_after_start();
                self.settled = true;
            }
            Some(Err(err)) => {
                warn!(error = %Report(&err), "link resync failed; keeping the interfaces known so far");
            }
            _ => {}
        }
        if !self.ready.load(Ordering::Acquire) && self.node.is_routed() {
            self.ready.store(true, Ordering::Release);
            info!(
                interfaces = self.node.interfaces().count(),
                "first routing pass done; ready"
            );
        }
    }

    /// Collects once and answers `first` and every scrape that queued up meanwhile.
    async fn answer(&mut self, first: Request) {
        let exposition = Arc::new(Exposition::new(self.node.collect().await));
        let _gone = first.send(Arc::clone(&exposition));
        let mut answered = 1;
        while let Ok(next) = self.requests.try_recv() {
            let _gone = next.send(Arc::clone(&exposition));
            answered += 1;
        }
        debug!(answered, "collection done");
    }
}

/// The next event of the subscription; pending forever while there is none.
async fn next_event<S: Stream<Item = LinkEvent> + Unpin>(
    events: &mut Option<S>,
) -> Option<LinkEvent> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// The node's settings with its zone: `node_zone`, or the zone of the node's own addresses in
/// `peer_zones` (logged, with where it comes from).
fn with_node_zone(config: &Config) -> crate::node::Settings {
    let mut settings = config.node.clone();
    let overlay = &mut settings.overlay;
    if overlay.zones.is_empty() && overlay.node_zone.is_none() {
        return settings;
    }
    let zone = crate::zones::node_zone(
        overlay.node_zone.as_deref(),
        &overlay.zones,
        &discovery::own_addresses(),
    );
    match zone.zone() {
        Some(_) => info!(zone = %zone.describe(), "node zone"),
        None => warn!(zone = %zone.describe(), "node zone"),
    }
    overlay.node_zone = zone.zone().map(str::to_owned);
    settings
}

/// Runs the daemon on `listener` until `shutdown` completes, then detaches everything.
///
/// # Errors
///
/// [`DaemonError`] when netlink or the ethtool socket cannot be opened, or the server fails.
pub(crate) async fn run(
    config: Config,
    listener: TcpListener,
    web: Arc<crate::web::Web>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let ebpf = load_or_explain(&config.ebpf_options());
    // Subscribe before the first dump so that no link change falls in between.
    let buffer = config.event_buffer;
    let subscribe = move || discovery::link_events(buffer);
    let events = subscribe().map_err(DaemonError::Events)?;
    let drops = crate::backend::drops::load_or_explain(config.drop_reasons);
    let node = Node::open(&with_node_zone(&config), ebpf)?.with_drops(drops);
    let (scrapes, requests) = scrapes();
    let ready = Arc::new(AtomicBool::new(false));
    let healthy = Arc::new(AtomicBool::new(true));

    let stop = Arc::new(Notify::new());
    let server_stop = Arc::clone(&stop);
    let local = listener.local_addr().ok();
    let tls = web.tls();
    let server = tokio::spawn(http::serve(
        listener,
        http::Endpoints::new(scrapes, Arc::clone(&ready), Arc::clone(&healthy)),
        web,
        config.http,
        async move { server_stop.notified().await },
    ));
    info!(listen = ?local, tls, "serving /metrics, /healthz, /readyz");

    let mut owner = Owner {
        node,
        events: Some(events),
        subscribe,
        healthy,
        requests,
        resync_interval: config.resync_interval,
        ready,
        settled: false,
    };
    owner.serve(shutdown).await;
    // The server drains its connections while the owner detaches.
    stop.notify_one();
    let ((), served) = tokio::join!(owner.stop(), server);
    match served {
        Ok(result) => result.map_err(DaemonError::Http),
        Err(err) => Err(DaemonError::Http(std::io::Error::other(err))),
    }
}
