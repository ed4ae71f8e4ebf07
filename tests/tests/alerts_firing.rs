//! The shipped alerting rules (`deploy/alerts/linkmeter.rules.yml`) loaded by a real Prometheus
//! that scrapes a real daemon: keyless frames sent into an external-mode tunnel device and the
//! eBPF counter removed four times make `LinkmeterTunnelKeylessDrops` and
//! `LinkmeterEbpfReattached` reach `firing` — and `LinkmeterInterfaceDrops` for the kernel's own
//! count of those drops, reason `tunnel_txinfo` — checked through Prometheus' HTTP API, while the
//! target-down alerts stay silent.
//!
//! The only change to the rules is the lab's: every `for:` is cut to a few seconds, so that the
//! test takes seconds instead of the production durations. Expressions and thresholds are the
//! shipped ones.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    eventually,
    frames::ethernet,
    kernel_tests_enabled,
    overlay::{self, OverlayNode},
    prometheus::{self, Prometheus},
    raw,
};
use serde_json::Value;

/// The lab's `for:` for every rule.
const LAB_FOR: &str = "3s";

/// The shipped rules with every `for:` cut to [`LAB_FOR`], written next to the test's
/// Prometheus; returns the file and how many `for:` were changed.
fn lab_rules(tag: &str) -> (PathBuf, usize) {
    let shipped =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/alerts/linkmeter.rules.yml");
    let text = std::fs::read_to_string(&shipped).expect("read linkmeter.rules.yml");
    let mut changed = 0;
    let lab: String = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                changed += 1;
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}for: {LAB_FOR}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    let path = std::env::temp_dir().join(format!("lm-{}-{tag}.rules.yml", std::process::id()));
    std::fs::write(&path, lab).expect("write the lab rules");
    (path, changed)
}

/// The alerts in `state`, by name, with their labels.
fn alerts_in(alerts: &[Value], state: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a["state"] == state) {
        let labels: BTreeMap<String, String> = alert["labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.entry(labels.get("alertname").cloned().unwrap_or_default())
            .or_default()
            .push(labels);
    }
    out
}

#[test]
fn keyless_drops_and_repeated_reattachment_fire_their_alerts_in_a_real_prometheus() {
    if !kernel_tests_enabled() || !prometheus::available() {
        return;
    }
    let topo = OverlayNode::new("alf");
    let daemon = Daemon::start(
        &topo.node,
        &["--attach-mode", "tc", "--resync-interval", "1"],
    );
    let (rules, changed) = lab_rules("alf");
    assert!(changed >= 10, "only {changed} `for:` in the shipped rules");
    let server = Prometheus::start_with_rules(
        &topo.node,
        LISTEN,
        &[("node", "lab-node")],
        std::slice::from_ref(&rules),
    );
    server.wait_for("linkmeter_ebpf_reattach_total", Duration::from_secs(30));

    // Someone removes linkmeter's ingress filter from the tunnel device four times (more than
    // the default threshold of 3 in 30 minutes); the resync puts it back each time.
    let ours = || {
        topo.node
            .tc(&["filter", "show", "dev", overlay::DEVICE, "ingress"])
            .contains("linkmeter_")
    };
    for round in 1..=4 {
        assert!(ours(), "round {round}: not attached");
        topo.node.tc(&[
            "filter",
            "del",
            "dev",
            overlay::DEVICE,
            "ingress",
            "pref",
            "1",
            "handle",
            "0x4c4d",
            "bpf",
        ]);
        eventually("re-attached", Duration::from_secs(15), || {
            if ours() {
                Ok(())
            } else {
                Err(daemon.log_text())
            }
        });
    }

    // Keyless frames into the tunnel device (no tunnel key: the device drops them without
    // counting them), 20 every half second (above the drop alert's floor of 1 drop/s within
    // seconds, as rate() divides by its whole 5-minute range) until the alerts fire.
    let keyless = vec![ethernet(0x88b5, &[0; 46]); 20];
    let deadline = Instant::now() + Duration::from_secs(90);
    let firing = loop {
        raw::send_frames(&topo.node, overlay::DEVICE, &keyless);
        let alerts = server.alerts().unwrap_or_default();
        let firing = alerts_in(&alerts, "firing");
        if [
            "LinkmeterTunnelKeylessDrops",
            "LinkmeterEbpfReattached",
            "LinkmeterInterfaceDrops",
        ]
        .iter()
        .all(|name| firing.contains_key(*name))
        {
            break firing;
        }
        assert!(
            Instant::now() < deadline,
            "not all firing after 90 s: {alerts:#?}\nprometheus log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    let keyless_alerts = &firing["LinkmeterTunnelKeylessDrops"];
    assert_eq!(keyless_alerts.len(), 1, "{firing:#?}");
    let labels = &keyless_alerts[0];
    assert_eq!(labels["interface"], overlay::DEVICE, "{labels:?}");
    assert_eq!(labels["node"], "lab-node", "{labels:?}");
    assert_eq!(labels["job"], "linkmeter", "{labels:?}");
    assert_eq!(labels["severity"], "warning", "{labels:?}");
    assert_eq!(firing["LinkmeterEbpfReattached"].len(), 1, "{firing:#?}");
    // The kernel counts the same drops by reason (`SKB_DROP_REASON_TUNNEL_TXINFO`): the drop
    // rate alert fires for them too, named by the running kernel.
    let drops = firing
        .get("LinkmeterInterfaceDrops")
        .cloned()
        .unwrap_or_default();
    assert!(
        drops
            .iter()
            .any(|l| l["interface"] == overlay::DEVICE && l["reason"] == "tunnel_txinfo"),
        "{firing:#?}"
    );
    // The target is up: the alerts about a missing or failing target stay silent.
    for quiet in [
        "LinkmeterTargetDown",
        "LinkmeterAbsent",
        "LinkmeterCollectErrors",
    ] {
        assert!(!firing.contains_key(quiet), "{quiet} fires: {firing:#?}");
    }
    // No rule fails to evaluate.
    let log = server.log_text();
    assert!(!log.contains("Evaluating rule failed"), "{log}");
    println!("firing in the lab: {firing:?}");
    let _ = std::fs::remove_file(rules);
}
