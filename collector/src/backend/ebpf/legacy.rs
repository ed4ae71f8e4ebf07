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
//! rtnetlink, removed by index ([`delete_filter`]), and detached from the network namespace
//! they were added in (`netns`). Whether a filter is ours is decided in one place, [`is_ours`].

use std::io;

use aya::programs::tc::TcHandle;

pub(super) use super::tc_netlink::{add_clsact, add_filter, delete_filter, filters};
use super::{error::AttachError, hooks::Hook, tc_netlink::Filter};

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

/// Whether `filter` sits at our priority and `handle`.
fn sits_at(filter: &Filter, handle: TcHandle) -> bool {
    filter.priority == LEGACY_PRIORITY && filter.handle == handle
}

/// Whether `filter` is ours: at our priority and `handle`, running the program with kernel id
/// `program_id` (a filter is recognised by what it runs, never by its place alone).
pub(super) fn is_ours(filter: &Filter, handle: TcHandle, program_id: u32) -> bool {
    sits_at(filter, handle) && filter.program_id == Some(program_id)
}

/// Whether our filter at `handle` on `hook` of `ifindex` still runs program `program_id`.
///
/// # Errors
///
/// The hook's filters cannot be listed (`ENODEV`: the device is gone).
pub(super) fn still_ours(
    ifindex: u32,
    hook: Hook,
    handle: TcHandle,
    program_id: u32,
) -> io::Result<bool> {
    Ok(filters(ifindex, hook)?
        .iter()
        .any(|f| is_ours(f, handle, program_id)))
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
        let Some(filter) = present.iter().find(|f| sits_at(f, handle)) else {
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
            let in_scope =
                scope.is_none_or(|role| role.handles().any(|handle| sits_at(&filter, handle)));
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
