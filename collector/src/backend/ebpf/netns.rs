//! The network namespace an attachment was made in, and entering it from another thread.

use std::{
    fs::File,
    io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    sync::Arc,
};

use nix::sched::{CloneFlags, setns};

/// The network namespace an attachment was made in.
///
/// Legacy tc filters are found and removed over netlink, and TCX hooks queried with
/// `BPF_PROG_QUERY`, both by ifindex in the *calling thread's* namespace. Doing either from
/// another namespace would miss the attachment or, worse, hit a device with the same ifindex
/// there. Callers therefore enter this namespace first when elsewhere.
#[derive(Debug)]
pub(crate) struct AttachNetns {
    fd: File,
    inode: u64,
}

impl AttachNetns {
    /// The calling thread's namespace, reusing `cached` when it is the same one (so that a
    /// thousand attachments share one file descriptor).
    pub(super) fn current(cached: &mut Option<Arc<Self>>) -> io::Result<Arc<Self>> {
        let inode = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        if let Some(netns) = cached.as_ref().filter(|n| n.inode == inode) {
            return Ok(Arc::clone(netns));
        }
        let netns = Arc::new(Self::open()?);
        *cached = Some(Arc::clone(&netns));
        Ok(netns)
    }

    fn open() -> io::Result<Self> {
        let fd = File::open("/proc/thread-self/ns/net")?;
        let inode = fd.metadata()?.ino();
        Ok(Self { fd, inode })
    }

    /// Moves the calling thread into this namespace (if it is elsewhere) until the guard drops.
    pub(super) fn enter(&self) -> io::Result<Option<NetnsRestore>> {
        let current = Self::open()?;
        if current.inode == self.inode {
            return Ok(None);
        }
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        Ok(Some(NetnsRestore {
            original: current.fd,
        }))
    }
}

/// Returns the thread to the namespace it came from.
#[derive(Debug)]
pub(super) struct NetnsRestore {
    original: File,
}

impl Drop for NetnsRestore {
    fn drop(&mut self) {
        if let Err(err) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %err, "cannot return to the original network namespace");
        }
    }
}
