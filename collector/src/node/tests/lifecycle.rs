//! Interface lifetimes: renames, deletions, re-creations, missed events, and attachments
//! removed by someone else.

use super::*;
use crate::discovery::{LinkMode, fake::link};

#[tokio::test]
async fn a_rename_is_a_new_lifetime() {
    let mut f = fixture();
    f.appear(5, "vxa", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.set_counts(5, 10, 20);
    f.appear(5, "vxb", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(f.route_of("vxa"), None);
    assert_eq!(
        f.route_of("vxb"),
        Some((Backend::Ebpf, Reason::EthtoolNoStats))
    );
    // The old lifetime is detached and its counters freed; the new one probed and attached.
    assert_eq!((f.ebpf.detaches(), f.ebpf.forgotten()), (1, vec![5]));
    assert_eq!((f.ethtool.probes(), f.ebpf.attaches()), (2, 2));
    assert!(f.ebpf.is_attached(5));
}

#[tokio::test]
async fn counters_are_freed_only_once_the_detach_has_answered() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(6, "eth0", None, veth()).await;
    // vx5 is renamed to a name routed elsewhere: its detach is asked for and its counters wait
    // for the answer (freed before it, the programs still attached would count the device's
    // packets as overflow).
    f.links.remove(5);
    f.add(5, "eth5", None, veth());
    f.node.apply(LinkEvent::New(link(5, "eth5", None)));
    assert!(
        f.ebpf.forgotten().is_empty(),
        "not before the detach answered"
    );
    f.node.until_idle().await;
    assert_eq!(f.ebpf.forgotten(), vec![5]);
    assert_eq!(
        f.route_of("eth5"),
        Some((Backend::Ethtool, Reason::EthtoolStats))
    );
    // An interface that held nothing is freed at once.
    f.links.remove(6);
    f.node.apply(LinkEvent::Deleted { ifindex: 6 });
    assert_eq!(f.ebpf.forgotten(), vec![5, 6]);
}

#[tokio::test]
async fn a_repeated_event_for_a_known_interface_changes_nothing() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!((f.ethtool.probes(), f.ebpf.attaches()), (1, 1));
    assert_eq!(f.ebpf.detaches(), 0);
}

#[tokio::test]
async fn a_deleted_interface_is_detached_freed_and_forgotten() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(6, "eth0", None, veth()).await;
    f.delete(5).await;
    f.delete(6).await;
    assert!(f.routing().is_empty());
    // Every interface's counters are freed (one measured by another backend has none, or
    // some from a moment of an attachment that failed); only eBPF ones are detached.
    assert_eq!(f.ebpf.forgotten(), vec![5, 6]);
    assert_eq!(f.ebpf.detaches(), 1);
    // A deletion of an unknown interface is harmless.
    f.delete(42).await;
}

#[tokio::test]
async fn recreated_under_the_same_name_it_is_probed_again_but_warned_about_once() {
    let mut f = fixture();
    f.appear(5, "vx", Some("vxlan"), no_stats("vxlan")).await;
    f.delete(5).await;
    f.appear(7, "vx", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(f.ethtool.probes(), 2);
    assert_eq!(f.ebpf.attaches(), 2);
    assert!(f.ebpf.is_attached(7) && !f.ebpf.is_attached(5));
    assert_eq!(f.node.warned.len(), 1);
}

#[tokio::test]
async fn a_resync_repairs_missed_events() {
    let mut f = fixture();
    f.appear(5, "old0", Some("vxlan"), no_stats("vxlan")).await;
    // old0 vanishes and new0 appears, and both events are lost.
    f.links.remove(5);
    f.add(6, "new0", Some("vxlan"), no_stats("vxlan"));
    assert_eq!(f.node.resync_now().await.expect("dump"), 1);
    assert_eq!(
        f.routing(),
        vec![("new0".into(), Backend::Ebpf, Reason::EthtoolNoStats)]
    );
    assert_eq!(f.ebpf.forgotten(), vec![5]);
}

#[tokio::test]
async fn a_failed_resync_keeps_the_interfaces_known_so_far() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.links.fail_dumps(true);
    assert!(f.node.resync_now().await.is_err());
    assert_eq!(f.routing().len(), 1);
    assert_eq!(f.ebpf.forgotten(), Vec::<u32>::new());
}

#[tokio::test]
async fn an_attachment_removed_by_someone_else_is_reattached_at_the_resync() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(6, "vx6", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.set_counts(5, 10, 20);
    f.ebpf.remove_attachment(5);
    f.node.resync_now().await.expect("dump");
    assert!(f.ebpf.is_attached(5));
    assert_eq!(f.ebpf.attaches(), 3, "vx5 again, vx6 untouched");
    // The counters carry on: a re-attachment is not a new lifetime.
    assert!(f.ebpf.forgotten().is_empty());
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.reattach, 1);
    assert_eq!(
        snapshot.interfaces[0].ebpf.map(|c| c.tx.packets()),
        Some(20)
    );
}

#[tokio::test]
async fn a_program_placed_before_ours_is_counted_and_ours_moved_back_without_reattaching() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(f.node.collect().await.interfaces[0].programs_before, None);
    f.node.resync_now().await.expect("dump");
    assert_eq!(
        f.node.collect().await.interfaces[0].programs_before,
        Some([0, 0])
    );
    f.ebpf.place_before(5, 2);
    f.node.resync_now().await.expect("dump");
    let snapshot = f.node.collect().await;
    // Both hooks moved back; the fake puts ours first again.
    assert_eq!(snapshot.reanchor, 2);
    assert_eq!(snapshot.interfaces[0].programs_before, Some([0, 0]));
    assert_eq!(snapshot.reattach, 0);
    assert_eq!(f.ebpf.attaches(), 1, "moved, not re-attached");
    f.node.resync_now().await.expect("dump");
    assert_eq!(f.node.collect().await.reanchor, 2, "nothing to move");
}

#[tokio::test]
async fn a_reattachment_that_fails_falls_back_to_kernel_stats() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.remove_attachment(5);
    f.ebpf.refuse("vx5");
    f.node.resync_now().await.expect("dump");
    assert_eq!(
        f.route_of("vx5"),
        Some((Backend::Netdev, Reason::EbpfAttachFailed))
    );
    let snapshot = f.node.collect().await;
    assert_eq!((snapshot.reattach, snapshot.attach_failures), (0, 1));
    // Measured otherwise now, it gives its counter slot back at once.
    assert_eq!(f.ebpf.forgotten(), vec![5]);
}

#[tokio::test]
async fn link_speeds_are_refreshed_at_the_resync() {
    let mut f = fixture();
    f.appear(2, "eth0", None, veth()).await;
    f.links.set_mode(
        2,
        LinkMode {
            speed_mbps: 10_000,
            full_duplex: Some(true),
        },
    );
    assert_eq!(f.node.collect().await.interfaces[0].speed_bytes, None);
    f.node.resync_now().await.expect("dump");
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.interfaces[0].speed_bytes, Some(1_250_000_000));
    assert_eq!(snapshot.interfaces[0].full_duplex, Some(true));
}

#[tokio::test]
async fn shutdown_detaches_every_attachment() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(6, "vx6", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(7, "eth0", None, veth()).await;
    f.node.shutdown().await;
    assert_eq!(f.ebpf.detaches(), 2);
    assert!(!f.ebpf.is_attached(5) && !f.ebpf.is_attached(6));
    assert!(f.ebpf.released(), "and the backend let go of the rest");
    assert!(f.routing().is_empty());
}

#[tokio::test]
async fn shutdown_with_pinning_leaves_the_attachments_counting() {
    let mut f = fixture();
    f.ebpf.persist(true);
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.node.shutdown().await;
    assert_eq!(f.ebpf.detaches(), 0);
    assert!(f.ebpf.released());
    assert!(
        f.ebpf.forgotten().is_empty(),
        "the counters stay for the next daemon"
    );
}

#[tokio::test]
async fn a_link_missing_from_a_dump_is_kept_until_a_lookup_confirms_it_gone() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    f.ebpf.set_counts(5, 7, 7);
    // The dump misses vx5 (as an interrupted one may), but the kernel still has it.
    f.links.hide_from_dumps(5, true);
    f.node.resync_now().await.expect("dump");
    assert_eq!(
        f.route_of("vx5"),
        Some((Backend::Ebpf, Reason::EthtoolNoStats))
    );
    assert!(f.ebpf.forgotten().is_empty(), "its counters were not reset");
    assert_eq!(f.ebpf.attaches(), 1, "nor was it attached again");
    // Deleted, and its RTM_DELLINK lost: the lookup confirms it is gone.
    f.links.remove(5);
    f.node.resync_now().await.expect("dump");
    assert_eq!(f.route_of("vx5"), None);
    assert_eq!(f.ebpf.forgotten(), vec![5]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_a_resync_listing_it_would_not_use() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    // The resync's link reads never answer; the detaches do.
    let _ = f.upkeep_gate.send(true);
    f.node.start_resync();
    let finished = tokio::time::timeout(Duration::from_secs(4), f.node.shutdown()).await;
    assert!(finished.is_ok(), "shutdown waited for the listing");
    assert_eq!(f.ebpf.detaches(), 1);
    assert!(f.ebpf.released());
}
