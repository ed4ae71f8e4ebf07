//! An image's root filesystem run the way a container runtime would, for the image test:
//! containers cannot be started on every test machine (crun needs CAP_SYS_RESOURCE), so this
//! does what a runtime does itself — mounts `/proc`, `/sys` and the volumes in a mount namespace
//! of the daemon's own, and chroots into the root filesystem.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{daemon::LISTEN, eventually, http, netns::NetNs};

/// The image's binary running as a container would: in `ns`, in a mount namespace of its own
/// where the root filesystem is read-only, `/proc` and `/sys` are mounted, the ConfigMap sits at
/// `/etc/linkmeter` (read-only) and a bpffs at `/sys/fs/bpf`; chrooted, with only the image's
/// environment. Killed on drop.
pub struct ContainerLike {
    child: Child,
    log: PathBuf,
}

/// Sets up the mounts (arguments: rootfs, ConfigMap dir, bpffs, then `env`'s arguments) and
/// replaces itself with `env -i <image env> chroot <rootfs> <command>`, so the daemon keeps the
/// pid and dies with its mounts.
const CONTAINER_SCRIPT: &str = r#"
root=$1 config=$2 bpffs=$3
shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount --bind "$bpffs" "$root/sys/fs/bpf"
mount --bind -o ro "$config" "$root/etc/linkmeter"
exec env -i "$@"
"#;

impl ContainerLike {
    pub fn start(
        ns: &NetNs,
        rootfs: &Path,
        env: &[String],
        config_dir: &Path,
        bpffs: &Path,
        command: &[String],
        log: &Path,
    ) -> Self {
        // Mount points, as a runtime creates them.
        for dir in ["proc", "sys", "etc/linkmeter"] {
            fs::create_dir_all(rootfs.join(dir)).expect("create a mount point");
        }
        let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chroot (coreutils)");
        let file = fs::File::create(log).expect("create the log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-euc", CONTAINER_SCRIPT, "sh"])
            .args([rootfs, config_dir, bpffs])
            .args(env)
            .arg(chroot)
            .arg(rootfs)
            .args(command)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the image's linkmeter");
        let mut daemon = Self {
            child,
            log: log.to_path_buf(),
        };
        eventually(
            "linkmeter from the image ready",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    panic!("exited with {status}: {}", daemon.log_text());
                }
                match http::get(ns, LISTEN, "/readyz", &[], &[]) {
                    Some(r) if r.status == 200 => Ok(()),
                    other => Err((other, daemon.log_text())),
                }
            },
        );
        daemon
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the kubelet sends it; waits and returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.child.wait().expect("wait for linkmeter")
    }
}

impl Drop for ContainerLike {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
