//! `linkmeter run`: discover interfaces, route each to its backend, keep routing current from
//! link events and periodic resyncs, and serve the merged metrics.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use futures_util::StreamExt as _;
use tokio::{net::TcpListener, sync::Notify, time::MissedTickBehavior};
use tracing::{info, warn};

use crate::{
    backend::ethtool::{Ethtool, Ioctl, link_modes},
    config::Config,
    discovery::{self, LinkEvent, Netlink},
    ebpf::{EbpfCounters, LEGACY_HANDLE, LoadOptions},
    http::{self, AppState, Refresh},
    metrics::SnapshotCollector,
    node::Node,
};

/// Errors that stop the daemon at start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The ethtool socket cannot be created.
    #[error("cannot open the ethtool ioctl socket: {0}")]
    Ethtool(#[source] std::io::Error),
    /// rtnetlink is not usable.
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Http(#[source] std::io::Error),
}

/// The shared state: the node behind a lock, the netlink handle, the published snapshot.
struct Shared {
    node: Mutex<Node<Ioctl>>,
    netlink: Netlink,
    collector: SnapshotCollector,
    /// Serialises collections (concurrent scrapes share one).
    collecting: tokio::sync::Mutex<()>,
}

impl Shared {
    fn node(&self) -> std::sync::MutexGuard<'_, Node<Ioctl>> {
        self.node.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Dumps links (kernel stats), applies them, collects the other backends, publishes.
    async fn collect(&self) {
        let _one_at_a_time = self.collecting.lock().await;
        let started = Instant::now();
        let dump = self.netlink.dump().await;
        let elapsed = started.elapsed().as_secs_f64();
        let snapshot = {
            let mut node = self.node();
            match dump {
                Ok(links) => {
                    node.record_netdev_collection(elapsed, false);
                    node.sync(links);
                }
                Err(err) => {
                    warn!(error = %err, "kernel link stats unavailable for this collection");
                    node.record_netdev_collection(elapsed, true);
                }
            }
            node.collect()
        };
        self.collector.publish(snapshot);
    }

    /// Full resync: links, link speeds, and re-attachment where our program was removed.
    async fn resync(&self) {
        self.collect().await;
        match link_modes().await {
            Ok(modes) => self.node().set_link_modes(&modes),
            Err(err) => warn!(error = %err, "link speeds unavailable"),
        }
        let legacy = self.node().legacy_attached();
        let mut missing = Vec::new();
        for ifindex in legacy {
            if !self
                .netlink
                .has_filter_on_both_hooks(ifindex, u32::from(LEGACY_HANDLE))
                .await
            {
                missing.push(ifindex);
            }
        }
        let repaired = self
            .node()
            .repair_attachments(|ifindex| !missing.contains(&ifindex));
        if repaired > 0 {
            info!(repaired, "re-attached the eBPF counter");
        }
    }
}

struct Refresher(Arc<Shared>);

impl Refresh for Refresher {
    fn refresh(&self) -> impl Future<Output = ()> + Send {
        let shared = Arc::clone(&self.0);
        async move { shared.collect().await }
    }
}

/// Loads the eBPF backend, or explains once why interfaces fall back to kernel link stats.
fn load_ebpf(config: &Config) -> Option<EbpfCounters> {
    match EbpfCounters::load(&LoadOptions {
        max_interfaces: config.max_interfaces,
    }) {
        Ok(ebpf) => Some(ebpf),
        Err(err) => {
            warn!(error = %err,
                "eBPF backend unavailable (needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON and a \
                 BPF-capable kernel); interfaces without ethtool stats fall back to kernel link \
                 stats with reason ebpf_unavailable");
            None
        }
    }
}

/// Runs the daemon on `listener` until `shutdown` completes, then detaches everything.
///
/// # Errors
///
/// [`DaemonError`] when netlink or the ethtool socket cannot be opened, or the server fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let ethtool = Ethtool::new(Ioctl::new().map_err(DaemonError::Ethtool)?);
    let ebpf = load_ebpf(&config);
    // Subscribe before the first dump so that no link change falls in between.
    let mut events = discovery::link_events()?.boxed();
    let netlink = Netlink::open()?;
    let resync_interval = config.resync_interval;
    let collector = SnapshotCollector::default();
    let shared = Arc::new(Shared {
        node: Mutex::new(Node::new(config, ethtool, ebpf)),
        netlink,
        collector: collector.clone(),
        collecting: tokio::sync::Mutex::new(()),
    });
    let state = Arc::new(AppState {
        refresher: Refresher(Arc::clone(&shared)),
        registry: collector.registry(),
        ready: AtomicBool::new(false),
    });

    let stop = Arc::new(Notify::new());
    let server_stop = Arc::clone(&stop);
    let local = listener.local_addr().ok();
    let server = tokio::spawn(http::serve(listener, Arc::clone(&state), async move {
        server_stop.notified().await;
    }));
    info!(listen = ?local, "serving /metrics, /healthz, /readyz");

    shared.resync().await;
    state.ready.store(true, Ordering::Release);
    info!(
        interfaces = shared.collector.latest().interfaces.len(),
        "first routing pass done; ready"
    );

    let mut resync = tokio::time::interval(resync_interval);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync.tick().await;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(LinkEvent::New(facts)) => shared.node().upsert(facts),
                Some(LinkEvent::Deleted { ifindex }) => shared.node().remove(ifindex),
                None => {
                    warn!("link event subscription ended; relying on periodic resync");
                    events = futures_util::stream::pending().boxed();
                }
            },
            _ = resync.tick() => shared.resync().await,
            () = &mut shutdown => break,
        }
    }
    info!("shutting down: detaching the eBPF counter");
    shared.node().detach_all();
    stop.notify_one();
    match server.await {
        Ok(result) => result.map_err(DaemonError::Http),
        Err(err) => Err(DaemonError::Http(std::io::Error::other(err))),
    }
}
