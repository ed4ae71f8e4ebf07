//! `cargo xtask fuzz`: the cargo-fuzz targets under `fuzz/` (libFuzzer, nightly, AddressSanitizer,
//! debug assertions on so that an integer overflow is a finding too). The smoke run of
//! `cargo xtask test` builds them unoptimized and without a sanitizer instead (debug assertions
//! stay on): that build takes less than half the time, and a few seconds need no speed.
//!
//! The targets are whatever `cargo fuzz list` names (the `[[bin]]` entries of
//! `fuzz/Cargo.toml`), so adding one needs no change here. Each runs on its committed seed
//! corpus `fuzz/corpus/<target>/`, which stays as it is: what the fuzzer finds goes to a work
//! corpus `fuzz/target/corpus/<target>/` that later runs start from. A dictionary
//! `fuzz/dict/<target>.dict`, where there is one, is passed to libFuzzer. A crash (a panic, a
//! failed assertion, a sanitizer report, a timeout) fails the task; its input is in
//! `fuzz/artifacts/<target>/` and the full log in `fuzz/target/logs/<target>.log`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::prereq::{cmd, ensure_ebpf_toolchain, run as run_command};

/// The cargo-fuzz release `cargo xtask fuzz` installs when `cargo fuzz` is missing.
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

/// Seconds per target of [`smoke`].
const SMOKE_SECONDS: u64 = 5;

/// libFuzzer's limit on one input, seconds: an input this slow is reported as a crash (hang).
const TIMEOUT_SECONDS: u64 = 25;

/// Runs each target (all when `targets` is empty) for `seconds`.
pub(crate) fn run(root: &Path, seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    let fuzz = Fuzz::prepare(root, FULL)?;
    let targets = fuzz.select(targets)?;
    fuzz.build()?;
    fuzz.run_all(&targets, seconds)
}

/// A short run of every target (the smoke test of `cargo xtask test`): builds them and runs
/// each for a few seconds on its seeds; fails on a crash.
pub(crate) fn smoke(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let fuzz = Fuzz::prepare(root, SMOKE)?;
    let targets = fuzz.select(&[])?;
    fuzz.build()?;
    fuzz.run_all(&targets, SMOKE_SECONDS)?;
    println!(
        "fuzz smoke run: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `cargo fuzz build`/`run` options of the long runs: optimized, AddressSanitizer, debug
/// assertions.
const FULL: &[&str] = &["--release", "--debug-assertions"];

/// The options of the smoke run: the dev profile (debug assertions on), no sanitizer.
const SMOKE: &[&str] = &["--dev", "--sanitizer", "none"];

/// The fuzz crate of a workspace, with its tools installed.
struct Fuzz {
    /// `<root>/fuzz`.
    dir: PathBuf,
    /// [`FULL`] or [`SMOKE`]: the same for the build and the runs, or each run would rebuild.
    options: &'static [&'static str],
}

/// What one run of a target did, from libFuzzer's final statistics.
#[derive(Debug, Default)]
struct Outcome {
    /// Inputs executed.
    executions: Option<u64>,
    /// Coverage: edges (`cov`) and features (`ft`) at the end.
    cov: Option<u64>,
    ft: Option<u64>,
    /// Corpus at the end: inputs and their total size as libFuzzer writes it (`corp: 57/2330b`).
    corpus: Option<String>,
    /// Executions per second.
    exec_per_sec: Option<u64>,
    /// Peak RSS in MB.
    peak_rss_mb: Option<u64>,
}

impl Fuzz {
    /// Installs nightly (with what the collector's eBPF build script needs) and cargo-fuzz when
    /// missing.
    fn prepare(root: &Path, options: &'static [&'static str]) -> anyhow::Result<Self> {
        // The collector's build script builds the eBPF object: nightly, rust-src, bpf-linker.
        ensure_ebpf_toolchain()?;
        if !quietly_succeeds(nightly_cargo().args(["fuzz", "--version"])) {
            eprintln!(
                "xtask: installing {CARGO_FUZZ} (`cargo fuzz`, builds and runs the libFuzzer targets; about 2 minutes)"
            );
            run_command(cmd("cargo").args(["install", CARGO_FUZZ, "--locked"]))?;
        }
        Ok(Self {
            dir: root.join("fuzz"),
            options,
        })
    }

    /// A `cargo fuzz` command on the fuzz crate.
    fn cargo_fuzz(&self, subcommand: &str) -> Command {
        let mut command = nightly_cargo();
        command
            .args(["fuzz", subcommand, "--fuzz-dir"])
            .arg(&self.dir)
            .current_dir(&self.dir);
        command
    }

    /// Every target, or `wanted` after checking that each exists.
    fn select(&self, wanted: &[String]) -> anyhow::Result<Vec<String>> {
        let output = self
            .cargo_fuzz("list")
            .stderr(Stdio::inherit())
            .output()
            .context("running `cargo fuzz list`")?;
        if !output.status.success() {
            bail!("`cargo fuzz list` failed ({})", output.status);
        }
        let all: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if wanted.is_empty() {
            return Ok(all);
        }
        for target in wanted {
            if !all.contains(target) {
                bail!(
                    "no fuzz target {target:?}; the targets are: {}",
                    all.join(", ")
                );
            }
        }
        Ok(wanted.to_vec())
    }

    /// Builds every target.
    fn build(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        run_command(self.cargo_fuzz("build").args(self.options))?;
        println!(
            "fuzz targets built in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Runs `targets` one after the other for `seconds` each; prints a table and fails if
    /// any crashed.
    fn run_all(&self, targets: &[String], seconds: u64) -> anyhow::Result<()> {
        let mut results = Vec::new();
        for target in targets {
            results.push((target, self.run_one(target, seconds)?));
        }
        println!(
            "\n{:<12} {:>9} {:>13} {:>9} {:>6} {:>7} {:>16} {:>8}",
            "target", "seconds", "executions", "exec/s", "cov", "ft", "corpus", "rss MB"
        );
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let mut crashed = Vec::new();
        for (target, result) in &results {
            match result {
                Ok(o) => println!(
                    "{target:<12} {seconds:>9} {:>13} {:>9} {:>6} {:>7} {:>16} {:>8}",
                    show(o.executions),
                    show(o.exec_per_sec),
                    show(o.cov),
                    show(o.ft),
                    o.corpus.as_deref().unwrap_or("?"),
                    show(o.peak_rss_mb),
                ),
                Err(why) => {
                    println!("{target:<12} CRASHED: {why}");
                    crashed.push(target.as_str());
                }
            }
        }
        if !crashed.is_empty() {
            bail!("fuzz targets crashed: {}", crashed.join(", "));
        }
        println!("0 crashes");
        Ok(())
    }

    /// Runs `target` for `seconds`: `Ok` with its statistics, `Err` with the crash; an error
    /// of the task itself (cannot start, cannot write the log) is the outer error.
    fn run_one(&self, target: &str, seconds: u64) -> anyhow::Result<Result<Outcome, String>> {
        let seeds = self.dir.join("corpus").join(target);
        let work = self.dir.join("target/corpus").join(target);
        let logs = self.dir.join("target/logs");
        for dir in [&work, &logs] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log_path = logs.join(format!("{target}.log"));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        println!(
            "fuzzing {target} for {seconds} s (seeds {}, log {})",
            seeds.display(),
            log_path.display()
        );
        let mut command = self.cargo_fuzz("run");
        // New inputs go to the first corpus directory: the work corpus, not the seeds.
        command
            .args(self.options)
            .arg(target)
            .arg(&work)
            .arg(&seeds)
            .args(["--", "-print_final_stats=1"])
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={TIMEOUT_SECONDS}"));
        let dict = self.dir.join("dict").join(format!("{target}.dict"));
        if dict.is_file() {
            command.arg(format!("-dict={}", dict.display()));
        }
        let status = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("cannot start {command:?}"))?;
        let text = fs::read_to_string(&log_path)
            .with_context(|| format!("reading {}", log_path.display()))?;
        if status.success() {
            return Ok(Ok(parse_stats(&text)));
        }
        // Show the end of the log: the panic message, the backtrace and the input's path.
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        eprintln!("--- {target}: last lines of {}", log_path.display());
        for line in tail {
            eprintln!("{line}");
        }
        let artifact = lines
            .iter()
            .rev()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
            .unwrap_or("see the log");
        Ok(Err(format!("{status}; input: {artifact}")))
    }
}

/// `cargo` of the nightly toolchain.
fn nightly_cargo() -> Command {
    let mut command = cmd("rustup");
    command.args(["run", "nightly", "cargo"]);
    command
}

fn quietly_succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads libFuzzer's last status line (`#N DONE cov: 1 ft: 2 corp: 3/4b ... exec/s: 5`) and
/// its final statistics (`stat::number_of_executed_units: N`, ...).
fn parse_stats(log: &str) -> Outcome {
    let mut outcome = Outcome::default();
    let number = |s: &str| s.trim().parse::<u64>().ok();
    if let Some(status) = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "))
    {
        let words: Vec<&str> = status.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        outcome.cov = after("cov:").and_then(number);
        outcome.ft = after("ft:").and_then(number);
        outcome.corpus = after("corp:").map(str::to_owned);
        outcome.exec_per_sec = after("exec/s:").and_then(number);
    }
    for line in log.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.executions = number(v);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            outcome.exec_per_sec = number(v).or(outcome.exec_per_sec);
        } else if let Some(v) = line.strip_prefix("stat::peak_rss_mb:") {
            outcome.peak_rss_mb = number(v);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::parse_stats;

    /// The smoke run as `cargo xtask test` makes it: `cargo test -p xtask -- --ignored smoke`.
    #[test]
    #[ignore = "builds the fuzz targets with nightly: minutes"]
    fn smoke() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask/ has a parent");
        super::smoke(root).expect("every target runs without a crash");
    }

    #[test]
    fn libfuzzer_final_statistics_are_read() {
        let log = "\
#2\tINITED cov: 100 ft: 120 corp: 5/300b exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 150 ft: 200 corp: 9/1Kb lim: 4096 exec/s: 2048 rss: 45Mb
#60013\tDONE   cov: 160 ft: 230 corp: 12/2330b lim: 4096 exec/s: 6001 rss: 48Mb
Done 60013 runs in 11 second(s)
stat::number_of_executed_units: 60013
stat::average_exec_per_sec:     5455
stat::new_units_added:          7
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              48
";
        let o = parse_stats(log);
        assert_eq!(o.executions, Some(60_013));
        assert_eq!((o.cov, o.ft), (Some(160), Some(230)));
        assert_eq!(o.corpus.as_deref(), Some("12/2330b"));
        assert_eq!(o.exec_per_sec, Some(5455));
        assert_eq!(o.peak_rss_mb, Some(48));
    }
}
