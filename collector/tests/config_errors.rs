//! Bad configuration is rejected at start by the real binary: exit status 2 and a message that
//! names the key. No kernel access needed.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// How long a rejected configuration may take to exit: a configuration accepted by mistake
/// would run the daemon until killed, and fail the test instead of hanging it.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// `linkmeter run <args>`: its exit status and standard error.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_linkmeter"))
        .arg("run")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run linkmeter");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for linkmeter") {
            break status;
        }
        if started.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!("linkmeter run {args:?} kept running: the configuration was accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stderr)
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
        (
            &["--peer-zone", "10.0.0.0/8"][..],
            "peer_zones: \"10.0.0.0/8\"",
        ),
        (
            &["--peer-zone", "10.0.0.0/8=a,fd00::/129=b"][..],
            "peer_zones: \"fd00::/129=b\"",
        ),
        (&["--overlay-series", "all"][..], "overlay_series"),
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
