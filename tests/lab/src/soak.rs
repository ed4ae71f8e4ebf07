//! `cargo xtask soak` (binary `linkmeter-soak`): interface churn against a running daemon.
//!
//! Each cycle creates veth pairs and vxlan devices in one burst, renames some, moves some to
//! another network namespace, then deletes them all, while scrapers hit `/metrics` without a
//! pause. Between cycles, with none of those devices left, the daemon must be back where it
//! started: no map slot, TCX link or tc filter of ours left, as many file descriptors, and a
//! resident memory that stops growing after the first cycles.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

use integration_tests::{
    daemon::{Daemon, LISTEN, Metrics},
    http,
    netns::NetNs,
};

use crate::bench::rss_mib;

mod rivals;

pub use self::rivals::Rival;
use self::rivals::{Rivals, exact, rival_problems, steady_pair};

/// What to churn.
#[derive(Clone, Copy, Debug)]
pub struct Churn {
    /// veth pairs per cycle (two interfaces each).
    pub pairs: usize,
    /// vxlan devices per cycle.
    pub vxlans: usize,
    /// Of the pairs, how many are renamed, and how many have a side moved to another namespace.
    pub renamed: usize,
    /// See `renamed`.
    pub moved: usize,
}

/// The daemon's state between cycles, when none of the churned devices exist.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Steady {
    /// `linkmeter_ebpf_slots{state="used"}`.
    pub slots_used: u64,
    /// TCX links of linkmeter programs in the kernel.
    pub links: usize,
    /// tc filters of linkmeter programs on the namespaces' interfaces.
    pub filters: usize,
    /// Open file descriptors of the daemon.
    pub fds: usize,
    /// Resident memory of the daemon, MiB.
    pub rss_mib: f64,
    /// Interfaces in `/metrics`.
    pub interfaces: usize,
}

/// One cycle's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Cycle {
    /// 1-based.
    pub n: usize,
    /// Seconds until every new device was routed.
    pub routed_seconds: f64,
    /// Seconds until every device was gone from `/metrics` after the deletion.
    pub gone_seconds: f64,
    /// The state afterwards.
    pub after: Steady,
}

/// Scrapes `/metrics` in a loop on a thread, counting answers and failures.
struct Scraper {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    fn start(ns: &NetNs, paused: &Arc<AtomicBool>) -> Self {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let p = Arc::clone(paused);
        let name = ns.name().to_owned();
        let thread = std::thread::spawn(move || {
            let ns = NetNs::borrowed(&name);
            while !s.load(Ordering::Relaxed) {
                if p.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                match http::get(&ns, LISTEN, "/metrics", &[], &[]) {
                    Some(r) if r.status == 200 => o.fetch_add(1, Ordering::Relaxed),
                    _ => f.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        Self {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops; (answered, failed).
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs `ip -n <ns> -batch` over `lines`.
fn ip_batch(ns: &NetNs, lines: &[String]) {
    let path = std::env::temp_dir().join(format!("{}.soak.batch", ns.name()));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write batch");
    ns.exec(&["ip", "-batch", path.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&path);
}

fn scrape(ns: &NetNs) -> Option<Metrics> {
    http::get(ns, LISTEN, "/metrics", &[], &[])
        .filter(|r| r.status == 200)
        .map(|r| Metrics(r.body))
}

/// Churned interfaces (`sv…`, `sp…`, `sr…`, `sx…`) that `/metrics` lists.
fn churned(m: &Metrics) -> BTreeSet<String> {
    m.routing()
        .into_keys()
        .filter(|n| ["sv", "sp", "sr", "sx"].iter().any(|p| n.starts_with(p)))
        .collect()
}

/// Waits until the churned interfaces in `/metrics` are `want`; seconds taken.
fn wait_for(ns: &NetNs, want: &BTreeSet<String>, what: &str) -> f64 {
    let start = Instant::now();
    loop {
        if let Some(m) = scrape(ns)
            && churned(&m) == *want
        {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "soak: {what} not reflected in /metrics within 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// TCX links whose program is linkmeter's.
fn linkmeter_links() -> usize {
    let ours: BTreeSet<u32> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("linkmeter")))
        .map(|p| p.id())
        .collect();
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| ours.contains(&l.program_id()))
        .count()
}

/// tc filters running linkmeter programs on every interface of `namespaces`.
fn linkmeter_filters(namespaces: &[&NetNs]) -> usize {
    let mut n = 0;
    for ns in namespaces {
        let links = ns.ip(&["-o", "link", "show"]);
        for name in links
            .lines()
            .filter_map(|l| l.split(": ").nth(1)?.split('@').next())
        {
            for hook in ["ingress", "egress"] {
                let out = std::process::Command::new("tc")
                    .args(["-n", ns.name(), "filter", "show", "dev", name, hook])
                    .output();
                if let Ok(out) = out {
                    n += String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter(|l| l.contains("linkmeter_"))
                        .count();
                }
            }
        }
    }
    n
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn steady(ns: &NetNs, other: &NetNs, daemon: &Daemon) -> Steady {
    let m = scrape(ns).expect("scrape");
    Steady {
        slots_used: m
            .value("linkmeter_ebpf_slots", &[("state", "used")])
            .unwrap_or(-1.0) as u64,
        links: linkmeter_links(),
        filters: linkmeter_filters(&[ns, other]),
        fds: fds(daemon.pid()),
        rss_mib: rss_mib(daemon.pid()),
        interfaces: m.routing().len(),
    }
}

/// The names of one cycle's devices, and the batches that make and unmake them.
fn plan(churn: Churn, other: &NetNs) -> [Vec<String>; 3] {
    let mut create = Vec::new();
    for i in 0..churn.pairs {
        create.push(format!("link add sv{i} type veth peer sp{i}"));
    }
    for j in 0..churn.vxlans {
        create.push(format!(
            "link add sx{j} type vxlan id {} dstport 4789",
            j + 1
        ));
        create.push(format!("link set sx{j} up"));
    }
    let mut change = Vec::new();
    for i in 0..churn.renamed {
        change.push(format!("link set sv{i} name sr{i}"));
    }
    for i in churn.renamed..churn.renamed + churn.moved {
        change.push(format!("link set sp{i} netns {}", other.name()));
    }
    let mut delete = Vec::new();
    for i in 0..churn.pairs {
        let name = if i < churn.renamed { "sr" } else { "sv" };
        delete.push(format!("link del {name}{i}"));
    }
    for j in 0..churn.vxlans {
        delete.push(format!("link del sx{j}"));
    }
    [create, change, delete]
}

/// The churned names `/metrics` should list after creating, and after changing.
fn expected(churn: Churn) -> [BTreeSet<String>; 2] {
    let mut created = BTreeSet::new();
    for i in 0..churn.pairs {
        created.insert(format!("sv{i}"));
        created.insert(format!("sp{i}"));
    }
    for j in 0..churn.vxlans {
        created.insert(format!("sx{j}"));
    }
    let mut changed = created.clone();
    for i in 0..churn.renamed {
        changed.remove(&format!("sv{i}"));
        changed.insert(format!("sr{i}"));
    }
    for i in churn.renamed..churn.renamed + churn.moved {
        changed.remove(&format!("sp{i}"));
    }
    [created, changed]
}

/// The whole soak's outcome.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was churned per cycle.
    pub pairs: usize,
    /// See [`Churn`].
    pub vxlans: usize,
    /// Seconds run.
    pub seconds: f64,
    /// Before the first cycle.
    pub baseline: Steady,
    /// Every cycle.
    pub cycles: Vec<Cycle>,
    /// Scrapes answered with 200.
    pub scrapes_ok: u64,
    /// Scrapes that failed.
    pub scrapes_failed: u64,
    /// How the two daemons started halfway ended.
    pub rivals: Vec<Rival>,
    /// Checks of the owner's counts on the steady pair (after every cycle), and how many were
    /// not exact.
    pub exact_checks: usize,
    /// See `exact_checks`.
    pub inexact: usize,
    /// What is wrong, if anything.
    pub problems: Vec<String>,
}

/// Runs cycles of `churn` for `duration` against a daemon started with `daemon_args`.
pub fn run(churn: Churn, duration: Duration, daemon_args: &[&str]) -> Report {
    let ns = NetNs::new("soak");
    let other = NetNs::new("soakmv");
    steady_pair(&ns, &other);
    let daemon = Daemon::start(&ns, daemon_args);
    let baseline = steady(&ns, &other, &daemon);
    let (mut rivals, mut ended) = (None, Vec::new());
    let (mut exact_checks, mut inexact) = (0, Vec::new());
    let paused = Arc::new(AtomicBool::new(false));
    let scrapers = [Scraper::start(&ns, &paused), Scraper::start(&ns, &paused)];
    let [create, change, delete] = plan(churn, &other);
    let [created, changed] = expected(churn);
    let start = Instant::now();
    let mut cycles = Vec::new();
    while start.elapsed() < duration || cycles.is_empty() {
        ip_batch(&ns, &create);
        let routed_seconds = wait_for(&ns, &created, "creation");
        ip_batch(&ns, &change);
        wait_for(&ns, &changed, "renames and moves");
        ip_batch(&ns, &delete);
        let gone_seconds = wait_for(&ns, &BTreeSet::new(), "deletion");
        // Moved peers went with their pair; the other namespace is empty again. The scrapers
        // pause so that their connections do not count as the daemon's descriptors.
        paused.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let after = steady(&ns, &other, &daemon);
        paused.store(false, Ordering::Relaxed);
        exact_checks += 1;
        if let Some(wrong) = exact(&ns, &other, || scrape(&ns)) {
            inexact.push(format!("cycle {}: {wrong}", cycles.len() + 1));
        }
        if rivals.is_none() && ended.is_empty() && start.elapsed() >= duration / 2 {
            println!("soak: halfway; starting two more daemons on the node");
            rivals = Some(Rivals::start(&ns, daemon_args));
        } else if let Some(started) = rivals.take() {
            ended = started.finish();
            println!("soak: the two rivals ended: {ended:?}");
        }
        println!(
            "cycle {:>3}: routed in {routed_seconds:.2} s, gone in {gone_seconds:.2} s; slots {} links {} filters {} fds {} rss {:.1} MiB",
            cycles.len() + 1,
            after.slots_used,
            after.links,
            after.filters,
            after.fds,
            after.rss_mib
        );
        cycles.push(Cycle {
            n: cycles.len() + 1,
            routed_seconds,
            gone_seconds,
            after,
        });
    }
    let (mut scrapes_ok, mut scrapes_failed) = (0, 0);
    for scraper in scrapers {
        let (ok, failed) = scraper.stop();
        scrapes_ok += ok;
        scrapes_failed += failed;
    }
    if let Some(started) = rivals.take() {
        ended = started.finish();
    }
    let mut problems = problems(&baseline, &cycles, scrapes_failed, &daemon);
    if ended.is_empty() {
        problems.push("the rivals never ran (too short a soak)".to_owned());
    }
    problems.extend(rival_problems(&ended));
    let inexact_count = inexact.len();
    problems.extend(inexact);
    drop(daemon);
    Report {
        pairs: churn.pairs,
        vxlans: churn.vxlans,
        seconds: start.elapsed().as_secs_f64(),
        baseline,
        cycles,
        scrapes_ok,
        scrapes_failed,
        rivals: ended,
        exact_checks,
        inexact: inexact_count,
        problems,
    }
}

/// What the soak finds wrong: failed scrapes, anything of ours left after a cycle, descriptors
/// that grow, memory that keeps growing after warm-up, an ERROR in the log.
fn problems(baseline: &Steady, cycles: &[Cycle], failed: u64, daemon: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    if failed > 0 {
        out.push(format!("{failed} scrapes failed"));
    }
    for c in cycles {
        let a = &c.after;
        if (a.slots_used, a.links, a.filters, a.interfaces)
            != (
                baseline.slots_used,
                baseline.links,
                baseline.filters,
                baseline.interfaces,
            )
        {
            out.push(format!(
                "cycle {}: left behind {a:?} (baseline {baseline:?})",
                c.n
            ));
        }
        // The first attachment opens the namespace handle attachments are removed from
        // (one descriptor, kept): descriptors may not grow after the first cycle.
        let warm = cycles.first().map_or(baseline.fds, |first| first.after.fds);
        if a.fds > warm || warm > baseline.fds + 1 {
            out.push(format!(
                "cycle {}: {} fds (baseline {}, after cycle 1 {warm})",
                c.n, a.fds, baseline.fds
            ));
        }
    }
    // Warm-up: the first two cycles grow the allocator's arenas; after that, flat within 10 %.
    if let (Some(warm), Some(last)) = (cycles.get(1), cycles.last())
        && last.after.rss_mib > warm.after.rss_mib * 1.10
    {
        out.push(format!(
            "RSS grew from {:.1} MiB after cycle 2 to {:.1} MiB after cycle {}",
            warm.after.rss_mib, last.after.rss_mib, last.n
        ));
    }
    let errors = daemon.log_lines_at("ERROR").len();
    if errors > 0 {
        out.push(format!("{errors} ERROR lines in the daemon's log"));
    }
    out
}
