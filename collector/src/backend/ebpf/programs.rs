//! The loaded counting programs and everything attaching them needs: their kernel ids (how our
//! attachments are recognised), the role (which legacy tc handles), the pin directory, and the
//! network namespace attachments are recorded in. Everything here may wait on netlink (legacy
//! tc) and runs wherever the caller runs it: on the hook worker's thread in the daemon.

use std::{io, sync::Arc};

use aya::Ebpf;

use super::{
    attach::{self, Checked, InterfaceAttachment, Target},
    error::AttachError,
    hooks::{AttachMode, ProgramIds},
    legacy::{self, Role},
    netns::AttachNetns,
    pin::PinDir,
};

/// The counting programs, loaded and verified.
pub(crate) struct Programs {
    ebpf: Ebpf,
    ids: ProgramIds,
    role: Role,
    pins: Option<PinDir>,
    /// The namespace of the latest attachment, shared by those made in the same one.
    netns: Option<Arc<AttachNetns>>,
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programs")
            .field("ids", &self.ids)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Programs {
    /// The loaded `ebpf` whose programs have the kernel ids `ids`, attaching as `role` and
    /// pinning under `pins`.
    pub(super) const fn new(ebpf: Ebpf, ids: ProgramIds, role: Role, pins: Option<PinDir>) -> Self {
        Self {
            ebpf,
            ids,
            role,
            pins,
            netns: None,
        }
    }

    /// The kernel ids of the two programs.
    pub(crate) const fn ids(&self) -> ProgramIds {
        self.ids
    }

    /// Attaches the programs to both TC hooks of the interface with index `ifindex` (`name`
    /// only names it in messages) in the calling thread's network namespace. With
    /// [`AttachMode::Auto`], TCX is used where the kernel has it and legacy tc otherwise. If
    /// the second hook fails, the first is detached again before the error is returned.
    ///
    /// # Errors
    ///
    /// [`AttachError`] naming the interface and hook.
    pub(crate) fn attach(
        &mut self,
        ifindex: u32,
        name: &str,
        mode: AttachMode,
    ) -> Result<InterfaceAttachment, AttachError> {
        let netns = AttachNetns::current(&mut self.netns).map_err(|source| AttachError::Netns {
            interface: name.to_owned(),
            source,
        })?;
        let target = Target {
            interface: name,
            ifindex,
            role: self.role,
            pins: self.pins.as_ref(),
        };
        attach::attach(&mut self.ebpf, target, mode, netns)
    }

    /// Whether `attachment`'s hooks still run our programs; see
    /// [`InterfaceAttachment::is_intact`].
    pub(crate) fn is_intact(&self, attachment: &InterfaceAttachment) -> bool {
        attachment.is_intact(self.ids)
    }

    /// Checks `attachment` and moves our programs back to the head of a hook where another
    /// program was placed before them; see [`InterfaceAttachment::check`].
    pub(crate) fn check(&mut self, attachment: &mut InterfaceAttachment) -> Checked {
        attachment.check(&mut self.ebpf, self.ids)
    }

    /// Removes the legacy tc filters earlier processes of our role left on `ifindex` (after a
    /// SIGKILL, say): those at our handles that run another linkmeter program. Returns how many.
    ///
    /// # Errors
    ///
    /// Listing or removing a filter failed.
    pub(crate) fn remove_stale_filters(&self, ifindex: u32) -> io::Result<usize> {
        let ours = [self.ids.ingress, self.ids.egress];
        legacy::remove_stale_filters(ifindex, Some(self.role), &ours)
    }
}
