//! Collection: read-only, every backend through one path, failures counted and isolated.

use super::*;
use crate::discovery::LinkStats;

fn stats(packets: u64) -> LinkStats {
    LinkStats {
        rx_packets: packets,
        tx_packets: packets + 1,
        rx_bytes: packets * 100,
        tx_bytes: packets * 100 + 100,
        ..LinkStats::default()
    }
}

#[tokio::test]
async fn collecting_never_probes_routes_or_attaches() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    // vx6 exists in the kernel, but its link event has not been applied yet.
    f.add(6, "vx6", Some("vxlan"), no_stats("vxlan"));
    for _ in 0..3 {
        let snapshot = f.node.collect().await;
        let names: Vec<&str> = snapshot
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["vx5"]);
    }
    assert_eq!((f.ethtool.probes(), f.ebpf.attaches()), (1, 1));
    assert_eq!(
        f.links.dumps(),
        3,
        "one kernel link stats dump per collection"
    );
}

#[tokio::test]
async fn counts_come_from_the_routed_backend() {
    let mut f = fixture();
    f.appear(2, "eth0", None, veth()).await;
    f.appear(3, "vx3", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(4, "weird0", None, FakeDriver::failing(libc::EPERM))
        .await;
    for (ifindex, packets) in [(2, 10), (3, 30), (4, 40)] {
        f.links.set_stats(ifindex, stats(packets));
    }
    f.ebpf.set_counts(3, 5, 6);
    let snapshot = f.node.collect().await;
    let [eth0, vx3, weird0] = &snapshot.interfaces[..] else {
        panic!("{snapshot:?}");
    };
    assert_eq!(eth0.packets().map(|p| (p.rx, p.tx)), Some((10, 11)));
    assert_eq!(
        eth0.ethtool,
        vec![
            ("stat_0".to_owned(), 0),
            ("stat_1".to_owned(), 10),
            ("stat_2".to_owned(), 20)
        ]
    );
    // eBPF counts for the eBPF-routed interface, the kernel's kept alongside.
    assert_eq!(vx3.packets().map(|p| (p.rx, p.tx)), Some((5, 6)));
    assert_eq!(vx3.bytes().map(|b| (b.rx, b.tx)), Some((500, 600)));
    assert_eq!(vx3.kernel.map(|k| k.rx_packets), Some(30));
    assert_eq!(weird0.packets().map(|p| p.rx), Some(40));
    assert!(snapshot.ebpf_available);
    for backend in [Backend::Netdev, Backend::Ethtool, Backend::Ebpf] {
        assert!(
            snapshot.collect.duration.contains_key(&backend),
            "{backend}"
        );
        assert_eq!(snapshot.collect.errors.get(&backend), Some(&0), "{backend}");
    }
}

#[tokio::test]
async fn the_stat_allowlist_limits_driver_statistics() {
    let mut f = fixture_with(
        &Settings {
            ethtool_stats_allowlist: regex::Regex::new("_[02]$").expect("regex"),
            ..settings()
        },
        true,
    );
    f.appear(2, "eth0", None, veth()).await;
    let snapshot = f.node.collect().await;
    let names: Vec<&str> = snapshot.interfaces[0]
        .ethtool
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["stat_0", "stat_2"]);
}

#[tokio::test]
async fn a_failing_backend_is_counted_and_leaves_out_only_its_series() {
    let mut f = fixture();
    f.appear(2, "eth0", None, veth().with_values_failing(libc::EIO))
        .await;
    f.appear(3, "vx3", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.fail_reads(true);
    let snapshot = f.node.collect().await;
    assert!(snapshot.interfaces[0].ethtool.is_empty());
    assert!(
        snapshot.interfaces[0].packets().is_some(),
        "kernel stats still read"
    );
    assert_eq!(snapshot.interfaces[1].packets(), None);
    assert_eq!(snapshot.collect.errors.get(&Backend::Ethtool), Some(&1));
    assert_eq!(snapshot.collect.errors.get(&Backend::Ebpf), Some(&1));

    f.ebpf.fail_reads(false);
    f.links.fail_dumps(true);
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.collect.errors.get(&Backend::Netdev), Some(&1));
    assert_eq!(snapshot.interfaces[0].packets(), None);
    assert!(
        snapshot.interfaces[1].packets().is_some(),
        "eBPF counts still read"
    );
    assert_eq!(snapshot.collect.errors.get(&Backend::Ethtool), Some(&2));
}

#[tokio::test]
async fn a_full_counter_map_is_reported_as_overflow() {
    let mut f = fixture();
    f.appear(3, "vx3", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(4, "vx4", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.set_counts(3, 1, 1);
    // vx4 found the map full: its packets went to the overflow counter.
    f.ebpf.set_overflow(100);
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.map_overflow.interfaces, 100);
    assert_eq!(snapshot.interfaces[1].packets().map(|p| p.rx), Some(0));
    // A failed read keeps the counter where it was instead of resetting it.
    f.ebpf.fail_reads(true);
    assert_eq!(f.node.collect().await.map_overflow.interfaces, 100);
}

#[tokio::test]
async fn a_driver_whose_stat_count_changes_gets_its_names_read_again() {
    let mut f = fixture();
    // GSSET_INFO and GSTRINGS at the probe see 3; the driver then grows to 5.
    f.appear(2, "eth0", None, FakeDriver::named("veth", &[3, 3, 5]))
        .await;
    let first = f.node.collect().await;
    assert!(
        first.interfaces[0].ethtool.is_empty(),
        "refused, not misread"
    );
    assert_eq!(first.collect.errors.get(&Backend::Ethtool), Some(&1));
    let second = f.node.collect().await;
    assert_eq!(second.interfaces[0].ethtool.len(), 5);
    assert_eq!(second.collect.errors.get(&Backend::Ethtool), Some(&1));
}

#[tokio::test]
async fn an_interface_missing_from_the_dump_keeps_its_routing_without_kernel_counts() {
    let mut f = fixture();
    f.appear(2, "eth0", None, veth()).await;
    // Deleted a moment ago; its link event is still on its way.
    f.links.remove(2);
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.interfaces.len(), 1);
    assert_eq!(snapshot.interfaces[0].kernel, None);
    assert_eq!(snapshot.interfaces[0].packets(), None);
}
