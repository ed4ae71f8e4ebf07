//! Exposition of fixture snapshots.

use super::*;

fn fixture() -> Snapshot {
    let iface = |name: &str, backend, reason| InterfaceSnapshot {
        name: name.into(),
        ifindex: 7,
        kind: "vxlan".into(),
        driver: String::new(),
        backend,
        reason,
        attach_mode: None,
        packets: Some(RxTx { rx: 10, tx: 20 }),
        bytes: Some(RxTx { rx: 1000, tx: 2000 }),
        errors: RxTx { rx: 1, tx: 2 },
        dropped: RxTx { rx: 3, tx: 4 },
        ethtool: Vec::new(),
        speed_bytes: None,
        full_duplex: None,
    };
    let mut eth = iface("eth0", Backend::Ethtool, Reason::EthtoolStats);
    eth.kind = String::new();
    eth.driver = "virtio_net".into();
    eth.ethtool = vec![("rx_queue_0_packets".into(), 5)];
    eth.speed_bytes = Some(1_250_000_000);
    eth.full_duplex = Some(true);
    let mut lo = iface("lo", Backend::None, Reason::Excluded);
    lo.packets = None;
    lo.bytes = None;
    Snapshot {
        interfaces: vec![
            lo,
            eth,
            iface("cilium_vxlan", Backend::Ebpf, Reason::EthtoolUnsupported),
            iface("we\"ird\\nam\ne", Backend::Netdev, Reason::EthtoolError),
        ],
        collect_duration: [(Backend::Netdev, 0.001)].into_iter().collect(),
        ebpf_available: true,
        ..Snapshot::default()
    }
}

fn render(format: Format) -> String {
    let collector = SnapshotCollector::default();
    collector.publish(fixture());
    encode(&collector.registry(), format).expect("encode")
}

#[test]
fn prometheus_text_has_total_suffixes_and_no_eof() {
    let text = render(Format::Prometheus);
    assert!(
        text.contains("# TYPE linkmeter_interface_packets_total counter\n"),
        "{text}"
    );
    assert!(text.contains(
        "linkmeter_interface_packets_total{interface=\"cilium_vxlan\",direction=\"rx\",backend=\"ebpf\"} 10\n"
    ));
    assert!(text.contains("# TYPE linkmeter_ethtool_stat untyped\n"));
    assert!(
        text.contains("linkmeter_ethtool_stat{interface=\"eth0\",stat=\"rx_queue_0_packets\"} 5\n")
    );
    assert!(text.contains("linkmeter_link_speed_bytes{interface=\"eth0\"} 1250000000\n"));
    assert!(text.contains("linkmeter_link_full_duplex{interface=\"eth0\"} 1\n"));
    assert!(!text.contains("# EOF"));
}

#[test]
fn openmetrics_text_ends_with_eof() {
    let text = render(Format::OpenMetrics);
    assert!(
        text.contains("# TYPE linkmeter_interface_packets counter\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE linkmeter_ethtool_stat unknown\n"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn excluded_interfaces_only_have_an_info_series() {
    let text = render(Format::Prometheus);
    assert!(text.contains("linkmeter_interface_info{interface=\"lo\",ifindex=\"7\",kind=\"vxlan\",driver=\"\",backend=\"none\",reason=\"excluded\"} 1\n"));
    for line in text.lines().filter(|l| l.contains("interface=\"lo\"")) {
        assert!(line.starts_with("linkmeter_interface_info"), "{line}");
    }
}

#[test]
fn label_values_are_escaped_whatever_the_interface_name() {
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let text = render(format);
        assert!(text.contains(r#"interface="we\"ird\\nam\ne""#), "{text}");
    }
}

#[test]
fn self_metrics_are_always_present() {
    let collector = SnapshotCollector::default();
    let text = encode(&collector.registry(), Format::Prometheus).expect("encode");
    for name in [
        "linkmeter_backend_interfaces{backend=\"ebpf\"} 0",
        "linkmeter_collect_errors_total{backend=\"ethtool\"} 0",
        "linkmeter_ebpf_attach_failures_total 0",
        "linkmeter_ebpf_reattach_total 0",
        "linkmeter_ebpf_map_overflow_total 0",
        "linkmeter_build_info{version=",
    ] {
        assert!(text.contains(name), "{name} missing in {text}");
    }
}

#[test]
fn negotiation_prefers_openmetrics_only_when_asked() {
    assert_eq!(Format::negotiate(None), Format::Prometheus);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
    assert_eq!(
        Format::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )),
        Format::OpenMetrics
    );
}
