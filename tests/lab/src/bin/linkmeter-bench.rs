//! `cargo xtask bench`: linkmeter's cost, measured side by side with what users would otherwise
//! run, in namespaces this program creates and removes. Writes `target/bench/report.json` and
//! `target/bench/report.md`. Every comparison alternates its two sides over repetitions and
//! reports the median with the spread (min–max).
//!
//! `--reps N` repetitions per comparison (default 7), `--idle-seconds S` for the idle scenario
//! (default 300), `--out DIR` (default `target/bench`), `--only ebpf|datapath|scrape|attach_latency|idle|healthz|overlay_scale|drop_storm`
//! (one section; its report is written the same way), `--render REPORT.json` (the Markdown of an
//! earlier run).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use collector::backend::ebpf::{AttachMode, EbpfCounters, Framing, LoadOptions};
use integration_tests::{
    daemon::{Daemon, LISTEN},
    eventually, http,
    kernel::{attach_counter, link_stats},
    netns::NetNs,
    testprogs::{Kind, TestProgs},
    topology::{A_IP, B_IP, VethPair},
};
use linkmeter_lab::bench::{
    KeptAlive, NODE_EXPORTER_LISTEN, Process, Summary, cpu_seconds, interface_farm, node_exporter,
    rss_mib, udp_flood,
};
use linkmeter_lab::{drop_storm, ebpf_cost};
use serde_json::{Value, json};

struct Args {
    reps: usize,
    idle_seconds: u64,
    out: PathBuf,
}

/// The value after `name` on the command line.
fn argument(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
}

/// The sections, by the names `--only` takes and the report's keys.
const SECTIONS: [&str; 8] = [
    "ebpf",
    "datapath",
    "scrape",
    "attach_latency",
    "idle",
    "healthz",
    "overlay_scale",
    "drop_storm",
];

/// Flags that take a value; anything else on the command line is a usage error.
const FLAGS: [&str; 5] = ["--reps", "--idle-seconds", "--out", "--render", "--only"];

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut rest = argv.iter();
    while let Some(flag) = rest.next() {
        if !FLAGS.contains(&flag.as_str()) || rest.next().is_none() {
            eprintln!(
                "linkmeter-bench: unexpected argument {flag:?}; usage: linkmeter-bench [--reps N] [--idle-seconds S] [--out DIR] [--only SCENARIO] [--render REPORT.json]"
            );
            std::process::exit(2);
        }
    }
    let get = argument;
    Args {
        reps: get("--reps").and_then(|v| v.parse().ok()).unwrap_or(7),
        idle_seconds: get("--idle-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
        out: get("--out").map_or_else(|| PathBuf::from("target/bench"), PathBuf::from),
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "linkmeter-bench: needs root (namespaces, eBPF): run `sudo -E cargo xtask bench`"
        );
        std::process::exit(2);
    }
    let args = args();
    // `--render report.json` re-renders the Markdown of an earlier run.
    if let Some(i) = std::env::args().position(|a| a == "--render") {
        let path = std::env::args().nth(i + 1).expect("--render FILE");
        let value: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read report"))
                .expect("report JSON");
        print!("{}", markdown(&value));
        return;
    }
    if std::env::var_os("LINKMETER_BINARY").is_none() {
        eprintln!(
            "linkmeter-bench: LINKMETER_BINARY must name a release build of linkmeter; run `cargo xtask bench`"
        );
        std::process::exit(2);
    }
    let mut report = BTreeMap::new();
    report.insert("machine".to_owned(), machine());
    let only = argument("--only");
    if let Some(only) = &only
        && !SECTIONS.contains(&only.as_str())
    {
        eprintln!(
            "linkmeter-bench: --only takes one of {}, not {only}",
            SECTIONS.join(", ")
        );
        std::process::exit(2);
    }
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let started = Instant::now();
    if wanted("ebpf") {
        eprintln!("[1/7] eBPF cost per packet");
        report.insert("ebpf".to_owned(), ebpf_cost::run(args.reps));
    }
    if wanted("datapath") {
        eprintln!("[2/7] datapath overhead");
        report.insert("datapath".to_owned(), datapath(args.reps));
    }
    if wanted("scrape") || wanted("idle") {
        eprintln!("[3/7 + 4/7] scrape cost and memory");
        let (scrape, idle_ns) = scrape_cost();
        if wanted("scrape") {
            report.insert("scrape".to_owned(), scrape);
        }
        if wanted("idle") {
            eprintln!("[6/7] idle cost ({} s)", args.idle_seconds);
            report.insert("idle".to_owned(), idle(&idle_ns, args.idle_seconds));
        }
    }
    if wanted("attach_latency") {
        eprintln!("[5/7] attach latency");
        report.insert(
            "attach_latency".to_owned(),
            linkmeter_lab::attach::latency(200),
        );
        eprintln!("[5/7] attaching 1,000 interfaces at start");
        report.insert("bulk_attach".to_owned(), linkmeter_lab::attach::bulk(1000));
    }
    if wanted("overlay_scale") {
        eprintln!("[8/8] /metrics of a tunnel device with 5,000 peers, per zone and per peer");
        report.insert(
            "overlay_scale".to_owned(),
            linkmeter_lab::overlay_scale::scale(5000),
        );
    }
    if wanted("drop_storm") {
        eprintln!("[9/9] drop storm: no_socket drops with and without the drop-reason counter");
        report.insert("drop_storm".to_owned(), drop_storm::run(args.reps));
    }
    if wanted("healthz") {
        eprintln!("[7/7] /healthz during resyncs (1,000 legacy tc interfaces)");
        report.insert("healthz".to_owned(), healthz_during_resyncs(1000, 15));
    }
    report.insert(
        "duration_seconds".to_owned(),
        json!(started.elapsed().as_secs()),
    );

    std::fs::create_dir_all(&args.out).expect("create output directory");
    let value = json!(report);
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&value).expect("json") + "\n",
    )
    .expect("write report.json");
    let md = markdown(&value);
    std::fs::write(args.out.join("report.md"), &md).expect("write report.md");
    print!("{md}");
    eprintln!("wrote {}/report.md and report.json", args.out.display());
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "memory": mem, "kernel": kernel})
}

fn summary(samples: &[f64]) -> Value {
    json!(Summary::of(samples))
}

/// Scenario 2: veth throughput with our programs attached vs not, alternating; an empty TC
/// program is measured too, to separate the cost of having any TC program from ours.
fn datapath(reps: usize) -> Value {
    let topo = VethPair::new("dp");
    let mut counters = EbpfCounters::load(&LoadOptions::default()).expect("load linkmeter");
    let mut progs = TestProgs::load();
    let _server = Process::start(&topo.a, "iperf3", &["-s", "-B", A_IP]);
    std::thread::sleep(Duration::from_millis(500));
    let mut tcp: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut udp: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let arms = ["detached", "attached", "empty_program"];
    for rep in 0..reps {
        // Rotate the order of the three arms from one repetition to the next.
        for k in 0..arms.len() {
            let key = arms[(rep + k) % arms.len()];
            let attachment = (key == "attached").then(|| {
                attach_counter(
                    &topo.a,
                    &mut counters,
                    "va",
                    AttachMode::Tcx,
                    Framing::default(),
                )
                .expect("attach")
            });
            if key == "empty_program" {
                topo.a.within(|| progs.attach_tcx(Kind::Noop, "va", true));
            }
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    topo.b.name(),
                    "iperf3",
                    "-c",
                    A_IP,
                    "-t",
                    "3",
                    "-J",
                ])
                .output()
                .expect("iperf3 client");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let gbps = v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0)
                / 1e9;
            tcp.entry(key).or_default().push(gbps);
            let before = link_stats(&topo.a, "va").rx_packets;
            let started = Instant::now();
            udp_flood(&topo.b, B_IP, A_IP, 22, Duration::from_secs(2));
            let received = link_stats(&topo.a, "va").rx_packets - before;
            udp.entry(key)
                .or_default()
                .push(received as f64 / started.elapsed().as_secs_f64());
            drop(attachment);
            if key == "empty_program" {
                progs.detach_all(Kind::Noop);
            }
        }
    }
    let loss = |m: &BTreeMap<&str, Vec<f64>>, arm: &str| {
        let (w, wo) = (
            Summary::of(&m[arm]).median,
            Summary::of(&m["detached"]).median,
        );
        (wo - w) / wo * 100.0
    };
    let arm = |m: &BTreeMap<&str, Vec<f64>>| {
        json!({
            "attached": summary(&m["attached"]),
            "detached": summary(&m["detached"]),
            "empty_program": summary(&m["empty_program"]),
            "loss_percent": loss(m, "attached"),
            "empty_program_loss_percent": loss(m, "empty_program"),
        })
    };
    json!({"tcp_gbps": arm(&tcp), "udp64_pps": arm(&udp)})
}

/// One scrape as Prometheus makes it (`Accept-Encoding: gzip`): milliseconds, body bytes on
/// the wire.
fn get_ms(ns: &NetNs, address: &str) -> (f64, usize) {
    let t = Instant::now();
    let (status, _, body) =
        http::get_bytes(ns, address, "/metrics", &[("Accept-Encoding", "gzip")]).expect("scrape");
    assert_eq!(status, 200);
    (t.elapsed().as_secs_f64() * 1000.0, body.len())
}

/// Scenarios 3 and 4: `/metrics` latency and CPU per scrape at 10, 100 and 1,000 interfaces,
/// linkmeter and node_exporter alternating on the same interfaces; RSS after 100 scrapes.
/// Returns the 1,000-interface namespace for the idle scenario.
fn scrape_cost() -> (Value, Box<(NetNs, Daemon, Process)>) {
    let mut out = serde_json::Map::new();
    let mut keep = None;
    for n in [10usize, 100, 1000] {
        let ns = NetNs::new(&format!("sc{n}"));
        interface_farm(&ns, n.saturating_sub(1));
        let daemon = Daemon::start(&ns, &["--log", "warn"]);
        let exporter = node_exporter(&ns);
        eventually("node_exporter answers", Duration::from_secs(20), || {
            http::get(&ns, NODE_EXPORTER_LISTEN, "/metrics", &[], &[]).ok_or(())
        });
        let lm_pid = daemon.pid();
        for _ in 0..3 {
            get_ms(&ns, LISTEN);
            get_ms(&ns, NODE_EXPORTER_LISTEN);
        }
        let rounds = 100;
        let (mut lm, mut ne) = (Vec::new(), Vec::new());
        let (mut lm_cpu, mut ne_cpu) = (0.0, 0.0);
        let (mut lm_bytes, mut ne_bytes) = (0, 0);
        for i in 0..rounds {
            let order: [bool; 2] = if i % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_lm in order {
                let (pid, address) = if is_lm {
                    (lm_pid, LISTEN)
                } else {
                    (exporter.pid(), NODE_EXPORTER_LISTEN)
                };
                let cpu = cpu_seconds(pid);
                let (ms, bytes) = get_ms(&ns, address);
                let spent = cpu_seconds(pid) - cpu;
                if is_lm {
                    lm.push(ms);
                    lm_cpu += spent;
                    lm_bytes = bytes;
                } else {
                    ne.push(ms);
                    ne_cpu += spent;
                    ne_bytes = bytes;
                }
            }
        }
        let (lm_s, ne_s) = (Summary::of(&lm), Summary::of(&ne));
        let mut entry = json!({
            "interfaces": n,
            "linkmeter": {"latency_ms": lm_s, "cpu_ms_per_scrape": lm_cpu * 1000.0 / rounds as f64, "body_bytes": lm_bytes},
            "node_exporter": {"latency_ms": ne_s, "cpu_ms_per_scrape": ne_cpu * 1000.0 / rounds as f64, "body_bytes": ne_bytes},
            "speedup_p50": ne_s.median / lm_s.median,
            "speedup_p99": ne_s.p99 / lm_s.p99,
        });
        if n == 1000 {
            entry["rss_mib_after_100_scrapes"] =
                json!({"linkmeter": rss_mib(lm_pid), "node_exporter": rss_mib(exporter.pid())});
            entry["concurrent"] = concurrent_scrapes(&ns, lm_s.median, 20, 30);
            keep = Some(Box::new((ns, daemon, exporter)));
        }
        out.insert(n.to_string(), entry);
    }
    (Value::Object(out), keep.expect("1000-interface farm"))
}

/// Scenario 3b: `scrapers` clients scraping linkmeter at the same moment (a barrier releases
/// them), `rounds` times; their latencies against the single-scraper median `single_p50`.
fn concurrent_scrapes(ns: &NetNs, single_p50: f64, scrapers: usize, rounds: usize) -> Value {
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let barrier = std::sync::Barrier::new(scrapers);
        let round: Vec<f64> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..scrapers)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        get_ms(ns, LISTEN).0
                    })
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().expect("scraper"))
                .collect()
        });
        latencies.extend(round);
        std::thread::sleep(Duration::from_millis(100));
    }
    let summary = Summary::of(&latencies);
    json!({
        "scrapers": scrapers,
        "rounds": rounds,
        "latency_ms": summary,
        "p50_over_single_p50": summary.median / single_p50,
    })
}

/// Scenario 7: `/healthz` answer times on one kept-alive connection over `seconds`, every
/// 10 ms, at `count` interfaces all counted with legacy tc (each check of an attachment a
/// filter dump per hook over rtnetlink), with a resync every second and, as the control, with
/// none in that time. What it shows: whether the owner's work — resyncs, checks, kernel
/// answers — ever holds up the server on the daemon's one runtime thread.
fn healthz_during_resyncs(count: usize, seconds: u64) -> Value {
    let mut arms = serde_json::Map::new();
    for (arm, resync) in [("resync_every_second", "1"), ("no_resync", "3600")] {
        let ns = NetNs::new("hz");
        interface_farm(&ns, count);
        let max = (count + 64).to_string();
        let daemon = Daemon::start(
            &ns,
            &[
                "--log",
                "warn",
                "--attach-mode",
                "tc",
                "--override",
                "f*=ebpf",
                "--max-interfaces",
                &max,
                "--resync-interval",
                resync,
            ],
        );
        let attached = http::get(&ns, LISTEN, "/metrics", &[], &[])
            .expect("scrape")
            .body
            .lines()
            .filter(|l| l.starts_with("linkmeter_interface_info") && l.contains("backend=\"ebpf\""))
            .count();
        assert_eq!(attached, count, "every farm interface counted with eBPF");
        let mut connection = ns.within(|| KeptAlive::connect(LISTEN)).expect("connect");
        let cpu = cpu_seconds(daemon.pid());
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            let t = Instant::now();
            assert_eq!(connection.get("/healthz").expect("/healthz"), 200);
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(10));
        }
        let cpu = cpu_seconds(daemon.pid()) - cpu;
        arms.insert(
            arm.to_owned(),
            json!({"ms": summary(&samples), "cpu_percent": cpu / started.elapsed().as_secs_f64() * 100.0}),
        );
        drop(daemon);
    }
    json!({"interfaces": count, "seconds": seconds, "arms": arms})
}

/// Scenario 6: CPU over `seconds` at 1,000 interfaces with a scrape every 15 s, both exporters.
fn idle(farm: &(NetNs, Daemon, Process), seconds: u64) -> Value {
    let (ns, daemon, exporter) = farm;
    let pids = [daemon.pid(), exporter.pid()];
    let before = pids.map(cpu_seconds);
    let started = Instant::now();
    let mut scrapes = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        get_ms(ns, LISTEN);
        get_ms(ns, NODE_EXPORTER_LISTEN);
        scrapes += 1;
        let next = Duration::from_secs(15 * scrapes);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(
                wait.min(Duration::from_secs(seconds).saturating_sub(started.elapsed())),
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = pids.map(cpu_seconds);
    let entry = |i: usize| json!({"cpu_seconds": after[i] - before[i], "cpu_percent": (after[i] - before[i]) / elapsed * 100.0});
    json!({"interfaces": 1000, "seconds": elapsed, "scrapes": scrapes, "linkmeter": entry(0), "node_exporter": entry(1)})
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

/// Renders one section of the report into the Markdown.
type Section = fn(&mut String, &Value);

fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let m = &r["machine"];
    let _ = writeln!(md, "# linkmeter benchmark report\n");
    let _ = writeln!(
        md,
        "Machine: {} cores ({}), {} RAM, Linux {}. Values: median (min–max) over alternating repetitions.\n",
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["memory"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or("")
    );
    if r.get("ebpf").is_some() {
        ebpf_cost::markdown(&mut md, &r["ebpf"]);
    }
    let sections: [(&str, Section); 6] = [
        ("datapath", datapath_section),
        ("scrape", scrape_section),
        ("attach_latency", attach_section),
        ("idle", idle_section),
        ("healthz", healthz_section),
        ("overlay_scale", overlay_scale_section),
    ];
    for (key, section) in sections {
        if r.get(key).is_some() {
            section(&mut md, r);
        }
    }
    if let Some(d) = r.get("drop_storm") {
        if !md.ends_with("\n\n") {
            md.push('\n');
        }
        drop_storm::markdown(&mut md, d);
    }
    md
}

/// Datapath overhead.
fn datapath_section(md: &mut String, r: &Value) {
    let d = &r["datapath"];
    let _ = writeln!(
        md,
        "## 2. Datapath overhead (veth, programs attached vs not; target ≤ 1 % loss)\n"
    );
    let _ = writeln!(
        md,
        "| load | no program | linkmeter attached | loss | empty TC program | loss |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (label, key, digits) in [
        ("TCP bulk (iperf3), Gbit/s", "tcp_gbps", 2),
        ("UDP 64-byte, packets/s", "udp64_pps", 0),
    ] {
        let x = &d[key];
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {:.2} % | {} | {:.2} % |",
            s(&x["detached"], digits),
            s(&x["attached"], digits),
            f(&x["loss_percent"]),
            s(&x["empty_program"], digits),
            f(&x["empty_program_loss_percent"]),
        );
    }
    let _ = writeln!(md);
}

/// Scrape cost, concurrency and memory.
fn scrape_section(md: &mut String, r: &Value) {
    let _ = writeln!(
        md,
        "## 3. Scrape cost vs node_exporter (`netdev` + `ethtool` collectors only)\n"
    );
    let _ = writeln!(
        md,
        "Scrapes as Prometheus makes them (`Accept-Encoding: gzip`).\n\n| interfaces | linkmeter p50 / p99 ms | node_exporter p50 / p99 ms | speed-up p50 (target ≥ 40× at 1,000) | CPU ms/scrape linkmeter / node_exporter | body bytes linkmeter / node_exporter |\n| --- | --- | --- | --- | --- | --- |"
    );
    for n in ["10", "100", "1000"] {
        let x = &r["scrape"][n];
        let _ = writeln!(
            md,
            "| {n} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1}× | {:.2} / {:.2} | {} / {} |",
            f(&x["linkmeter"]["latency_ms"]["median"]),
            f(&x["linkmeter"]["latency_ms"]["p99"]),
            f(&x["node_exporter"]["latency_ms"]["median"]),
            f(&x["node_exporter"]["latency_ms"]["p99"]),
            f(&x["speedup_p50"]),
            f(&x["linkmeter"]["cpu_ms_per_scrape"]),
            f(&x["node_exporter"]["cpu_ms_per_scrape"]),
            x["linkmeter"]["body_bytes"],
            x["node_exporter"]["body_bytes"],
        );
    }
    let c = &r["scrape"]["1000"]["concurrent"];
    let _ = writeln!(
        md,
        "\n**Concurrent scrapers at 1,000 interfaces** ({} scrapers released together, {} rounds; target p50 ≤ 2× the single-scraper p50): p50 {:.2} ms, p99 {:.2} ms, {:.2}× the single-scraper p50.",
        c["scrapers"],
        c["rounds"],
        f(&c["latency_ms"]["median"]),
        f(&c["latency_ms"]["p99"]),
        f(&c["p50_over_single_p50"]),
    );
    let rss = &r["scrape"]["1000"]["rss_mib_after_100_scrapes"];
    let _ = writeln!(
        md,
        "\n## 4. Memory at 1,000 interfaces after 100 scrapes (target: linkmeter ≤ half)\n"
    );
    let _ = writeln!(
        md,
        "| linkmeter RSS | node_exporter RSS | ratio |\n| --- | --- | --- |\n| {:.1} MiB | {:.1} MiB | {:.2} |\n",
        f(&rss["linkmeter"]),
        f(&rss["node_exporter"]),
        f(&rss["linkmeter"]) / f(&rss["node_exporter"])
    );
}

/// Attach latency.
fn attach_section(md: &mut String, r: &Value) {
    let a = &r["attach_latency"];
    let _ = writeln!(
        md,
        "## 5. Attach latency: interface created → first counted packet in `/metrics` ({} interfaces; target p99 ≤ 50 ms)\n",
        a["interfaces"]
    );
    let _ = writeln!(
        md,
        "| p50 ms | p99 ms | min–max ms |\n| --- | --- | --- |\n| {:.1} | {:.1} | {:.1}–{:.1} |\n",
        f(&a["ms"]["median"]),
        f(&a["ms"]["p99"]),
        f(&a["ms"]["min"]),
        f(&a["ms"]["max"])
    );
    let b = &r["bulk_attach"];
    if b.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "A daemon started on a node of {} interfaces (all routed to eBPF): seconds until `/metrics` shows every one counted, from SIGTERM until it has detached every hook and exited, and the kernel's slab memory the attachments took per interface (the slab before the start against the slab with every interface attached; an upper bound).\n\n| mode | attach s | stop s | slab KiB per interface |\n| --- | --- | --- | --- |",
        b["interfaces"]
    );
    for mode in ["tcx", "tc"] {
        let m = &b["modes"][mode];
        let _ = writeln!(
            md,
            "| {mode} | {:.1} | {:.1} | {:.1} |",
            f(&m["attach_seconds"]),
            f(&m["stop_seconds"]),
            f(&m["slab_kib_per_interface"])
        );
    }
    md.push('\n');
}

/// Overlay series at scale.
fn overlay_scale_section(md: &mut String, r: &Value) {
    let o = &r["overlay_scale"];
    if o.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "## 8. `/metrics` of a tunnel device that has seen {} remote nodes (40 scrapes, identity coding)\n\n| overlay_series | body bytes | scrape p50 / p99 ms | daemon CPU ms per scrape |\n| --- | --- | --- | --- |",
        o["peers"]
    );
    for mode in ["zone", "peer"] {
        let m = &o["modes"][mode];
        let _ = writeln!(
            md,
            "| {mode} | {} | {:.2} / {:.2} | {:.2} |",
            m["body_bytes"],
            f(&m["scrape_ms"]["median"]),
            f(&m["scrape_ms"]["p99"]),
            f(&m["cpu_ms_per_scrape"])
        );
    }
    md.push('\n');
}

/// Idle cost.
fn idle_section(md: &mut String, r: &Value) {
    let i = &r["idle"];
    let _ = writeln!(
        md,
        "## 6. Idle cost at 1,000 interfaces, one scrape every 15 s ({:.0} s, {} scrapes)\n",
        f(&i["seconds"]),
        i["scrapes"]
    );
    let _ = writeln!(
        md,
        "| | CPU seconds | CPU % |\n| --- | --- | --- |\n| linkmeter | {:.2} | {:.3} |\n| node_exporter | {:.2} | {:.3} |",
        f(&i["linkmeter"]["cpu_seconds"]),
        f(&i["linkmeter"]["cpu_percent"]),
        f(&i["node_exporter"]["cpu_seconds"]),
        f(&i["node_exporter"]["cpu_percent"])
    );
}

/// `/healthz` during resyncs.
fn healthz_section(md: &mut String, r: &Value) {
    let h = &r["healthz"];
    if h.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## 7. `/healthz` on a kept-alive connection, every 10 ms for {} s, {} interfaces on legacy tc (target: worst ≤ 20 ms with a resync every second)\n",
        h["seconds"], h["interfaces"]
    );
    let _ = writeln!(
        md,
        "| | p50 ms | p99 ms | worst ms | daemon CPU % |\n| --- | --- | --- | --- | --- |"
    );
    for (arm, label) in [
        ("resync_every_second", "resync every second"),
        ("no_resync", "no resync"),
    ] {
        let a = &h["arms"][arm];
        let _ = writeln!(
            md,
            "| {label} | {:.2} | {:.2} | {:.2} | {:.1} |",
            f(&a["ms"]["median"]),
            f(&a["ms"]["p99"]),
            f(&a["ms"]["max"]),
            f(&a["cpu_percent"])
        );
    }
}
