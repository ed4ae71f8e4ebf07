//! The demo lab: a Cilium-like node with continuous traffic between pods and across the vxlan
//! overlay, linkmeter running on it, and a real Prometheus scraping linkmeter. Used by
//! `cargo xtask demo` (binary `linkmeter-lab`) and the end-to-end dashboard test.

use std::{
    io,
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    netns::{NetNs, within_named},
    prometheus::Prometheus,
    topology::CiliumNode,
    traffic::udp_exchange,
};

/// The `node` label Prometheus attaches, as the PodMonitor's relabeling does in a cluster.
pub const NODE_LABEL: &str = "lab-node";

/// Sends traffic until stopped: pod 1 <-> remote node over `cilium_vxlan`, pod 1 -> pod 2.
struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(topo: &CiliumNode) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let names: Vec<String> = [&topo.pods[0], &topo.pods[1], &topo.remote]
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        let (stop_flag, counter) = (Arc::clone(&stop), Arc::clone(&rounds));
        let thread = std::thread::spawn(move || {
            // Borrow the namespaces by name: the lab owns them and outlives this thread.
            let ns = |i: usize| NetNs::borrowed(&names[i]);
            let (pod1, pod2, remote) = (ns(0), ns(1), ns(2));
            while !stop_flag.load(Ordering::Relaxed) {
                udp_exchange(
                    &pod1,
                    CiliumNode::POD_IPS[0],
                    &remote,
                    CiliumNode::REMOTE_OVERLAY,
                    5,
                );
                udp_exchange(
                    &remote,
                    CiliumNode::REMOTE_OVERLAY,
                    &pod1,
                    CiliumNode::POD_IPS[0],
                    5,
                );
                udp_exchange(
                    &pod1,
                    CiliumNode::POD_IPS[0],
                    &pod2,
                    CiliumNode::POD_IPS[1],
                    5,
                );
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            rounds,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ignored = thread.join();
        }
    }
}

/// The running lab. Dropping it stops traffic, linkmeter and Prometheus and deletes every
/// namespace (and with them every interface) it created.
pub struct Lab {
    // Field order is drop order: traffic first, namespaces last.
    traffic: Traffic,
    /// The Prometheus server (inside the node namespace).
    pub prometheus: Prometheus,
    /// linkmeter (inside the node namespace).
    pub daemon: Daemon,
    /// The namespaces.
    pub topo: CiliumNode,
}

impl Lab {
    /// Builds the node, starts linkmeter, Prometheus and traffic.
    pub fn start(tag: &str) -> Self {
        let topo = CiliumNode::new(tag);
        let daemon = Daemon::start(&topo.node, &[]);
        let prometheus = Prometheus::start_with_labels(&topo.node, LISTEN, &[("node", NODE_LABEL)]);
        let traffic = Traffic::start(&topo);
        Self {
            traffic,
            prometheus,
            daemon,
            topo,
        }
    }

    /// Traffic rounds sent so far.
    pub fn rounds(&self) -> u64 {
        self.traffic.rounds.load(Ordering::Relaxed)
    }

    /// Names of the namespaces this lab owns.
    pub fn namespaces(&self) -> Vec<String> {
        let t = &self.topo;
        [&t.node, &t.remote, &t.pods[0], &t.pods[1]]
            .iter()
            .map(|n| n.name().to_owned())
            .collect()
    }
}

/// Forwards connections to `host` (on the caller's loopback) to `target` inside namespace
/// `ns`, so a browser on the host reaches servers that live in the lab. Runs until the process
/// exits.
///
/// # Errors
///
/// `host` cannot be bound.
pub fn forward(host: &str, ns: &str, target: &'static str) -> io::Result<()> {
    let listener = TcpListener::bind(host)?;
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = within_named(&ns, || TcpStream::connect(target)) else {
                continue;
            };
            let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || pipe(client, upstream));
            std::thread::spawn(move || pipe(upstream2, client2));
        }
    });
    Ok(())
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ignored = io::copy(&mut from, &mut to);
    let _ignored = to.shutdown(std::net::Shutdown::Write);
}
