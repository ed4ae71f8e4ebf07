//! Network namespaces owned by a test.

use std::{
    fs::File,
    os::fd::AsFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop with everything inside it.
///
/// IPv6 is disabled inside so that no neighbour discovery, MLD or router solicitation adds
/// packets the test did not send; reverse-path filtering is off; `lo` is up.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    /// Whether dropping this value deletes the namespace.
    owned: bool,
}

impl NetNs {
    /// Creates a fresh namespace whose name includes `tag`.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "lmt-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Self { name, owned: true };
        // No IPv6 (no ND/MLD/RS packets), no reverse-path filtering (overlay replies).
        ns.exec(&[
            "sh",
            "-c",
            "for k in all default; do echo 1 > /proc/sys/net/ipv6/conf/$k/disable_ipv6; \
             echo 0 > /proc/sys/net/ipv4/conf/$k/rp_filter; done",
        ]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A handle on a namespace owned elsewhere (not deleted on drop).
    pub fn borrowed(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            owned: false,
        }
    }

    /// The namespace name (for `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args...`, panicking with its output on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A permanent neighbour entry `ip` -> `mac` on `dev` (`ip neigh replace ... nud permanent`;
    /// the address family follows from `ip`), so no ARP or neighbour discovery adds packets to
    /// the counts under test.
    pub fn permanent_neighbour(&self, ip: &str, mac: &str, dev: &str) {
        self.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }

    /// Runs `tc -n <ns> args...`, panicking with its output on failure.
    pub fn tc(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("tc", &full)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Moves the calling thread into this namespace until the guard is dropped.
    pub fn enter(&self) -> NsGuard {
        enter_named(&self.name)
    }

    /// Runs `f` with the calling thread inside this namespace (e.g. to create a socket there:
    /// sockets keep the namespace they were created in).
    pub fn within<T>(&self, f: impl FnOnce() -> T) -> T {
        within_named(&self.name, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
        {
            Ok(status) if status.success() => {}
            other => eprintln!("deleting network namespace {}: {other:?}", self.name),
        }
    }
}

/// Moves the calling thread into the namespace named `name` until the guard is dropped.
pub fn enter_named(name: &str) -> NsGuard {
    let original = File::open("/proc/thread-self/ns/net").expect("open own netns");
    let target = File::open(format!("/run/netns/{name}")).expect("open netns");
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into test netns");
    NsGuard { original }
}

/// Runs `f` with the calling thread inside the namespace named `name`.
pub fn within_named<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let _guard = enter_named(name);
    f()
}

/// Returns the thread to its original namespace on drop.
#[derive(Debug)]
pub struct NsGuard {
    original: File,
}

impl Drop for NsGuard {
    /// Logs instead of panicking: a panic here would abort a test that is already failing.
    fn drop(&mut self) {
        if let Err(err) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!("cannot return the thread to its network namespace: {err}");
        }
    }
}

/// Runs a command, returning stdout; panics with stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
