//! Kernel memory of the maps, as the kernel accounts it.

use aya::maps::MapData;

/// The kernel's memory accounting of a map (`memlock:` in `/proc/self/fdinfo/<fd>`).
pub(crate) fn memlock(map: &MapData) -> Option<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let fd = map.fd().as_fd().as_raw_fd();
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))?
        .trim()
        .parse()
        .ok()
}
