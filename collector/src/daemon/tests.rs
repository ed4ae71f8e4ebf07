//! The owner task over fixtures: what a scrape may and may not do, coalescing, resync and
//! shutdown. Each test runs the owner and its "clients" side by side on one task.

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

#[tokio::test]
async fn a_scrape_neither_probes_nor_attaches_a_new_link_its_event_does() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let (probes, attaches) = (c.ethtool.probes(), c.ebpf.attaches());
        let link = c.create_vxlan(5, "vx5");
        // Link events paused: scrapes show what is routed, and route nothing themselves.
        for _ in 0..3 {
            let shown = c.scrape().await;
            assert!(!shown.iter().any(|(n, _)| n == "vx5"), "{shown:?}");
        }
        assert_eq!((c.ethtool.probes(), c.ebpf.attaches()), (probes, attaches));
        // The link event routes and attaches it.
        c.send(LinkEvent::New(link));
        let shown = c.scrape().await;
        assert!(
            shown.contains(&("vx5".to_owned(), Backend::Ebpf)),
            "{shown:?}"
        );
        assert_eq!(
            (c.ethtool.probes(), c.ebpf.attaches()),
            (probes + 1, attaches + 1)
        );
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn the_next_resync_routes_a_link_whose_event_was_lost() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        c.create_vxlan(6, "vx6");
        assert!(!c.scrape().await.iter().any(|(n, _)| n == "vx6"));
        assert_eq!(c.ebpf.attaches(), 0);
        // The resync tick (every 60 s) fires while the clients sleep.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(
            c.scrape()
                .await
                .contains(&("vx6".to_owned(), Backend::Ebpf))
        );
        assert_eq!(c.ebpf.attaches(), 1);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn concurrent_scrapes_are_answered_by_one_collection() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let dumps = c.links.dumps();
        let scrapes: Vec<_> = (0..20).map(|_| c.scrapes.collect()).collect();
        let answers = futures_util::future::join_all(scrapes).await;
        assert_eq!(c.links.dumps() - dumps, 1, "one kernel dump for 20 scrapes");
        let first = answers[0].as_ref().expect("answered");
        for answer in &answers {
            assert!(Arc::ptr_eq(first, answer.as_ref().expect("answered")));
        }
        // The next scrape is a new collection.
        c.scrape().await;
        assert_eq!(c.links.dumps() - dumps, 2);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn scrapes_that_arrive_while_a_collection_runs_are_answered_by_it() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        {
            let release = c.links.hold_dumps();
            let dumps = c.links.dumps();
            let mut first = std::pin::pin!(c.scrapes.collect());
            // The first scrape starts a collection, whose kernel dump is now in flight.
            while c.links.dumps() == dumps {
                assert!(futures_util::poll!(first.as_mut()).is_pending());
                tokio::task::yield_now().await;
            }
            let later: Vec<_> = (0..5).map(|_| c.scrapes.collect()).collect();
            let later = futures_util::future::join_all(later);
            let _ = release.send(false);
            let (first, later) = tokio::join!(first, later);
            let first = first.expect("answered");
            for answer in later {
                assert!(Arc::ptr_eq(&first, &answer.expect("answered")));
            }
            assert_eq!(c.links.dumps() - dumps, 1);
        }
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn a_deleted_link_leaves_the_next_scrape() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let link = c.create_vxlan(7, "vx7");
        c.send(LinkEvent::New(link));
        assert!(c.scrape().await.iter().any(|(n, _)| n == "vx7"));
        c.links.remove(7);
        c.send(LinkEvent::Deleted { ifindex: 7 });
        assert!(!c.scrape().await.iter().any(|(n, _)| n == "vx7"));
        assert_eq!(c.ebpf.forgotten(), vec![7]);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn lost_events_trigger_an_immediate_resync_that_routes_what_they_said() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let dumps = c.links.dumps();
        // vx8 appeared, but its event was among those the kernel dropped.
        c.create_vxlan(8, "vx8");
        c.send(LinkEvent::Lost);
        // The resync's listing answers while scrapes are served: vx8 shows up as soon as it
        // has been routed.
        let mut scrapes = 0;
        let snapshot = loop {
            let exposition = c.scrapes.collect().await.expect("owner answers");
            scrapes += 1;
            if exposition
                .snapshot()
                .interfaces
                .iter()
                .any(|i| i.name == "vx8")
            {
                break exposition.snapshot().clone();
            }
            assert!(scrapes < 100, "vx8 never routed");
        };
        assert_eq!(
            snapshot.netlink_resyncs,
            vec![("events_lost", 1), ("resubscribed", 0)]
        );
        // One dump for the resync, one for each scrape's kernel counters.
        assert_eq!(c.links.dumps(), dumps + 1 + scrapes);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn a_lost_subscription_is_opened_again_unhealthy_meanwhile_and_resynced() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        c.end_subscription(true);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !c.healthy.load(Ordering::Acquire),
            "unhealthy while it cannot subscribe"
        );
        c.create_vxlan(8, "vx8");
        c.subscription.state().failing = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(c.healthy.load(Ordering::Acquire));
        assert_eq!(c.subscription.state().opened, 2);
        // What changed while no events came is routed by the resync after subscribing.
        let exposition = c.scrapes.collect().await.expect("owner answers");
        let snapshot = exposition.snapshot();
        assert!(snapshot.interfaces.iter().any(|i| i.name == "vx8"));
        assert_eq!(
            snapshot.netlink_resyncs,
            vec![("events_lost", 0), ("resubscribed", 1)]
        );
        // And the new subscription delivers events.
        let link = c.create_vxlan(9, "vx9");
        c.send(LinkEvent::New(link));
        assert!(c.scrape().await.iter().any(|(n, _)| n == "vx9"));
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn shutdown_detaches_everything_and_later_scrapes_are_refused() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let link = c.create_vxlan(9, "vx9");
        c.send(LinkEvent::New(link));
        // The event is applied before the scrape is answered (events come first).
        assert!(c.scrape().await.iter().any(|(n, _)| n == "vx9"));
        assert_eq!(c.ebpf.attaches(), 1);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
    assert_eq!(c.ebpf.detaches(), 1);
    assert!(!c.ebpf.is_attached(9));
    assert!(c.scrapes.collect().await.is_none());
    // Nothing waits forever on a stopped owner.
    let pending = std::pin::pin!(c.scrapes.collect());
    assert!(matches!(futures_util::poll!(pending), Poll::Ready(None)));
}

#[tokio::test(start_paused = true)]
async fn what_earlier_daemons_left_is_settled_only_after_a_successful_dump() {
    let (owner, mut c, shutdown) = owner();
    c.create_vxlan(5, "vx5");
    // The first dump fails: settling then would free every adopted counter.
    c.links.fail_dumps(true);
    let clients = async {
        c.until_ready().await;
        assert!(c.ebpf.settles().is_empty());
        c.links.fail_dumps(false);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            c.ebpf.settles(),
            vec![vec![5]],
            "once, with what is attached"
        );
        assert_eq!(
            c.ebpf.stale_checks(),
            vec![vec![1, 2, 5]],
            "stale tc filters are looked for on every link"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(c.ebpf.settles().len(), 1);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn resubscribing_is_not_held_off_by_steady_scraping() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        c.end_subscription(true);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.subscription.state().failing = false;
        // A scrape every 100 ms, for 3 s: the 1 s resubscription timer still fires.
        for _ in 0..30 {
            c.scrape().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(c.healthy.load(Ordering::Acquire));
        assert_eq!(c.subscription.state().opened, 2);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn a_kernel_that_stops_answering_holds_up_neither_scrapes_nor_health_nor_shutdown() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        // From now on the kernel answers neither the resync's link reads nor any attach,
        // detach or check: a netlink reply that never comes.
        let _ = c.upkeep_gate.send(true);
        c.ebpf.stall(true);
        c.send(LinkEvent::Lost);
        let link = c.create_vxlan(9, "vx9");
        c.send(LinkEvent::New(link));
        tokio::time::sleep(Duration::from_secs(61)).await;
        for _ in 0..5 {
            let shown = c.scrape().await;
            assert_eq!(
                shown,
                [
                    ("lo".to_owned(), Backend::None),
                    ("eth0".to_owned(), Backend::Ethtool)
                ],
                "answered with what is routed; vx9 waits for its attach"
            );
        }
        assert!(c.healthy.load(Ordering::Acquire));
        c.stop();
    };
    // Shutting down waits for the kernel's detaches only so long.
    tokio::join!(owner.run(shutdown), clients);
    assert!(c.scrapes.collect().await.is_none());
}
