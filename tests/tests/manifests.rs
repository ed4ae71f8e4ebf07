//! The Kubernetes manifests: kustomize renders them, they validate strictly offline (core objects
//! with kubernetes-validate, the PodMonitor and the PrometheusRule against prometheus-operator's
//! schemas), and they carry what a node agent needs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use collector::config::{Config, FileConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize <dir>`; `None` (with a printed reason) when kubectl is missing.
fn kustomize(dir: &str) -> Option<String> {
    let out = match Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            integration_tests::skip(&format!(
                "kubectl not available ({e}); `cargo xtask test` installs it"
            ));
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("utf-8 YAML"))
}

#[test]
fn base_renders_a_least_privilege_host_network_daemonset() {
    let Some(yaml) = kustomize("deploy/base") else {
        return;
    };
    for needle in [
        "kind: DaemonSet",
        "hostNetwork: true",
        "dnsPolicy: ClusterFirstWithHostNet",
        "priorityClassName: system-node-critical",
        "- operator: Exists",
        "type: RollingUpdate",
        "path: /healthz",
        "path: /readyz",
        "readOnlyRootFilesystem: true",
        "- ALL",
        "- BPF",
        "- NET_ADMIN",
        "- PERFMON",
        "path: /sys/fs/bpf",
        "kind: ServiceAccount",
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "grafana_dashboard: \"1\"",
        "name: linkmeter-config",
    ] {
        assert!(yaml.contains(needle), "base lacks {needle:?}:\n{yaml}");
    }
    assert!(!yaml.contains("privileged: true"));
    let Some(privileged) = kustomize("deploy/overlays/privileged") else {
        return;
    };
    assert!(privileged.contains("privileged: true"));
}

#[test]
fn the_bpffs_is_mounted_exactly_when_pinning_is_on() {
    let (Some(base), Some(no_pin)) = (
        kustomize("deploy/base"),
        kustomize("deploy/overlays/no-pin"),
    ) else {
        return;
    };
    let config = std::fs::read_to_string(root().join("deploy/base/config.toml")).expect("config");
    assert!(config.contains("pin = true"));
    assert!(base.contains("mountPath: /sys/fs/bpf"));
    assert!(no_pin.contains("--pin=false"), "{no_pin}");
    assert!(!no_pin.contains("/sys/fs/bpf\n") && !no_pin.contains("mountPath: /sys/fs/bpf"));
    assert!(!no_pin.contains("name: bpffs"), "{no_pin}");
}

#[test]
fn rendered_manifests_validate_strictly() {
    let Some(python) = std::env::var_os("LINKMETER_PYTHON") else {
        integration_tests::skip(
            "LINKMETER_PYTHON (a python with kubernetes-validate, jsonschema, pyyaml) is not set; `cargo xtask test` sets it up",
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("lm-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut files = Vec::new();
    for (name, kdir) in [
        ("base", "deploy/base"),
        ("privileged", "deploy/overlays/privileged"),
        ("no-pin", "deploy/overlays/no-pin"),
        ("tls", "deploy/overlays/tls"),
    ] {
        let Some(yaml) = kustomize(kdir) else { return };
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).expect("write");
        files.push(file);
    }
    let out = Command::new(python)
        .arg(root().join("tests/manifests/validate.py"))
        .args(&files)
        .output()
        .expect("run validate.py");
    std::fs::remove_dir_all(&dir).expect("cleanup");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok")).count(),
        // Seven objects per kustomization (the PrometheusRule of deploy/alerts included), and
        // the tls overlay's web configuration Secret.
        29,
        "{report}"
    );
    assert!(report.contains("ok   ") && report.contains("PodMonitor/linkmeter"));
    assert!(report.contains("PrometheusRule/linkmeter"), "{report}");
}

#[test]
fn the_shipped_config_is_accepted_by_linkmeter() {
    let path = root().join("deploy/base/config.toml");
    let text = std::fs::read_to_string(&path).expect("read config.toml");
    let config = Config::build(FileConfig::parse(&text, Path::new("config.toml")).expect("parses"))
        .expect("valid");
    assert_eq!(
        config.listen().port(),
        9977,
        "the DaemonSet's containerPort"
    );
}
