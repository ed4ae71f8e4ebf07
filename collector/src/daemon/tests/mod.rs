//! The owner task over fixtures: what a scrape may and may not do, coalescing (`scrapes`),
//! link events, resyncs and the subscription (`events`), settling, shutdown and a kernel that
//! stops answering (`lifecycle`). Each test runs the owner and its "clients" side by side on
//! one task.

mod events;
mod lifecycle;
mod scrapes;

use std::{future::Future, pin::Pin, task::Poll};

use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::*;
use crate::{
    backend::{
        ebpf::fake::FakeEbpf,
        ethtool::fake::{FakeDriver, FakeEthtool},
    },
    discovery::fake::FakeLinks,
    http::Scrapes,
    policy::Backend,
};

type Events = Pin<Box<dyn Stream<Item = LinkEvent>>>;
type Subscribe = Box<dyn FnMut() -> Result<Events, DiscoveryError>>;
type TestOwner = Owner<FakeEthtool, FakeEbpf, FakeLinks, Events, Subscribe>;

#[derive(Debug, Default)]
struct SubscriptionState {
    /// The open subscription's sending side.
    sender: Option<UnboundedSender<LinkEvent>>,
    /// Subscribing fails while set.
    failing: bool,
    /// Subscriptions opened.
    opened: usize,
}

/// The fixture link-event subscription: each subscribe opens a channel whose sender the test
/// holds; it can be ended and made to fail.
#[derive(Clone, Debug, Default)]
struct Subscription(Arc<std::sync::Mutex<SubscriptionState>>);

impl Subscription {
    fn state(&self) -> std::sync::MutexGuard<'_, SubscriptionState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subscribe(&self) -> Result<Events, DiscoveryError> {
        let mut state = self.state();
        if state.failing {
            return Err(DiscoveryError::Socket(std::io::Error::from_raw_os_error(
                libc::EMFILE,
            )));
        }
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        state.sender = Some(sender);
        state.opened += 1;
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            receiver.poll_recv(cx)
        })))
    }
}

/// The owner's surroundings, as a test drives them.
struct Clients {
    scrapes: Scrapes,
    subscription: Subscription,
    ready: Arc<AtomicBool>,
    healthy: Arc<AtomicBool>,
    ethtool: FakeEthtool,
    ebpf: FakeEbpf,
    links: FakeLinks,
    /// Holds the resync's link reads while `true`: a kernel slow to answer them.
    upkeep_gate: tokio::sync::watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
}

/// An owner over fixtures whose kernel has `lo` and `eth0`, and its clients; the future
/// completes when the clients say stop.
fn owner() -> (TestOwner, Clients, impl Future<Output = ()>) {
    let (ethtool, ebpf, links) = (
        FakeEthtool::default(),
        FakeEbpf::default(),
        FakeLinks::default(),
    );
    ethtool.set("lo", FakeDriver::failing(libc::EOPNOTSUPP));
    ethtool.set("eth0", FakeDriver::named("veth", &[3]));
    links.add(1, "lo", None);
    links.add(2, "eth0", None);
    let subscription = Subscription::default();
    let events = subscription.subscribe().expect("subscribe");
    let resubscribe = subscription.clone();
    let (scrapes, requests) = scrapes();
    let ready = Arc::new(AtomicBool::new(false));
    let healthy = Arc::new(AtomicBool::new(true));
    let (stop, stopped) = oneshot::channel();
    let (upkeep, upkeep_gate) = links.gated();
    let owner = Owner {
        node: Node::new(
            &Config::default().node,
            ethtool.clone(),
            Some(ebpf.clone()),
            links.clone(),
            upkeep,
        ),
        events: Some(events),
        subscribe: Box::new(move || resubscribe.subscribe()) as Subscribe,
        healthy: Arc::clone(&healthy),
        requests,
        resync_interval: Duration::from_secs(60),
        ready: Arc::clone(&ready),
        settled: false,
    };
    let clients = Clients {
        scrapes,
        subscription,
        ready,
        healthy,
        ethtool,
        ebpf,
        links,
        upkeep_gate,
        stop: Some(stop),
    };
    (owner, clients, async move {
        let _ = stopped.await;
    })
}

impl Clients {
    async fn until_ready(&self) {
        while !self.ready.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
    }

    /// A vxlan device in the kernel, without sending its link event.
    fn create_vxlan(&self, ifindex: u32, name: &str) -> crate::discovery::Link {
        self.ethtool.set(name, FakeDriver::named("vxlan", &[0]));
        self.links.add(ifindex, name, Some("vxlan"))
    }

    fn send(&self, event: LinkEvent) {
        self.subscription
            .state()
            .sender
            .as_ref()
            .expect("subscription open")
            .send(event)
            .expect("owner listens");
    }

    /// Ends the subscription, as a failed socket would; `failing`: subscribing again fails.
    fn end_subscription(&self, failing: bool) {
        let mut state = self.subscription.state();
        state.sender = None;
        state.failing = failing;
    }

    /// (interface, backend) of what a scrape shows.
    async fn scrape(&self) -> Vec<(String, Backend)> {
        let exposition = self.scrapes.collect().await.expect("owner answers");
        exposition
            .snapshot()
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.backend))
            .collect()
    }

    fn stop(&mut self) {
        let _ = self.stop.take().expect("once").send(());
    }
}
