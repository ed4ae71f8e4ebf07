//! Routing tried again: an interface that found the counter map full gets eBPF once a slot is
//! free; a transient probe error is retried with backoff before the interface is settled on
//! kernel link stats; other errors are final.

use super::*;

async fn resyncs(f: &mut Fixture, n: usize) {
    for _ in 0..n {
        f.node.resync_now().await.expect("dump");
    }
}

#[tokio::test]
async fn an_interface_beyond_the_map_falls_back_with_ebpf_map_full_until_a_slot_frees() {
    let mut f = fixture();
    f.ebpf.set_slots(1);
    f.appear(3, "vx3", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(4, "vx4", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(
        f.route_of("vx3"),
        Some((Backend::Ebpf, Reason::EthtoolNoStats))
    );
    assert_eq!(
        f.route_of("vx4"),
        Some((Backend::Netdev, Reason::EbpfMapFull))
    );
    // Measured by kernel link stats meanwhile, with the reason in linkmeter_interface_info.
    let snapshot = f.node.collect().await;
    let vx4 = &snapshot.interfaces[1];
    assert_eq!(
        (vx4.backend, vx4.reason),
        (Backend::Netdev, Reason::EbpfMapFull)
    );
    assert!(vx4.packets().is_some());
    // Still full at the retries of resyncs 1 and 3; the next would be at resync 7.
    resyncs(&mut f, 3).await;
    assert_eq!(
        f.route_of("vx4"),
        Some((Backend::Netdev, Reason::EbpfMapFull))
    );
    // vx3 leaves and frees a slot: vx4 tries again at the very next resync, not at 7.
    f.delete(3).await;
    resyncs(&mut f, 1).await;
    assert_eq!(
        f.route_of("vx4"),
        Some((Backend::Ebpf, Reason::EthtoolNoStats))
    );
    assert!(f.ebpf.is_attached(4));
    assert_eq!(
        f.node
            .interfaces()
            .find(|i| i.link.ifindex == 4)
            .and_then(|i| i.retry),
        None
    );
}

#[tokio::test]
async fn a_transient_probe_error_is_retried_at_the_resync() {
    let mut f = fixture();
    f.appear(2, "eth0", None, FakeDriver::failing(libc::EBUSY))
        .await;
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Netdev, Reason::EthtoolError))
    );
    // The driver finished its reset.
    f.ethtool.set("eth0", veth());
    resyncs(&mut f, 1).await;
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Ethtool, Reason::EthtoolStats))
    );
    assert_eq!(f.node.collect().await.interfaces[0].ethtool.len(), 3);
}

#[tokio::test]
async fn a_probe_that_keeps_failing_transiently_is_settled_after_backoff() {
    let mut f = fixture();
    f.appear(2, "eth0", None, FakeDriver::failing(libc::EAGAIN))
        .await;
    assert_eq!(f.ethtool.probes(), 1);
    // Retries after 1, 2, 4, 8 and 16 resyncs: 31 resyncs, 5 more probes.
    resyncs(&mut f, 30).await;
    assert_eq!(f.ethtool.probes(), 5);
    resyncs(&mut f, 1).await;
    assert_eq!(f.ethtool.probes(), 6);
    resyncs(&mut f, 40).await;
    assert_eq!(f.ethtool.probes(), 6, "settled: no more probes");
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Netdev, Reason::EthtoolError))
    );
}

#[tokio::test]
async fn other_probe_errors_are_final() {
    let mut f = fixture();
    f.appear(2, "eth0", None, FakeDriver::failing(libc::EPERM))
        .await;
    resyncs(&mut f, 5).await;
    assert_eq!(f.ethtool.probes(), 1);
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Netdev, Reason::EthtoolError))
    );
}

#[tokio::test]
async fn the_warn_once_memory_keeps_only_names_still_present() {
    let mut f = fixture();
    f.appear(3, "vx3", Some("vxlan"), no_stats("vxlan")).await;
    f.appear(4, "vx4", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(f.node.warned.len(), 2);
    f.delete(3).await;
    resyncs(&mut f, 1).await;
    assert_eq!(f.node.warned.iter().collect::<Vec<_>>(), vec!["vx4"]);
}
