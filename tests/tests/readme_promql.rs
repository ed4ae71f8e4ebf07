//! The README's PromQL — drops by reason, and the joins from `peer` to node names and zones —
//! evaluated by Prometheus' own engine (`promtool test rules`) on series shaped like
//! linkmeter's and kube-state-metrics'.

use std::process::Command;

use integration_tests::prometheus;

/// The queries of the README's `block`-th `promql` block (from 0), in order (comment lines
/// dropped).
fn readme_queries(block: usize) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("read README.md");
    let start = readme
        .match_indices("```promql\n")
        .nth(block)
        .expect("a promql block in the README")
        .0
        + 10;
    let block = &readme[start..start + readme[start..].find("```").expect("block end")];
    block
        .split("\n\n")
        .map(|q| {
            q.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|q| !q.trim().is_empty())
        .collect()
}

/// Node n1 (zone a) sends 10 B/s to n2 (zone a) and 20 B/s to n3 (zone b), plus keyless drops
/// that the joins leave out.
const SERIES: &str = r#"
      - series: 'linkmeter_overlay_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", peer="10.0.0.2", job="linkmeter"}'
        values: '0+600x10'
      - series: 'linkmeter_overlay_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", peer="10.0.0.3", job="linkmeter"}'
        values: '0+1200x10'
      - series: 'linkmeter_overlay_bytes_total{node="n1", interface="cilium_vxlan", direction="rx", peer="10.0.0.3", job="linkmeter"}'
        values: '0+6000x10'
      - series: 'linkmeter_overlay_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", peer="none", job="linkmeter"}'
        values: '0+60x10'
      - series: 'kube_node_info{node="n1", internal_ip="10.0.0.1", job="kube-state-metrics"}'
        values: '1x10'
      - series: 'kube_node_info{node="n2", internal_ip="10.0.0.2", job="kube-state-metrics"}'
        values: '1x10'
      - series: 'kube_node_info{node="n3", internal_ip="10.0.0.3", job="kube-state-metrics"}'
        values: '1x10'
      - series: 'kube_node_labels{node="n1", label_topology_kubernetes_io_zone="a", job="kube-state-metrics"}'
        values: '1x10'
      - series: 'kube_node_labels{node="n2", label_topology_kubernetes_io_zone="a", job="kube-state-metrics"}'
        values: '1x10'
      - series: 'kube_node_labels{node="n3", label_topology_kubernetes_io_zone="b", job="kube-state-metrics"}'
        values: '1x10'
"#;

/// A `promql_expr_test` entry: `expr` at 10 minutes must give exactly `samples`.
fn expr_test(expr: &str, samples: &[(&str, f64)]) -> String {
    let expr: String = expr.lines().map(|l| format!("          {l}\n")).collect();
    let samples: String = samples
        .iter()
        .map(|(labels, value)| {
            format!("          - labels: '{labels}'\n            value: {value}\n")
        })
        .collect();
    format!("      - expr: |\n{expr}        eval_time: 10m\n        exp_samples:\n{samples}")
}

#[test]
fn the_readme_joins_give_bytes_per_remote_node_and_per_zone_pair() {
    if !prometheus::available() {
        return;
    }
    let queries = readme_queries(1);
    assert_eq!(queries.len(), 2, "{queries:#?}");
    let tests = [
        expr_test(
            &queries[0],
            &[
                (r#"{node="n1", remote_node="n2"}"#, 10.0),
                (r#"{node="n1", remote_node="n3"}"#, 20.0),
            ],
        ),
        expr_test(
            &queries[1],
            &[
                (r#"{zone="a", remote_zone="a"}"#, 10.0),
                (r#"{zone="a", remote_zone="b"}"#, 20.0),
            ],
        ),
    ]
    .concat();
    promtool_test(SERIES, &tests);
}

/// Runs `promtool test rules` on `series` and the `promql_expr_test` entries `tests`.
fn promtool_test(series: &str, tests: &str) {
    let file = format!(
        "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:{series}    promql_expr_test:\n{tests}"
    );
    // One file per test: the tests of this binary run at once in one process.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "linkmeter-readme-promql-{}-{}.yml",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, &file).expect("write the promtool test");
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    let _ignored = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n{file}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node n1 (zone a) sends 10 B/s to its own zone, 20 B/s to zone b, and some to no zone.
const ZONE_SERIES: &str = r#"
      - series: 'linkmeter_overlay_zone_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", zone="a", job="linkmeter"}'
        values: '0+600x10'
      - series: 'linkmeter_overlay_zone_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", zone="b", job="linkmeter"}'
        values: '0+1200x10'
      - series: 'linkmeter_overlay_zone_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", zone="none", job="linkmeter"}'
        values: '0+60x10'
      - series: 'linkmeter_overlay_zone_bytes_total{node="n1", interface="cilium_vxlan", direction="tx", zone="unknown", job="linkmeter"}'
        values: '0+60x10'
      - series: 'linkmeter_overlay_zone_bytes_total{node="n1", interface="cilium_vxlan", direction="rx", zone="b", job="linkmeter"}'
        values: '0+6000x10'
      - series: 'linkmeter_node_zone_info{node="n1", zone="a", job="linkmeter"}'
        values: '1x10'
"#;

#[test]
fn the_readme_zone_query_gives_cross_zone_bytes_per_node() {
    if !prometheus::available() {
        return;
    }
    let queries = readme_queries(2);
    assert_eq!(queries.len(), 1, "{queries:#?}");
    promtool_test(
        ZONE_SERIES,
        &expr_test(&queries[0], &[(r#"{node="n1"}"#, 20.0)]),
    );
}

/// Node n1 drops 10/s for no socket and 1/s by a netfilter rule on eth0, 2/s for no socket on
/// a pod's veth.
const DROP_SERIES: &str = r#"
      - series: 'linkmeter_interface_drops_total{instance="n1:9977", interface="eth0", reason="no_socket", job="linkmeter"}'
        values: '0+600x10'
      - series: 'linkmeter_interface_drops_total{instance="n1:9977", interface="eth0", reason="netfilter_drop", job="linkmeter"}'
        values: '0+60x10'
      - series: 'linkmeter_interface_drops_total{instance="n1:9977", interface="lxc1", reason="no_socket", job="linkmeter"}'
        values: '0+120x10'
"#;

#[test]
fn the_readme_drop_queries_give_drops_by_reason_and_the_top_reasons() {
    if !prometheus::available() {
        return;
    }
    let queries = readme_queries(0);
    assert_eq!(queries.len(), 2, "{queries:#?}");
    let tests = [
        expr_test(
            &queries[0],
            &[
                (r#"{interface="eth0", reason="no_socket"}"#, 10.0),
                (r#"{interface="eth0", reason="netfilter_drop"}"#, 1.0),
                (r#"{interface="lxc1", reason="no_socket"}"#, 2.0),
            ],
        ),
        expr_test(
            &queries[1],
            &[
                (r#"{instance="n1:9977", reason="no_socket"}"#, 12.0),
                (r#"{instance="n1:9977", reason="netfilter_drop"}"#, 1.0),
            ],
        ),
    ];
    promtool_test(DROP_SERIES, &tests.concat());
}
