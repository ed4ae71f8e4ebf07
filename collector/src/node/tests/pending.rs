//! Kernel work that is slow to answer, or never does: the node goes on routing, answering
//! scrapes and applying link events meanwhile, and puts each answer into effect when it comes.

use std::pin::pin;

use futures_util::poll;

use super::*;
use crate::discovery::fake::link;

#[tokio::test]
async fn an_interface_joins_the_table_once_its_attach_has_answered() {
    let mut f = fixture();
    f.ebpf.stall(true);
    f.add(5, "vx5", Some("vxlan"), no_stats("vxlan"));
    f.node.apply(LinkEvent::New(link(5, "vx5", Some("vxlan"))));
    assert!(f.node.is_busy(), "its attach is waiting for the kernel");
    // Not shown until it is measured: no series with a backend that may yet change.
    assert_eq!(f.route_of("vx5"), None);
    assert!(f.node.collect().await.interfaces.is_empty());
    // Interfaces that need no attach are routed meanwhile.
    f.add(2, "eth0", None, veth());
    f.node.apply(LinkEvent::New(link(2, "eth0", None)));
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Ethtool, Reason::EthtoolStats))
    );
    assert_eq!(f.node.collect().await.interfaces.len(), 1);
    // Deleted before its attach answered: forgotten, its detach asked for (after the attach,
    // in order), its counters freed once the detach answers — not before: the programs may
    // be counting into them until then.
    f.links.remove(5);
    f.node.apply(LinkEvent::Deleted { ifindex: 5 });
    assert_eq!(f.ebpf.detaches(), 1);
    assert!(f.ebpf.forgotten().is_empty());
    // A new interface with its ifindex starts from zero, whatever the old one's detach does.
    f.add(5, "vx5b", Some("vxlan"), no_stats("vxlan"));
    f.node.apply(LinkEvent::New(link(5, "vx5b", Some("vxlan"))));
    assert_eq!(f.ebpf.forgotten(), vec![5]);
}

#[tokio::test]
async fn a_check_that_never_answers_holds_up_neither_scrapes_nor_later_resyncs() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.stall(true);
    f.node.start_resync();
    // The listing answers; the check it starts does not.
    let listed = f.node.next_done().await.expect("the listing");
    assert!(f.node.finish(listed).is_some());
    assert!(f.node.is_busy());
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.interfaces.len(), 1, "scrapes are answered");
    // A later resync lists the links again; only one check runs at a time.
    f.add(6, "eth0", None, veth());
    f.node.start_resync();
    let listed = f.node.next_done().await.expect("the listing");
    f.node.finish(listed);
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Ethtool, Reason::EthtoolStats))
    );
}

#[tokio::test]
async fn link_events_newer_than_a_resyncs_listing_win_over_it() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    // The resync's dump is made with vx5 in it, and is slow to arrive.
    let _ = f.upkeep_gate.send(true);
    f.node.start_resync();
    {
        let mut next = pin!(f.node.next_done());
        for _ in 0..4 {
            assert!(poll!(next.as_mut()).is_pending());
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(f.links.dumps(), 1, "the listing's dump was made");
    // Meanwhile vx5 is deleted and vx6 created, and their events applied.
    f.links.remove(5);
    f.node.apply(LinkEvent::Deleted { ifindex: 5 });
    f.add(6, "vx6", Some("vxlan"), no_stats("vxlan"));
    f.node.apply(LinkEvent::New(link(6, "vx6", Some("vxlan"))));
    let _ = f.upkeep_gate.send(false);
    f.node.until_idle().await;
    assert_eq!(
        f.routing(),
        vec![("vx6".into(), Backend::Ebpf, Reason::EthtoolNoStats)],
        "the older listing neither brings vx5 back nor drops vx6"
    );
    assert_eq!(f.ebpf.attaches(), 2);
}

#[tokio::test]
async fn a_routing_tried_again_keeps_the_interface_shown_until_its_attach_answers() {
    let mut f = fixture();
    f.ebpf.set_slots(1);
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(6, "vx6", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(
        f.route_of("vx6"),
        Some((Backend::Netdev, Reason::EbpfMapFull))
    );
    // vx5 leaves and frees a slot: vx6 is routed again at the next resync, and that attach is
    // slow to answer.
    f.delete(5).await;
    f.ebpf.stall(true);
    f.node.start_resync();
    let listed = f.node.next_done().await.expect("the listing");
    f.node.finish(listed);
    assert!(f.node.is_busy(), "vx6's attach is waiting for the kernel");
    // Meanwhile it stays in /metrics, measured as it was: no gap in its series.
    let shown = f.node.collect().await;
    let vx6 = &shown.interfaces[..];
    assert_eq!(vx6.len(), 1);
    assert_eq!(
        (vx6[0].name.as_str(), vx6[0].backend, vx6[0].reason),
        ("vx6", Backend::Netdev, Reason::EbpfMapFull)
    );
    // Deleted meanwhile, it goes with its pending attach.
    f.links.remove(6);
    f.node.apply(LinkEvent::Deleted { ifindex: 6 });
    assert!(f.node.collect().await.interfaces.is_empty());
    assert!(f.ebpf.forgotten().contains(&6));
}

#[tokio::test]
async fn the_first_pass_is_done_whatever_link_events_bring_after_it() {
    let mut f = fixture();
    f.add(5, "vx5", Some("vxlan"), no_stats("vxlan"));
    f.node.start_resync();
    let listed = f.node.next_done().await.expect("the listing");
    f.node.finish(listed);
    assert!(!f.node.is_routed(), "vx5's attach has not answered");
    // An interface that comes later, whose attach is slow, is not part of the first pass.
    f.ebpf.stall(true);
    f.add(9, "vx9", Some("vxlan"), no_stats("vxlan"));
    f.node.apply(LinkEvent::New(link(9, "vx9", Some("vxlan"))));
    let attached = f.node.next_done().await.expect("vx5's attach");
    f.node.finish(attached);
    assert_eq!(
        f.route_of("vx5"),
        Some((Backend::Ebpf, Reason::EthtoolNoStats))
    );
    assert!(f.node.is_routed());
}
