//! Legacy tc (clsact qdisc + cls_bpf filters in direct-action mode): used on kernels without
//! TCX or when asked for.
//!
//! The `clsact` qdisc is added when missing and **never** deleted or replaced, since other
//! tools' filters live there. Our filters use a fixed priority ([`LEGACY_PRIORITY`]) and a
//! handle of their [`Role`]: the daemon's and the one-shot commands' (`list --attach`, `dump`,
//! `watch`) never share one, so a command never touches the daemon's filters. A filter is ours
//! when it runs the program id we loaded; a filter at one of our handles that runs another
//! linkmeter program was left by an earlier daemon (removed by the daemon at start and before
//! attaching there), and a filter that is not linkmeter's is reported and left alone, ours
//! going to the next free handle. Filters are found by dumping the hook's filters over
//! rtnetlink ([`filters`]), removed by index ([`delete_filter`]), and detached from the network
//! namespace they were added in ([`AttachNetns`]).

use std::{
    fs::File,
    io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    sync::Arc,
};

use aya::programs::tc::TcHandle;
use nix::sched::{CloneFlags, setns};

pub(super) use super::tc_netlink::{add_clsact, add_filter, delete_filter, filters};
use super::{attach::AttachError, hooks::Hook};

/// Priority of linkmeter's cls_bpf filters in legacy tc mode (lower runs earlier).
pub(crate) const LEGACY_PRIORITY: u16 = 1;

/// Handles a role tries, in order, when earlier ones are taken by another tool's filter.
const HANDLES_PER_ROLE: u16 = 4;

/// Who attaches: the daemon, or a one-shot command running beside it. They use different
/// legacy tc handles, so that neither removes or replaces the other's filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// `linkmeter run`: handles `0x4c4d` ("LM"), then `0x1:4c4d`, ...; at start it removes the
    /// filters earlier daemons left at them.
    #[default]
    Daemon,
    /// `list --attach`, `dump`, `watch`: handles `0x4c4e`, then `0x1:4c4e`, ...; removes
    /// nothing but its own.
    Command,
}

impl Role {
    /// The handles this role attaches at, in order of preference.
    pub(crate) fn handles(self) -> impl Iterator<Item = TcHandle> {
        let minor = match self {
            Self::Daemon => 0x4c4d,
            Self::Command => 0x4c4e,
        };
        (0..HANDLES_PER_ROLE).map(move |major| TcHandle::new(major, minor))
    }
}

/// Where a legacy filter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// A free handle: a new filter.
    Free(TcHandle),
    /// A handle holding an earlier daemon's filter, whose program is replaced in place
    /// (atomically: the filter keeps counting into the pinned maps until ours takes over).
    Replace(TcHandle),
}

/// The handle `role` attaches at on this hook: the first of its handles that is free, or holds
/// a filter an earlier daemon left (daemon only): replaced in place when `adopt` (pinned maps
/// continue), removed first otherwise. A handle held by another tool's filter is reported and
/// skipped.
pub(super) fn choose_handle(
    interface: &str,
    ifindex: u32,
    hook: Hook,
    role: Role,
    adopt: bool,
) -> Result<Slot, AttachError> {
    let stale_error = |source| AttachError::StaleFilter {
        interface: interface.to_owned(),
        hook,
        source,
    };
    let present = filters(ifindex, hook).map_err(stale_error)?;
    for handle in role.handles() {
        let Some(filter) = present
            .iter()
            .find(|f| f.priority == LEGACY_PRIORITY && f.handle == handle)
        else {
            return Ok(Slot::Free(handle));
        };
        if !filter.is_linkmeter() {
            tracing::warn!(interface, %hook, handle = format_args!("{:#x}", u32::from(handle)),
                program = filter.name.as_deref().unwrap_or("?"),
                "another tool's tc filter sits at linkmeter's handle; attaching beside it");
        } else if role == Role::Daemon && adopt {
            return Ok(Slot::Replace(handle));
        } else if role == Role::Daemon {
            delete_filter(ifindex, hook, filter.priority, handle).map_err(stale_error)?;
            tracing::info!(interface, %hook, "removed a tc filter an earlier linkmeter left");
            return Ok(Slot::Free(handle));
        }
    }
    Err(AttachError::NoFreeHandle {
        interface: interface.to_owned(),
        hook,
    })
}

/// Removes the filters of other linkmeter processes from both hooks of `ifindex`: at the
/// daemon's handles (`Some(Role::Daemon)`: what an earlier daemon left, e.g. after SIGKILL),
/// except those running a program in `keep` (ours), or at any priority and handle (`None`:
/// `linkmeter cleanup`). Returns how many were removed.
///
/// # Errors
///
/// Listing or removing a filter failed.
pub(crate) fn remove_stale_filters(
    ifindex: u32,
    scope: Option<Role>,
    keep: &[u32],
) -> io::Result<usize> {
    let mut removed = 0;
    for hook in Hook::ALL {
        for filter in filters(ifindex, hook)? {
            let in_scope = scope.is_none_or(|role| {
                filter.priority == LEGACY_PRIORITY && role.handles().any(|h| h == filter.handle)
            });
            let ours = filter.program_id.is_some_and(|id| keep.contains(&id));
            if filter.is_linkmeter() && in_scope && !ours {
                match delete_filter(ifindex, hook, filter.priority, filter.handle) {
                    Ok(()) => removed += 1,
                    // Gone meanwhile (the device, or another cleanup).
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_and_the_commands_never_share_a_handle() {
        let daemon: Vec<u32> = Role::Daemon.handles().map(u32::from).collect();
        let command: Vec<u32> = Role::Command.handles().map(u32::from).collect();
        assert_eq!(daemon, [0x4c4d, 0x1_4c4d, 0x2_4c4d, 0x3_4c4d]);
        assert!(command.iter().all(|h| !daemon.contains(h)));
    }
}
