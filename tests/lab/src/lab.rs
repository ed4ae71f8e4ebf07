//! The demo lab: a Cilium-like node with continuous traffic between pods and across the vxlan
//! overlay to two remote nodes, linkmeter running on it, and a real Prometheus scraping
//! linkmeter. Used by `cargo xtask demo` (binary `linkmeter-lab`) and the end-to-end dashboard
//! test.

use std::{
    io,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    frames,
    netns::{NetNs, within_named},
    prometheus::Prometheus,
    raw,
    topology::CiliumNode,
    traffic::udp_exchange,
};

/// The `node` label Prometheus attaches, as the PodMonitor's relabeling does in a cluster.
pub const NODE_LABEL: &str = "lab-node";

/// Sends traffic until stopped: pod 1 <-> each remote node over `cilium_vxlan` (UDP both ways
/// and a TCP connection refused with a reset), pod 1 -> pod 2, and every fifth round a frame
/// written onto `cilium_vxlan` without a tunnel key, which the device drops.
struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// A port nothing listens on: connections to it are refused with a TCP reset.
const CLOSED_PORT: u16 = 9;

impl Traffic {
    fn start(topo: &CiliumNode) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let names: Vec<String> = [
            &topo.node,
            &topo.pods[0],
            &topo.pods[1],
            &topo.remotes[0],
            &topo.remotes[1],
        ]
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
        let (stop_flag, counter) = (Arc::clone(&stop), Arc::clone(&rounds));
        let thread = std::thread::spawn(move || {
            // Borrow the namespaces by name: the lab owns them and outlives this thread.
            let ns = |i: usize| NetNs::borrowed(&names[i]);
            let (node, pod1, pod2) = (ns(0), ns(1), ns(2));
            let remotes = [ns(3), ns(4)];
            let pod1_ip = CiliumNode::POD_IPS[0];
            let mut round = 0_u64;
            while !stop_flag.load(Ordering::Relaxed) {
                for (remote, overlay) in remotes.iter().zip(CiliumNode::REMOTE_OVERLAYS) {
                    udp_exchange(&pod1, pod1_ip, remote, overlay, 5);
                    udp_exchange(remote, overlay, &pod1, pod1_ip, 5);
                    refused(&pod1, overlay);
                }
                udp_exchange(&pod1, pod1_ip, &pod2, CiliumNode::POD_IPS[1], 5);
                unanswered(&pod1, NODE_IP);
                if round.is_multiple_of(5) {
                    let frame = frames::ethernet(0x88b5, &[0; 46]);
                    raw::send_frames(&node, "cilium_vxlan", &[frame]);
                }
                round += 1;
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

/// The node's address on `cilium_host`.
const NODE_IP: &str = "10.0.1.1";

/// Sends a UDP datagram from `ns` to [`CLOSED_PORT`] of `ip`, which no socket receives: the
/// kernel drops it with reason `no_socket` (the dashboard's drop panels have data).
fn unanswered(ns: &NetNs, ip: &str) {
    let to = SocketAddr::from((ip.parse::<IpAddr>().expect("address"), CLOSED_PORT));
    let socket = ns.within(|| std::net::UdpSocket::bind(("0.0.0.0", 0)).expect("bind"));
    socket.send_to(b"linkmeter lab", to).expect("send");
}

/// Connects from `ns` to [`CLOSED_PORT`] of `ip`, which answers with a TCP reset.
fn refused(ns: &NetNs, ip: &str) {
    let to = SocketAddr::from((ip.parse::<IpAddr>().expect("address"), CLOSED_PORT));
    let result = ns.within(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)));
    assert!(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused),
        "connection to {to} not refused: {result:?}"
    );
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
        // eth1 and eth2 stand in for the node's NICs: veths, so their raw driver statistics
        // are asked for (by default only device-backed interfaces export them).
        // The remote nodes' underlays lie in two zones, the node in the first; per-peer and
        // per-zone series both, for the dashboard's panels of each.
        let daemon = Daemon::start(
            &topo.node,
            &[
                "--ethtool-stats-interfaces",
                "eth*",
                "--peer-zone",
                "192.168.50.0/24=zone-a,192.168.51.0/24=zone-b",
                "--node-zone",
                "zone-a",
                "--overlay-series",
                "both",
            ],
        );
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
        [
            &t.node,
            &t.remotes[0],
            &t.remotes[1],
            &t.pods[0],
            &t.pods[1],
        ]
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
