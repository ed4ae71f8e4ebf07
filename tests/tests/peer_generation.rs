//! A tunnel device deleted and made again with the same ifindex starts its peers from zero:
//! the peers of the removed device — in the peer table, its totals and the hash map — are never
//! counted under the new one, by the same daemon or by a restarted one (pinned maps). Both
//! tests come from the adversarial review of the peer table and failed before each key carried
//! its slot's generation.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use collector::backend::ebpf::{AttachMode, EbpfCounters, LoadOptions};
use collector_common::Counter;
use integration_tests::{
    bpffs::BpfFs,
    kernel::ifindex,
    kernel_tests_enabled,
    netns::NetNs,
    overlay::{self, OverlayNode, endpoints, ingress_peers, send_from},
};

/// `packets` of 100 bytes from each of `peers`.
fn each(peers: &[Ipv4Addr], packets: u64) -> BTreeMap<IpAddr, Counter> {
    peers
        .iter()
        .map(|&peer| {
            (
                peer.into(),
                Counter {
                    packets,
                    bytes: packets * 100,
                },
            )
        })
        .collect()
}

/// Sends `packets` from each of `peers`.
fn send_each(topo: &OverlayNode, peers: &[Ipv4Addr], packets: usize) {
    for &peer in peers {
        send_from(topo, peer, packets);
    }
}

/// Empties a table half (a harvest runs at most once a second).
fn harvest(counters: &mut EbpfCounters) {
    std::thread::sleep(Duration::from_millis(1100));
    counters
        .expire_peers(Duration::from_secs(3600))
        .expect("harvest");
}

/// Deletes the node's tunnel device and makes a new one under the same name and `index`.
fn recreate_device(node: &NetNs, index: u32) {
    node.ip(&["link", "del", overlay::DEVICE]);
    node.ip(&[
        "link",
        "add",
        overlay::DEVICE,
        "index",
        &index.to_string(),
        "address",
        "02:00:00:00:d0:01",
        "type",
        "vxlan",
        "external",
        "dstport",
        "8472",
        "udp6zerocsumrx",
    ]);
    node.ip(&["link", "set", overlay::DEVICE, "up"]);
    assert_eq!(ifindex(node, overlay::DEVICE), index, "same ifindex");
}

#[test]
fn a_tunnel_recreated_with_the_same_ifindex_starts_from_zero() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("gen");
    let mut counters = EbpfCounters::load(&LoadOptions::default()).expect("load");
    let device = ifindex(&topo.node, overlay::DEVICE);
    let peers = endpoints(&topo, 100, 3);
    {
        let _attached = topo.attach_tunnel(&mut counters, AttachMode::Auto);
        // Counts in the totals (carried by a harvest) and in the live half.
        send_each(&topo, &peers, 5);
        harvest(&mut counters);
        harvest(&mut counters);
        send_each(&topo, &peers, 3);
        assert_eq!(ingress_peers(&counters, device), each(&peers, 8));
    }
    // The device is deleted; the daemon forgets it (as node/attach.rs does).
    recreate_device(&topo.node, device);
    counters.forget(device).expect("forget");
    assert_eq!(
        ingress_peers(&counters, device),
        BTreeMap::new(),
        "dropped at once"
    );
    // A new device with the same ifindex is attached: it starts from zero and counts its own.
    let _attached = topo.attach_tunnel(&mut counters, AttachMode::Auto);
    assert_eq!(
        ingress_peers(&counters, device),
        BTreeMap::new(),
        "the new device inherited the removed device's peers"
    );
    send_each(&topo, &peers, 2);
    assert_eq!(ingress_peers(&counters, device), each(&peers, 2));
    for _ in 0..3 {
        harvest(&mut counters);
        assert_eq!(
            ingress_peers(&counters, device),
            each(&peers, 2),
            "across harvests"
        );
    }
}

#[test]
fn a_restarted_daemon_does_not_count_a_removed_devices_peers() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("genp");
    let bpffs = BpfFs::mount("generation");
    let options = LoadOptions {
        pin: Some(bpffs.path().join("linkmeter")),
        ..LoadOptions::default()
    };
    let device = ifindex(&topo.node, overlay::DEVICE);
    let peers = endpoints(&topo, 100, 3);
    {
        let mut counters = EbpfCounters::load(&options).expect("load");
        {
            let _attached = topo.attach_tunnel(&mut counters, AttachMode::Tc);
            send_each(&topo, &peers, 4);
            harvest(&mut counters);
            harvest(&mut counters);
            send_each(&topo, &peers, 1);
            assert_eq!(ingress_peers(&counters, device), each(&peers, 5));
        }
        recreate_device(&topo.node, device);
        counters.forget(device).expect("forget");
        assert_eq!(ingress_peers(&counters, device), BTreeMap::new());
    }
    let mut counters = EbpfCounters::load(&options).expect("load again");
    let _attached = topo.attach_tunnel(&mut counters, AttachMode::Tc);
    assert_eq!(
        ingress_peers(&counters, device),
        BTreeMap::new(),
        "the restarted daemon counts the removed device's peers under the new device"
    );
    send_each(&topo, &peers, 2);
    for _ in 0..3 {
        assert_eq!(ingress_peers(&counters, device), each(&peers, 2));
        harvest(&mut counters);
    }
    assert_eq!(ingress_peers(&counters, device), each(&peers, 2));
}
