//! Pinning: the maps and the TCX links in a bpffs directory, so that the programs keep counting
//! while no daemon runs and a restarted or upgraded daemon continues the same counters.
//!
//! ```text
//! <base>/                              pin_path, e.g. /sys/fs/bpf/linkmeter
//!   v3-i256-p10240/                    MAP_LAYOUT_VERSION, max_interfaces, max_peers
//!     directory stats peers overflow   the maps (and peer_table, peer_control, peer_totals)
//!     links/7-ingress links/7-egress   TCX links, by ifindex and hook
//! ```
//!
//! The directory's name says which maps it holds: a daemon whose layout or capacities differ
//! cannot reuse them, and removes the other directories (their links detach when unpinned, their
//! maps are freed) before it creates its own. Legacy tc filters persist without pins.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use collector_common::{
    DIRECTORY_MAP, MAP_LAYOUT_VERSION, OVERFLOW_MAP, PEER_CONTROL_MAP, PEER_TABLE_MAP,
    PEER_TOTALS_MAP, PEERS_MAP, STATS_MAP,
};

use super::{
    hooks::Hook,
    pin_fs::{
        Lock, PinError, io_error, is_bpffs, is_layout_dir, remove_tree, same_filesystem, try_lock,
    },
    tcx,
};

/// The default `pin_path`.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/linkmeter";

/// Map names in the object and their file names in the pin directory.
pub(super) const MAP_FILES: [(&str, &str); 7] = [
    (DIRECTORY_MAP, "directory"),
    (STATS_MAP, "stats"),
    (PEERS_MAP, "peers"),
    (PEER_TABLE_MAP, "peer_table"),
    (PEER_CONTROL_MAP, "peer_control"),
    (PEER_TOTALS_MAP, "peer_totals"),
    (OVERFLOW_MAP, "overflow"),
];

/// The pin directory of this daemon's layout, locked (`flock`) for as long as it exists: a
/// second daemon (another network namespace, a manual `run --pin` beside the DaemonSet) must
/// not adopt the same maps, and `linkmeter cleanup` must not pull them from under it.
#[derive(Clone, Debug)]
pub(crate) struct PinDir {
    dir: PathBuf,
    /// The open directory holding the lock.
    _lock: std::sync::Arc<Lock>,
}

/// How long a starting daemon waits for the lock of its pin directory (the previous pod may
/// still be shutting down).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl PinDir {
    /// The directory for maps of `interfaces` and `peers` entries under `base` (a bpffs),
    /// created if missing; the directories of other layouts or capacities are removed, which
    /// detaches their links. Returns it and the names of the directories removed.
    pub(crate) fn prepare(
        base: &Path,
        interfaces: u32,
        peers: u32,
    ) -> Result<(Self, Vec<String>), PinError> {
        // Nothing is created outside a bpffs: the nearest existing directory must be on one.
        let existing = base.ancestors().find(|a| a.exists()).unwrap_or(base);
        if !is_bpffs(existing) {
            return Err(PinError::NotBpffs {
                path: base.display().to_string(),
            });
        }
        fs::create_dir_all(base).map_err(io_error("creating the pin directory", base))?;
        if !is_bpffs(base) {
            return Err(PinError::NotBpffs {
                path: base.display().to_string(),
            });
        }
        let name = format!("v{MAP_LAYOUT_VERSION}-i{interfaces}-p{peers}");
        let dir = base.join(&name);
        if dir.exists() && !same_filesystem(base, &dir) {
            return Err(PinError::Mounted {
                path: dir.display().to_string(),
            });
        }
        let links = dir.join("links");
        fs::create_dir_all(&links).map_err(io_error("creating", &links))?;
        let lock = lock_waiting(&dir)?;
        let mut removed = Vec::new();
        for entry in fs::read_dir(base).map_err(io_error("reading", base))? {
            let entry = entry.map_err(io_error("reading", base))?;
            let other = entry.file_name().to_string_lossy().into_owned();
            // Only our own layout directories (`pin_path` may hold other programs' pins), and
            // only those no other daemon holds.
            if other == name || !is_layout_dir(&other) {
                continue;
            }
            // Held through the removal; one another daemon holds is left to it.
            let Ok(Some(_held)) = try_lock(&entry.path()) else {
                continue;
            };
            match remove_tree(base, &entry.path()) {
                Ok(()) => removed.push(other),
                Err(err @ PinError::Mounted { .. }) => {
                    tracing::warn!(error = %err, "not removing a pin directory");
                }
                Err(err) => return Err(err),
            }
        }
        Ok((
            Self {
                dir,
                _lock: std::sync::Arc::new(lock),
            },
            removed,
        ))
    }

    /// Removes every pin of the directory, maps and links, keeping it and its lock: what an
    /// earlier daemon left there is replaced (its links detach, its maps are freed).
    pub(super) fn clear(&self) -> Result<(), PinError> {
        let links = self.dir.join("links");
        remove_tree(&self.dir, &links)?;
        fs::create_dir_all(&links).map_err(io_error("creating", &links))?;
        for (_, file) in MAP_FILES {
            let path = self.map(file);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &path)(e)),
            }
        }
        Ok(())
    }

    /// Where map `file` (see [`MAP_FILES`]) is pinned.
    pub(super) fn map(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Where the TCX link of `hook` on `ifindex` is pinned.
    pub(super) fn link(&self, ifindex: u32, hook: Hook) -> PathBuf {
        self.dir.join("links").join(format!("{ifindex}-{hook}"))
    }

    /// Whether the links pinned for `ifindex` are attached to the interface with that index in
    /// the calling thread's network namespace: `None` when none is pinned (legacy tc), `Some(false)`
    /// when one is gone with its device, or sits on another namespace's device of that index, or
    /// a device made anew there since (its counters are another device's: not adopted).
    pub(super) fn still_linked(&self, ifindex: u32) -> Option<bool> {
        let mut pinned = false;
        for hook in [Hook::Ingress, Hook::Egress] {
            let path = self.link(ifindex, hook);
            let Ok(link) = tcx::open_pinned(&path) else {
                continue;
            };
            pinned = true;
            let attached = tcx::link_id(link.as_fd())
                .and_then(|id| Ok(tcx::links(ifindex, hook)?.contains(&id)))
                .unwrap_or(false);
            if !attached {
                return Some(false);
            }
        }
        pinned.then_some(true)
    }

    /// Removes the pinned links of `ifindex` (they detach: no daemon holds them).
    pub(super) fn unlink(&self, ifindex: u32) {
        for hook in [Hook::Ingress, Hook::Egress] {
            unpin(&self.link(ifindex, hook));
        }
    }

    /// The ifindexes that have a pinned link.
    pub(super) fn linked(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(self.dir.join("links")) else {
            return Vec::new();
        };
        let mut out: Vec<u32> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.split('-').next()?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Attaches `program` to `hook` of the interface with index `ifindex` through the TCX link
/// pinned at `path`: an earlier daemon's link gets our program atomically (`BPF_LINK_UPDATE`:
/// not a packet goes uncounted or counted twice); without one, or when it no longer works (its
/// device is gone: `ENOLINK`), a new link is made first in the chain and pinned there.
///
/// # Errors
///
/// Attaching, or pinning the new link, failed.
pub(super) fn attach_tcx(
    program: BorrowedFd<'_>,
    ifindex: u32,
    hook: Hook,
    path: &Path,
) -> io::Result<OwnedFd> {
    if let Ok(old) = tcx::open_pinned(path) {
        match tcx::link_update(old.as_fd(), program) {
            Ok(()) => return Ok(old),
            Err(err) => {
                tracing::debug!(ifindex, %hook, error = %err,
                    "the pinned link cannot take the program (its device is gone?); attaching anew");
                unpin(path);
            }
        }
    }
    let link = tcx::link_create(program, ifindex, hook)?;
    tcx::pin(link.as_fd(), path)?;
    Ok(link)
}

/// Removes the pin of a link (it detaches when its last descriptor closes); a pin already gone
/// is fine.
pub(super) fn unpin(path: &Path) {
    if let Err(err) = fs::remove_file(path)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %err, "cannot remove a pinned link");
    }
}

/// Waits up to [`LOCK_WAIT`] for the lock of `dir`.
fn lock_waiting(dir: &Path) -> Result<Lock, PinError> {
    let start = std::time::Instant::now();
    loop {
        match try_lock(dir).map_err(io_error("locking", dir))? {
            Some(lock) => return Ok(lock),
            None if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            None => {
                return Err(PinError::Busy {
                    path: dir.display().to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_is_not_a_bpffs_is_refused() {
        let base = std::env::temp_dir().join(format!("lm-pin-{}", std::process::id()));
        let err = PinDir::prepare(&base, 1, 1).expect_err("tmpfs is not bpffs");
        assert!(matches!(err, PinError::NotBpffs { .. }), "{err}");
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn only_linkmeter_layout_directories_are_ever_removed() {
        assert!(is_layout_dir("v1-i256-p10240"));
        for other in [
            "cilium",
            "tc",
            "v1-i256",
            "v1-i256-p10240-x",
            "vx-i1-p1",
            "v1-i-p1",
        ] {
            assert!(!is_layout_dir(other), "{other}");
        }
    }

    #[test]
    fn link_pins_are_named_by_ifindex_and_hook() {
        let pins = PinDir {
            dir: PathBuf::from("/sys/fs/bpf/linkmeter/v1-i2-p3"),
            _lock: std::sync::Arc::new(
                try_lock(&std::env::temp_dir())
                    .expect("lock")
                    .expect("nobody holds it"),
            ),
        };
        assert_eq!(
            pins.link(7, Hook::Ingress),
            Path::new("/sys/fs/bpf/linkmeter/v1-i2-p3/links/7-ingress")
        );
        assert_eq!(
            pins.map("stats"),
            Path::new("/sys/fs/bpf/linkmeter/v1-i2-p3/stats")
        );
    }
}
