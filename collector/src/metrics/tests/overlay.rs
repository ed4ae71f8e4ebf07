//! The overlay series per zone and per peer, and `/metrics/peers`.

use super::*;
use crate::zones::{OverlaySeries, ZoneCount};

#[test]
fn overlay_zones_replace_the_peers_unless_both_are_asked_for() {
    let mut snapshot = fixture();
    snapshot.zones = vec![ZoneCount {
        interface: "cilium_vxlan".to_owned(),
        direction: Direction::Egress,
        zone: "eu-west-1b".to_owned(),
        counter: collector_common::Counter {
            packets: 5,
            bytes: 500,
        },
    }];
    snapshot.node_zone = Some("eu-west-1a".to_owned());
    let zone_lines = [
        "linkmeter_overlay_zone_packets_total{interface=\"cilium_vxlan\",direction=\"tx\",zone=\"eu-west-1b\"} 5\n",
        "linkmeter_overlay_zone_bytes_total{interface=\"cilium_vxlan\",direction=\"tx\",zone=\"eu-west-1b\"} 500\n",
        "linkmeter_node_zone_info{zone=\"eu-west-1a\"} 1\n",
    ];
    let peer_line = "linkmeter_overlay_packets_total{interface=\"cilium_vxlan\",direction=\"tx\",peer=\"192.0.2.2\"} 5\n";
    for (series, zones, peers) in [
        (OverlaySeries::Zone, true, false),
        (OverlaySeries::Peer, false, true),
        (OverlaySeries::Both, true, true),
    ] {
        snapshot.overlay_series = series;
        let text = render(snapshot.clone(), Format::Prometheus);
        for line in zone_lines {
            assert_eq!(text.contains(line), zones, "{series:?}: {line}");
        }
        assert_eq!(text.contains(peer_line), peers, "{series:?}");
        // /metrics/peers: the per-peer families alone, whatever overlay_series says.
        let only_peers =
            encode(Arc::new(snapshot.clone()), Format::Prometheus, View::Peers).expect("encode");
        assert!(only_peers.contains(peer_line), "{series:?}: {only_peers}");
        let families: std::collections::BTreeSet<&str> = only_peers
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            families.into_iter().collect::<Vec<_>>(),
            [
                "linkmeter_overlay_bytes_total",
                "linkmeter_overlay_packets_total"
            ],
            "{series:?}"
        );
    }
}
