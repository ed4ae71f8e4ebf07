//! Overlay traffic per zone (`peer_zones`): crafted traffic on an external vxlan — ingress
//! frames encapsulated by hand from several forged tunnel endpoints, egress routed to an IPv4
//! and an IPv6 underlay peer, keyless egress frames — counted exactly per zone by the daemon,
//! `unknown` and `none` included, the zones of each direction adding up to the interface's eBPF
//! counter; the per-peer series stay out of `/metrics` by default.

use std::net::Ipv4Addr;

use integration_tests::{
    daemon::{Daemon, LISTEN, scrape},
    frames::{ethernet, ipv4, udp},
    http, kernel_tests_enabled,
    overlay::{self, OverlayNode, endpoints, send_from},
    raw,
};

/// `count` UDP packets from the node's overlay address to `to`, routed over the tunnel; each
/// frame is `frame_bytes` long at the TC hook.
fn routed(to: Ipv4Addr, count: usize) -> (Vec<Vec<u8>>, u64) {
    let packet = ipv4(overlay::NODE_OVERLAY, to, 17, 0, &udp(40));
    let frame_bytes = 14 + packet.len() as u64;
    (vec![packet; count], frame_bytes)
}

#[test]
fn the_daemon_counts_overlay_traffic_per_zone_exactly() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("zon");
    let zone_a = endpoints(&topo, 5, 2);
    let zone_b = endpoints(&topo, 20, 1);
    let unknown = endpoints(&topo, 100, 1);
    let daemon = Daemon::start(
        &topo.node,
        &[
            "--peer-zone",
            "10.210.0.0/28=zone-a,10.210.0.16/28=zone-b",
            "--peer-zone",
            "fd00:210::/64=zone-v6",
            "--node-zone",
            "zone-a",
        ],
    );
    // Ingress: 100-byte frames from forged endpoints of each zone.
    send_from(&topo, zone_a[0], 3);
    send_from(&topo, zone_a[1], 4);
    send_from(&topo, zone_b[0], 5);
    send_from(&topo, unknown[0], 6);
    // Egress: to the IPv4 underlay peer (10.210.0.2, zone-a) and the IPv6 one (zone-v6), and
    // frames without a tunnel key, which the device drops.
    let (to_v4, v4_bytes) = routed(overlay::V4_PEER_OVERLAY, 4);
    let (to_v6, v6_bytes) = routed(overlay::V6_PEER_OVERLAY, 3);
    raw::send_ipv4(&topo.node, &to_v4);
    raw::send_ipv4(&topo.node, &to_v6);
    let keyless = vec![ethernet(0x88b5, &[0; 46]); 2];
    raw::send_frames(&topo.node, overlay::DEVICE, &keyless);

    let m = scrape(&topo.node);
    let zone = |name: &str, direction: &str, zone: &str| {
        m.value(
            name,
            &[
                ("interface", overlay::DEVICE),
                ("direction", direction),
                ("zone", zone),
            ],
        )
    };
    let packets = "linkmeter_overlay_zone_packets_total";
    let bytes = "linkmeter_overlay_zone_bytes_total";
    let log = daemon.log_text();
    for (direction, name, want_packets, want_bytes) in [
        ("rx", "zone-a", 7.0, 700.0),
        ("rx", "zone-b", 5.0, 500.0),
        ("rx", "unknown", 6.0, 600.0),
        ("tx", "zone-a", 4.0, 4.0 * v4_bytes as f64),
        ("tx", "zone-v6", 3.0, 3.0 * v6_bytes as f64),
        ("tx", "none", 2.0, 120.0),
    ] {
        assert_eq!(
            zone(packets, direction, name),
            Some(want_packets),
            "{direction} {name}: {log}"
        );
        assert_eq!(
            zone(bytes, direction, name),
            Some(want_bytes),
            "{direction} {name}"
        );
    }
    // The zones of each direction add up to the interface's eBPF counter.
    for direction in ["rx", "tx"] {
        let zones: f64 = m
            .samples(packets)
            .iter()
            .filter(|(labels, _)| labels.get("direction").map(String::as_str) == Some(direction))
            .map(|(_, v)| v)
            .sum();
        let interface = m.value(
            "linkmeter_interface_packets_total",
            &[
                ("interface", overlay::DEVICE),
                ("direction", direction),
                ("backend", "ebpf"),
            ],
        );
        assert_eq!(Some(zones), interface, "{direction}");
    }
    assert_eq!(
        m.value("linkmeter_node_zone_info", &[("zone", "zone-a")]),
        Some(1.0)
    );
    // With a zone table, the per-peer series are not in /metrics (overlay_series = zone), and
    // /metrics/peers has every one of them, alone.
    assert!(m.samples("linkmeter_overlay_packets_total").is_empty());
    let peers = http::get(&topo.node, LISTEN, "/metrics/peers", &[], &[]).expect("scrape");
    assert_eq!(peers.status, 200);
    let peer = |direction: &str, endpoint: &str| {
        format!(
            "linkmeter_overlay_packets_total{{interface=\"{}\",direction=\"{direction}\",peer=\"{endpoint}\"}} ",
            overlay::DEVICE
        )
    };
    for (direction, endpoint, packets) in [
        ("rx", zone_a[0].to_string(), 3),
        ("rx", zone_a[1].to_string(), 4),
        ("rx", zone_b[0].to_string(), 5),
        ("rx", unknown[0].to_string(), 6),
        ("tx", overlay::V4_PEER.to_string(), 4),
        ("tx", overlay::V6_PEER.to_string(), 3),
        ("tx", "none".to_owned(), 2),
    ] {
        let line = format!("{}{packets}\n", peer(direction, &endpoint));
        assert!(
            peers.body.contains(&line),
            "{line} missing in {}",
            peers.body
        );
    }
    assert!(
        !peers.body.contains("linkmeter_interface_"),
        "/metrics/peers carries the peers only"
    );
}

#[test]
fn check_names_the_node_zone_and_where_it_comes_from() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("zck");
    let check = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", topo.node.name()])
            .arg(integration_tests::daemon::binary())
            .arg("check")
            .args(args)
            .output()
            .expect("run linkmeter check");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The node's underlay address 10.210.0.1 is in zone-a.
    let found = check(&["--peer-zone", "10.210.0.0/28=zone-a,10.211.0.0/16=zone-b"]);
    assert!(
        found.contains("node-zone     zone-a (the node's address 10.210.0.1)"),
        "{found}"
    );
    let configured = check(&[
        "--peer-zone",
        "10.210.0.0/28=zone-a",
        "--node-zone",
        "zone-c",
    ]);
    assert!(configured.contains("zone-c (node_zone)"), "{configured}");
    // Addresses in two zones: none is taken, and check says so.
    let both = check(&["--peer-zone", "10.210.0.0/28=zone-a,fd00:210::/64=zone-v6"]);
    assert!(
        both.contains("warn  node-zone     unknown: the node's addresses are in several zones"),
        "{both}"
    );
}

/// Lines of an exposition that are samples (not comments).
fn samples(body: &str) -> usize {
    body.lines().filter(|l| !l.starts_with('#')).count()
}

#[test]
fn a_thousand_endpoints_add_only_the_zone_series_to_metrics_and_all_are_on_metrics_peers() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("zth");
    // The forged endpoints' network is routed back through the underlay (reverse-path checks).
    topo.node
        .ip(&["route", "add", "10.211.0.0/16", "dev", "u4"]);
    let daemon = Daemon::start(
        &topo.node,
        &["--peer-zone", "10.211.0.0/16=zone-a,10.211.2.0/23=zone-b"],
    );
    let before = http::get(&topo.node, LISTEN, "/metrics", &[], &[]).expect("scrape");
    let endpoints: Vec<Ipv4Addr> = (0..1000u16)
        .map(|i| {
            Ipv4Addr::new(
                10,
                211,
                u8::try_from(i / 250).expect("< 4"),
                u8::try_from(i % 250 + 1).expect("< 251"),
            )
        })
        .collect();
    let frame = overlay::inner_frame();
    let packets: Vec<Vec<u8>> = endpoints
        .iter()
        .flat_map(|&e| [overlay::forged(e, &frame), overlay::forged(e, &frame)])
        .collect();
    raw::send_ipv4(&topo.v4_peer, &packets);

    let after = http::get(&topo.node, LISTEN, "/metrics", &[], &[]).expect("scrape");
    let m = scrape(&topo.node);
    let rx = |zone: &str| {
        m.value(
            "linkmeter_overlay_zone_packets_total",
            &[
                ("interface", overlay::DEVICE),
                ("direction", "rx"),
                ("zone", zone),
            ],
        )
    };
    // 10.211.0.x and 10.211.1.x in zone-a, 10.211.2.x and 10.211.3.x in zone-b (longer).
    assert_eq!(
        (rx("zone-a"), rx("zone-b")),
        (Some(1000.0), Some(1000.0)),
        "{}",
        daemon.log_text()
    );
    // /metrics grows by the zone series alone: two families, two directions, at most the two
    // zones, unknown and none.
    let grown = samples(&after.body).saturating_sub(samples(&before.body));
    assert!(grown <= 2 * 2 * 4, "/metrics grew by {grown} samples");
    assert!(m.samples("linkmeter_overlay_packets_total").is_empty());
    // /metrics/peers has every endpoint.
    let peers = http::get(&topo.node, LISTEN, "/metrics/peers", &[], &[]).expect("scrape");
    let rx_peers = peers
        .body
        .lines()
        .filter(|l| {
            l.starts_with("linkmeter_overlay_packets_total{")
                && l.contains("direction=\"rx\"")
                && l.ends_with(" 2")
        })
        .count();
    assert_eq!(rx_peers, 1000);
}
