//! Routing: the policy, the probe once per lifetime, and the fallbacks.

use super::*;

#[tokio::test]
async fn a_new_interface_is_probed_routed_and_attached_on_its_link_event() {
    let mut f = fixture();
    f.appear(5, "vx5", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(
        f.route_of("vx5"),
        Some((Backend::Ebpf, Reason::EthtoolNoStats))
    );
    assert_eq!(f.ethtool.probes(), 1);
    assert_eq!(f.ebpf.attaches(), 1);
    assert!(f.ebpf.is_attached(5));
    let interface = f.node.interfaces().next().expect("routed");
    assert_eq!(interface.driver.as_deref(), Some("vxlan"));
    assert_eq!(interface.answer, Answer::NoStats);
}

#[tokio::test]
async fn a_cilium_like_node_is_routed_per_policy() {
    let mut f = fixture();
    f.add(1, "lo", None, unsupported());
    f.add(2, "eth1", Some("veth"), veth());
    f.add(3, "cilium_vxlan", Some("vxlan"), unsupported());
    f.add(4, "cilium_host", Some("veth"), veth());
    f.add(5, "br0", Some("bridge"), no_stats("bridge"));
    f.add(6, "weird0", None, FakeDriver::failing(libc::EPERM));
    assert_eq!(f.node.resync_now().await.expect("dump"), 6);
    assert_eq!(
        f.routing(),
        vec![
            ("lo".into(), Backend::None, Reason::Excluded),
            ("eth1".into(), Backend::Ethtool, Reason::EthtoolStats),
            (
                "cilium_vxlan".into(),
                Backend::Ebpf,
                Reason::EthtoolUnsupported
            ),
            ("cilium_host".into(), Backend::Ethtool, Reason::EthtoolStats),
            ("br0".into(), Backend::Ebpf, Reason::EthtoolNoStats),
            ("weird0".into(), Backend::Netdev, Reason::EthtoolError),
        ]
    );
    // `lo` is excluded before any probe; each other interface is probed once.
    assert_eq!(f.ethtool.probes(), 5);
    let answers: Vec<Answer> = f.node.interfaces().map(|i| i.answer).collect();
    assert_eq!(answers[0], Answer::NotProbed);
    assert_eq!(answers[1], Answer::Stats { count: 3 });
    assert_eq!(
        answers[2],
        Answer::Unsupported {
            errno: libc::EOPNOTSUPP
        }
    );
    assert_eq!(answers[5], Answer::Failed { errno: libc::EPERM });
    // One warning per interface without ethtool statistics.
    let mut warned: Vec<&String> = f.node.warned.iter().collect();
    warned.sort();
    assert_eq!(warned, ["br0", "cilium_vxlan"]);
}

#[tokio::test]
async fn probe_errors_route_to_kernel_link_stats() {
    let mut f = fixture();
    f.appear(7, "eperm0", None, FakeDriver::failing(libc::EPERM))
        .await;
    // A link whose device vanished before the probe: ENODEV.
    f.links.add(8, "gone0", None);
    f.node.apply(LinkEvent::New(crate::discovery::fake::link(
        8, "gone0", None,
    )));
    f.node.until_idle().await;
    for name in ["eperm0", "gone0"] {
        assert_eq!(
            f.route_of(name),
            Some((Backend::Netdev, Reason::EthtoolError)),
            "{name}"
        );
    }
    assert_eq!(f.ebpf.attaches(), 0);
    assert!(f.node.warned.is_empty());
}

#[tokio::test]
async fn without_ebpf_interfaces_fall_back_with_reason_ebpf_unavailable() {
    let mut f = fixture_with(&settings(), false);
    f.appear(3, "cilium_vxlan", Some("vxlan"), unsupported())
        .await;
    f.appear(4, "eth0", None, veth()).await;
    assert_eq!(
        f.route_of("cilium_vxlan"),
        Some((Backend::Netdev, Reason::EbpfUnavailable))
    );
    assert_eq!(
        f.route_of("eth0"),
        Some((Backend::Ethtool, Reason::EthtoolStats))
    );
    assert_eq!(f.ebpf.attaches(), 0);
}

#[tokio::test]
async fn an_attach_failure_falls_back_to_kernel_stats_and_is_counted() {
    let mut f = fixture();
    f.ebpf.refuse("vx9");
    f.appear(9, "vx9", Some("vxlan"), no_stats("vxlan")).await;
    assert_eq!(
        f.route_of("vx9"),
        Some((Backend::Netdev, Reason::EbpfAttachFailed))
    );
    let snapshot = f.node.collect().await;
    assert_eq!(snapshot.attach_failures, 1);
    assert_eq!(snapshot.interfaces[0].attach_mode, None);
    // Measured by kernel link stats instead.
    assert!(snapshot.interfaces[0].packets().is_some());
}

#[tokio::test]
async fn overrides_and_excludes_route_without_probing() {
    let mut settings = settings();
    settings.policy.exclude = patterns(&["lo", "kind:dummy"]);
    settings.policy.include = patterns(&["eth*", "cilium_*", "br*", "dummy*"]);
    settings.policy.overrides = [
        ("cilium_*", Backend::Ebpf),
        ("kind:bridge", Backend::Netdev),
        ("eth9", Backend::None),
    ]
    .into_iter()
    .map(|(p, b)| (p.parse().expect("pattern"), b))
    .collect();
    let mut f = fixture_with(&settings, true);
    f.appear(2, "cilium_geneve", Some("geneve"), veth()).await;
    f.appear(3, "br0", Some("bridge"), no_stats("bridge")).await;
    f.appear(4, "eth9", None, veth()).await;
    f.appear(5, "dummy0", Some("dummy"), veth()).await;
    f.appear(6, "lxc1", Some("veth"), veth()).await;
    f.appear(7, "eth0", None, veth()).await;
    assert_eq!(
        f.routing(),
        vec![
            ("cilium_geneve".into(), Backend::Ebpf, Reason::Override),
            ("br0".into(), Backend::Netdev, Reason::Override),
            ("eth9".into(), Backend::None, Reason::Override),
            ("dummy0".into(), Backend::None, Reason::Excluded),
            ("lxc1".into(), Backend::None, Reason::NotIncluded),
            ("eth0".into(), Backend::Ethtool, Reason::EthtoolStats),
        ]
    );
    assert_eq!(f.ethtool.probes(), 1, "only eth0 needed a probe");
}
