//! The ethtool backend against real drivers in a namespace: veth exports statistics, vxlan and
//! bridges answer with none, `lo` answers `EOPNOTSUPP`, a missing interface `ENODEV`; a driver
//! whose stat count grows between scrapes (`ethtool -L`) is read right and never overruns.

use std::time::Duration;

use collector::backend::ethtool::{Ethtool, EthtoolIo as _, Ioctl, Probe, UserBuffer};
use integration_tests::{
    daemon::{Daemon, scrape},
    eventually, kernel_tests_enabled,
    netns::NetNs,
    topology::VethPair,
};

/// A veth pair `vq`/`vqp` in `ns` with 8 queues each, set to one queue (its smallest stat count).
fn multiqueue_veth(ns: &NetNs) {
    ns.ip(&[
        "link",
        "add",
        "vq",
        "numtxqueues",
        "8",
        "numrxqueues",
        "8",
        "type",
        "veth",
        "peer",
        "vqp",
        "numtxqueues",
        "8",
        "numrxqueues",
        "8",
    ]);
    ns.exec(&["ethtool", "-L", "vq", "rx", "1", "tx", "1"]);
}

fn stat_names(ethtool: &Ethtool<Ioctl>, name: &str) -> Vec<String> {
    match ethtool.probe(name) {
        Probe::Stats { names, .. } => names,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn stat_count_growing_between_reads_is_refused_then_read_right_and_never_overruns() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("ethgrow");
    multiqueue_veth(&ns);
    let peer = u64::from(integration_tests::kernel::ifindex(&ns, "vqp"));
    let (ethtool, ioctl) = ns.within(|| {
        (
            Ethtool::new(Ioctl::new().expect("socket")),
            Ioctl::new().expect("socket"),
        )
    });
    let before = stat_names(&ethtool, "vq");
    let at = |names: &[String], stat: &str| names.iter().position(|n| n == stat).expect(stat);
    let values = ethtool.values("vq", before.len()).expect("values");
    assert_eq!(values[at(&before, "peer_ifindex")], peer);

    ns.exec(&["ethtool", "-L", "vq", "rx", "8", "tx", "8"]);
    let grown = ioctl.stats_count("vq").expect("GSSET_INFO") as usize;
    assert!(grown > before.len(), "{grown} <= {}", before.len());

    // The old count is refused, not misread...
    let err = ethtool
        .values("vq", before.len())
        .expect_err("count changed");
    assert!(err.to_string().contains("changed count"), "{err}");
    // ... and a GSTATS sized for the old count with no headroom, as a stale reader would make
    // it, cannot write past its buffer: this kernel answers 0 entries (fixed kernels), an old
    // one hits the canary or the guard page.
    let mut buf = UserBuffer::new();
    match ioctl.stat_values("vq", before.len(), before.len(), &mut buf) {
        Ok(0) => assert!(buf.canary_intact(), "fixed kernel, canary damaged"),
        Ok(n) => assert!(
            n as usize <= before.len() || !buf.canary_intact(),
            "{n} entries reported into {} and the canary intact",
            before.len()
        ),
        Err(err) => assert_eq!(err.raw_os_error(), Some(nix::libc::EFAULT), "{err}"),
    }
    // Names read again: every value is right, the new queues' included.
    let after = stat_names(&ethtool, "vq");
    assert_eq!(after.len(), grown);
    assert!(
        after.iter().any(|n| n == "rx_queue_7_xdp_packets"),
        "{after:?}"
    );
    let values = ethtool.values("vq", after.len()).expect("values");
    assert_eq!(values[at(&after, "peer_ifindex")], peer);
}

#[test]
fn daemon_exports_the_new_stats_after_ethtool_l_and_keeps_the_old_ones_right() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("ethgrowd");
    multiqueue_veth(&ns);
    let peer = f64::from(integration_tests::kernel::ifindex(&ns, "vqp"));
    // A veth: its raw driver statistics are exported only when asked for.
    let daemon = Daemon::start(&ns, &["--ethtool-stats-interfaces", "vq"]);
    let stat = |m: &integration_tests::daemon::Metrics, stat: &str| {
        m.value(
            "linkmeter_ethtool_stat",
            &[("interface", "vq"), ("stat", stat)],
        )
    };
    let m = eventually("vq's ethtool stats", Duration::from_secs(10), || {
        let m = scrape(&ns);
        stat(&m, "peer_ifindex").map(|_| m).ok_or("none yet")
    });
    assert_eq!(stat(&m, "peer_ifindex"), Some(peer));
    assert_eq!(stat(&m, "rx_queue_7_xdp_packets"), None);

    ns.exec(&["ethtool", "-L", "vq", "rx", "8", "tx", "8"]);
    // The scrape that meets the change leaves vq's raw stats out and reads the names again.
    let m = eventually("the new queues' stats", Duration::from_secs(10), || {
        let m = scrape(&ns);
        stat(&m, "rx_queue_7_xdp_packets")
            .map(|_| m)
            .ok_or("not yet")
    });
    assert_eq!(stat(&m, "peer_ifindex"), Some(peer));
    assert_eq!(stat(&m, "rx_queue_7_xdp_packets"), Some(0.0));
    drop(daemon);
}

#[test]
fn probe_classifies_real_drivers_by_errno() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("eth");
    topo.a.ip(&[
        "link",
        "add",
        "vx9",
        "type",
        "vxlan",
        "id",
        "9",
        "dstport",
        "4789",
        "local",
        "10.200.0.1",
    ]);
    topo.a.ip(&["link", "add", "br9", "type", "bridge"]);
    let ethtool = topo
        .a
        .within(|| Ethtool::new(Ioctl::new().expect("socket")));

    match ethtool.probe("va") {
        Probe::Stats { driver, names } => {
            assert_eq!(driver, "veth");
            assert!(names.iter().any(|n| n == "peer_ifindex"), "{names:?}");
            let values = ethtool.values("va", names.len()).expect("values");
            assert_eq!(values.len(), names.len());
            let peer = names
                .iter()
                .position(|n| n == "peer_ifindex")
                .expect("peer_ifindex");
            let vb_index = integration_tests::kernel::ifindex(&topo.b, "vb");
            assert_eq!(values[peer], u64::from(vb_index));
        }
        other => panic!("veth: {other:?}"),
    }
    assert_eq!(
        ethtool.probe("vx9"),
        Probe::NoStats {
            driver: "vxlan".into()
        }
    );
    assert_eq!(
        ethtool.probe("br9"),
        Probe::NoStats {
            driver: "bridge".into()
        }
    );
    assert_eq!(
        ethtool.probe("lo"),
        Probe::Unsupported {
            errno: nix::libc::EOPNOTSUPP
        }
    );
    assert_eq!(
        ethtool.probe("missing0"),
        Probe::Failed {
            errno: nix::libc::ENODEV
        }
    );
    assert_eq!(
        ethtool.probe("bad/name"),
        Probe::Failed {
            errno: nix::libc::ENODEV
        }
    );
}
