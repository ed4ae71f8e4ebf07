//! Golden `--help` output of every subcommand, so that CLI changes are visible in review.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p collector --test cli_help`.

use std::{path::PathBuf, process::Command};

fn help(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_linkmeter"));
    cmd.args(args).arg("--help");
    // Defaults shown as `[env: NAME=value]` must not depend on the caller's environment.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LINKMETER_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("run linkmeter --help");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn help_output_matches_the_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for sub in ["", "run", "list", "check", "dump", "watch", "completions"] {
        let args: Vec<&str> = if sub.is_empty() { vec![] } else { vec![sub] };
        let text = help(&args);
        let name = if sub.is_empty() {
            "linkmeter".to_owned()
        } else {
            format!("linkmeter-{sub}")
        };
        let path = dir.join(format!("{name}.help.txt"));
        if update {
            std::fs::write(&path, &text).expect("write golden");
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        if golden != text {
            mismatched.push(format!("--- {}\n+++ actual\n{text}", path.display()));
        }
    }
    assert!(
        mismatched.is_empty(),
        "help output changed; review and run UPDATE_GOLDEN=1 cargo test -p collector --test cli_help\n{}",
        mismatched.join("\n")
    );
}

#[test]
fn every_subcommand_documents_defaults_env_and_an_example() {
    for sub in ["run", "list", "check", "dump", "watch"] {
        let text = help(&[sub]);
        assert!(text.contains("Examples:\n  linkmeter"), "{sub}: {text}");
    }
    let run = help(&["run"]);
    for needle in [
        "[default: 0.0.0.0:9977]",
        "[env: LINKMETER_LISTEN=]",
        "[default: lo]",
        "[default: 60]",
    ] {
        assert!(run.contains(needle), "run --help lacks {needle}");
    }
}
