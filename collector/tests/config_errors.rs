//! Bad configuration is rejected at start by the real binary: exit status 2 and a message that
//! names the key. No kernel access needed.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_linkmeter"))
        .arg("run")
        .args(args)
        .output()
        .expect("run linkmeter");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_in_the_file_exits_2_naming_it() {
    let dir = std::env::temp_dir().join(format!("lm-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9977\"\nexlcude = [\"lo\"]\n").expect("write");
    let (code, stderr) = run(&["--config", file.to_str().expect("utf-8")]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("exlcude"), "{stderr}");
}

#[test]
fn bad_flags_exit_2_naming_the_key() {
    for (args, key) in [
        (&["--listen", "localhost"][..], "listen"),
        (&["--exclude", "/(/"][..], "exclude"),
        (&["--override", "cilium_*=xdp"][..], "overrides"),
        (&["--attach-mode", "xdp"][..], "attach_mode"),
        (&["--max-interfaces", "0"][..], "max_interfaces"),
        (
            &["--ethtool-stats-allowlist", "("][..],
            "ethtool_stats_allowlist",
        ),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn missing_config_file_exits_2() {
    let (code, stderr) = run(&["--config", "/nonexistent/linkmeter.toml"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/linkmeter.toml"), "{stderr}");
}
