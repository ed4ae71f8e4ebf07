//! The pin path on the filesystem: its errors, its locks, which directories are ours, and
//! removing them (what `linkmeter cleanup` and a daemon with another layout remove), never
//! descending into another filesystem mounted under the pin path.

use std::{fs, io, path::Path};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

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
    /// Another filesystem is mounted inside the pin path: never descended into.
    #[error("{path} is another filesystem mounted under the pin path; left alone (unmount it)")]
    Mounted {
        /// The mount point.
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

pub(super) fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinError {
    let path = path.display().to_string();
    move |source| PinError::Io { what, path, source }
}

/// An open directory, locked.
pub(super) type Lock = Flock<fs::File>;

/// Tries to take the exclusive lock of directory `path`; `Ok(None)` when someone holds it.
pub(super) fn try_lock(path: &Path) -> io::Result<Option<Lock>> {
    let dir = fs::File::open(path)?;
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// Whether `name` is one of linkmeter's layout directories: `v<N>-i<N>-p<N>`.
pub(super) fn is_layout_dir(name: &str) -> bool {
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

/// Whether `path` is on a bpffs.
pub(super) fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
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
            remove_tree(base, &entry.path())?;
            removed = true;
        }
    }
    // Left in place when something else is in it.
    let _ = fs::remove_dir(base);
    Ok(removed)
}

/// Whether `path` is on the same filesystem as `base` (a mount point inside is not).
pub(super) fn same_filesystem(base: &Path, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (fs::symlink_metadata(base), fs::symlink_metadata(path)) {
        (Ok(b), Ok(p)) => b.dev() == p.dev(),
        _ => true,
    }
}

/// Removes a pin directory tree under `base`: unpinning a link detaches it (nothing else holds
/// it), unpinning a map frees it once no program uses it. Nothing on another filesystem is
/// touched: a mount inside the tree stops the removal before anything of it is deleted.
pub(super) fn remove_tree(base: &Path, path: &Path) -> Result<(), PinError> {
    if !path.exists() {
        return Ok(());
    }
    let mut mounted = None;
    check_same_filesystem(base, path, &mut mounted);
    if let Some(path) = mounted {
        return Err(PinError::Mounted { path });
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path)(e)),
    }
}

/// The first directory under `path` (itself included) on another filesystem than `base`.
fn check_same_filesystem(base: &Path, path: &Path, mounted: &mut Option<String>) {
    if mounted.is_some() {
        return;
    }
    if !same_filesystem(base, path) {
        *mounted = Some(path.display().to_string());
        return;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            check_same_filesystem(base, &entry.path(), mounted);
        }
    }
}
