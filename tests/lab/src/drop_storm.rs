//! Scenario 9 of `cargo xtask bench` (`--only drop_storm`): a storm of drops, and what the
//! drop-reason counter (the `kfree_skb` tracing program) costs in it.
//!
//! Namespace `a` floods 22-byte UDP datagrams at a closed port of namespace `b` (IPv6 off in
//! both): every one is dropped in `b` as `no_socket`. Four configurations take turns within
//! every repetition (rotating order), so that a slow minute of the VM falls on all of them: no
//! daemon; `linkmeter run --drop-reasons=false` in `b`; `linkmeter run` in `b`; and the last
//! again with `kernel.bpf_stats_enabled=1` and an empty program on the same tracepoint
//! (`variant-drops-empty`), which gives the program's run time per event net of the empty one.
//! Drops are `b`'s `Udp NoPorts` delta (`/proc/net/snmp`), which the daemon's
//! `linkmeter_interface_drops_total{interface="vb",reason="no_socket"}` must equal exactly.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::{Duration, Instant},
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{BtfTracePoint, ProgramInfo, loaded_programs},
};
use collector_common::drops::{DROP_PROGRAM, DROP_TRACEPOINT};
use integration_tests::{
    daemon::{Daemon, scrape},
    netns::NetNs,
    topology::{A_IP, B_IP, VethPair},
    variants::drops_empty_object,
};
use serde_json::{Value, json};

use crate::bench::{BpfStats, Summary, prog_stats, udp_flood};

/// Length of one flood.
const SECONDS: u64 = 3;
/// Payload of a datagram: 64-byte Ethernet frames.
const PAYLOAD: usize = 22;
/// The configurations, in the report's order.
const CONFIGS: [&str; 4] = [
    "no_daemon",
    "drop_reasons_off",
    "drop_reasons_on",
    "drop_reasons_on_with_empty_program",
];
/// The samples of every configuration (per run), by key.
const PER_CONFIG: [&str; 6] = [
    "drops_per_second",
    "cpu_seconds_per_million_drops",
    "sender_seconds_per_million_drops",
    "ksoftirqd_seconds_per_million_drops",
    "daemon_seconds_per_million_drops",
    "machine_busy_seconds_per_million_drops",
];
/// The samples of the run time per event (per run with the empty program), by key.
const PER_EVENT: [&str; 5] = [
    "linkmeter_ns",
    "empty_ns",
    "net_ns",
    "linkmeter_runs_per_drop",
    "empty_runs_per_drop",
];
/// The series the daemon must count every drop in.
const SERIES: &str = "linkmeter_interface_drops_total";

/// `Udp NoPorts` of the calling thread's network namespace.
fn no_ports() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let [names, values] = udp[..] else {
        panic!("no Udp lines in /proc/net/snmp")
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "NoPorts")
        .and_then(|(_, v)| v.parse().ok())
        .expect("Udp NoPorts")
}

/// Busy CPU seconds of the whole machine since boot, from `/proc/stat`: user, nice, system,
/// irq and softirq (idle, iowait and steal are not).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
    let t: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .flat_map(str::parse)
        .collect();
    let at = |i: usize| t.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal, in USER_HZ (100 on Linux/x86).
    (at(0) + at(1) + at(2) + at(5) + at(6)) / 100.0
}

/// Nanoseconds a task has run, from its `schedstat` (0 once it is gone).
fn run_ns(task: &str) -> u64 {
    std::fs::read_to_string(format!("{task}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The task directories under `dir` (`/proc` or `/proc/PID/task`) whose `comm` `keep`s.
fn tasks(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let entries = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok);
    entries
        .map(|e| e.path().display().to_string())
        .filter(|t| std::fs::read_to_string(format!("{t}/comm")).is_ok_and(|c| keep(&c)))
        .collect()
}

/// CPU ns so far of the work a flood causes: [the calling thread (the sender, with the
/// receive path its softirqs run inline), every `ksoftirqd`, every thread of `daemon`].
fn involved(softirqds: &[String], daemon: Option<u32>) -> [u64; 3] {
    let threads = daemon.map_or_else(Vec::new, |pid| {
        tasks(&format!("/proc/{pid}/task"), |_| true)
    });
    let sum = |tasks: &[String]| tasks.iter().map(|t| run_ns(t)).sum();
    [run_ns("/proc/thread-self"), sum(softirqds), sum(&threads)]
}

/// The daemon's count for `vb`, `no_socket` (0 before its first drop).
fn exported(b: &NetNs) -> u64 {
    let value = scrape(b).value(SERIES, &[("interface", "vb"), ("reason", "no_socket")]);
    value.map_or(0, |v| v as u64)
}

/// The loaded programs named as the drop program.
fn drop_programs() -> Vec<ProgramInfo> {
    loaded_programs()
        .filter_map(Result::ok)
        // The kernel keeps 15 characters of a name (`BPF_OBJ_NAME_LEN`).
        .filter(|p| p.name_as_str() == DROP_PROGRAM.get(..15))
        .collect()
}

/// Id of the drop program the process `pid` holds (its program and link fds name it in their
/// `fdinfo`).
fn program_of(pid: u32) -> u32 {
    let held: BTreeSet<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("daemon's fdinfo")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    drop_programs()
        .iter()
        .map(ProgramInfo::id)
        .find(|id| held.contains(id))
        .expect("the daemon holds its kfree_skb program")
}

/// The (only) program of `ebpf`, the empty one.
fn program(ebpf: &mut Ebpf) -> &mut BtfTracePoint {
    let program = ebpf.program_mut(DROP_PROGRAM).expect("program");
    program.try_into().expect("a BTF tracepoint program")
}

/// The summary of the samples `name` (null if none).
fn summary(samples: &BTreeMap<String, Vec<f64>>, name: &str) -> Value {
    samples
        .get(name)
        .map_or(Value::Null, |v| json!(Summary::of(v)))
}

/// Runs the scenario with `reps` repetitions of every configuration.
pub fn run(reps: usize) -> Value {
    let topo = VethPair::new("ds");
    for ns in [&topo.a, &topo.b] {
        let knobs = ["all", "default"].map(|k| format!("net.ipv6.conf.{k}.disable_ipv6=1"));
        ns.exec(&["sysctl", "-qw", &knobs[0], &knobs[1]]);
    }
    let softirqds = tasks("/proc", |comm| comm.starts_with("ksoftirqd/"));
    let load_before = loadavg();
    let mut empty = EbpfLoader::new()
        .load(drops_empty_object())
        .expect("load variant-drops-empty");
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    program(&mut empty)
        .load(DROP_TRACEPOINT, &btf)
        .expect("verify");
    let mine = program(&mut empty).info().expect("info").id();
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut checks = Vec::new();
    let mut foreign = 0;
    for rep in 0..reps {
        for k in 0..CONFIGS.len() {
            let config = CONFIGS[(rep + k) % CONFIGS.len()];
            let daemon = match config {
                "no_daemon" => None,
                "drop_reasons_off" => Some(Daemon::start(
                    &topo.b,
                    &["--log", "warn", "--drop-reasons=false"],
                )),
                _ => Some(Daemon::start(&topo.b, &["--log", "warn"])),
            };
            let with_empty = config == "drop_reasons_on_with_empty_program";
            let stats = with_empty.then(BpfStats::enable);
            let link = with_empty.then(|| program(&mut empty).attach().expect("attach"));
            let ids = match (&daemon, with_empty) {
                (Some(d), true) => Some([program_of(d.pid()), mine]),
                _ => None,
            };
            if ids.is_some() {
                // Besides the daemon's and the empty one.
                foreign = foreign.max(drop_programs().len().saturating_sub(2));
            }
            std::thread::sleep(Duration::from_millis(300));
            let counting = config.starts_with("drop_reasons_on");
            let exported_before = if counting { exported(&topo.b) } else { 0 };
            let before = topo.b.within(no_ports);
            let program_before = ids.map(|ids| ids.map(prog_stats));
            let pid = daemon.as_ref().map(Daemon::pid);
            let (cpu_before, busy_before) = (involved(&softirqds, pid), machine_busy());
            let started = Instant::now();
            udp_flood(&topo.a, A_IP, B_IP, PAYLOAD, Duration::from_secs(SECONDS));
            let elapsed = started.elapsed().as_secs_f64();
            let (cpu_after, busy_after) = (involved(&softirqds, pid), machine_busy());
            let program_after = ids.map(|ids| ids.map(prog_stats));
            std::thread::sleep(Duration::from_millis(200));
            let drops = topo.b.within(no_ports) - before;
            let d = drops.max(1) as f64;
            // CPU ns per drop = CPU seconds per million drops ÷ 1,000.
            let spent = |i: usize| (cpu_after[i] - cpu_before[i]) as f64 / d / 1e3;
            let values = [
                drops as f64 / elapsed,
                spent(0) + spent(1) + spent(2),
                spent(0),
                spent(1),
                spent(2),
                (busy_after - busy_before) / d * 1e6,
            ];
            for (key, value) in PER_CONFIG.into_iter().zip(values) {
                samples
                    .entry(format!("{config}.{key}"))
                    .or_default()
                    .push(value);
            }
            if counting {
                let counted = exported(&topo.b) - exported_before;
                checks
                    .push(json!({"configuration": config, "no_ports": drops, "exported": counted}));
            }
            if let (Some(b), Some(a)) = (program_before, program_after) {
                let per_event =
                    |i: usize| (a[i].0 - b[i].0) as f64 / ((a[i].1 - b[i].1).max(1)) as f64;
                let (ours, base) = (per_event(0), per_event(1));
                let runs = |i: usize| (a[i].1 - b[i].1) as f64 / d;
                let values = [ours, base, ours - base, runs(0), runs(1)];
                for (key, value) in PER_EVENT.into_iter().zip(values) {
                    samples.entry(key.to_owned()).or_default().push(value);
                }
            }
            if let Some(link) = link {
                program(&mut empty).detach(link).expect("detach");
            }
            drop(stats);
            if let Some(daemon) = daemon {
                daemon.stop();
            }
        }
    }
    let base = f(&summary(&samples, "no_daemon.drops_per_second")["median"]);
    let configs: serde_json::Map<String, Value> = CONFIGS
        .iter()
        .map(|c| {
            let rate = summary(&samples, &format!("{c}.drops_per_second"));
            let loss = (base - f(&rate["median"])) / base * 100.0;
            let mut v: serde_json::Map<String, Value> = PER_CONFIG
                .into_iter()
                .map(|k| (k.to_owned(), summary(&samples, &format!("{c}.{k}"))))
                .collect();
            v.insert("loss_percent".to_owned(), json!(loss));
            ((*c).to_owned(), Value::Object(v))
        })
        .collect();
    let exact = checks
        .iter()
        .filter(|c| c["no_ports"] == c["exported"])
        .count();
    let per_event: serde_json::Map<String, Value> = PER_EVENT
        .into_iter()
        .map(|k| (k.to_owned(), summary(&samples, k)))
        .collect();
    json!({
        "seconds_per_run": SECONDS,
        "payload_bytes": PAYLOAD,
        "reps": reps,
        "configs": configs,
        "exactness": {"runs": checks.len(), "exact": exact, "checks": checks},
        "per_event": per_event,
        "other_drop_programs_loaded": foreign,
        "loadavg": {"before": load_before, "after": loadavg()},
    })
}

/// The first field of `/proc/loadavg` (the 1-minute load average).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
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

/// The Markdown of the scenario's result `r` (the value [`run`] returned).
pub fn markdown(md: &mut String, r: &Value) {
    let _ = writeln!(
        md,
        "## 9. Drop storm: {}-byte UDP datagrams to a closed port (every one a `no_socket` drop), {} s per run, {} repetitions\n",
        r["payload_bytes"], r["seconds_per_run"], r["reps"]
    );
    let _ = writeln!(
        md,
        "| configuration | drops/s in the receiver | vs no daemon | CPU s per million drops | of which the daemon | whole machine busy, s per million drops |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (key, label) in [
        ("no_daemon", "no daemon"),
        ("drop_reasons_off", "`linkmeter run --drop-reasons=false`"),
        ("drop_reasons_on", "`linkmeter run` (drop reasons on)"),
        (
            "drop_reasons_on_with_empty_program",
            "drop reasons on + empty program, `bpf_stats_enabled=1`",
        ),
    ] {
        let c = &r["configs"][key];
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} |",
            s(&c["drops_per_second"], 0),
            if key == "no_daemon" {
                "—".to_owned()
            } else {
                format!("{:+.1} %", -f(&c["loss_percent"]))
            },
            s(&c["cpu_seconds_per_million_drops"], 2),
            s(&c["daemon_seconds_per_million_drops"], 3),
            s(&c["machine_busy_seconds_per_million_drops"], 2),
        );
    }
    let e = &r["exactness"];
    let _ = writeln!(
        md,
        "\nDrops: the receiver namespace's `Udp NoPorts` delta over the flood (`/proc/net/snmp` read in it), per second of the flood (one sending thread). CPU: run time (`schedstat`) over the flood of the sending thread (which runs the receive path inline, in the softirq of its own transmit), of `ksoftirqd` and of every thread of the daemon, per million drops; the whole machine's busy time (`/proc/stat`: user, nice, system, irq, softirq) is for reference: other tenants' work is in it. The 1-minute load average was {:.2} before and {:.2} after. Exactness: in {} of {} runs with drop reasons on, `linkmeter_interface_drops_total{{interface=\"vb\",reason=\"no_socket\"}}` rose by exactly the `NoPorts` delta (NoPorts / exported, per run: {}).",
        f(&r["loadavg"]["before"]),
        f(&r["loadavg"]["after"]),
        e["exact"],
        e["runs"],
        e["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} / {}", c["no_ports"], c["exported"]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let p = &r["per_event"];
    let _ = writeln!(
        md,
        "\nCost per `kfree_skb` event (`kernel.bpf_stats_enabled=1`, run time ÷ run count of each program over the flood, the two on the same tracepoint in the same run):\n\n| program | ns/event | runs per drop |\n| --- | --- | --- |\n| linkmeter_kfree_skb | {} | {} |\n| empty program | {} | {} |\n| net | {} | |",
        s(&p["linkmeter_ns"], 1),
        s(&p["linkmeter_runs_per_drop"], 4),
        s(&p["empty_ns"], 1),
        s(&p["empty_runs_per_drop"], 4),
        s(&p["net_ns"], 1),
    );
    let other = r["other_drop_programs_loaded"].as_u64().unwrap_or(0);
    if other > 0 {
        let _ = writeln!(
            md,
            "\nNote: {other} other program(s) named `{}` were loaded during the run (they fire on the same events).",
            DROP_PROGRAM
        );
    }
    md.push('\n');
}
