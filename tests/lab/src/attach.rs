//! Attaching: how soon a new interface is counted, and how long a daemon takes to attach to
//! every interface of a large node at start (scenario 5 of `cargo xtask bench`).
//!
//! Both are bound by the kernel more than by linkmeter: under TCX each hook's link is created
//! with the RTNL lock held across an RCU grace period (the hook's program array is swapped and
//! the old one must be unused before it is freed), so one interface costs two grace periods,
//! one after the other, whatever the daemon does.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    eventually, http,
    netns::NetNs,
    topology::{A_IP, B_IP, VethPair},
};
use serde_json::{Value, json};

use crate::bench::{Summary, interface_farm};

/// Scenario 5: from creating an interface to its first counted packet appearing in `/metrics`.
pub fn latency(count: usize) -> Value {
    let topo = VethPair::new("al");
    let _daemon = Daemon::start(&topo.a, &["--log", "warn"]);
    let socket = topo
        .a
        .within(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("bind");
    let mut samples = Vec::new();
    for i in 0..count {
        let name = format!("al{i}");
        let peer = format!("10.212.{}.{}", i / 250, i % 250 + 1);
        let batch = format!(
            "link add {name} type vxlan id {} local {A_IP} remote {B_IP} dstport 4789 dev va\naddr add 10.211.{}.{}/32 dev {name}\nlink set {name} up\nroute add {peer}/32 dev {name}\nneigh replace {peer} lladdr 02:00:00:00:99:01 dev {name} nud permanent\n",
            3000 + i,
            i / 250,
            i % 250 + 1
        );
        let started = Instant::now();
        let mut child = std::process::Command::new("ip")
            .args(["-n", topo.a.name(), "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("ip -batch");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), batch.as_bytes())
            .expect("write");
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success());
        let needle = format!(
            "linkmeter_interface_packets_total{{interface=\"{name}\",direction=\"tx\",backend=\"ebpf\"}} "
        );
        // A measurement loop (2 ms cadence), not a test's wait.
        loop {
            let _ignored = socket.send_to(b"x", format!("{peer}:9"));
            let body = http::get(&topo.a, LISTEN, "/metrics", &[], &[])
                .expect("scrape")
                .body;
            let counted = body
                .lines()
                .find_map(|l| l.strip_prefix(&needle))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|v| v > 0);
            if counted {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name} never counted"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    json!({"interfaces": count, "ms": Summary::of(&samples)})
}

/// Interfaces counted with eBPF in a `/metrics` body.
fn ebpf_interfaces(body: &str) -> usize {
    body.lines()
        .filter(|l| l.starts_with("linkmeter_interface_info") && l.contains("backend=\"ebpf\""))
        .count()
}

/// The kernel's slab memory in KiB (`Slab` of `/proc/meminfo`).
fn slab_kib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .expect("read /proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Slab in /proc/meminfo")
}

/// Scenario 5b: a daemon started on a node of `count` interfaces (the farm: veths and vxlans,
/// all routed to eBPF), under TCX and under legacy tc: seconds from its start until `/metrics`
/// shows every interface counted with eBPF, and from SIGTERM until it has exited (it detaches
/// every hook); and the kernel's slab memory that the attachments took, per interface (the
/// slab before the daemon starts against the slab with every interface attached: the hooks'
/// kernel objects — TCX entries and links, or clsact qdiscs, blocks and filters — and the
/// daemon's own sockets, so an upper bound).
pub fn bulk(count: usize) -> Value {
    let mut modes = serde_json::Map::new();
    for mode in ["tcx", "tc"] {
        let ns = NetNs::new("bulk");
        interface_farm(&ns, count);
        let max = (count + 64).to_string();
        let slab_before = slab_kib();
        let started = Instant::now();
        let daemon = Daemon::spawn(
            &ns,
            &[],
            &[
                "--log",
                "warn",
                "--attach-mode",
                mode,
                "--override",
                "f*=ebpf",
                "--max-interfaces",
                &max,
            ],
        );
        // A measurement loop, not a test's wait: 20 ms cadence.
        eventually(
            "every farm interface counted",
            Duration::from_secs(300),
            || {
                let body = http::get(&ns, LISTEN, "/metrics", &[], &[]).map(|r| r.body);
                match body.as_deref().map(ebpf_interfaces) {
                    Some(n) if n == count => Ok(()),
                    other => Err(other),
                }
            },
        );
        let attach = started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let slab_per_interface = (slab_kib() - slab_before) / count as f64;
        let stopping = Instant::now();
        let status = daemon.stop();
        let stop = stopping.elapsed().as_secs_f64();
        assert!(status.success(), "linkmeter exited with {status}");
        modes.insert(
            mode.to_owned(),
            json!({"attach_seconds": attach, "stop_seconds": stop,
                "slab_kib_per_interface": slab_per_interface}),
        );
    }
    json!({"interfaces": count, "modes": modes})
}
