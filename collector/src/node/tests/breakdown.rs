//! The eBPF breakdown on interfaces measured by another backend, and overlay peers.

use super::*;

#[tokio::test]
async fn a_breakdown_pattern_adds_the_counter_beside_the_routed_backend() {
    let mut f = fixture_with(&breakdown("eth*"), true);
    f.appear(2, "eth0", None, veth()).await;
    f.appear(3, "lxc1", Some("veth"), veth()).await;
    f.appear(4, "vx4", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Ethtool, Reason::EthtoolStats)),
        "routing is unchanged"
    );
    assert!(f.ebpf.is_attached(2) && !f.ebpf.is_attached(3) && f.ebpf.is_attached(4));
    assert_eq!(
        f.ebpf.attaches(),
        2,
        "vx4 is routed to eBPF: one attachment"
    );
    f.links.set_stats(
        2,
        crate::discovery::LinkStats {
            rx_packets: 50,
            ..Default::default()
        },
    );
    f.ebpf.set_counts(2, 7, 0);
    let snapshot = f.node.collect().await;
    let eth0 = &snapshot.interfaces[0];
    assert!(eth0.attach_mode.is_some());
    assert_eq!(
        eth0.packets().map(|p| p.rx),
        Some(50),
        "packets stay the kernel's"
    );
    assert_eq!(
        eth0.ebpf.map(|s| s.rx.packets()),
        Some(7),
        "the breakdown is eBPF's"
    );
    assert!(
        snapshot.interfaces[1].ebpf.is_none(),
        "lxc1 has no breakdown"
    );
}

#[tokio::test]
async fn breakdown_attachments_are_released_and_repaired_like_routed_ones() {
    let mut f = fixture_with(&breakdown("eth*"), true);
    f.appear(2, "eth0", None, veth()).await;
    f.ebpf.remove_attachment(2);
    f.node.resync_now().await.expect("dump");
    assert!(f.ebpf.is_attached(2));
    assert_eq!(f.node.collect().await.reattach, 1);
    f.delete(2).await;
    assert_eq!(f.ebpf.detaches(), 2, "the removed one, then on deletion");
    assert_eq!(f.ebpf.forgotten(), vec![2]);
}

#[tokio::test]
async fn a_failed_breakdown_attachment_leaves_the_interface_with_its_backend() {
    let mut f = fixture_with(&breakdown("eth*"), true);
    f.ebpf.refuse("eth0");
    f.appear(2, "eth0", None, veth()).await;
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Ethtool, Reason::EthtoolStats))
    );
    assert!(f.node.interfaces().all(|i| i.breakdown.is_none()));
}

#[tokio::test]
async fn a_failed_routed_attachment_is_not_tried_again_for_the_breakdown() {
    let mut f = fixture_with(&breakdown("vx*"), true);
    f.ebpf.refuse("vx9");
    f.appear(9, "vx9", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(
        f.route_of("vx9"),
        Some((Backend::Netdev, Reason::EbpfAttachFailed))
    );
    assert_eq!(f.node.collect().await.attach_failures, 1, "counted once");
    assert!(f.node.interfaces().all(|i| i.breakdown.is_none()));
}

#[tokio::test]
async fn peers_are_exported_by_interface_name_and_idle_ones_expire_at_the_resync() {
    let mut f = fixture();
    f.appear(3, "cilium_vxlan", Some("vxlan"), unsupported())
        .await;
    f.ebpf
        .add_peer(3, Some("192.0.2.2".parse().expect("ip")), 5);
    f.ebpf.add_peer(3, None, 2);
    // A peer of a device the node does not know (deleted meanwhile) is left out.
    f.ebpf
        .add_peer(9, Some("192.0.2.9".parse().expect("ip")), 1);
    let snapshot = f.node.collect().await;
    let peers: Vec<(&str, &str, u64)> = snapshot
        .peers
        .iter()
        .map(|p| (p.interface.as_str(), p.peer.as_str(), p.packets))
        .collect();
    assert_eq!(
        peers,
        [
            ("cilium_vxlan", "192.0.2.2", 5),
            ("cilium_vxlan", "none", 2)
        ]
    );
    f.ebpf.make_peers_idle(1);
    f.node.resync_now().await.expect("dump");
    assert_eq!(f.ebpf.peer_count(), 2);
    // Deleting the device frees its peers with its counters.
    f.delete(3).await;
    assert_eq!(f.ebpf.peer_count(), 1);
}
