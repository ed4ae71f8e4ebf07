//! `cargo xtask demo`: a Cilium-like node in network namespaces with continuous traffic,
//! linkmeter routing its interfaces, and a real Prometheus scraping it. Ctrl-C removes it all.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use integration_tests::{
    daemon::{LISTEN, binary},
    prometheus::PROMETHEUS_LISTEN,
};
use linkmeter_lab::lab::{Lab, forward};

const PROMETHEUS_URL: &str = "127.0.0.1:19090";
const METRICS_URL: &str = "127.0.0.1:19977";

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "linkmeter-lab: needs root (network namespaces, eBPF): run `sudo -E cargo xtask demo`"
        );
        std::process::exit(2);
    }
    // `--duration SECONDS` stops by itself (used by the tests); default: until Ctrl-C.
    let args: Vec<String> = std::env::args().collect();
    let duration = args
        .iter()
        .position(|a| a == "--duration")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<f64>().ok());

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).expect("signal handler");
    }

    println!(
        "building the lab: a Cilium-like node, two remote nodes and two pods in network namespaces ..."
    );
    let lab = Lab::start("lab");
    let node = lab.topo.node.name().to_owned();
    for (host, target, what) in [
        (PROMETHEUS_URL, PROMETHEUS_LISTEN, "Prometheus"),
        (METRICS_URL, LISTEN, "linkmeter"),
    ] {
        if let Err(e) = forward(host, &node, target) {
            eprintln!("linkmeter-lab: cannot forward {what} to {host}: {e}");
        }
    }
    println!();
    println!("linkmeter metrics:  http://{METRICS_URL}/metrics");
    println!(
        "Prometheus:         http://{PROMETHEUS_URL}/graph?g0.expr=rate(linkmeter_interface_packets_total%5B30s%5D)"
    );
    println!("namespaces:         {}", lab.namespaces().join(" "));
    println!("node shell:         sudo nsenter --net=/run/netns/{node} bash");
    println!();
    let list = Command::new("ip")
        .args(["netns", "exec", &node])
        .arg(binary())
        .args(["list", "--attach", "--duration", "1"])
        .output();
    if let Ok(out) = list {
        println!("$ linkmeter list --attach --duration 1   (inside {node})");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!();
    println!("ready: traffic is flowing; press Ctrl-C to remove the lab");

    let started = Instant::now();
    while !stop.load(Ordering::Relaxed)
        && duration.is_none_or(|d| started.elapsed() < Duration::from_secs_f64(d))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let namespaces = lab.namespaces();
    println!(
        "stopping: {} traffic rounds sent; removing {}",
        lab.rounds(),
        namespaces.join(" ")
    );
    drop(lab);
    println!("removed");
}
