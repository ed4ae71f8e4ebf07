//! Scenario 1 of `cargo xtask bench` (`--only ebpf`): what linkmeter's programs cost per packet,
//! net of an empty TC program on the same hooks in the same run, and what each part of the
//! work costs, from variant builds of the same code (see [`integration_tests::variants`]).
//!
//! Each build is attached alone with the empty program, first and last in turn, under a 64-byte
//! UDP flood in both directions; `kernel.bpf_stats_enabled=1` gives each program's run time.
//! The builds take turns within every repetition (rotating order), so that a slow minute of
//! the VM falls on all of them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use aya::{EbpfLoader, maps::MapInfo, programs::SchedClassifier};
use collector_common::{
    DIRECTORY_MAP, EGRESS_PROGRAM, INGRESS_PROGRAM, OVERFLOW_MAP, PEER_CONTROL_MAP, PEER_TABLE_MAP,
    PEER_TOTALS_MAP, PEERS_MAP, SLOT_TUNNEL, STATS_MAP,
};
use integration_tests::{
    bpffs::BpfFs,
    kernel::ifindex,
    netns::NetNs,
    testprogs::{Kind, TestProgs},
    topology::{A_IP, B_IP, VethPair, VxlanMode, VxlanPair},
    variants::{Build, object},
};
use serde_json::{Value, json};

use crate::{
    bench::{BpfStats, Summary, prog_stats, udp_flood_both_ways},
    test_run,
};

/// The builds measured on a veth (full breakdown), in the order of the work they add.
const VETH_BUILDS: [&str; 9] = [
    "ifindex",
    "floor",
    "slot",
    "stats",
    "increments",
    "parse",
    "linkmeter",
    "constant_slot",
    "indexed_slot",
];

/// The builds measured on an external-mode vxlan (breakdown and peers).
const TUNNEL_BUILDS: [&str; 5] = [
    "parse",
    "tunnel_key",
    "linkmeter",
    "constant_slot",
    "peer_hash",
];

/// The parts of the work: (label, build with the part, build without it). `None`: the empty
/// program.
pub const PARTS: [(&str, &str, &str, Option<&str>); 12] = [
    ("veth", "reading `skb->ifindex`", "ifindex", None),
    (
        "veth",
        "the floor: a load-time slot, the per-CPU statistics lookup and one increment",
        "floor",
        None,
    ),
    (
        "veth",
        "finding the slot in the directory",
        "slot",
        Some("ifindex"),
    ),
    (
        "veth",
        "the per-CPU statistics lookup and one increment",
        "stats",
        Some("slot"),
    ),
    (
        "veth",
        "the other increments (sizes, bytes)",
        "increments",
        Some("stats"),
    ),
    (
        "veth",
        "parsing (Ethernet, VLAN, IPv4/IPv6, TCP flags)",
        "parse",
        Some("increments"),
    ),
    (
        "tunnel",
        "tunnel devices: `bpf_skb_get_tunnel_key`",
        "tunnel_key",
        Some("parse"),
    ),
    (
        "tunnel",
        "tunnel devices: counting per peer (the peer table)",
        "linkmeter",
        Some("tunnel_key"),
    ),
    (
        "tunnel",
        "tunnel devices: counting per peer in the hash map (the table off)",
        "peer_hash",
        Some("tunnel_key"),
    ),
    (
        "veth",
        "saved by load-time constants instead of the directory (one instance per interface)",
        "linkmeter",
        Some("constant_slot"),
    ),
    (
        "veth",
        "saved by an array indexed by ifindex instead of the probed directory",
        "linkmeter",
        Some("indexed_slot"),
    ),
    (
        "tunnel",
        "saved by the peer table instead of the hash lookup",
        "peer_hash",
        Some("linkmeter"),
    ),
];

/// Runs the scenario with `reps` repetitions (each build twice per repetition: first and last).
pub fn run(reps: usize) -> Value {
    let _stats = BpfStats::enable();
    let veth = VethPair::new("bc");
    let plain = device_cost(&veth.a, "va", 0, &VETH_BUILDS, reps, || {
        udp_flood_both_ways(&veth.a, A_IP, &veth.b, B_IP, Duration::from_secs(2))
    });
    let overlay = VxlanPair::new("bt", VxlanMode::CiliumExternal);
    let (a, b) = (&overlay.underlay.a, &overlay.underlay.b);
    let tunnel = device_cost(a, overlay.device, SLOT_TUNNEL, &TUNNEL_BUILDS, reps, || {
        udp_flood_both_ways(
            a,
            VxlanPair::A_OVERLAY,
            b,
            VxlanPair::B_OVERLAY,
            Duration::from_secs(2),
        )
    });
    let instances = instance_cost(50);
    json!({"veth": plain, "tunnel": tunnel, "instances": instances})
}

/// What one program instance per interface would cost: `n` loads of the real object, each with
/// its own slot constants, sharing maps pinned in a private bpffs (aya 0.14 reuses a pinned map
/// by path; it cannot be given an existing map otherwise). Per instance: load + verification
/// time of its two programs, their kernel memory (`memlock`) and JIT size, and the memory of
/// the maps each load creates for itself (`.rodata`).
fn instance_cost(n: u32) -> Value {
    let fs = BpfFs::mount("instances");
    let shared = [
        DIRECTORY_MAP,
        STATS_MAP,
        PEERS_MAP,
        PEER_TABLE_MAP,
        PEER_CONTROL_MAP,
        PEER_TOTALS_MAP,
        OVERFLOW_MAP,
        "AYA_LOGS",
    ];
    let mut kept = Vec::new();
    let (mut load_ms, mut prog_bytes, mut jited, mut own_maps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for index in 0..=n {
        let started = Instant::now();
        let mut loader = EbpfLoader::new();
        loader
            .override_global("SLOT_INDEX", &index, false)
            .override_global("SLOT_FLAGS", &0u32, false);
        for map in shared {
            loader.map_pin_path(map, fs.path().join(map));
        }
        let mut ebpf = loader.load(object("linkmeter")).expect("load an instance");
        let mut memlock = 0;
        let mut jit = 0;
        let mut own = 0;
        for program in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
            let classifier: &mut SchedClassifier = ebpf
                .program_mut(program)
                .expect("program")
                .try_into()
                .expect("classifier");
            classifier.load().expect("verify an instance");
            let info = classifier.info().expect("program info");
            memlock += u64::from(info.memory_locked().unwrap_or(0));
            jit += u64::from(info.size_jitted());
            if program == INGRESS_PROGRAM {
                for id in info.map_ids().ok().flatten().unwrap_or_default() {
                    let Ok(map) = MapInfo::from_id(id) else {
                        continue;
                    };
                    if map.name_as_str().is_some_and(|name| name.starts_with('.')) {
                        own += map_memlock(&map);
                    }
                }
            }
        }
        // The first load creates the shared maps; the others only reuse them.
        if index > 0 {
            load_ms.push(started.elapsed().as_secs_f64() * 1e3);
            prog_bytes.push(memlock as f64);
            jited.push(jit as f64);
            own_maps.push(own as f64);
        }
        kept.push(ebpf);
    }
    json!({
        "instances": n,
        "load_and_verify_ms": Summary::of(&load_ms),
        "programs_memlock_bytes": Summary::of(&prog_bytes),
        "programs_jited_bytes": Summary::of(&jited),
        "own_maps_memlock_bytes": Summary::of(&own_maps),
    })
}

/// `memlock` of a map, from its fd's `fdinfo`; 0 when unreadable.
fn map_memlock(map: &MapInfo) -> u64 {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let Ok(fd) = map.fd() else {
        return 0;
    };
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// Samples by name, summarised at the end.
#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn push(&mut self, name: String, value: f64) {
        self.0.entry(name).or_default().push(value);
    }

    /// Pushes `ours`, `empty`, `net` and `ratio` of one hook under `prefix`.
    fn push_cost(&mut self, prefix: &str, hook: &str, ours: f64, empty: f64) {
        self.push(format!("{prefix}ours_{hook}"), ours);
        self.push(format!("{prefix}empty_{hook}"), empty);
        self.push(format!("{prefix}net_{hook}"), ours - empty);
        self.push(format!("{prefix}ratio_{hook}"), (ours - empty) / empty);
    }

    fn summarise(self) -> BTreeMap<String, Value> {
        self.0
            .into_iter()
            .map(|(k, v)| (k, json!(Summary::of(&v))))
            .collect()
    }
}

/// Per-packet cost of each of `builds` on `dev` in `ns` (slot `flags`) and of the empty
/// program on the same hooks while `flood` runs; the real program also under
/// `BPF_PROG_TEST_RUN`. The real program's figures are at the top level, every build's under
/// `builds`.
fn device_cost(
    ns: &NetNs,
    dev: &str,
    flags: u32,
    builds: &[&'static str],
    reps: usize,
    flood: impl Fn() -> (u64, u64),
) -> Value {
    let index = ifindex(ns, dev);
    let mut loaded: Vec<Build> = builds
        .iter()
        .map(|name| Build::load(name, index, flags))
        .collect();
    let mut progs = TestProgs::load();
    let mut per_build: Vec<Samples> = builds.iter().map(|_| Samples::default()).collect();
    let mut pps = Vec::new();
    for rep in 0..reps * 2 {
        let first = rep % 2 == 0;
        for k in 0..builds.len() {
            let b = (rep + k) % builds.len();
            let build = &mut loaded[b];
            ns.within(|| {
                build.attach_tcx(dev, first);
                progs.attach_tcx(Kind::Noop, dev, !first);
            });
            let [ours_in, ours_eg] = build.program_ids();
            let (noop_in, noop_eg) = progs.program_ids(Kind::Noop);
            let ids = [ours_in, ours_eg, noop_in, noop_eg];
            let before = ids.map(prog_stats);
            let (ab, ba) = flood();
            let after = ids.map(prog_stats);
            let per_packet: Vec<f64> = (0..4)
                .map(|i| {
                    (after[i].0 - before[i].0) as f64 / ((after[i].1 - before[i].1).max(1)) as f64
                })
                .collect();
            for (h, hook) in ["ingress", "egress"].into_iter().enumerate() {
                per_build[b].push_cost("", hook, per_packet[h], per_packet[h + 2]);
            }
            if builds[b] == "linkmeter" {
                pps.push((ab + ba) as f64 / 2.0);
            }
            build.detach();
            progs.detach_all(Kind::Noop);
        }
    }
    // The real program under BPF_PROG_TEST_RUN: one frame at `dev`, hot caches.
    let real = builds
        .iter()
        .position(|b| *b == "linkmeter")
        .expect("the real program is measured");
    let ours = loaded[real].program_ids();
    let (noop_in, noop_eg) = progs.program_ids(Kind::Noop);
    let frame = test_run::udp_frame();
    let mut runs = Samples::default();
    for _ in 0..reps {
        for (h, hook) in ["ingress", "egress"].into_iter().enumerate() {
            let run = |id| test_run::nanos_per_run(ns, id, index, &frame, 5_000_000);
            let empty = run([noop_in, noop_eg][h]);
            let ours = run(ours[h]);
            runs.push_cost("run_", hook, ours, empty);
        }
    }
    let mut out = runs.summarise();
    let mut by_build = BTreeMap::new();
    for (name, samples) in builds.iter().zip(per_build) {
        let summary = samples.summarise();
        if *name == "linkmeter" {
            out.extend(summary.clone());
        }
        by_build.insert((*name).to_owned(), json!(summary));
    }
    out.insert("builds".to_owned(), json!(by_build));
    out.insert(
        "load_pps_per_direction".to_owned(),
        json!(Summary::of(&pps)),
    );
    json!(out)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn s(v: &Value, digits: usize) -> String {
    format!(
        "{:.d$} ({:.d$}–{:.d$})",
        f(&v["median"]),
        f(&v["min"]),
        f(&v["max"]),
        d = digits
    )
}

/// The Markdown of the scenario's result `r` (the value [`run`] returned).
pub fn markdown(md: &mut String, r: &Value) {
    let _ = writeln!(
        md,
        "## 1. eBPF cost per packet (64-byte UDP, `kernel.bpf_stats_enabled=1`), net of an empty program in the same run\n"
    );
    cost_table(md, r, "", "pkt");
    let _ = writeln!(
        md,
        "\nLoad: {} (veth) and {} (vxlan) packets/s per direction.\n",
        s(&r["veth"]["load_pps_per_direction"], 0),
        s(&r["tunnel"]["load_pps_per_direction"], 0),
    );
    let _ = writeln!(
        md,
        "The same programs under `BPF_PROG_TEST_RUN` (one 64-byte UDP frame run 5,000,000 times at the interface, hot caches; a test run carries no tunnel key, so on the tunnel device this is the keyless path):\n"
    );
    cost_table(md, r, "run_", "run");
    let _ = writeln!(
        md,
        "\nWhat each part costs: the difference of the medians of two builds' net cost (live, same run; ingress / egress):\n"
    );
    let _ = writeln!(
        md,
        "| part | device | builds | ns/packet ingress | ns/packet egress |\n| --- | --- | --- | --- | --- |"
    );
    for (device, label, with, without) in PARTS {
        let net = |build: &str, hook: &str| {
            f(&r[device]["builds"][build][format!("net_{hook}")]["median"])
        };
        let part = |hook: &str| net(with, hook) - without.map_or(0.0, |w| net(w, hook));
        let builds = without.map_or_else(
            || format!("{with} − empty"),
            |without| format!("{with} − {without}"),
        );
        let _ = writeln!(
            md,
            "| {label} | {device} | {builds} | {:.1} | {:.1} |",
            part("ingress"),
            part("egress"),
        );
    }
    let i = &r["instances"];
    let _ = writeln!(
        md,
        "\nOne program instance per interface ({} loads of the real object sharing pinned maps, each with its own slot constants): load + verification {} ms per instance; its two programs take {} bytes of kernel memory (JIT: {} bytes); the `.rodata` map each load creates, {} bytes.\n",
        i["instances"],
        s(&i["load_and_verify_ms"], 1),
        s(&i["programs_memlock_bytes"], 0),
        s(&i["programs_jited_bytes"], 0),
        s(&i["own_maps_memlock_bytes"], 0),
    );
}

/// One table of section 1: the samples named `{prefix}ours_{hook}` and so on, per `unit`.
fn cost_table(md: &mut String, r: &Value, prefix: &str, unit: &str) {
    let _ = writeln!(
        md,
        "| interface | hook | linkmeter ns/{unit} | empty program ns/{unit} | net ns/{unit} | net ÷ empty (target) |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (label, key, target) in [
        ("veth, full breakdown", "veth", "≤ 0.25"),
        ("external vxlan, breakdown + peers", "tunnel", "≤ 1.0"),
    ] {
        let e = &r[key];
        for hook in ["ingress", "egress"] {
            let v = |name: &str, digits| s(&e[format!("{prefix}{name}_{hook}")], digits);
            let _ = writeln!(
                md,
                "| {label} | {hook} | {} | {} | {} | {} ({target}) |",
                v("ours", 1),
                v("empty", 1),
                v("net", 1),
                v("ratio", 2),
            );
        }
    }
}
