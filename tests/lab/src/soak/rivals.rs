//! The soak's rivals and its steady pair. Halfway through, two more daemons are started on the
//! same node (the same network namespace, their own listen ports, the owner's flags): each must
//! give way — exit non-zero, saying that another daemon owns the node — without attaching
//! anything. Throughout, a veth pair that is never churned (`so0` here, `so1` in the other
//! namespace, routed to eBPF) carries UDP after every cycle, and the owner's eBPF counts of it
//! must equal the kernel's exactly.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde::Serialize;

use integration_tests::{
    daemon::{Metrics, binary},
    kernel::link_stats,
    netns::NetNs,
    traffic::udp_exchange,
};

/// The steady pair: `OWNED` in the daemon's namespace, its peer in the other one.
pub(crate) const OWNED: &str = "so0";
const PEER: &str = "so1";
const OWNED_IP: &str = "10.77.0.1";
const PEER_IP: &str = "10.77.0.2";

/// Creates the steady pair.
pub(crate) fn steady_pair(ns: &NetNs, other: &NetNs) {
    ns.ip(&[
        "link",
        "add",
        OWNED,
        "type",
        "veth",
        "peer",
        PEER,
        "netns",
        other.name(),
    ]);
    ns.ip(&["addr", "add", &format!("{OWNED_IP}/30"), "dev", OWNED]);
    ns.ip(&["link", "set", OWNED, "up"]);
    other.ip(&["addr", "add", &format!("{PEER_IP}/30"), "dev", PEER]);
    other.ip(&["link", "set", PEER, "up"]);
}

/// eBPF packets counted on the steady pair's `direction`.
fn counted(m: &Metrics, direction: &str) -> Option<u64> {
    m.value(
        "linkmeter_interface_packets_total",
        &[
            ("interface", OWNED),
            ("direction", direction),
            ("backend", "ebpf"),
        ],
    )
    .map(|v| v as u64)
}

/// Sends UDP both ways over the steady pair; `None` when the owner counted exactly what the
/// kernel did, else what differs. `scrape` reads the owner's `/metrics`.
pub(crate) fn exact(
    ns: &NetNs,
    other: &NetNs,
    scrape: impl Fn() -> Option<Metrics>,
) -> Option<String> {
    let (kernel_before, before) = (link_stats(ns, OWNED), scrape()?);
    udp_exchange(ns, OWNED_IP, other, PEER_IP, 20);
    udp_exchange(other, PEER_IP, ns, OWNED_IP, 20);
    let (kernel, after) = (link_stats(ns, OWNED).since(&kernel_before), scrape()?);
    let delta = |d| Some(counted(&after, d)? - counted(&before, d)?);
    let ours = (delta("rx"), delta("tx"));
    let theirs = (Some(kernel.rx_packets), Some(kernel.tx_packets));
    (ours != theirs).then(|| format!("owner counted (rx, tx) {ours:?}, the kernel {theirs:?}"))
}

/// How a rival daemon ended.
#[derive(Debug, Serialize)]
pub struct Rival {
    /// Its exit status (`None`: killed).
    pub exit_code: Option<i32>,
    /// Its last log line.
    pub said: String,
}

/// Two more daemons in `ns` with `args`, on their own ports.
pub(crate) struct Rivals(Vec<Child>);

impl Rivals {
    pub(crate) fn start(ns: &NetNs, args: &[&str]) -> Self {
        Self(
            [9981, 9982]
                .into_iter()
                .map(|port| {
                    Command::new("ip")
                        .args(["netns", "exec", ns.name()])
                        .arg(binary())
                        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("start a rival daemon")
                })
                .collect(),
        )
    }

    /// Waits for both (a minute at most: they wait 12 s for the lock) and returns how they
    /// ended.
    pub(crate) fn finish(self) -> Vec<Rival> {
        self.0
            .into_iter()
            .map(|mut child| {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while child.try_wait().ok().flatten().is_none()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let out = child.wait_with_output().expect("rival output");
                let stderr = String::from_utf8_lossy(&out.stderr);
                Rival {
                    exit_code: out.status.code(),
                    said: stderr.lines().last().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }
}

/// What is wrong with how the rivals ended: each must have exited non-zero saying that another
/// daemon owns the node.
pub(crate) fn rival_problems(rivals: &[Rival]) -> Vec<String> {
    rivals
        .iter()
        .filter(|r| {
            r.exit_code.is_none_or(|c| c == 0) || !r.said.contains("another linkmeter daemon")
        })
        .map(|r| format!("a rival daemon did not give way: {r:?}"))
        .collect()
}
