//! A real Prometheus server (Debian's `prometheus`) inside a test namespace, and `promtool`.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::netns::NetNs;

const ADDRESS: &str = "127.0.0.1:9090";

/// Whether `promtool` and `prometheus` are installed; prints why not (or panics where the
/// kernel tests are required, as the suite installs them).
pub fn available() -> bool {
    let found = ["prometheus", "promtool"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !found {
        crate::skip(
            "Debian package prometheus (prometheus, promtool) is not installed; `cargo xtask test` installs it",
        );
    }
    found
}

/// Runs `promtool check metrics` on `exposition`; returns its combined output on failure.
pub fn promtool_check(exposition: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Evaluates `query` through the HTTP API of the Prometheus at `address` (reached from the
/// calling thread's namespace); the `data.result` array, or `None` when it does not answer
/// (yet).
pub fn query_at(address: &str, query: &str) -> Option<Vec<serde_json::Value>> {
    let response = crate::http::get_here(address, "/api/v1/query", &[("query", query)], &[])?;
    let v: serde_json::Value = serde_json::from_str(&response.body).ok()?;
    v["data"]["result"].as_array().cloned()
}

/// A Prometheus server scraping `target` every second, killed (and its data removed) on drop.
#[derive(Debug)]
pub struct Prometheus {
    ns: String,
    child: Child,
    dir: PathBuf,
}

/// Where Prometheus listens inside its namespace.
pub const PROMETHEUS_LISTEN: &str = ADDRESS;

impl Prometheus {
    /// Starts Prometheus in `ns`, scraping `target` (`IP:PORT`) as job `linkmeter`.
    pub fn start(ns: &NetNs, target: &str) -> Self {
        Self::start_with_labels(ns, target, &[])
    }

    /// As [`Prometheus::start`], attaching `labels` to the target (as the PodMonitor's
    /// relabeling adds `node`).
    pub fn start_with_labels(ns: &NetNs, target: &str, labels: &[(&str, &str)]) -> Self {
        Self::start_with_job(ns, target, labels, "")
    }

    /// As [`Prometheus::start_with_labels`], with `job_extra` (YAML lines indented by four
    /// spaces, such as `scheme`, `tls_config` and `basic_auth`) added to the scrape job.
    pub fn start_with_job(
        ns: &NetNs,
        target: &str,
        labels: &[(&str, &str)],
        job_extra: &str,
    ) -> Self {
        Self::start_config(ns, target, labels, job_extra, &[])
    }

    /// As [`Prometheus::start_with_labels`], evaluating the alerting and recording rules of
    /// `rule_files` every second (see [`Prometheus::alerts`]).
    pub fn start_with_rules(
        ns: &NetNs,
        target: &str,
        labels: &[(&str, &str)],
        rule_files: &[PathBuf],
    ) -> Self {
        Self::start_config(ns, target, labels, "", rule_files)
    }

    fn start_config(
        ns: &NetNs,
        target: &str,
        labels: &[(&str, &str)],
        job_extra: &str,
        rule_files: &[PathBuf],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("{}.prometheus", ns.name()));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        let rules: String = rule_files
            .iter()
            .map(|path| format!("  - '{}'\n", path.display()))
            .collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}scrape_configs:\n  - job_name: linkmeter\n{job_extra}    static_configs:\n      - targets: ['{target}']\n        labels: {{{}}}\n",
                labels.iter().map(|(k, v)| format!("{k}: '{v}'")).collect::<Vec<_>>().join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={ADDRESS}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        Self {
            ns: ns.name().to_owned(),
            child,
            dir,
        }
    }

    /// Evaluates `query` through the HTTP API; the `data.result` array.
    pub fn query(&self, query: &str) -> Option<Vec<serde_json::Value>> {
        crate::netns::within_named(&self.ns, || query_at(ADDRESS, query))
    }

    /// The alerts of its rules, pending and firing (`data.alerts` of `/api/v1/alerts`: each with
    /// `labels`, `annotations`, `state` and `value`); `None` when it does not answer (yet).
    pub fn alerts(&self) -> Option<Vec<serde_json::Value>> {
        crate::netns::within_named(&self.ns, || {
            let response = crate::http::get_here(ADDRESS, "/api/v1/alerts", &[], &[])?;
            let v: serde_json::Value = serde_json::from_str(&response.body).ok()?;
            v["data"]["alerts"].as_array().cloned()
        })
    }

    /// Its log so far (rule evaluation errors show here).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until `query` returns at least one series, up to `timeout`.
    pub fn wait_for(&self, query: &str, timeout: Duration) -> Vec<serde_json::Value> {
        crate::eventually(
            &format!("prometheus series for {query}"),
            timeout,
            || match self.query(query) {
                Some(result) if !result.is_empty() => Ok(result),
                _ => {
                    Err(std::fs::read_to_string(self.dir.join("prometheus.log"))
                        .unwrap_or_default())
                }
            },
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
        let _ignored = std::fs::remove_dir_all(&self.dir);
    }
}
