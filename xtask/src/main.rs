//! linkmeter's developer tasks. Run as `cargo xtask <task>`:
//!
//! - `build-ebpf`: build the eBPF object with nightly for `bpfel-unknown-none`;
//! - `run [-- ARGS]`: build linkmeter (release) and run it on this machine's interfaces;
//! - `test`: lint, check the floors, and run the whole test suite, including the kernel (eBPF,
//!   netns) tests;
//! - `floors`: check that no module of `collector/src` imports from a higher floor or in a
//!   circle;
//! - `man`: generate man pages from the CLI definition into `target/man`;
//! - `demo`: a Cilium-like node in network namespaces with linkmeter and Prometheus;
//! - `bench`: cost benchmarks against node_exporter and an empty eBPF program;
//! - `soak`: interface churn against a running daemon for minutes;
//! - `fuzz`: the cargo-fuzz targets for the parsers of kernel and user input;
//! - `image`: the OCI image index (buildah, from scratch, a static binary per platform:
//!   linux/amd64 and linux/arm64).
//!
//! Each task installs what it needs when it is missing (nightly `rust-src`, `bpf-linker`,
//! Debian packages) and says so.

mod floors;
mod fuzz;
mod image;
mod prereq;
mod suite;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::prereq::{Tool, cmd, ensure_debian_tools, ensure_ebpf_toolchain, is_root, run};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "linkmeter developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the eBPF object (installs nightly rust-src and bpf-linker when missing).
    BuildEbpf {
        /// Build with the dev profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build linkmeter (release) and run it on this machine's interfaces; needs root.
    Run {
        /// Arguments for `linkmeter` (default: `run`, the daemon on this machine's interfaces).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Generate man pages from the CLI definition into target/man.
    Man,
    /// Benchmarks against node_exporter and an empty eBPF program; writes target/bench; needs root.
    Bench {
        /// Repetitions per comparison.
        #[arg(long, default_value_t = 7)]
        reps: usize,
        /// Length of the idle-cost scenario, seconds.
        #[arg(long, default_value_t = 300)]
        idle_seconds: u64,
        /// Run one section only: ebpf, datapath, scrape, attach_latency, idle, healthz, overlay_scale or drop_storm.
        #[arg(long)]
        only: Option<String>,
    },
    /// A Cilium-like node in network namespaces with traffic, linkmeter and Prometheus; needs root.
    Demo {
        /// Stop after this many seconds (default: at Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Interface churn against a running daemon for minutes (not in CI): 500 veths and 50 vxlan
    /// devices created, renamed, moved and deleted in cycles while scrapers run; fails if
    /// anything leaks. Writes target/soak/soak-<attach mode>.json; needs root.
    Soak {
        /// Minutes to run.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
        /// veth pairs per cycle.
        #[arg(long, default_value_t = 250)]
        pairs: usize,
        /// vxlan devices per cycle.
        #[arg(long, default_value_t = 50)]
        vxlans: usize,
        /// The daemon's attach mode: auto, tcx or tc.
        #[arg(long, default_value = "auto")]
        attach_mode: String,
    },
    /// Run every cargo-fuzz target (nightly, libFuzzer) for a while; fails on a crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// Build the OCI image index `linkmeter` from scratch: per platform, an image around a static
    /// release binary (buildah; other architectures cross-compiled).
    Image {
        /// The image index's name and tag.
        #[arg(long, default_value = "localhost/linkmeter:latest")]
        tag: String,
        /// The platforms of the index, comma-separated.
        #[arg(long, default_value = "linux/amd64,linux/arm64")]
        platform: Vec<String>,
        /// Also save the image as an OCI archive at this path.
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Check that no module of collector/src imports from a higher floor or in a circle.
    Floors,
    /// Check formatting, lints and floors, then run every test, the kernel tests included; needs root.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().task.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

impl Task {
    fn run(self) -> anyhow::Result<()> {
        match self {
            Self::BuildEbpf { debug } => build_ebpf(!debug),
            Self::Run { args } => run_linkmeter(args),
            Self::Test { no_lint, args } => suite::test(no_lint, &args),
            Self::Man => man(),
            Self::Floors => floors::check(&workspace_root()),
            Self::Demo { duration } => demo(duration),
            Self::Bench {
                reps,
                idle_seconds,
                only,
            } => bench(reps, idle_seconds, only.as_deref()),
            Self::Soak {
                minutes,
                pairs,
                vxlans,
                attach_mode,
            } => soak(minutes, pairs, vxlans, &attach_mode),
            Self::Fuzz { seconds, targets } => fuzz::run(&workspace_root(), seconds, &targets),
            Self::Image {
                tag,
                platform,
                save,
            } => image::build(
                &workspace_root(),
                &tag,
                &image::parse_platforms(&platform)?,
                save.as_deref(),
            ),
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

fn build_ebpf(release: bool) -> anyhow::Result<()> {
    ensure_ebpf_toolchain()?;
    let mut build = cmd("rustup");
    build
        .current_dir(workspace_root())
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--package",
            "collector-ebpf",
            "--bins",
        ])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
        );
    if release {
        build.arg("--release");
    }
    run(&mut build)?;
    let profile = if release { "release" } else { "debug" };
    let object = workspace_root().join(format!("target/bpfel-unknown-none/{profile}/linkmeter-tc"));
    println!("eBPF object: {}", object.display());
    Ok(())
}

fn run_linkmeter(args: Vec<String>) -> anyhow::Result<()> {
    ensure_ebpf_toolchain()?;
    if !is_root() {
        bail!("linkmeter attaches eBPF programs and needs root: run `sudo -E cargo xtask run`");
    }
    let binary = build_linkmeter(&workspace_root(), true)?;
    let args = if args.is_empty() {
        vec!["run".to_owned()]
    } else {
        args
    };
    run(cmd(binary.to_str().context("non-UTF-8 workspace path")?).args(&args))
}

/// Installs what a root task needs, checks that it runs as root (`what` names it in the
/// message), and returns the workspace root.
fn prepare_root_task(tools: &[&[Tool]], what: &str, task: &str) -> anyhow::Result<PathBuf> {
    ensure_ebpf_toolchain()?;
    for t in tools {
        ensure_debian_tools(t)?;
    }
    if !is_root() {
        bail!(
            "{what} creates network namespaces and loads eBPF programs: run `sudo -E cargo xtask {task}`"
        );
    }
    Ok(workspace_root())
}

/// Builds `linkmeter` (`release` or dev profile) and returns its path.
fn build_linkmeter(root: &std::path::Path, release: bool) -> anyhow::Result<PathBuf> {
    let mut build = cmd("cargo");
    build
        .current_dir(root)
        .args(["build", "--package", "collector", "--bin", "linkmeter"]);
    if release {
        build.arg("--release");
    }
    run(&mut build)?;
    Ok(root.join(if release {
        "target/release/linkmeter"
    } else {
        "target/debug/linkmeter"
    }))
}

fn demo(duration: Option<f64>) -> anyhow::Result<()> {
    let root = prepare_root_task(&[suite::TEST_TOOLS], "the demo", "demo")?;
    // Build linkmeter first so the lab starts at once.
    build_linkmeter(&root, false)?;
    let mut lab = cmd("cargo");
    lab.current_dir(&root).args([
        "run",
        "--quiet",
        "--package",
        "linkmeter-lab",
        "--bin",
        "linkmeter-lab",
    ]);
    if let Some(d) = duration {
        lab.args(["--", "--duration", &d.to_string()]);
    }
    run(&mut lab)
}

/// What the benchmarks run besides linkmeter.
const BENCH_TOOLS: &[Tool] = &[
    Tool {
        command: "iperf3",
        package: "iperf3",
        why: "TCP bulk throughput in the datapath benchmark",
    },
    Tool {
        command: "prometheus-node-exporter",
        package: "prometheus-node-exporter",
        why: "the peer of the scrape-cost benchmark",
    },
];

fn bench(reps: usize, idle_seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    let root = prepare_root_task(&[suite::TEST_TOOLS, BENCH_TOOLS], "the benchmark", "bench")?;
    let mut args = vec![
        "--reps".to_owned(),
        reps.to_string(),
        "--idle-seconds".to_owned(),
        idle_seconds.to_string(),
    ];
    if let Some(only) = only {
        args.extend(["--only".to_owned(), only.to_owned()]);
    }
    run_lab_binary(&root, "linkmeter-bench", &args, "target/bench")
}

fn soak(minutes: f64, pairs: usize, vxlans: usize, attach_mode: &str) -> anyhow::Result<()> {
    let root = prepare_root_task(&[suite::TEST_TOOLS], "the soak", "soak")?;
    let args = [
        "--minutes".to_owned(),
        minutes.to_string(),
        "--pairs".to_owned(),
        pairs.to_string(),
        "--vxlans".to_owned(),
        vxlans.to_string(),
        "--attach-mode".to_owned(),
        attach_mode.to_owned(),
    ];
    run_lab_binary(&root, "linkmeter-soak", &args, "target/soak")
}

/// Builds the release `linkmeter`, then runs `bin` of the `linkmeter-lab` package with `args`
/// and `--out <root>/<out>`, pointing it at that binary.
fn run_lab_binary(root: &Path, bin: &str, args: &[String], out: &str) -> anyhow::Result<()> {
    let binary = build_linkmeter(root, true)?;
    run(cmd("cargo")
        .current_dir(root)
        .args(["run", "--release", "--quiet", "--package", "linkmeter-lab"])
        .args(["--bin", bin, "--"])
        .args(args)
        .arg("--out")
        .arg(root.join(out))
        .env("LINKMETER_BINARY", binary))
}

fn man() -> anyhow::Result<()> {
    ensure_ebpf_toolchain()?;
    let root = workspace_root();
    let binary = build_linkmeter(&root, true)?;
    let dir = root.join("target/man");
    run(cmd(binary.to_str().context("non-UTF-8 workspace path")?)
        .args(["man", "--dir"])
        .arg(&dir))?;
    println!("man pages: {}", dir.display());
    Ok(())
}
