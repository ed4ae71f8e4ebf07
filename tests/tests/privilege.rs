//! Least privilege, proven: the capability set of `deploy/base/daemonset.yaml` is parsed and
//! the daemon runs with exactly that set, as Kubernetes gives it to a root container with
//! `drop: [ALL]`, `add: [...]` and `allowPrivilegeEscalation: false` (bounding = permitted =
//! effective = the set, nothing inheritable or ambient, no_new_privs). With it, the Cilium-like
//! node is routed as with full root, pinning works, and the eBPF counts are exact. Then each
//! capability is removed in turn, and what stops working is shown: a capability that nothing
//! needs would fail this test, so it cannot stay in the manifest. The drop-reason tracing
//! program (`kfree_skb`) loads and attaches with the same set: it needs no capability more.

use integration_tests::{
    bpffs::BpfFs,
    daemon::{Daemon, Metrics, scrape},
    kernel_tests_enabled,
    topology::CiliumNode,
    traffic::udp_exchange,
};

/// Capability numbers (linux/capability.h) of the names a manifest may carry.
const CAPABILITIES: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("SYS_MODULE", 16),
    ("SYS_PTRACE", 19),
    ("SYS_ADMIN", 21),
    ("SYS_RESOURCE", 24),
    ("PERFMON", 38),
    ("BPF", 39),
];

/// The `capabilities.add` list of the DaemonSet's container.
fn manifest_capabilities() -> Vec<String> {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/base/daemonset.yaml"
    ))
    .expect("read daemonset.yaml");
    let lines: Vec<&str> = manifest.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| *l == "capabilities:")
        .expect("a capabilities block");
    assert!(
        lines[at + 1..]
            .iter()
            .take(2)
            .any(|l| l.replace(' ', "") == "drop:[\"ALL\"]"),
        "the container must drop ALL capabilities"
    );
    let add = lines[at + 1..]
        .iter()
        .take(2)
        .find_map(|l| l.strip_prefix("add:"))
        .expect("capabilities.add");
    add.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

fn number(name: &str) -> u32 {
    CAPABILITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("unknown capability {name} in the manifest"))
}

/// A `setpriv` prefix giving a root process exactly `caps`, as the container runtime does.
fn exactly(caps: &[String]) -> Vec<String> {
    let set: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{}", c.to_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    [
        "setpriv",
        "--no-new-privs",
        "--inh-caps",
        "-all",
        "--ambient-caps",
        "-all",
        "--bounding-set",
        &set,
        "--",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A capability mask from /proc/<pid>/status.
fn mask(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    u64::from_str_radix(value.trim(), 16).expect("hex mask")
}

/// What a run with `caps` gave: the routing, the eBPF count of 20 packets over the overlay,
/// pins made, and the daemon's warnings.
struct Outcome {
    vxlan: Option<(String, String)>,
    lxc: Option<(String, String)>,
    ebpf_tx_packets: Option<f64>,
    /// `linkmeter_drop_reasons_available`: the kfree_skb program loaded and attached.
    drop_reasons: Option<f64>,
    pinned: usize,
    warnings: Vec<String>,
}

fn run_with(caps: &[String], tag: &str) -> Outcome {
    let topo = CiliumNode::new(tag);
    let bpffs = BpfFs::mount(tag);
    let pin_path = bpffs.join("linkmeter");
    let prefix = exactly(caps);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let daemon =
        Daemon::start_with_prefix(&topo.node, &prefix, &["--pin", "--pin-path", &pin_path]);
    let expected: u64 = caps.iter().map(|c| 1 << number(c)).sum();
    for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(
            mask(daemon.pid(), field),
            expected,
            "{field} of the daemon run with {caps:?}"
        );
    }
    assert_eq!(mask(daemon.pid(), "CapInh:"), 0);
    assert_eq!(mask(daemon.pid(), "CapAmb:"), 0);
    assert_eq!(mask(daemon.pid(), "NoNewPrivs:"), 1);

    udp_exchange(
        &topo.pods[0],
        CiliumNode::POD_IPS[0],
        &topo.remotes[0],
        CiliumNode::REMOTE_OVERLAYS[0],
        20,
    );
    let m: Metrics = scrape(&topo.node);
    let routing = m.routing();
    let pinned = walk(std::path::Path::new(&pin_path));
    let warnings = daemon
        .log_lines_at("WARN")
        .into_iter()
        .chain(daemon.log_lines_at("ERROR"))
        .filter_map(|l| {
            let message = l["fields"]["message"].as_str()?;
            // The cause's first line (a verifier log is long).
            let cause = l["fields"]["error"]
                .as_str()
                .and_then(|e| e.lines().next())
                .map(|e| format!(": {}", e.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            Some(format!("{message}{cause}"))
        })
        .collect();
    let outcome = Outcome {
        vxlan: routing.get("cilium_vxlan").cloned(),
        lxc: routing.get(CiliumNode::LXC[0]).cloned(),
        ebpf_tx_packets: m.value(
            "linkmeter_interface_packets_total",
            &[
                ("interface", "cilium_vxlan"),
                ("direction", "tx"),
                ("backend", "ebpf"),
            ],
        ),
        drop_reasons: m.value("linkmeter_drop_reasons_available", &[]),
        pinned,
        warnings,
    };
    assert!(daemon.stop().success());
    // Unmounting the bpffs releases the pins, deleting the namespaces the devices.
    drop(bpffs);
    drop(topo);
    outcome
}

/// Files under `dir` (0 when it does not exist).
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[test]
fn the_manifest_capabilities_are_enough_and_each_is_needed() {
    if !kernel_tests_enabled() {
        return;
    }
    let caps = manifest_capabilities();
    assert!(!caps.is_empty());

    let full = run_with(&caps, "capall");
    let ebpf = Some(("ebpf".to_owned(), "ethtool_no_stats".to_owned()));
    assert_eq!(full.vxlan, ebpf, "{:?}", full.warnings);
    assert_eq!(
        full.lxc,
        Some(("ethtool".to_owned(), "ethtool_stats".to_owned()))
    );
    assert_eq!(full.ebpf_tx_packets, Some(20.0), "{:?}", full.warnings);
    // The drop-reason tracing program needs no capability beyond the TC counter's.
    assert_eq!(full.drop_reasons, Some(1.0), "{:?}", full.warnings);
    assert!(full.pinned > 0, "nothing pinned with {caps:?}");
    // Its warnings are the routing notes a fully privileged run has too (no ethtool stats on
    // vxlan/bridge): nothing was refused.
    assert!(
        full.warnings
            .iter()
            .all(|w| w.contains("measuring it with the ebpf backend instead")),
        "{:?}",
        full.warnings
    );

    for (i, missing) in caps.iter().enumerate() {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let outcome = run_with(&fewer, &format!("capno{i}"));
        let new: Vec<&String> = outcome
            .warnings
            .iter()
            .filter(|w| !full.warnings.contains(w))
            .collect();
        println!(
            "without {missing}: cilium_vxlan {:?}, eBPF tx {:?}, drop reasons {:?}, {} pinned, new warnings {new:?}",
            outcome.vxlan, outcome.ebpf_tx_packets, outcome.drop_reasons, outcome.pinned
        );
        assert_ne!(
            outcome.vxlan, ebpf,
            "without {missing} the eBPF counter still works: {missing} is not needed"
        );
        // The tracing program needs CAP_BPF and CAP_PERFMON, not CAP_NET_ADMIN.
        let tracing_needs = ["BPF", "PERFMON"].contains(&missing.as_str());
        assert_eq!(
            outcome.drop_reasons,
            Some(if tracing_needs { 0.0 } else { 1.0 }),
            "drop reasons without {missing}"
        );
        // What does not need the capability goes on: ethtool routing and serving.
        assert_eq!(
            outcome.lxc,
            Some(("ethtool".to_owned(), "ethtool_stats".to_owned()))
        );
        assert!(
            !new.is_empty(),
            "without {missing}: no warning says what stopped"
        );
    }
}
