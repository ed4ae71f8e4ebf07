//! `cargo xtask soak`: interface churn against a running daemon (see `linkmeter_lab::soak`).
//! Writes `<out>/soak-<attach mode>.json` and exits 1 when the daemon left anything behind, failed a scrape,
//! leaked descriptors or kept growing.
//!
//! Options: `--minutes M` (default 5), `--pairs N` veth pairs (default 250, i.e. 500 veths),
//! `--vxlans N` (default 50), `--attach-mode auto|tcx|tc` (default auto), `--out DIR` (default
//! `target/soak`).

use std::{path::PathBuf, time::Duration};

use linkmeter_lab::soak::{self, Churn};

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "linkmeter-soak: needs root (network namespaces, eBPF): run `sudo -E cargo xtask soak`"
        );
        std::process::exit(2);
    }
    let mut minutes = 5.0;
    let mut churn = Churn {
        pairs: 250,
        vxlans: 50,
        renamed: 50,
        moved: 50,
    };
    let mut out = PathBuf::from("target/soak");
    let mut mode = String::from("auto");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("linkmeter-soak: {flag} needs a value");
                std::process::exit(2);
            })
        };
        let number = |v: String| -> f64 {
            v.parse().unwrap_or_else(|_| {
                eprintln!("linkmeter-soak: not a number: {v}");
                std::process::exit(2);
            })
        };
        match flag.as_str() {
            "--minutes" => minutes = number(value()),
            "--pairs" => churn.pairs = number(value()) as usize,
            "--vxlans" => churn.vxlans = number(value()) as usize,
            "--out" => out = PathBuf::from(value()),
            "--attach-mode" => mode = value(),
            other => {
                eprintln!("linkmeter-soak: unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    churn.renamed = churn.renamed.min(churn.pairs / 2);
    churn.moved = churn.moved.min(churn.pairs - churn.renamed);
    println!(
        "soak: {} veth pairs and {} vxlan devices per cycle ({} renamed, {} moved to another namespace), attach mode {mode}, {minutes} minutes",
        churn.pairs, churn.vxlans, churn.renamed, churn.moved
    );
    let report = soak::run(
        churn,
        Duration::from_secs_f64(minutes * 60.0),
        &[
            "--resync-interval",
            "5",
            "--breakdown",
            "sv*,sr*",
            "--override",
            "so0=ebpf",
            "--max-interfaces",
            "512",
            "--attach-mode",
            &mode,
        ],
    );
    std::fs::create_dir_all(&out).expect("create the output directory");
    let path = out.join(format!("soak-{mode}.json"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).expect("serialize"),
    )
    .expect("write soak.json");
    println!(
        "{} cycles in {:.0} s; scrapes: {} answered, {} failed; owner's counts exact in {} of {} checks; rivals: {:?}; report: {}",
        report.cycles.len(),
        report.seconds,
        report.scrapes_ok,
        report.scrapes_failed,
        report.exact_checks - report.inexact,
        report.exact_checks,
        report.rivals,
        path.display()
    );
    if report.problems.is_empty() {
        println!("soak: nothing left behind, nothing leaked");
    } else {
        for problem in &report.problems {
            eprintln!("soak: {problem}");
        }
        std::process::exit(1);
    }
}
