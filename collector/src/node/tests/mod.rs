//! The node's routing and lifecycle logic against fixtures: a fake ethtool driver per
//! interface, a fake eBPF backend, and fake links — no kernel, no root.

mod breakdown;
mod collect;
mod lifecycle;
mod pending;
mod retries;
mod routing;

use super::*;
use crate::{
    backend::{
        ebpf::fake::FakeEbpf,
        ethtool::fake::{FakeDriver, FakeEthtool},
    },
    discovery::fake::FakeLinks,
    discovery::{Link, LinkEvent},
    filter::Pattern,
    policy::{Backend, Reason},
};

/// A node over fixtures, and handles on the fixtures it owns.
struct Fixture {
    node: Node<FakeEthtool, FakeEbpf, FakeLinks>,
    ethtool: FakeEthtool,
    ebpf: FakeEbpf,
    links: FakeLinks,
    /// Holds the resync's link reads while `true`: a kernel slow to answer them.
    upkeep_gate: tokio::sync::watch::Sender<bool>,
}

/// A node with the daemon's default settings and eBPF available.
fn fixture() -> Fixture {
    fixture_with(&settings(), true)
}

/// The daemon's default settings: `lo` excluded, raw driver statistics of devices (interfaces
/// without a link kind), every statistic name.
fn settings() -> Settings {
    Settings {
        policy: Policy {
            include: Vec::new(),
            exclude: patterns(&["lo"]),
            overrides: Vec::new(),
            breakdown: Vec::new(),
            ethtool_stats: patterns(&["kind:"]),
        },
        attach_mode: AttachMode::Auto,
        peer_idle: Duration::from_secs(900),
        ethtool_stats_allowlist: regex::Regex::new(".*").expect("regex"),
        overlay: crate::zones::Overlay::default(),
    }
}

/// Interface patterns.
fn patterns(list: &[&str]) -> Vec<Pattern> {
    list.iter().map(|p| p.parse().expect("pattern")).collect()
}

/// The default settings with the breakdown for `pattern`.
fn breakdown(pattern: &str) -> Settings {
    let mut settings = settings();
    settings.policy.breakdown = patterns(&[pattern]);
    settings
}

/// A node with `settings`, eBPF available or not.
fn fixture_with(config: &Settings, ebpf_available: bool) -> Fixture {
    let (ethtool, ebpf, links) = (
        FakeEthtool::default(),
        FakeEbpf::default(),
        FakeLinks::default(),
    );
    let (upkeep, upkeep_gate) = links.gated();
    let node = Node::new(
        config,
        ethtool.clone(),
        ebpf_available.then(|| ebpf.clone()),
        links.clone(),
        upkeep,
    );
    Fixture {
        node,
        ethtool,
        ebpf,
        links,
        upkeep_gate,
    }
}

/// A veth: driver `veth` with three statistics.
fn veth() -> FakeDriver {
    FakeDriver::named("veth", &[3])
}

/// A vxlan or bridge: the driver answers, without statistics.
fn no_stats(driver: &str) -> FakeDriver {
    FakeDriver::named(driver, &[0])
}

/// Cilium's devices and `lo`: ethtool not supported.
fn unsupported() -> FakeDriver {
    FakeDriver::failing(libc::EOPNOTSUPP)
}

impl Fixture {
    /// Puts a link in the fixture kernel (no event is sent).
    fn add(&self, ifindex: u32, name: &str, kind: Option<&str>, driver: FakeDriver) -> Link {
        self.ethtool.set(name, driver);
        self.links.add(ifindex, name, kind)
    }

    /// Puts a link in the fixture kernel, applies its link event and waits for what it
    /// started.
    async fn appear(&mut self, ifindex: u32, name: &str, kind: Option<&str>, driver: FakeDriver) {
        let link = self.add(ifindex, name, kind, driver);
        self.node.apply(LinkEvent::New(link));
        self.node.until_idle().await;
    }

    /// Deletes a link from the fixture kernel, applies its link event and waits for what it
    /// started.
    async fn delete(&mut self, ifindex: u32) {
        self.links.remove(ifindex);
        self.node.apply(LinkEvent::Deleted { ifindex });
        self.node.until_idle().await;
    }

    /// (backend, reason) of every interface, by name.
    fn routing(&self) -> Vec<(String, Backend, Reason)> {
        self.node
            .interfaces()
            .map(|i| (i.link.name.clone(), i.measure.backend(), i.reason))
            .collect()
    }

    /// (backend, reason) of interface `name`.
    fn route_of(&self, name: &str) -> Option<(Backend, Reason)> {
        self.routing()
            .into_iter()
            .find(|(n, ..)| n == name)
            .map(|(_, b, r)| (b, r))
    }
}
