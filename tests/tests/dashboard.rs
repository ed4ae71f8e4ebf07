//! The Grafana dashboard (unique panel ids, everything through the `${datasource}` variable,
//! the documented variables, only metric names that linkmeter exports) and the golden exposition
//! those names come from, checked with promtool.

use std::collections::BTreeSet;

use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/linkmeter.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read dashboard"))
        .expect("dashboard JSON")
}

/// Every PromQL expression of the dashboard (panels and variables).
pub fn expressions(d: &Value) -> Vec<String> {
    let mut out: Vec<String> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    for v in d["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["definition"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

/// Metric names in linkmeter's exposition: the golden exposition of the collector's unit tests
/// has every family.
fn exported_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../collector/tests/golden/exposition.prom"
    );
    std::fs::read_to_string(path)
        .expect("read the golden exposition")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

#[test]
fn panel_ids_are_unique() {
    let d = dashboard();
    let ids: Vec<u64> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| p["id"].as_u64().expect("id"))
        .collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn every_panel_and_query_uses_the_datasource_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["node", "interface", "backend"] {
        let v = vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"));
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
    }
    for p in d["panels"].as_array().expect("panels") {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {}",
            p["title"]
        );
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {}",
                p["title"]
            );
        }
    }
}

#[test]
fn every_metric_the_dashboard_names_is_exported() {
    let exported = exported_names();
    let d = dashboard();
    let mut named = BTreeSet::new();
    for expr in expressions(&d) {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("linkmeter_") {
                named.insert(word.to_owned());
            }
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?} (exported: {exported:?})"
    );
}

#[test]
fn the_required_panels_are_there() {
    let d = dashboard();
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for needed in [
        "Routing table",
        "RX packets/s",
        "TX packets/s",
        "RX bytes/s",
        "TX bytes/s",
        "Kernel errors and drops/s",
        "ethtool error and drop statistics/s",
        "eBPF map overflow and attach problems",
        "Collect duration per backend",
        "Overlay traffic: node → peer (bytes/s)",
        "Packets without a tunnel key (dropped by the device)/s",
        "Protocol mix (packets/s)",
        "TCP resets/s",
        "Packet sizes",
        "eBPF map kernel memory",
        "Cross-zone bytes/s per node",
        "Overlay traffic: zone → zone (bytes/s)",
        "Top nodes by cross-zone bytes/s",
        "Estimated cross-zone transfer cost per day",
    ] {
        assert!(titles.contains(&needed), "{needed} missing: {titles:?}");
    }
}

#[test]
fn the_golden_exposition_passes_promtool() {
    if !integration_tests::prometheus::available() {
        return;
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../collector/tests/golden/exposition.prom"
    );
    let text = std::fs::read_to_string(path).expect("read the golden exposition");
    if let Err(problems) = integration_tests::prometheus::promtool_check(&text) {
        panic!("promtool check metrics failed:\n{problems}");
    }
}
