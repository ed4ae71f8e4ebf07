//! The pin path is linkmeter's, what is mounted inside it is not (issue 21, defect 7): a tmpfs
//! mounted at a layout-named entry under the pin path is never descended into — before the fix
//! `linkmeter cleanup` deleted its files and then failed with EBUSY, and `run --pin` did the
//! same at start (it failed on `main`). And nothing is created outside a bpffs.

use std::process::Command;

use collector_common::MAP_LAYOUT_VERSION;
use integration_tests::{
    bpffs::BpfFs,
    daemon::{Daemon, binary},
    kernel_tests_enabled,
    netns::{NetNs, run},
};

/// A tmpfs mounted on `dir`, unmounted on drop.
struct Tmpfs(String);

impl Tmpfs {
    fn mount(dir: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        run("mount", &["-t", "tmpfs", "tmpfs", dir]);
        std::fs::write(format!("{dir}/precious"), b"not linkmeter's").expect("a file");
        Self(dir.to_owned())
    }

    fn intact(&self) -> bool {
        std::fs::read(format!("{}/precious", self.0)).is_ok_and(|b| b == b"not linkmeter's")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn cleanup_and_a_starting_daemon_leave_a_mount_under_the_pin_path_alone() {
    if !kernel_tests_enabled() {
        return;
    }
    let bpffs = BpfFs::mount("mounts");
    let pins = bpffs.join("linkmeter");
    let other_layout = format!("{pins}/v{MAP_LAYOUT_VERSION}-i8-p64");
    let tmpfs = Tmpfs::mount(&other_layout);

    let cleanup = Command::new(binary())
        .args(["cleanup", "--pin-path", &pins])
        .output()
        .expect("run cleanup");
    let stderr = String::from_utf8_lossy(&cleanup.stderr);
    assert!(!cleanup.status.success(), "{stderr}");
    assert!(
        stderr.contains("another filesystem mounted under the pin path"),
        "{stderr}"
    );
    assert!(tmpfs.intact(), "cleanup deleted files of the tmpfs");

    // A daemon of another layout removes other layouts' directories at start: not this one.
    let ns = NetNs::new("mounts");
    let daemon = Daemon::start(
        &ns,
        &[
            "--pin",
            "--pin-path",
            &pins,
            "--max-interfaces",
            "16",
            "--max-peers",
            "64",
        ],
    );
    assert!(tmpfs.intact(), "the daemon deleted files of the tmpfs");
    assert!(
        daemon
            .log_text()
            .contains("another filesystem mounted under the pin path"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.stop().success());
    drop(tmpfs);
}

#[test]
fn nothing_is_created_outside_a_bpffs() {
    if !kernel_tests_enabled() {
        return;
    }
    let base = std::env::temp_dir().join(format!("lmt-notbpf-{}", std::process::id()));
    let pins = base.join("linkmeter");
    let ns = NetNs::new("notbpf");
    let daemon = Daemon::start(&ns, &["--pin", "--pin-path", pins.to_str().expect("utf-8")]);
    assert!(
        daemon.log_text().contains("is not on a BPF filesystem"),
        "{}",
        daemon.log_text()
    );
    assert!(!base.exists(), "{} was created", base.display());
    assert!(daemon.stop().success());
}
