//! Support for linkmeter's integration tests: network namespaces with RAII cleanup, veth and
//! vxlan topologies, exact UDP traffic, the kernel's own interface counters, test-only TC
//! programs, the real `linkmeter` binary and a real Prometheus.
//!
//! Every test builds what it needs inside namespaces it creates (`lmt-<pid>-<n>-<tag>`) and the
//! guards delete them on drop, also when the test panics. Nothing touches the host's interfaces.

pub mod bpffs;
pub mod container;
pub mod daemon;
pub mod frames;
pub mod http;
pub mod kernel;
pub mod netns;
pub mod oci;
pub mod overlay;
pub mod prometheus;
pub mod raw;
pub mod tcx;
pub mod testprogs;
pub mod tls;
pub mod topology;
pub mod traffic;
pub mod variants;
pub mod web;

use std::time::{Duration, Instant};

/// Whether the kernel tests can run here (root, so namespaces and BPF are available).
///
/// When they cannot, the reason is printed and `false` returned so the test returns early —
/// unless `LINKMETER_REQUIRE_KERNEL_TESTS=1` or `CI` is set (as `cargo xtask test` and CI do),
/// in which case it panics: there, a skipped eBPF test is a failed one.
pub fn kernel_tests_enabled() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip("not running as root: network namespaces and eBPF need root");
    false
}

/// Whether TCX is available; prints why not and returns `false` otherwise.
pub fn tcx_available() -> bool {
    if collector::backend::ebpf::kernel_has_tcx() {
        return true;
    }
    println!("SKIP: this kernel has no TCX (needs Linux >= 6.6); the tc-mode tests cover it");
    false
}

/// Prints the skip reason, or panics where skipping is not allowed (see
/// [`kernel_tests_enabled`]).
pub fn skip(reason: &str) {
    let required = std::env::var("LINKMETER_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1")
        || std::env::var_os("CI").is_some();
    assert!(
        !required,
        "kernel tests are required here but cannot run: {reason}"
    );
    println!("SKIP: {reason}");
}

/// Polls `check` until it returns `Some`, for at most `limit`, and returns that value; panics
/// with `what` and the last `Err` otherwise. The one waiting loop of the tests: they assert
/// outcomes, never timings.
pub fn eventually<T, E: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last: {last:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
