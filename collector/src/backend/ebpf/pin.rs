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

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use collector_common::{
    DIRECTORY_MAP, MAP_LAYOUT_VERSION, OVERFLOW_MAP, PEER_CONTROL_MAP, PEER_TABLE_MAP,
    PEER_TOTALS_MAP, PEERS_MAP, STATS_MAP,
};

use super::{hooks::Hook, tcx};

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

/// Linux's `BPF_FS_MAGIC`: the filesystem type of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Why the pin directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The base is not on a bpffs.
    #[error(
        "{path} is not on a BPF filesystem (mount -t bpf bpf {path}, or mount the host's /sys/fs/bpf)"
    )]
    NotBpffs {
        /// The base directory.
        path: String,
    },
    /// Another linkmeter process holds the directory.
    #[error("{path} is in use by another linkmeter process (stop it first)")]
    Busy {
        /// The directory.
        path: String,
    },
    /// A directory could not be created, read or removed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinError {
    let path = path.display().to_string();
    move |source| PinError::Io { what, path, source }
}

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

/// An open directory, locked.
type Lock = Flock<fs::File>;

/// Tries to take the exclusive lock of directory `path`; `Ok(None)` when someone holds it.
fn try_lock(path: &Path) -> io::Result<Option<Lock>> {
    let dir = fs::File::open(path)?;
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

impl PinDir {
    /// The directory for maps of `interfaces` and `peers` entries under `base` (a bpffs),
    /// created if missing; the directories of other layouts or capacities are removed, which
    /// detaches their links. Returns it and the names of the directories removed.
    pub(crate) fn prepare(
        base: &Path,
        interfaces: u32,
        peers: u32,
    ) -> Result<(Self, Vec<String>), PinError> {
        fs::create_dir_all(base).map_err(io_error("creating the pin directory", base))?;
        if !is_bpffs(base) {
            return Err(PinError::NotBpffs {
                path: base.display().to_string(),
            });
        }
        let name = format!("v{MAP_LAYOUT_VERSION}-i{interfaces}-p{peers}");
        let dir = base.join(&name);
        let links = dir.join("links");
        fs::create_dir_all(&links).map_err(io_error("creating", &links))?;
        let lock = lock_waiting(&dir)?;
        let mut removed = Vec::new();
        for entry in fs::read_dir(base).map_err(io_error("reading", base))? {
            let entry = entry.map_err(io_error("reading", base))?;
            let other = entry.file_name().to_string_lossy().into_owned();
            // Only our own layout directories (`pin_path` may hold other programs' pins), and
            // only those no other daemon holds.
            if other != name
                && is_layout_dir(&other)
                && try_lock(&entry.path()).is_ok_and(|held| held.is_some())
            {
                remove_tree(&entry.path())?;
                removed.push(other);
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

    /// Where map `file` (see [`MAP_FILES`]) is pinned.
    pub(super) fn map(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Where the TCX link of `hook` on `ifindex` is pinned.
    pub(super) fn link(&self, ifindex: u32, hook: Hook) -> PathBuf {
        self.dir.join("links").join(format!("{ifindex}-{hook}"))
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

/// Removes what linkmeter pinned under `base` (`linkmeter cleanup`): its layout directories
/// only — `base` may hold other programs' pins — then `base` itself when that leaves it empty.
/// Nothing there is fine.
///
/// # Errors
///
/// `base` is not on a bpffs, or a pin could not be removed.
pub(crate) fn remove_ours(base: &Path) -> Result<bool, PinError> {
    remove_ours_locked(base)
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

fn remove_ours_locked(base: &Path) -> Result<bool, PinError> {
    if !base.exists() {
        return Ok(false);
    }
    if !is_bpffs(base) {
        return Err(PinError::NotBpffs {
            path: base.display().to_string(),
        });
    }
    let mut removed = false;
    for entry in fs::read_dir(base).map_err(io_error("reading", base))? {
        let entry = entry.map_err(io_error("reading", base))?;
        if is_layout_dir(&entry.file_name().to_string_lossy()) {
            // Held while its daemon runs: removing the pins then would only make it attach
            // again, unpinned, at its next resync.
            let _lock = try_lock(&entry.path())
                .map_err(io_error("locking", &entry.path()))?
                .ok_or_else(|| PinError::Busy {
                    path: entry.path().display().to_string(),
                })?;
            remove_tree(&entry.path())?;
            removed = true;
        }
    }
    // Left in place when something else is in it.
    let _ = fs::remove_dir(base);
    Ok(removed)
}

/// Removes a pin directory tree: unpinning a link detaches it (nothing else holds it), unpinning
/// a map frees it once no program uses it.
fn remove_tree(path: &Path) -> Result<(), PinError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path)(e)),
    }
}

/// Whether `name` is one of linkmeter's layout directories: `v<N>-i<N>-p<N>`.
fn is_layout_dir(name: &str) -> bool {
    let mut parts = name.split('-');
    let numbered = |part: Option<&str>, prefix: char| {
        part.and_then(|p| p.strip_prefix(prefix))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    numbered(parts.next(), 'v')
        && numbered(parts.next(), 'i')
        && numbered(parts.next(), 'p')
        && parts.next().is_none()
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
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
