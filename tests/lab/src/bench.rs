//! Measurement helpers for `cargo xtask bench` (binary `linkmeter-bench`): statistics, process
//! CPU and memory, UDP floods, node_exporter, and interface farms.

use std::{
    net::UdpSocket,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use integration_tests::netns::NetNs;

/// Median and spread of repeated measurements.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
}

impl Summary {
    /// Summarises `samples` (which must not be empty).
    pub fn of(samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        let median = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        Self {
            n: s.len(),
            median,
            min: s[0],
            max: s[s.len() - 1],
            p99: rank(0.99),
        }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// CPU time (user + system) of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set size of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Floods UDP datagrams of `payload` bytes from `src_ip` in `src` to `dst_ip:9` for `duration`;
/// returns the number sent. A 22-byte payload makes 64-byte Ethernet frames.
pub fn udp_flood(
    src: &NetNs,
    src_ip: &str,
    dst_ip: &str,
    payload: usize,
    duration: Duration,
) -> u64 {
    let socket = src
        .within(|| UdpSocket::bind((src_ip, 0)))
        .expect("bind flood socket");
    let data = vec![0x5au8; payload];
    let target = format!("{dst_ip}:9");
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        for _ in 0..256 {
            if socket.send_to(&data, &target).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

/// Runs two floods (a → b and b → a) at once for `duration`.
pub fn udp_flood_both_ways(
    a: &NetNs,
    a_ip: &str,
    b: &NetNs,
    b_ip: &str,
    duration: Duration,
) -> (u64, u64) {
    std::thread::scope(|s| {
        let ab = s.spawn(|| udp_flood(a, a_ip, b_ip, 22, duration));
        let ba = s.spawn(|| udp_flood(b, b_ip, a_ip, 22, duration));
        (
            ab.join().expect("flood a->b"),
            ba.join().expect("flood b->a"),
        )
    })
}

/// A process in a namespace, killed on drop.
#[derive(Debug)]
pub struct Process {
    /// The child (its pid is the program's: `ip netns exec` execs).
    pub child: Child,
}

impl Process {
    /// Starts `program args` inside `ns` with output discarded.
    pub fn start(ns: &NetNs, program: &str, args: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        Self { child }
    }

    /// The program's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

/// Where node_exporter listens inside the namespace.
pub const NODE_EXPORTER_LISTEN: &str = "127.0.0.1:9100";

/// node_exporter with only the `netdev` and `ethtool` collectors, in `ns`.
pub fn node_exporter(ns: &NetNs) -> Process {
    Process::start(
        ns,
        "prometheus-node-exporter",
        &[
            "--web.listen-address",
            NODE_EXPORTER_LISTEN,
            "--collector.disable-defaults",
            "--collector.netdev",
            "--collector.ethtool",
        ],
    )
}

/// Builds `count` interfaces in `ns`: veth pairs (both ends inside) and one vxlan device per ten,
/// all up. Uses `ip -batch` so that 1,000 interfaces take seconds.
pub fn interface_farm(ns: &NetNs, count: usize) {
    let vxlans = count / 10;
    let veths = count - vxlans;
    let mut batch = String::new();
    for i in 0..veths / 2 {
        batch.push_str(&format!(
            "link add fa{i} type veth peer name fb{i}\nlink set fa{i} up\nlink set fb{i} up\n"
        ));
    }
    for i in 0..vxlans {
        batch.push_str(&format!(
            "link add fx{i} type vxlan id {} dstport 4789 local 10.250.0.1\nlink set fx{i} up\n",
            1000 + i
        ));
    }
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip -batch");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), batch.as_bytes())
        .expect("write batch");
    drop(child.stdin.take());
    assert!(child.wait().expect("wait ip").success(), "ip -batch failed");
}

/// Restores `kernel.bpf_stats_enabled` on drop.
#[derive(Debug)]
pub struct BpfStats {
    before: String,
}

impl BpfStats {
    /// Turns BPF run-time statistics on.
    pub fn enable() -> Self {
        const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(PATH).expect("read bpf_stats_enabled");
        std::fs::write(PATH, "1").expect("enable bpf stats");
        Self { before }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ignored = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", self.before.trim());
    }
}

/// (run time in ns, run count) of the loaded program with kernel id `id`.
pub fn prog_stats(id: u32) -> (u64, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .map_or((0, 0), |p| {
            (
                u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
                p.run_count(),
            )
        })
}

/// A stop flag shared with helper threads.
pub fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// Whether `flag` is set.
pub fn is_set(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// One kept-alive HTTP/1.1 connection, for timing requests without the cost of connecting:
/// the way Prometheus and the kubelet's probes talk to an exporter.
#[derive(Debug)]
pub struct KeptAlive {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl KeptAlive {
    /// Connects to `address` from the calling thread's network namespace.
    pub fn connect(address: &str) -> std::io::Result<Self> {
        let stream = std::net::TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        Ok(Self {
            stream: std::io::BufReader::new(stream),
        })
    }

    /// `GET path` on the connection; the status code once the whole answer is read.
    pub fn get(&mut self, path: &str) -> std::io::Result<u16> {
        use std::io::{BufRead as _, Read as _, Write as _};
        let request = format!("GET {path} HTTP/1.1\r\nHost: linkmeter\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes())?;
        let mut status = 0;
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some(code) = header.strip_prefix("HTTP/1.1 ") {
                status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok(status)
    }
}
