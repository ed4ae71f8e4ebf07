//! An upgrade with pinned maps: a daemon whose programs differ (another build over the same map
//! layout, as a later linkmeter's would be) takes over the pinned hooks and maps, and the
//! counters continue exactly — the packets counted by the old programs while no daemon ran
//! included, none counted twice — under TCX and under legacy tc.

use collector::backend::ebpf::{AttachMode, EbpfCounters, Framing, LoadOptions};
use collector_common::{Counter, INGRESS_PROGRAM};
use integration_tests::{
    bpffs::BpfFs,
    kernel::{attach_counter, ifindex},
    kernel_tests_enabled,
    topology::{A_IP, B_IP, VethPair},
    traffic::udp_exchange,
    variants::{self, Build},
};

/// Sends `count` UDP packets from `va` to `vb` and adds them to `want` (what `va` transmits).
fn send(topo: &VethPair, count: u64, want: &mut Counter) {
    let sent = udp_exchange(&topo.a, A_IP, &topo.b, B_IP, count);
    want.packets += sent.packets;
    want.bytes += sent.frame_bytes();
}

fn counters_continue_across_an_upgrade(mode: AttachMode, tag: &str) {
    let topo = VethPair::new(tag);
    let bpffs = BpfFs::mount(tag);
    let pin = Some(bpffs.path().join("linkmeter"));
    let old = LoadOptions {
        pin: pin.clone(),
        ..LoadOptions::default()
    };
    let new = LoadOptions {
        pin,
        object: Some(variants::object("upgrade")),
        ..LoadOptions::default()
    };
    let index = ifindex(&topo.a, "va");
    let mut want = Counter::default();
    {
        // Loaded in the namespace of the devices, as the daemon loads in its own: adopting a
        // pinned slot checks its links sit on that namespace's device.
        let mut counters = topo
            .a
            .within(|| EbpfCounters::load(&old))
            .expect("load the old build");
        let _attached =
            attach_counter(&topo.a, &mut counters, "va", mode, Framing::default()).expect("attach");
        send(&topo, 10, &mut want);
        assert_eq!(counters.read(index).expect("read").tx, want);
    }
    // No daemon: the old programs, left on the hooks with the pinned maps, go on counting.
    send(&topo, 7, &mut want);

    let mut counters = topo
        .a
        .within(|| EbpfCounters::load(&new))
        .expect("load the upgrade");
    let attached = attach_counter(&topo.a, &mut counters, "va", mode, Framing::default())
        .expect("take over the hooks");
    assert!(
        counters.is_intact(&attached),
        "{mode:?}: the hooks run the upgrade's programs"
    );
    assert_eq!(
        counters.read(index).expect("read").tx,
        want,
        "{mode:?}: the counters continue across the upgrade"
    );
    // Counted once: the old programs left the hooks.
    send(&topo, 5, &mut want);
    assert_eq!(counters.read(index).expect("read").tx, want, "{mode:?}");
}

#[test]
fn the_upgrade_build_differs_from_the_real_programs() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut real = Build::load("linkmeter", 1, 0);
    let mut upgrade = Build::load("upgrade", 1, 0);
    assert_ne!(real.tag(INGRESS_PROGRAM), upgrade.tag(INGRESS_PROGRAM));
}

#[test]
fn tcx_counters_continue_across_an_upgrade() {
    if !kernel_tests_enabled() {
        return;
    }
    counters_continue_across_an_upgrade(AttachMode::Auto, "upgx");
}

#[test]
fn legacy_tc_counters_continue_across_an_upgrade() {
    if !kernel_tests_enabled() {
        return;
    }
    counters_continue_across_an_upgrade(AttachMode::Tc, "upgt");
}
