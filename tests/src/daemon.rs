//! Running the real `linkmeter` binary inside a test namespace and talking to it over HTTP.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use crate::{http, netns::NetNs};

/// A `setpriv` prefix that runs a program without the capabilities eBPF needs.
pub const WITHOUT_BPF_CAPS: &[&str] = &[
    "setpriv",
    "--bounding-set",
    "-bpf,-sys_admin,-perfmon",
    "--inh-caps",
    "-bpf,-sys_admin,-perfmon",
    "--",
];

/// Where linkmeter listens inside its namespace.
pub const LISTEN: &str = "127.0.0.1:9977";

/// Builds `linkmeter` (once per test process) and returns its path. Building from here keeps
/// the binary fresh whichever package `cargo test` was asked to test. `LINKMETER_BINARY`
/// names a prebuilt binary instead (the benchmarks use the release build).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("LINKMETER_BINARY") {
                return PathBuf::from(path);
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let mut build = Command::new(env!("CARGO"));
            // Without the variables `cargo test` set for this test (`CARGO_MANIFEST_DIR`,
            // `CARGO_PKG_NAME`, `OUT_DIR`, ...): build scripts that track them (ring's) would
            // run again, and rebuild ring and everything above it here and again in the next
            // `cargo test`. xtask's `cmd` removes the same ones.
            for (name, _) in std::env::vars_os() {
                let package_variable = name.to_str().is_some_and(|n| {
                    [
                        "CARGO_PKG_",
                        "CARGO_MANIFEST_",
                        "CARGO_CRATE_",
                        "CARGO_BIN_",
                    ]
                    .iter()
                    .any(|prefix| n.starts_with(prefix))
                        || ["OUT_DIR", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&n)
                });
                if package_variable {
                    build.env_remove(name);
                }
            }
            let status = build
                .current_dir(&root)
                .args([
                    "build",
                    "--quiet",
                    "--package",
                    "collector",
                    "--bin",
                    "linkmeter",
                ])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building linkmeter failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root.join("target"), PathBuf::from);
            target.join("debug/linkmeter")
        })
        .clone()
}

/// A `linkmeter` process in a namespace, killed on drop. Its log (JSON lines) goes to a file.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `linkmeter run --listen 127.0.0.1:9977 --log-format json <extra>` in `ns` and
    /// waits until `/readyz` answers 200.
    pub fn start(ns: &NetNs, extra: &[&str]) -> Self {
        Self::start_with_prefix(ns, &[], extra)
    }

    /// As [`Daemon::start`], with `prefix` run before the binary inside the namespace (e.g.
    /// `setpriv ... --` to drop capabilities).
    pub fn start_with_prefix(ns: &NetNs, prefix: &[&str], extra: &[&str]) -> Self {
        let daemon = Self::spawn(ns, prefix, extra);
        crate::eventually(
            "linkmeter ready",
            Duration::from_secs(20),
            || match http::get(ns, LISTEN, "/readyz", &[], &[]) {
                Some(r) if r.status == 200 => Ok(()),
                other => Err((other, daemon.log_text())),
            },
        );
        daemon
    }

    /// As [`Daemon::start_with_prefix`], without waiting for `/readyz` (e.g. over TLS, which
    /// the plain client cannot check).
    pub fn spawn(ns: &NetNs, prefix: &[&str], extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.linkmeter.log", ns.name()));
        let file = fs::File::create(&log).expect("create log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .args(prefix)
            .arg(binary())
            .args(["run", "--listen", LISTEN, "--log-format", "json"])
            .args(extra)
            .env("LINKMETER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start linkmeter");
        Self { child, log }
    }

    /// The daemon's pid (`ip netns exec` execs linkmeter, which keeps the pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines as JSON objects.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Log lines (as JSON objects) at `level` (`ERROR`, `WARN`, ...).
    pub fn log_lines_at(&self, level: &str) -> Vec<serde_json::Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["level"] == level)
            .collect()
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Freezes the daemon (SIGSTOP) until the guard drops (SIGCONT): what a test does meanwhile
    /// happens, as far as the daemon can tell, in one instant — no resync falls in between.
    pub fn frozen(&self) -> Frozen {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        Frozen { pid }
    }

    /// Stops the daemon with SIGTERM and waits for it; returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ignored = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait for linkmeter")
    }
}

impl Daemon {
    /// Kills the daemon with SIGKILL (no cleanup of its own) and waits for it.
    pub fn kill(mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

/// A frozen daemon (see [`Daemon::frozen`]); dropping it lets the daemon go on.
#[derive(Debug)]
pub struct Frozen {
    pid: nix::unistd::Pid,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ignored = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGCONT);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
        let _ignored = fs::remove_file(&self.log);
    }
}

/// Scrapes `/metrics` (Prometheus text format) of linkmeter in `ns`; panics unless it answers
/// 200.
pub fn scrape(ns: &NetNs) -> Metrics {
    let response = http::get(ns, LISTEN, "/metrics", &[], &[]).expect("scrape");
    assert_eq!(response.status, 200, "{}", response.body);
    Metrics(response.body)
}

/// A scraped exposition with simple lookups.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the first sample of `name` whose labels include every `labels` pair.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .into_iter()
            .find(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
    }

    /// interface -> (backend, reason), from `linkmeter_interface_info`.
    pub fn routing(&self) -> std::collections::BTreeMap<String, (String, String)> {
        self.samples("linkmeter_interface_info")
            .into_iter()
            .map(|(l, _)| {
                (
                    l["interface"].clone(),
                    (l["backend"].clone(), l["reason"].clone()),
                )
            })
            .collect()
    }

    /// All samples of `name` as (labels, value).
    pub fn samples(&self, name: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
        let mut out = Vec::new();
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
                let Some((labels, value)) = rest.rsplit_once("} ") else {
                    continue;
                };
                (parse_labels(labels), value)
            } else if let Some(value) = rest.strip_prefix(' ') {
                (std::collections::BTreeMap::new(), value)
            } else {
                continue;
            };
            if let Ok(v) = value.trim().parse() {
                out.push((labels, v));
            }
        }
        out
    }
}

fn parse_labels(s: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}
