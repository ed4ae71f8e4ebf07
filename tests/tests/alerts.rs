//! linkmeter's alerting rules (`deploy/alerts`): promtool checks them and runs their unit tests
//! (`tests/alerts`), every alert is tested both firing and quiet, carries what an on-call needs,
//! compares against documented threshold rules rather than numbers, and the PrometheusRule
//! carries exactly the plain rules file. No kernel, no root.

use std::{path::PathBuf, process::Command};

use integration_tests::prometheus;

const RULES: &str = "deploy/alerts/linkmeter.rules.yml";
const PROMETHEUS_RULE: &str = "deploy/alerts/prometheusrule.yaml";
/// The `promtool test rules` files: a firing and a quiet case per alert, and a review's edge cases.
const UNIT_TESTS: [&str; 2] = [
    "tests/alerts/linkmeter.rules.test.yml",
    "tests/alerts/edge_cases.test.yml",
];
const DOCS: &str = "docs/alerts.md";
const THRESHOLD: &str = "linkmeter:alert_threshold:";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines under `lines[at]` (more indented than it), comments and blank lines left out.
fn under<S: AsRef<str>>(lines: &[S], at: usize) -> Vec<String> {
    let base = indent(lines[at].as_ref());
    lines[at + 1..]
        .iter()
        .map(AsRef::as_ref)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take_while(|l| indent(l) > base)
        .map(str::to_owned)
        .collect()
}

/// One rule of the rules file, read line by line (the file's own layout, no YAML parser).
#[derive(Debug)]
struct Rule {
    alert: bool,
    name: String,
    /// Its position in the group's `rules:` (the JSON patch path `/spec/groups/0/rules/N`).
    index: usize,
    /// The lines under `- alert:` / `- record:`.
    body: Vec<String>,
}

impl Rule {
    /// The value of `key` (`expr`, `for`, `runbook`: keys that occur once in a rule), the
    /// lines of its block joined by newlines for `|` and `>-`.
    fn field(&self, key: &str) -> Option<String> {
        let at = (self.body.iter()).position(|l| l.trim_start().starts_with(&format!("{key}:")))?;
        let inline = self.body[at].trim_start()[key.len() + 1..].trim();
        Some(if matches!(inline, "|" | "|-" | ">" | ">-") {
            under(&self.body, at)
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            inline.to_owned()
        })
    }
}

fn rules() -> Vec<Rule> {
    let text = read(RULES);
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let rule = (t.strip_prefix("- alert: ").map(|n| (true, n)))
            .or_else(|| t.strip_prefix("- record: ").map(|n| (false, n)));
        let Some((alert, name)) = rule else { continue };
        rules.push(Rule {
            alert,
            name: name.trim().to_owned(),
            index: rules.len(),
            body: under(&lines, at),
        });
    }
    assert_eq!(
        text.matches("- name: ").count(),
        1,
        "one group: the docs' patch paths are /spec/groups/0/rules/N"
    );
    assert!(rules.iter().filter(|r| r.alert).count() >= 14, "{rules:#?}");
    rules
}

/// `promtool <args>` in the repository root; `None` (with a printed reason) without promtool.
fn promtool(args: &[&str]) -> Option<(bool, String)> {
    if !prometheus::available() {
        return None;
    }
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run promtool");
    let text = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned();
    Some((out.status.success(), text))
}

#[test]
fn promtool_checks_the_rules_with_its_linter() {
    let Some((_, help)) = promtool(&["check", "rules", "--help"]) else {
        return;
    };
    let mut args = vec!["check", "rules"];
    if help.contains("--lint-fatal") {
        args.extend(["--lint=all", "--lint-fatal"]);
    }
    args.push(RULES);
    let (ok, out) = promtool(&args).expect("promtool");
    assert!(ok, "promtool {args:?}:\n{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let [main, edge] = UNIT_TESTS;
    let Some((ok, out)) = promtool(&["test", "rules", main, edge]) else {
        return;
    };
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
}

/// The `alert_rule_test` entries of the unit tests: (alertname, whether it expects alerts).
fn alert_cases() -> Vec<(String, bool)> {
    let text: String = UNIT_TESTS.iter().map(|file| read(file) + "\n").collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !(t.starts_with("- eval_time:") || t.starts_with("- {eval_time:")) {
            continue;
        }
        let entry = format!("{line}\n{}", under(&lines, at).join("\n"));
        let names: Vec<&str> = entry
            .split("alertname:")
            .skip(1)
            .filter_map(|rest| rest.split([',', '}', '\n']).next())
            .map(str::trim)
            .collect();
        assert_eq!(names.len(), 1, "one alertname per entry:\n{entry}");
        let fires = entry.contains("exp_labels");
        let quiet = entry.contains("exp_alerts: []");
        assert!(
            fires != quiet,
            "an entry expects alerts (exp_labels) or none (exp_alerts: []):\n{entry}"
        );
        cases.push((names[0].to_owned(), fires));
    }
    cases
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let rules = rules();
    let cases = alert_cases();
    for rule in rules.iter().filter(|r| r.alert) {
        for (fires, what) in [(true, "fires"), (false, "does not fire (exp_alerts: [])")] {
            assert!(
                cases.iter().any(|(n, f)| *n == rule.name && *f == fires),
                "{UNIT_TESTS:?} have no case where {} {what}",
                rule.name
            );
        }
    }
    for (name, _) in &cases {
        assert!(
            rules.iter().any(|r| r.alert && r.name == *name),
            "{UNIT_TESTS:?} test {name}, which {RULES} does not define"
        );
    }
}

#[test]
fn every_alert_carries_severity_summary_description_and_runbook() {
    let docs = read(DOCS);
    for rule in rules().iter().filter(|r| r.alert) {
        let severity = rule.field("severity");
        let severity_ok = matches!(severity.as_deref(), Some("warning" | "critical"));
        assert!(severity_ok, "{}: severity {severity:?}", rule.name);
        for key in ["summary", "description", "runbook"] {
            assert!(
                rule.field(key).is_some_and(|v| !v.is_empty()),
                "{}: no {key} annotation",
                rule.name
            );
        }
        let anchor = format!("docs/alerts.md#{}", rule.name.to_lowercase());
        assert!(
            rule.field("runbook").is_some_and(|r| r.contains(&anchor)),
            "{}: the runbook points at {anchor}",
            rule.name
        );
        assert!(
            docs.lines().any(|l| l == format!("### {}", rule.name)),
            "{DOCS} has no runbook section `### {}`",
            rule.name
        );
    }
}

/// What follows each comparison operator in `expr`, with label matchers, strings and ranges
/// left out.
fn compared_with(expr: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' | '[' if !quoted => depth += 1,
            '}' | ']' if !quoted => depth -= 1,
            _ if quoted || depth > 0 => {}
            _ => plain.push(c),
        }
    }
    let mut out = Vec::new();
    for op in ["==", "!=", ">=", "<=", ">", "<"] {
        for (at, _) in plain.match_indices(op) {
            let before = plain[..at].chars().last();
            let after = plain[at + op.len()..].chars().next();
            if op.len() == 1 && (after == Some('=') || matches!(before, Some('=' | '!'))) {
                continue;
            }
            let rest = plain[at + op.len()..].trim_start();
            let rest = rest.strip_prefix("bool").unwrap_or(rest).trim_start();
            out.push(
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_'))
                    .collect(),
            );
        }
    }
    out
}

#[test]
fn thresholds_are_documented_recording_rules_not_numbers() {
    let rules = rules();
    let docs = read(DOCS);
    let mut used = Vec::new();
    for rule in rules.iter().filter(|r| r.alert) {
        let expr = rule.field("expr").expect("expr");
        for operand in compared_with(&expr) {
            assert!(
                !operand.starts_with(|c: char| c.is_ascii_digit())
                    || operand == "0"
                    || operand == "1",
                "{}: compares with the number {operand}; make it a {THRESHOLD}* recording rule:\n{expr}",
                rule.name
            );
        }
        let text = rule.body.join("\n");
        for (at, _) in text.match_indices(THRESHOLD) {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_'))
                .collect();
            let Some(threshold) = rules.iter().find(|r| !r.alert && r.name == name) else {
                panic!("{}: {name} is not a recording rule of {RULES}", rule.name);
            };
            assert!(
                threshold.index < rule.index,
                "{name} must come before {} in the group (it exists at the first evaluation)",
                rule.name
            );
            used.push(name);
        }
    }
    for threshold in rules.iter().filter(|r| !r.alert) {
        let (name, expr) = (&threshold.name, threshold.field("expr").expect("expr"));
        let number = expr
            .strip_prefix("vector(")
            .and_then(|e| e.strip_suffix(')'));
        assert!(
            name.starts_with(THRESHOLD) && number.is_some_and(|n| n.parse::<f64>().is_ok()),
            "{name}: thresholds are {THRESHOLD}<what> = vector(<number>), got {expr}"
        );
        assert!(used.contains(name), "{name} is used by no alert");
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("{DOCS} has no table row for {name}"));
        assert!(
            row.contains(&format!("`{expr}`")),
            "{DOCS} documents {name} without its default `{expr}`: {row}"
        );
    }
}

#[test]
fn the_docs_give_every_rule_its_patch_path() {
    let docs = read(DOCS);
    for rule in rules() {
        let path = format!("`rules/{}`", rule.index);
        assert!(
            docs.lines()
                .any(|l| l.starts_with(&format!("| `{}` | {path} |", rule.name))),
            "{DOCS} has no table row for {} at {path}",
            rule.name
        );
    }
}

#[test]
fn the_prometheusrule_carries_the_rules_file_indented_by_two_spaces() {
    let rules = read(RULES);
    let object = read(PROMETHEUS_RULE);
    let (head, spec) = object
        .split_once("\nspec:\n")
        .expect("a `spec:` line in prometheusrule.yaml");
    for needle in [
        "apiVersion: monitoring.coreos.com/v1\n",
        "kind: PrometheusRule\n",
        "metadata:\n  name: linkmeter",
        "linkmeter.rules.yml",
    ] {
        assert!(head.contains(needle), "{PROMETHEUS_RULE} lacks {needle:?}");
    }
    let indented: String = rules
        .lines()
        .map(|l| format!("{}{l}\n", if l.is_empty() { "" } else { "  " }))
        .collect();
    let differs = spec.lines().zip(indented.lines()).position(|(a, b)| a != b);
    assert!(
        spec == indented,
        "{PROMETHEUS_RULE}: spec must be {RULES} indented by two spaces (regenerate it as its header says); first difference at its line {:?}",
        differs.map(|n| n + 1)
    );
}

/// The docs' example kustomizations (```yaml blocks starting `# my-linkmeter/kustomization.yaml`)
/// render over the base with kubectl: their JSON patches' `test` operations hold (each names the
/// rule it expects at its path) and every single-line replacement shows up.
#[test]
fn the_docs_patches_apply_to_the_base() {
    let docs = read(DOCS);
    let examples: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(b, _)| b))
        .filter(|b| b.starts_with("# my-linkmeter/kustomization.yaml\n"))
        .collect();
    assert!(examples.len() >= 2, "{DOCS}: the tuning examples");
    let dir = std::env::temp_dir().join(format!("lm-alert-patches-{}", std::process::id()));
    let _ignored = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("my-linkmeter")).expect("dir");
    // `../linkmeter/deploy/base`, as in the docs.
    std::os::unix::fs::symlink(root().canonicalize().expect("root"), dir.join("linkmeter"))
        .expect("symlink");
    for example in examples {
        std::fs::write(dir.join("my-linkmeter/kustomization.yaml"), example).expect("write");
        let out = match Command::new("kubectl")
            .arg("kustomize")
            .arg(dir.join("my-linkmeter"))
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                integration_tests::skip(&format!(
                    "kubectl not available ({e}); `cargo xtask test` installs it"
                ));
                break;
            }
        };
        let rendered = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubectl kustomize:\n{}\n{example}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = example.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if line.trim() != "- op: replace" {
                continue;
            }
            let value = lines[at + 2].trim().strip_prefix("value: ").expect("value");
            if !matches!(value, "|" | "|-" | ">-") {
                assert!(
                    rendered.contains(&format!(": {value}\n")),
                    "{value} not applied"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
