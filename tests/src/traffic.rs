//! Exact UDP traffic between two namespaces: every packet is received and checked, so a test
//! knows precisely how many packets and bytes crossed each interface.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::NetNs;

/// Ethernet (14) + IPv4 (20) + UDP (8) header bytes around a UDP payload.
pub const FRAME_OVERHEAD: u64 = 42;
/// IPv4 (20) + UDP (8) header bytes: what the kernel's vxlan counters add to a payload.
pub const IP_OVERHEAD: u64 = 28;

/// What was sent (and received intact) in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Packets.
    pub packets: u64,
    /// Sum of UDP payload sizes.
    pub payload_bytes: u64,
}

impl Sent {
    /// Layer-2 frame bytes (the eBPF byte definition) of these packets.
    pub const fn frame_bytes(&self) -> u64 {
        self.payload_bytes + self.packets * FRAME_OVERHEAD
    }
}

/// Sends `count` UDP packets from `src_ip` in `src` to `dst_ip` in `dst`, one at a time, and
/// asserts that each arrives unmodified. Payload sizes cycle through 1..=1400 bytes.
pub fn udp_exchange(src: &NetNs, src_ip: &str, dst: &NetNs, dst_ip: &str, count: u64) -> Sent {
    let receiver = dst.within(|| UdpSocket::bind((dst_ip, 0)).expect("bind receiver"));
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set timeout");
    let sender = src.within(|| UdpSocket::bind((src_ip, 0)).expect("bind sender"));
    let to: SocketAddr = receiver.local_addr().expect("receiver address");
    let mut buf = vec![0u8; 2048];
    let mut sent = Sent::default();
    for seq in 0..count {
        let len = usize::try_from(1 + (seq * 37) % 1400).expect("small");
        let payload: Vec<u8> = (0..len)
            .map(|i| u8::try_from((seq as usize + i) % 251).expect("< 251"))
            .collect();
        sender.send_to(&payload, to).expect("send");
        let (n, from) = receiver
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("packet {seq} of {count} {src_ip} -> {dst_ip} lost: {e}"));
        assert_eq!(from, sender.local_addr().expect("sender address"));
        assert_eq!(&buf[..n], &payload[..], "packet {seq} arrived modified");
        sent.packets += 1;
        sent.payload_bytes += len as u64;
    }
    sent
}

/// Datagrams sent from a namespace to a port no socket listens on, every 20 ms until dropped:
/// the receiving kernel frees each with drop reason `no_socket`, so drops keep happening while a
/// test needs some.
#[derive(Debug)]
pub struct Unanswered {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
}

impl Unanswered {
    /// Starts sending from `src_ip` in `src` to `dst_ip` port 9 (discard, never bound in tests).
    pub fn start(src: &NetNs, src_ip: &str, dst_ip: &str) -> Self {
        let socket = src.within(|| UdpSocket::bind((src_ip, 0)).expect("bind sender"));
        let to: SocketAddr = format!("{dst_ip}:9").parse().expect("destination address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let sender = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                // An ICMP port unreachable may come back as an error on a later send: ignored,
                // only the datagrams matter.
                let _ = socket.send_to(b"unanswered", to);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            sender: Some(sender),
        }
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}
