//! End to end with the consumers: the demo lab (Cilium-like node, traffic, linkmeter, a real
//! Prometheus) answers every PromQL expression of the Grafana dashboard, and the demo binary
//! removes everything it created when interrupted.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_tests::{eventually, kernel_tests_enabled, prometheus, topology::CiliumNode};
use linkmeter_lab::lab::{self, Lab};
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/linkmeter.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read dashboard")).expect("JSON")
}

/// `expr` with the dashboard's variables set as Grafana does for "All".
fn substitute(expr: &str) -> String {
    expr.replace("$node", ".*")
        .replace("$interface", ".*")
        .replace("$backend", ".*")
        .replace("$__rate_interval", "15s")
        .replace("$price_per_gb", "0.01")
}

/// The dashboard's queries with its variables substituted as Grafana does for "All"; Grafana's
/// `label_values(m, l)` becomes `count by (l) (m)`.
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let title = format!(
                "{} / {}",
                p["title"].as_str().unwrap_or(""),
                t["refId"].as_str().unwrap_or("")
            );
            out.push((title, substitute(t["expr"].as_str().expect("expr"))));
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        if let Some(def) = v["definition"].as_str() {
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .expect("label_values");
            let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            out.push((
                format!("variable {}", v["name"]),
                format!(
                    "count by ({}) ({})",
                    label.trim(),
                    substitute(metric.trim())
                ),
            ));
        }
    }
    out
}

#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    if !kernel_tests_enabled() || !prometheus::available() {
        return;
    }
    let lab = Lab::start("e2e");
    lab.prometheus
        .wait_for("up{job=\"linkmeter\"} == 1", Duration::from_secs(60));
    let d = dashboard();
    for (what, query) in queries(&d) {
        let series = lab.prometheus.wait_for(&query, Duration::from_secs(60));
        assert!(!series.is_empty(), "{what}: {query}");
    }
    // The routing table shows cilium_vxlan measured by eBPF, and its counts move.
    let query = panel_query(&d, "Routing table");
    let rows = lab.prometheus.wait_for(&query, Duration::from_secs(10));
    let vxlan = rows
        .iter()
        .find(|r| r["metric"]["interface"] == "cilium_vxlan")
        .expect("cilium_vxlan in the routing table");
    assert_eq!(vxlan["metric"]["backend"], "ebpf");
    assert_eq!(vxlan["metric"]["node"], lab::NODE_LABEL);
    let rate = lab.prometheus.wait_for(
        "rate(linkmeter_interface_packets_total{interface=\"cilium_vxlan\",backend=\"ebpf\",direction=\"tx\"}[15s]) > 0",
        Duration::from_secs(60),
    );
    assert_eq!(rate.len(), 1);
    assert!(lab.rounds() > 0);

    // The overlay panels move: the matrix has both remote nodes, the traffic's resets and the
    // keyless frames are there.
    let matrix = panel_query(&d, "Overlay traffic: node → peer (bytes/s)");
    lab.prometheus.wait_for(
        &format!("count(count by (peer) ({matrix} > 0)) == 2"),
        Duration::from_secs(60),
    );
    let peers = lab.prometheus.wait_for(
        &format!("count by (peer) ({matrix})"),
        Duration::from_secs(10),
    );
    let mut peers: Vec<&str> = peers
        .iter()
        .filter_map(|r| r["metric"]["peer"].as_str())
        .collect();
    peers.sort_unstable();
    assert_eq!(peers, CiliumNode::REMOTE_UNDERLAYS);
    // The zone panels: the lab's node is in zone-a and sends to one node of each zone.
    let matrix = panel_query(&d, "Overlay traffic: zone → zone (bytes/s)");
    let pairs = lab.prometheus.wait_for(
        &format!("count by (source_zone, zone) ({matrix} > 0)"),
        Duration::from_secs(60),
    );
    let mut pairs: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|r| {
            Some((
                r["metric"]["source_zone"].as_str()?,
                r["metric"]["zone"].as_str()?,
            ))
        })
        .collect();
    pairs.sort_unstable();
    assert_eq!(pairs, [("zone-a", "zone-a"), ("zone-a", "zone-b")]);
    for title in [
        "Packets without a tunnel key (dropped by the device)/s",
        "TCP resets/s",
        "Cross-zone bytes/s per node",
        "Estimated cross-zone transfer cost per day",
    ] {
        let query = format!("{} > 0", panel_query(&d, title));
        let moving = lab.prometheus.wait_for(&query, Duration::from_secs(60));
        assert!(!moving.is_empty(), "{title}: {query}");
    }
}

/// The first query of the panel titled `title`, with the variables set to "All".
fn panel_query(d: &Value, title: &str) -> String {
    let panel = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("panel {title}"));
    substitute(panel["targets"][0]["expr"].as_str().expect("expr"))
}

#[test]
fn the_demo_shows_cilium_vxlan_counts_and_leaves_nothing_behind_after_ctrl_c() {
    if !kernel_tests_enabled() || !prometheus::available() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_linkmeter-lab"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start linkmeter-lab");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !printed.contains("ready: traffic is flowing") {
        assert!(Instant::now() < deadline, "demo not ready: {printed}");
        let mut line = String::new();
        if out.read_line(&mut line).expect("read demo output") == 0 {
            panic!("demo exited early: {printed}");
        }
        printed.push_str(&line);
    }
    assert!(printed.contains("http://127.0.0.1:19090"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("cilium_vxlan") && l.contains("ebpf")),
        "{printed}"
    );

    // Prometheus, reached through the demo's forward on the host loopback, has eBPF counts for
    // cilium_vxlan within a minute.
    let query = "linkmeter_interface_packets_total{interface=\"cilium_vxlan\",backend=\"ebpf\",direction=\"tx\"} > 0";
    eventually(
        "eBPF counts for cilium_vxlan in Prometheus",
        Duration::from_secs(60),
        || match prometheus::query_at("127.0.0.1:19090", query) {
            Some(v) if !v.is_empty() => Ok(()),
            other => Err(other),
        },
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read rest");
    assert!(child.wait().expect("wait").success(), "{rest}");
    assert!(rest.contains("removed"), "{rest}");
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let prefix = format!("lmt-{pid}-");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
}
