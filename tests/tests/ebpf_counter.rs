//! The eBPF TC counter against the kernel's own interface counters, on real devices in network
//! namespaces: counts must be exact, traffic untouched, other programs on the same hooks
//! unaffected, and detaching must leave nothing of ours behind.

use aya::programs::{SchedClassifier, TcAttachType};
use collector::backend::ebpf::{
    AttachError, AttachMode, AttachedMode, Capacity, DEFAULT_MAX_PEERS, EbpfCounters, Framing,
    InterfaceCounters, LoadOptions,
};
use collector_common::{Counter, ETH_HLEN, Protocol};
use integration_tests::{
    kernel::{LinkStats, attach_counter, ifindex, link_stats},
    kernel_tests_enabled,
    netns::NetNs,
    tcx_available,
    testprogs::{Kind, TestProgs},
    topology::{A_IP, B_IP, VethPair, VxlanMode, VxlanPair},
    traffic::{IP_OVERHEAD, Sent, udp_exchange},
};

const A_TO_B: u64 = 1000;
const B_TO_A: u64 = 700;

fn load() -> EbpfCounters {
    EbpfCounters::load(&LoadOptions::default()).expect("load the embedded eBPF object")
}

fn delta(after: InterfaceCounters, before: InterfaceCounters) -> InterfaceCounters {
    let sub = |a: Counter, b: Counter| Counter {
        packets: a.packets - b.packets,
        bytes: a.bytes - b.bytes,
    };
    InterfaceCounters {
        rx: sub(after.rx, before.rx),
        tx: sub(after.tx, before.tx),
    }
}

/// Traffic both ways between `a_ip` (in `a`) and `b_ip` (in `b`), measured on `dev` in `a` by
/// linkmeter and by the kernel over the same period.
fn measure(
    counters: &EbpfCounters,
    (a, a_ip): (&NetNs, &str),
    (b, b_ip): (&NetNs, &str),
    dev: &str,
) -> (InterfaceCounters, LinkStats, Sent, Sent) {
    let index = ifindex(a, dev);
    let ebpf_before = counters.read(index).expect("read counters");
    let kernel_before = link_stats(a, dev);
    let out = udp_exchange(a, a_ip, b, b_ip, A_TO_B);
    let back = udp_exchange(b, b_ip, a, a_ip, B_TO_A);
    let kernel = link_stats(a, dev).since(&kernel_before);
    let ebpf = delta(counters.read(index).expect("read counters"), ebpf_before);
    (ebpf, kernel, out, back)
}

/// Packets: eBPF = sent = kernel, each way. Bytes: eBPF = frames sent = kernel bytes +
/// `extra_per_packet` x packets (0 on veth, the inner Ethernet header on vxlan).
fn assert_exact(
    ebpf: InterfaceCounters,
    kernel: LinkStats,
    out: Sent,
    back: Sent,
    extra_per_packet: u64,
) {
    assert_eq!(
        ebpf.tx.packets, out.packets,
        "eBPF tx packets vs packets sent"
    );
    assert_eq!(
        ebpf.rx.packets, back.packets,
        "eBPF rx packets vs packets received"
    );
    assert_eq!(
        ebpf.tx.packets, kernel.tx_packets,
        "eBPF vs kernel tx packets"
    );
    assert_eq!(
        ebpf.rx.packets, kernel.rx_packets,
        "eBPF vs kernel rx packets"
    );
    assert_eq!(
        ebpf.tx.bytes,
        out.frame_bytes(),
        "eBPF tx bytes vs frames sent"
    );
    assert_eq!(
        ebpf.rx.bytes,
        back.frame_bytes(),
        "eBPF rx bytes vs frames received"
    );
    let kernel_tx = kernel.tx_bytes + extra_per_packet * kernel.tx_packets;
    let kernel_rx = kernel.rx_bytes + extra_per_packet * kernel.rx_packets;
    assert_eq!(
        ebpf.tx.bytes, kernel_tx,
        "eBPF vs kernel tx bytes (+{extra_per_packet}/packet)"
    );
    assert_eq!(
        ebpf.rx.bytes, kernel_rx,
        "eBPF vs kernel rx bytes (+{extra_per_packet}/packet)"
    );
}

fn veth_counts_equal_kernel(mode: AttachMode) {
    let topo = VethPair::new("veq");
    let mut counters = load();
    let attachment = attach_counter(&topo.a, &mut counters, "va", mode, Framing::default())
        .expect("attach to va");

    let (ebpf, kernel, out, back) = measure(&counters, (&topo.a, A_IP), (&topo.b, B_IP), "va");

    // On veth the kernel counts the whole frame, as the eBPF byte definition does.
    assert_exact(ebpf, kernel, out, back, 0);
    assert_eq!(counters.overflow().expect("overflow").interfaces.packets, 0);
    attachment.detach().expect("detach");
}

#[test]
fn veth_counts_equal_kernel_counters_tcx() {
    if kernel_tests_enabled() && tcx_available() {
        veth_counts_equal_kernel(AttachMode::Tcx);
    }
}

#[test]
fn veth_counts_equal_kernel_counters_legacy_tc() {
    if kernel_tests_enabled() {
        veth_counts_equal_kernel(AttachMode::Tc);
    }
}

fn vxlan_counts_equal_kernel(mode: VxlanMode, attach: AttachMode) {
    let topo = VxlanPair::new("vxq", mode);
    let (a, b) = (&topo.underlay.a, &topo.underlay.b);
    let mut counters = load();
    let attachment = attach_counter(a, &mut counters, topo.device, attach, Framing::default())
        .expect("attach to vxlan");

    let (ebpf, kernel, out, back) = measure(
        &counters,
        (a, VxlanPair::A_OVERLAY),
        (b, VxlanPair::B_OVERLAY),
        topo.device,
    );

    // The eBPF definition counts the inner Ethernet header, the kernel's vxlan counters do not.
    assert_exact(ebpf, kernel, out, back, ETH_HLEN);
    assert_eq!(
        kernel.tx_bytes,
        out.payload_bytes + out.packets * IP_OVERHEAD
    );
    attachment.detach().expect("detach");
}

#[test]
fn cilium_vxlan_external_mode_counts_equal_kernel_counters() {
    if kernel_tests_enabled() {
        vxlan_counts_equal_kernel(VxlanMode::CiliumExternal, AttachMode::Auto);
    }
}

#[test]
fn cilium_vxlan_external_mode_counts_equal_kernel_counters_legacy_tc() {
    if kernel_tests_enabled() {
        vxlan_counts_equal_kernel(VxlanMode::CiliumExternal, AttachMode::Tc);
    }
}

#[test]
fn vxlan_fixed_remote_counts_equal_kernel_counters() {
    if kernel_tests_enabled() {
        vxlan_counts_equal_kernel(VxlanMode::FixedRemote, AttachMode::Auto);
    }
}

/// linkmeter's programs attached to `dev` in `ns` under `mode`, by name prefix, per hook.
fn our_attachments(ns: &NetNs, dev: &str, mode: AttachedMode) -> Vec<String> {
    attached_names(ns, dev, mode)
        .into_iter()
        .filter(|n| n.starts_with("linkmeter_"))
        .collect()
}

/// Asserts that none of linkmeter's programs remain on `dev`. A TCX link goes away when its
/// last file reference closes; a process forked by a concurrent test may hold a copy until it
/// execs (the fd is close-on-exec), so this waits up to 2 s for that.
fn assert_detached(ns: &NetNs, dev: &str, mode: AttachedMode) {
    integration_tests::eventually("detached", std::time::Duration::from_secs(2), || {
        if our_attachments(ns, dev, mode).is_empty() {
            Ok(())
        } else {
            Err(attached_names(ns, dev, mode))
        }
    });
}

/// Names of all programs attached to `dev`'s hooks under `mode` (TCX query or tc filter list).
fn attached_names(ns: &NetNs, dev: &str, mode: AttachedMode) -> Vec<String> {
    let mut names = Vec::new();
    for attach in [TcAttachType::Ingress, TcAttachType::Egress] {
        match mode {
            AttachedMode::Tcx => {
                let (_revision, programs) = ns
                    .within(|| SchedClassifier::query_tcx(dev, attach))
                    .expect("query_tcx");
                names.extend(
                    programs
                        .iter()
                        .map(|p| p.name_as_str().unwrap_or_default().to_owned()),
                );
            }
            AttachedMode::Tc => {
                let hook = if attach == TcAttachType::Ingress {
                    "ingress"
                } else {
                    "egress"
                };
                let json = ns.tc(&["-j", "filter", "show", "dev", dev, hook]);
                let filters: serde_json::Value = serde_json::from_str(&json).expect("tc -j");
                for f in filters.as_array().into_iter().flatten() {
                    if let Some(name) = f["options"]["bpf_name"].as_str() {
                        names.push(name.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Another program is on the hooks before linkmeter starts; both must see every packet, the
/// traffic must flow, and detaching linkmeter must leave the other program in place.
fn coexists_with(kind: Kind, mode: AttachMode, attached: AttachedMode) {
    let topo = VethPair::new("cox");
    let mut other = TestProgs::load();
    topo.a.within(|| other.attach(kind, "va", attached));
    let other_before = other.packets(kind);

    let mut counters = load();
    let attachment = attach_counter(&topo.a, &mut counters, "va", mode, Framing::default())
        .expect("attach to va");
    assert_eq!(attachment.mode(), attached);
    let (ebpf, kernel, out, back) = measure(&counters, (&topo.a, A_IP), (&topo.b, B_IP), "va");

    assert_exact(ebpf, kernel, out, back, 0);
    // The breakdown sees the same packets: all IPv4 UDP, the first traffic since attaching.
    let stats = counters
        .read_stats(ifindex(&topo.a, "va"))
        .expect("read")
        .expect("slot");
    let udp = |s: &collector_common::Stats| s.protocols[Protocol::Ipv4Udp as usize];
    assert_eq!(
        udp(&stats.tx),
        Counter {
            packets: out.packets,
            bytes: out.frame_bytes()
        }
    );
    assert_eq!(
        udp(&stats.rx),
        Counter {
            packets: back.packets,
            bytes: back.frame_bytes()
        }
    );
    assert_eq!(stats.tx.sizes.iter().sum::<u64>(), out.packets);
    let other_now = other.packets(kind);
    assert_eq!(
        (other_now.0 - other_before.0, other_now.1 - other_before.1),
        (back.packets, out.packets),
        "the other program must see every packet (ingress, egress)"
    );

    // Detach: nothing of ours remains, the other program is still attached and still counts.
    let names_before = attached_names(&topo.a, "va", attached);
    assert_eq!(
        our_attachments(&topo.a, "va", attached).len(),
        2,
        "{names_before:?}"
    );
    attachment.detach().expect("detach");
    assert_detached(&topo.a, "va", attached);
    let names_after = attached_names(&topo.a, "va", attached);
    let other_name = kind.kernel_name(TcAttachType::Ingress);
    assert!(
        names_after.iter().any(|n| n.starts_with(&other_name)),
        "other program {other_name} must stay attached: {names_after:?}"
    );
    let before = other.packets(kind);
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 10);
    let after = other.packets(kind);
    assert_eq!(
        after.1 - before.1,
        10,
        "other program still counts after our detach"
    );
}

#[test]
fn coexists_with_another_program_on_the_same_hook_tcx() {
    if kernel_tests_enabled() && tcx_available() {
        coexists_with(Kind::Observer, AttachMode::Tcx, AttachedMode::Tcx);
    }
}

#[test]
fn coexists_with_another_program_on_the_same_hook_legacy_tc() {
    if kernel_tests_enabled() {
        coexists_with(Kind::Observer, AttachMode::Tc, AttachedMode::Tc);
    }
}

#[test]
fn chain_ending_program_attached_earlier_does_not_hide_traffic_tcx() {
    if kernel_tests_enabled() && tcx_available() {
        coexists_with(Kind::ChainEnd, AttachMode::Tcx, AttachedMode::Tcx);
    }
}

#[test]
fn dropping_the_attachment_detaches_and_keeps_the_clsact_qdisc() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("drp");
    let mut counters = load();
    let modes: &[AttachMode] = if tcx_available() {
        &[AttachMode::Tcx, AttachMode::Tc]
    } else {
        &[AttachMode::Tc]
    };
    for &mode in modes {
        let attachment =
            attach_counter(&topo.a, &mut counters, "va", mode, Framing::default()).expect("attach");
        let attached = attachment.mode();
        assert_eq!(our_attachments(&topo.a, "va", attached).len(), 2);
        drop(attachment);
        assert_detached(&topo.a, "va", attached);
    }
    let qdiscs = topo.a.tc(&["qdisc", "show", "dev", "va"]);
    assert!(
        qdiscs.contains("clsact"),
        "our clsact qdisc is left for others: {qdiscs}"
    );
}

#[test]
fn legacy_attach_removes_our_own_stale_filter_only() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("stl");
    let mut other = TestProgs::load();
    topo.a
        .within(|| other.attach(Kind::Observer, "va", AttachedMode::Tc));
    // A previous linkmeter that died without detaching leaves its filters behind.
    let mut crashed = load();
    let stale = attach_counter(
        &topo.a,
        &mut crashed,
        "va",
        AttachMode::Tc,
        Framing::default(),
    )
    .expect("attach");
    std::mem::forget(stale);
    drop(crashed);
    assert_eq!(our_attachments(&topo.a, "va", AttachedMode::Tc).len(), 2);

    let mut counters = load();
    let fresh = attach_counter(
        &topo.a,
        &mut counters,
        "va",
        AttachMode::Tc,
        Framing::default(),
    )
    .expect("re-attach");
    let names = attached_names(&topo.a, "va", AttachedMode::Tc);
    assert_eq!(
        our_attachments(&topo.a, "va", AttachedMode::Tc).len(),
        2,
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("observer_")),
        "{names:?}"
    );
    let (ebpf, kernel, ..) = measure(&counters, (&topo.a, A_IP), (&topo.b, B_IP), "va");
    assert_eq!(ebpf.tx.packets, kernel.tx_packets);
    fresh.detach().expect("detach");
}

#[test]
fn a_full_slot_table_refuses_to_attach_and_slotless_packets_count_as_overflow() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("ovf");
    let options = LoadOptions {
        capacity: Capacity::new(1, DEFAULT_MAX_PEERS).expect("capacity"),
        ..LoadOptions::default()
    };
    let mut counters = EbpfCounters::load(&options).expect("load");
    let _va = attach_counter(
        &topo.a,
        &mut counters,
        "va",
        AttachMode::Auto,
        Framing::default(),
    )
    .expect("attach va");
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 5);
    udp_exchange(&topo.b, B_IP, &topo.a, A_IP, 5);
    let va_index = ifindex(&topo.a, "va");
    let va = counters.read(va_index).expect("read va");
    assert_eq!((va.tx.packets, va.rx.packets), (5, 5));

    // No slot left for a second interface: a clear error, and nothing stays attached to it.
    match attach_counter(
        &topo.a,
        &mut counters,
        "lo",
        AttachMode::Auto,
        Framing::default(),
    ) {
        Err(AttachError::Slot { interface, .. }) => assert_eq!(interface, "lo"),
        other => panic!("{other:?}"),
    }
    assert!(
        topo.a
            .tc(&["filter", "show", "dev", "lo", "ingress"])
            .is_empty()
    );

    // An attached interface whose slot is gone (freed under it): every packet is overflow.
    counters.forget(va_index).expect("forget va");
    let sent = udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 7);
    let overflow = counters.overflow().expect("overflow");
    assert_eq!(overflow.interfaces.packets, sent.packets);
    assert_eq!(overflow.interfaces.bytes, sent.frame_bytes());
    assert_eq!(overflow.peers.packets, 0);
    assert_eq!(
        counters.read(va_index).expect("read"),
        InterfaceCounters::default()
    );
}

#[test]
fn attaching_to_a_missing_interface_is_a_clear_error() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("mis");
    let mut counters = load();
    // An ifindex no device of the namespace has (the library attaches by index).
    let missing = 9_999;
    for mode in [AttachMode::Auto, AttachMode::Tc] {
        match ns.within(|| counters.attach(missing, mode, Framing::default())) {
            Err(AttachError::NoSuchInterface { .. }) => {}
            other => panic!("{mode:?}: {other:?}"),
        }
        assert_eq!(
            counters.read_stats(missing).expect("read"),
            None,
            "{mode:?}: no slot stays taken"
        );
    }
}

/// cls_bpf runs the newest filter of a priority first, so linkmeter's filter, added after a
/// Cilium-like chain-ending filter at the same priority 1, still sees every packet.
#[test]
fn chain_ending_filter_at_the_same_priority_does_not_hide_traffic_legacy_tc() {
    if kernel_tests_enabled() {
        coexists_with(Kind::ChainEnd, AttachMode::Tc, AttachedMode::Tc);
    }
}
