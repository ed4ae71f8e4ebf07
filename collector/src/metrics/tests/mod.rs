//! The exposition of fixed snapshots, and the golden files (as node_exporter's
//! `e2e-output.txt`): `collector/tests/golden/exposition.{prom,openmetrics}` are the full
//! output for [`fixture`]. Regenerate with `UPDATE_GOLDEN=1 cargo test -p collector --lib`,
//! and review the diff.

use std::path::PathBuf;

use collector_common::{Counter, Protocol, TcpFlag};

use super::*;

mod exposition;
mod overlay;

fn kernel(packets: u64) -> LinkStats {
    LinkStats {
        rx_packets: packets,
        tx_packets: 2 * packets,
        rx_bytes: 100 * packets,
        tx_bytes: 200 * packets,
        rx_errors: 1,
        tx_errors: 2,
        rx_dropped: 3,
        tx_dropped: 4,
    }
}

fn iface(name: &str, ifindex: u32, backend: Backend, reason: Reason) -> InterfaceSnapshot {
    InterfaceSnapshot {
        name: name.into(),
        ifindex,
        kind: "vxlan".into(),
        driver: String::new(),
        backend,
        reason,
        attach_mode: None,
        programs_before: None,
        kernel: Some(kernel(10)),
        ebpf: None,
        ethtool: Vec::new(),
        speed_bytes: None,
        full_duplex: None,
    }
}

/// One interface of every kind of routing, odd names included.
fn fixture() -> Snapshot {
    let mut lo = iface("lo", 1, Backend::None, Reason::Excluded);
    lo.kind = String::new();
    let mut eth = iface("eth0", 2, Backend::Ethtool, Reason::EthtoolStats);
    eth.kind = String::new();
    eth.driver = "virtio_net".into();
    eth.ethtool = vec![
        ("rx_queue_0_packets".into(), 5),
        ("tx_queue_0_packets".into(), 6),
    ];
    eth.speed_bytes = Some(1_250_000_000);
    eth.full_duplex = Some(true);
    let mut vxlan = iface("cilium_vxlan", 3, Backend::Ebpf, Reason::EthtoolUnsupported);
    vxlan.attach_mode = Some(AttachedMode::Tcx);
    vxlan.programs_before = Some([0, 1]);
    vxlan.ebpf = Some(InterfaceStats {
        rx: stats(&[(Protocol::Ipv4Udp, 5, 500), (Protocol::Arp, 2, 200)], &[]),
        tx: stats(
            &[(Protocol::Ipv4Tcp, 6, 600), (Protocol::Ipv6Icmp, 2, 200)],
            &[(TcpFlag::Syn, 1), (TcpFlag::Rst, 2)],
        ),
    });
    // eth0 keeps ethtool and also gets the breakdown.
    eth.attach_mode = Some(AttachedMode::Tcx);
    eth.programs_before = Some([0, 0]);
    eth.ebpf = Some(InterfaceStats {
        rx: stats(&[(Protocol::Ipv6Tcp, 1, 1500)], &[(TcpFlag::SynAck, 1)]),
        tx: Stats::default(),
    });
    let mut unread = iface("br0", 4, Backend::Ebpf, Reason::EthtoolNoStats);
    unread.kind = "bridge".into();
    unread.kernel = None;
    Snapshot {
        interfaces: vec![
            lo,
            eth,
            vxlan,
            unread,
            iface("we\"ird\\nam\ne", 5, Backend::Netdev, Reason::EthtoolError),
            iface("lxc\u{e9}", 6, Backend::Netdev, Reason::EbpfAttachFailed),
        ],
        collect: CollectStats {
            duration: [(Backend::Netdev, 0.001), (Backend::Ethtool, 0.002)]
                .into_iter()
                .collect(),
            errors: [(Backend::Ebpf, 3)].into_iter().collect(),
        },
        attach_failures: 1,
        reattach: 2,
        reanchor: 1,
        netlink_resyncs: vec![("events_lost", 4), ("resubscribed", 1)],
        peers: vec![
            peer("cilium_vxlan", Direction::Egress, "192.0.2.2", 5),
            peer("cilium_vxlan", Direction::Egress, "2001:db8::3", 2),
            peer("cilium_vxlan", Direction::Egress, "none", 1),
            peer("cilium_vxlan", Direction::Ingress, "192.0.2.2", 7),
        ],
        map_overflow: MapOverflow {
            interfaces: 9,
            peers: 2,
            drops: Some(0),
        },
        map_bytes: vec![("directory", 32_768), ("stats", 131_072)],
        slots: Some((3, 253)),
        ebpf_available: true,
        // Every family in the golden files: the zones beside the peers.
        overlay_series: crate::zones::OverlaySeries::Both,
        zones: vec![
            crate::zones::ZoneCount {
                interface: "cilium_vxlan".into(),
                direction: Direction::Egress,
                zone: "eu-west-1b".into(),
                counter: Counter {
                    packets: 5,
                    bytes: 500,
                },
            },
            crate::zones::ZoneCount {
                interface: "cilium_vxlan".into(),
                direction: Direction::Egress,
                zone: "none".into(),
                counter: Counter {
                    packets: 1,
                    bytes: 60,
                },
            },
        ],
        node_zone: Some("eu-west-1a".into()),
        drops: vec![
            DropSnapshot {
                interface: "eth0".into(),
                reason: "no_socket".into(),
                packets: 12,
            },
            DropSnapshot {
                interface: "eth0".into(),
                reason: "netfilter_drop".into(),
                packets: 3,
            },
        ],
        drop_reasons: true,
    }
}

/// Statistics with `protocols` (class, packets, bytes), all packets of the bytes' mean size.
fn stats(protocols: &[(Protocol, u64, u64)], flags: &[(TcpFlag, u64)]) -> Stats {
    let mut s = Stats::default();
    for &(p, packets, bytes) in protocols {
        s.protocols[p as usize] = Counter { packets, bytes };
        s.sizes[collector_common::size_bucket(u32::try_from(bytes / packets).expect("small"))] +=
            packets;
    }
    for &(f, n) in flags {
        s.tcp_flags[f as usize] = n;
    }
    s
}

fn peer(interface: &str, direction: Direction, peer: &str, packets: u64) -> PeerSnapshot {
    PeerSnapshot {
        zone: None,
        interface: interface.into(),
        direction,
        peer: peer.into(),
        packets,
        bytes: packets * 100,
    }
}

fn render(snapshot: Snapshot, format: Format) -> String {
    encode(Arc::new(snapshot), format, View::All).expect("encode")
}

#[test]
fn exposition_matches_the_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (format, file) in [
        (Format::Prometheus, "exposition.prom"),
        (Format::OpenMetrics, "exposition.openmetrics"),
    ] {
        let text = render(fixture(), format).replace(env!("CARGO_PKG_VERSION"), "VERSION");
        let path = dir.join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).expect("write golden");
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            golden == text,
            "{} differs; review and run UPDATE_GOLDEN=1 cargo test -p collector --lib:\n{text}",
            path.display()
        );
    }
}

#[test]
fn prometheus_text_has_total_suffixes_and_no_eof() {
    let text = render(fixture(), Format::Prometheus);
    assert!(text.contains("# TYPE linkmeter_interface_packets_total counter\n"));
    assert!(text.contains(
        "linkmeter_interface_packets_total{interface=\"cilium_vxlan\",direction=\"rx\",backend=\"ebpf\"} 7\n"
    ));
    assert!(text.contains("# TYPE linkmeter_interface_packet_size_bytes histogram\n"));
    assert!(text.contains("# TYPE linkmeter_ethtool_stat untyped\n"));
    assert!(!text.contains("# EOF"));
}

#[test]
fn openmetrics_text_ends_with_eof() {
    let text = render(fixture(), Format::OpenMetrics);
    assert!(text.contains("# TYPE linkmeter_interface_packets counter\n"));
    assert!(text.contains("# TYPE linkmeter_ethtool_stat unknown\n"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn packets_come_from_the_routed_backend() {
    let text = render(fixture(), Format::Prometheus);
    // eBPF-routed: eBPF counts, not the kernel's.
    assert!(text.contains("linkmeter_interface_bytes_total{interface=\"cilium_vxlan\",direction=\"tx\",backend=\"ebpf\"} 800\n"));
    // ethtool-routed: kernel link stats.
    assert!(text.contains("linkmeter_interface_packets_total{interface=\"eth0\",direction=\"tx\",backend=\"ethtool\"} 20\n"));
}

#[test]
fn excluded_interfaces_only_have_an_info_series() {
    let text = render(fixture(), Format::Prometheus);
    assert!(text.contains("linkmeter_interface_info{interface=\"lo\",ifindex=\"1\",kind=\"\",driver=\"\",backend=\"none\",reason=\"excluded\"} 1\n"));
    for line in text.lines().filter(|l| l.contains("interface=\"lo\"")) {
        assert!(line.starts_with("linkmeter_interface_info"), "{line}");
    }
}

#[test]
fn a_backend_that_read_nothing_leaves_out_its_series() {
    let text = render(fixture(), Format::Prometheus);
    let br0: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("interface=\"br0\""))
        .collect();
    assert_eq!(br0.len(), 1, "{br0:?}");
    assert!(br0[0].starts_with("linkmeter_interface_info"));
}

#[test]
fn label_values_are_escaped_whatever_the_interface_name() {
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let text = render(fixture(), format);
        assert!(text.contains(r#"interface="we\"ird\\nam\ne""#), "{text}");
        assert!(text.contains("interface=\"lxc\u{e9}\""), "{text}");
    }
}

#[test]
fn self_metrics_are_always_present() {
    let text = render(Snapshot::default(), Format::Prometheus);
    for name in [
        "linkmeter_backend_interfaces{backend=\"ebpf\"} 0",
        "linkmeter_collect_errors_total{backend=\"ethtool\"} 0",
        "linkmeter_ebpf_attach_failures_total 0",
        "linkmeter_ebpf_reattach_total 0",
        "linkmeter_ebpf_map_overflow_total{map=\"peers\"} 0",
        "linkmeter_ebpf_available 0",
        "linkmeter_build_info{version=",
    ] {
        assert!(text.contains(name), "{name} missing in {text}");
    }
}

#[test]
fn interfaces_are_found_by_ifindex() {
    let mut snapshot = fixture();
    assert_eq!(
        snapshot.interface_mut(3).map(|i| i.name.clone()).as_deref(),
        Some("cilium_vxlan")
    );
    assert!(snapshot.interface_mut(99).is_none());
}

#[test]
fn the_size_histogram_sums_to_the_byte_and_packet_counters() {
    let text = render(fixture(), Format::Prometheus);
    let sample = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing in {text}"));
        line.rsplit_once(' ').expect("value").1.to_owned()
    };
    let number = |name: &str| -> f64 { sample(name).parse().expect("a number") };
    let labels = "{interface=\"cilium_vxlan\",direction=\"tx\"}";
    let counted = "{interface=\"cilium_vxlan\",direction=\"tx\",backend=\"ebpf\"}";
    let bytes = number(&format!("linkmeter_interface_bytes_total{counted}"));
    let packets = number(&format!("linkmeter_interface_packets_total{counted}"));
    assert_eq!((bytes, packets), (800.0, 8.0));
    assert_eq!(
        number(&format!(
            "linkmeter_interface_packet_size_bytes_sum{labels}"
        )),
        bytes
    );
    assert_eq!(
        number(&format!(
            "linkmeter_interface_packet_size_bytes_count{labels}"
        )),
        packets
    );
    assert_eq!(
        number(
            "linkmeter_interface_packet_size_bytes_bucket{interface=\"cilium_vxlan\",direction=\"tx\",le=\"+Inf\"}"
        ),
        packets
    );
    // The breakdown of an ethtool-routed interface sits beside its kernel counters.
    assert_eq!(
        sample(
            "linkmeter_interface_protocol_bytes_total{interface=\"eth0\",direction=\"rx\",protocol=\"ipv6_tcp\"}"
        ),
        "1500"
    );
    assert_eq!(
        sample(
            "linkmeter_interface_tcp_flags_total{interface=\"cilium_vxlan\",direction=\"tx\",flag=\"rst\"}"
        ),
        "2"
    );
}

#[test]
fn overlay_peers_and_overflow_per_map_are_exported() {
    let text = render(fixture(), Format::Prometheus);
    for line in [
        "linkmeter_overlay_packets_total{interface=\"cilium_vxlan\",direction=\"tx\",peer=\"192.0.2.2\"} 5\n",
        "linkmeter_overlay_bytes_total{interface=\"cilium_vxlan\",direction=\"tx\",peer=\"2001:db8::3\"} 200\n",
        "linkmeter_overlay_packets_total{interface=\"cilium_vxlan\",direction=\"tx\",peer=\"none\"} 1\n",
        "linkmeter_ebpf_map_overflow_total{map=\"directory\"} 9\n",
        "linkmeter_ebpf_map_overflow_total{map=\"peers\"} 2\n",
        "linkmeter_ebpf_map_bytes{map=\"stats\"} 131072\n",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
    // Interfaces without the eBPF counter have no breakdown.
    assert!(!text.contains("protocol_packets_total{interface=\"lo\""));
    assert!(!text.contains("protocol_packets_total{interface=\"br0\""));
}
