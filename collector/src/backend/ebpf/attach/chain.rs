//! The chain-position guard: what runs before our program on a hook, and moving ours back to
//! the head when another program was placed before it.

use std::{io, os::fd::AsFd as _};

use aya::Ebpf;

use super::{HookAttachment, HookLink, InterfaceAttachment};
use crate::backend::ebpf::{
    hooks::{Placement, ProgramIds, classifier, is_linkmeter_program, kernel_has_tcx},
    legacy::{self, LEGACY_PRIORITY},
    pin, tcx,
};

impl HookAttachment {
    /// What runs before ours (`id`) on this hook of `ifindex`; `None` when ours is not there any
    /// more. linkmeter's own programs (a command such as `watch` attaches its copy first) are
    /// left out: they count into their own maps and let every packet on.
    fn ahead(&self, ifindex: u32, id: u32) -> io::Result<Option<Ahead>> {
        let hook = self.hook;
        let foreign_tcx = |ids: &[u32]| {
            let foreign = ids
                .iter()
                .filter(|&&p| !tcx::program_name(p).is_ok_and(|n| is_linkmeter_program(&n)))
                .count();
            u32::try_from(foreign).unwrap_or(u32::MAX)
        };
        Ok(match &self.link {
            HookLink::Tcx { .. } => {
                let ids = tcx::programs(ifindex, hook)?;
                ids.iter().position(|&p| p == id).map(|at| Ahead {
                    movable: foreign_tcx(&ids[..at]),
                    fixed: 0,
                })
            }
            // The dump lists filters in the order they run: by priority, and within one the
            // newest first; each priority's classifier also appears once with handle 0. Every
            // TCX program runs before every filter, and no filter can get ahead of one.
            HookLink::Filter { handle } => {
                let filters: Vec<_> = legacy::filters(ifindex, hook)?
                    .into_iter()
                    .filter(|f| u32::from(f.handle) != 0)
                    .collect();
                let Some(at) = filters.iter().position(|f| legacy::is_ours(f, *handle, id)) else {
                    return Ok(None);
                };
                let foreign = filters[..at].iter().filter(|f| !f.is_linkmeter()).count();
                let tcx = if kernel_has_tcx() {
                    foreign_tcx(&tcx::programs(ifindex, hook)?)
                } else {
                    0
                };
                Some(Ahead {
                    movable: u32::try_from(foreign).unwrap_or(u32::MAX),
                    fixed: tcx,
                })
            }
        })
    }

    /// Moves our program to the head of this hook's chain (see [`InterfaceAttachment::check`]).
    fn reanchor(&mut self, ebpf: &mut Ebpf, ifindex: u32) -> io::Result<()> {
        let hook = self.hook;
        let program = classifier(ebpf, hook.program())
            .ok_or_else(|| io::Error::other(format!("program {} missing", hook.program())))?;
        let program_fd = program.fd().map_err(io::Error::other)?;
        let program_fd = program_fd.as_fd();
        match &mut self.link {
            HookLink::Tcx { fd, pin } => {
                // The kernel runs a program once per hook: the old link goes first.
                if let Some(path) = pin {
                    pin::unpin(path);
                }
                match tcx::link_detach(fd.as_fd()) {
                    Err(e) if e.raw_os_error() != Some(libc::ENOLINK) => return Err(e),
                    _ => {}
                }
                let new = tcx::link_create(program_fd, ifindex, hook)?;
                if let Some(path) = pin
                    && let Err(err) = tcx::pin(new.as_fd(), path)
                {
                    // It counts while this daemon runs; a restart attaches afresh.
                    tracing::warn!(path = %path.display(), error = %err,
                        "cannot pin the re-anchored link");
                }
                *fd = new;
            }
            HookLink::Filter { handle } => {
                legacy::delete_filter(ifindex, hook, LEGACY_PRIORITY, *handle)?;
                legacy::add_filter(
                    ifindex,
                    hook,
                    (LEGACY_PRIORITY, *handle),
                    (program_fd, hook.program()),
                    false,
                )?;
            }
        }
        Ok(())
    }
}

/// Foreign programs that run before ours on a hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ahead {
    /// Those ours can be moved ahead of.
    movable: u32,
    /// Those it cannot: TCX programs, ahead of a legacy tc filter.
    fixed: u32,
}

impl Ahead {
    const fn total(self) -> u32 {
        self.movable.saturating_add(self.fixed)
    }
}

/// What a check of an attachment found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Our program no longer runs on a hook: someone removed it.
    Removed,
    /// Where it stands on each hook (ingress, egress).
    Placed([Placement; 2]),
}

impl InterfaceAttachment {
    /// Checks both hooks as [`InterfaceAttachment::is_intact`] does and, where another
    /// program was placed before ours (a Cilium restart that re-attached, an operator's tool),
    /// moves ours back to the head of the chain: a program before ours that redirects, drops or
    /// ends the chain would silently hide packets from our counts (retina#1958). A hook that
    /// cannot be queried counts as in place and first.
    ///
    /// Moving is not atomic: the kernel runs a program only once per hook, so ours is detached
    /// and attached again at the head (under legacy tc: removed and added again at our
    /// priority, where the newest filter runs first). Packets in between are not counted: about
    /// 10 ms under TCX (the detach waits for an RCU grace period), two netlink round trips under
    /// legacy tc (an adversarial review measured 4,600–6,000 packets per move in a UDP flood). A
    /// move that fails half-way leaves the hook without ours, which the next check finds removed
    /// and re-attaches. linkmeter's own programs ahead (a command's copy) are no reason to move;
    /// TCX programs ahead of a legacy filter cannot be passed and are only reported.
    pub(crate) fn check(&mut self, ebpf: &mut Ebpf, ids: ProgramIds) -> Checked {
        let mut placed = [Placement::default(); 2];
        let _restore = match self.netns.enter() {
            Ok(restore) => restore,
            Err(err) => {
                tracing::debug!(interface = %self.interface, error = %err,
                    "cannot enter the attachment's network namespace; assuming it is intact");
                return Checked::Placed(placed);
            }
        };
        let (interface, ifindex) = (self.interface.as_str(), self.ifindex);
        for attached in &mut self.hooks {
            let hook = attached.hook;
            let ahead = match attached.ahead(ifindex, ids.of(hook)) {
                Ok(None) => return Checked::Removed,
                Ok(Some(ahead)) => ahead,
                Err(err) => {
                    tracing::debug!(interface, %hook, error = %crate::Report(&err),
                        "cannot query the hook; assuming our program is still attached");
                    Ahead::default()
                }
            };
            let place = &mut placed[hook.index()];
            place.ahead = ahead.total();
            if ahead.movable == 0 {
                continue;
            }
            match attached.reanchor(ebpf, ifindex) {
                Ok(()) => {
                    place.moved_from = Some(ahead.total());
                    place.ahead = match attached.ahead(ifindex, ids.of(hook)) {
                        Ok(Some(now)) => now.total(),
                        Ok(None) => return Checked::Removed,
                        Err(_) => ahead.fixed,
                    };
                }
                Err(err) => {
                    tracing::warn!(interface, %hook, error = %crate::Report(&err),
                        "cannot move linkmeter's program back to the head of the hook");
                }
            }
        }
        Checked::Placed(placed)
    }

    /// Whether our program (`id`) still runs on `attached`'s hook.
    pub(super) fn runs_on(&self, attached: &HookAttachment, id: u32) -> io::Result<bool> {
        Ok(attached.ahead(self.ifindex, id)?.is_some())
    }
}
