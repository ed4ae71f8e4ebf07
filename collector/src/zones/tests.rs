//! The zone table, the zones' totals, the series setting and the node's zone.

use collector_common::{Counter, Direction};

use super::{
    table::{NO_ZONE, UNKNOWN_ZONE},
    *,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn the_longest_prefix_wins_over_both_families() {
    let table = ZoneTable::parse(&[
        "10.0.0.0/16=eu-west-1a",
        "10.0.16.0/20 = eu-west-1b",
        "10.0.16.128/25=eu-west-1c",
        "0.0.0.0/0=elsewhere",
        "fd00:10::/32=eu-west-1a",
        "fd00:10:0:16::/64=eu-west-1b",
    ])
    .expect("valid");
    assert_eq!(table.zone_of(ip("10.0.1.9")), Some("eu-west-1a"));
    assert_eq!(table.zone_of(ip("10.0.17.9")), Some("eu-west-1b"));
    assert_eq!(table.zone_of(ip("10.0.16.200")), Some("eu-west-1c"));
    assert_eq!(table.zone_of(ip("192.0.2.1")), Some("elsewhere"));
    assert_eq!(table.zone_of(ip("fd00:10:0:16::7")), Some("eu-west-1b"));
    assert_eq!(table.zone_of(ip("fd00:10:0:17::7")), Some("eu-west-1a"));
    assert_eq!(table.zone_of(ip("2001:db8::1")), None);
    assert_eq!(table.label(Some(ip("2001:db8::1"))), UNKNOWN_ZONE);
    assert_eq!(table.label(None), NO_ZONE);
    // A /32 and a /128 name single hosts.
    let hosts = ZoneTable::parse(&["192.0.2.7/32=a", "2001:db8::7/128=b"]).expect("valid");
    assert_eq!(hosts.zone_of(ip("192.0.2.7")), Some("a"));
    assert_eq!(hosts.zone_of(ip("192.0.2.8")), None);
    assert_eq!(hosts.zone_of(ip("2001:db8::7")), Some("b"));
    assert!(ZoneTable::parse::<&str>(&[]).expect("empty").is_empty());
}

#[test]
fn bad_entries_are_named() {
    let error = |entry: &str| ZoneTable::parse(&[entry]).expect_err(entry).to_string();
    assert!(error("10.0.0.0/16").contains("expected CIDR=ZONE"));
    assert!(error("10.0.0.0/16=").contains("non-empty name"));
    assert!(error("10.0.0.0/16=unknown").contains("non-empty name"));
    assert!(error("10.0.0.0/16=none").contains("non-empty name"));
    assert!(error("10.0.0.0=a").contains("is not a CIDR"));
    assert!(error("10.0.0.0/33=a").contains("is not a CIDR"));
    assert!(error("fd00::/129=a").contains("is not a CIDR"));
    assert!(error("10.0.0/16=a").contains("is not a CIDR"));
    assert!(error("10.0.0.0/x=a").contains("\"10.0.0.0/x\""));
    assert_eq!(
        error("10.0.0.1/8=a"),
        "\"10.0.0.1/8=a\": \"10.0.0.1/8\" has host bits set; the network is 10.0.0.0/8"
    );
    assert!(error("fd00::1/64=a").contains("the network is fd00::/64"));
    let duplicate = ZoneTable::parse(&["10.0.0.0/16=a", "10.0.0.0/16=b"])
        .expect_err("duplicate")
        .to_string();
    assert!(
        duplicate.contains("\"10.0.0.0/16=b\": the same prefix as \"10.0.0.0/16=a\""),
        "{duplicate}"
    );
}

#[test]
fn zone_counts_stay_monotonic_while_peers_leave_and_return() {
    let table = ZoneTable::parse(&["10.0.0.0/16=a", "10.1.0.0/16=b"]).expect("valid");
    let mut totals = ZoneTotals::default();
    const VX: (&str, u32) = ("vx", 7);
    let devices: BTreeSet<(&str, u32)> = [VX].into_iter().collect();
    let c = |packets| Counter {
        packets,
        bytes: packets * 100,
    };
    let peer = |last: u8, zone_b: bool, packets| {
        let address = IpAddr::from([10, u8::from(zone_b), 0, last]);
        (VX, Direction::Ingress, Some(address), c(packets))
    };
    let zone = |counts: &[ZoneCount], name: &str| {
        counts
            .iter()
            .find(|z| z.zone == name)
            .map(|z| z.counter.packets)
    };
    let first = totals.update(
        &table,
        [
            peer(1, false, 5),
            peer(2, false, 7),
            peer(1, true, 3),
            (VX, Direction::Egress, None, c(2)),
            (
                VX,
                Direction::Ingress,
                Some(IpAddr::from([192, 0, 2, 1])),
                c(4),
            ),
        ],
        &devices,
    );
    assert_eq!(zone(&first, "a"), Some(12));
    assert_eq!(zone(&first, "b"), Some(3));
    assert_eq!(zone(&first, NO_ZONE), Some(2));
    assert_eq!(zone(&first, UNKNOWN_ZONE), Some(4));
    // 10.0.0.2 leaves (idle), 10.0.0.1 moves on: zone a keeps the 7.
    let second = totals.update(&table, [peer(1, false, 6), peer(1, true, 3)], &devices);
    assert_eq!(zone(&second, "a"), Some(13));
    assert_eq!(zone(&second, NO_ZONE), Some(2));
    // It comes back from zero: still monotonic.
    let third = totals.update(
        &table,
        [peer(1, false, 6), peer(2, false, 1), peer(1, true, 3)],
        &devices,
    );
    assert_eq!(zone(&third, "a"), Some(14));
    // The device is deleted and made again under its name (another ifindex) between two
    // readings: its zones start from zero, as its other counters do.
    const AGAIN: (&str, u32) = ("vx", 9);
    let again: BTreeSet<(&str, u32)> = [AGAIN].into_iter().collect();
    let address = IpAddr::from([10, 0, 0, 1]);
    let fresh = totals.update(
        &table,
        [(AGAIN, Direction::Ingress, Some(address), c(1))],
        &again,
    );
    assert_eq!(zone(&fresh, "a"), Some(1));
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    // The device is removed: its zones go.
    let gone = totals.update(&table, [], &BTreeSet::new());
    assert!(gone.is_empty());
}

#[test]
fn the_series_default_follows_the_table() {
    let empty = ZoneTable::default();
    let table = ZoneTable::parse(&["10.0.0.0/8=a"]).expect("valid");
    assert_eq!(OverlaySeries::default_for(&empty), OverlaySeries::Peer);
    assert_eq!(OverlaySeries::default_for(&table), OverlaySeries::Zone);
    assert_eq!(OverlaySeries::parse("both"), Some(OverlaySeries::Both));
    assert_eq!(OverlaySeries::parse("zones"), None);
    assert!(OverlaySeries::Both.peers() && OverlaySeries::Both.zones());
    assert!(!OverlaySeries::Zone.peers() && !OverlaySeries::Peer.zones());
}

#[test]
fn the_node_zone_is_configured_or_found_by_the_nodes_addresses() {
    let table =
        ZoneTable::parse(&["10.0.0.0/16=a", "10.1.0.0/16=b", "127.0.0.0/8=lo"]).expect("valid");
    let found = node_zone(
        None,
        &table,
        &[ip("127.0.0.1"), ip("192.0.2.1"), ip("10.0.3.4")],
    );
    assert_eq!(found.zone(), Some("a"));
    assert_eq!(found.describe(), "a (the node's address 10.0.3.4)");
    assert_eq!(
        node_zone(Some("z"), &table, &[ip("10.0.3.4")]).describe(),
        "z (node_zone)"
    );
    let two = node_zone(None, &table, &[ip("10.0.3.4"), ip("10.1.0.9")]);
    assert_eq!(two.zone(), None);
    assert!(
        two.describe().contains("10.0.3.4 in a, 10.1.0.9 in b"),
        "{}",
        two.describe()
    );
    assert_eq!(
        node_zone(None, &table, &[ip("192.0.2.1")]),
        NodeZone::Unknown
    );
    assert_eq!(
        node_zone(None, &ZoneTable::default(), &[]),
        NodeZone::Unknown
    );
}
