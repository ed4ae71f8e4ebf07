//! Attaching the counting programs to an interface's TC hooks, detaching them, and checking
//! that they are still there — for both kernel mechanisms, side by side:
//!
//! - **TCX** (Linux ≥ 6.6): a BPF link per hook, inserted **first** in the hook's multi-program
//!   chain (`BPF_F_BEFORE`), so a later program that ends the chain (as Cilium's do with
//!   `TC_ACT_OK`, `TC_ACT_REDIRECT` or `TC_ACT_SHOT`) cannot hide traffic from us. Our program
//!   returns `TCX_NEXT`, so everything behind it still runs. The link disappears when its file
//!   descriptor is closed or the device is deleted.
//! - **Legacy tc** (clsact + cls_bpf, see `legacy`): used on older kernels or when asked for.
//!
//! Either way everything is done by interface index (see `tcx` and `tc_netlink`), never by
//! name: a name may meanwhile belong to another device, or not be UTF-8. An attachment is
//! recognised as ours by the kernel id of the program on the hook.
//!
//! The chain-position guard (what runs before ours, and moving ours back to the head) is in
//! `chain`.

use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
    path::PathBuf,
    sync::Arc,
};

use aya::{Ebpf, programs::tc::TcHandle};

pub(crate) use self::chain::Checked;

use super::{
    error::AttachError,
    hooks::{AttachMode, AttachedMode, Hook, ProgramIds, classifier, kernel_has_tcx},
    legacy::{self, LEGACY_PRIORITY, Role},
    netns::{AttachNetns, NetnsRestore},
    pin::{self, PinDir},
    tcx,
};

mod chain;

/// Our program attached to one hook of one interface. Dropping it detaches (errors ignored),
/// unless it is persistent (pinning): then it stays in the kernel, counting.
#[derive(Debug)]
struct HookAttachment {
    hook: Hook,
    link: HookLink,
    /// The kernel id of the program attached.
    program_id: u32,
    /// Kept in the kernel when dropped (pinning).
    persistent: bool,
}

/// How the program is attached to the hook.
#[derive(Debug)]
enum HookLink {
    /// A TCX link: it lasts while this descriptor, or its pin, exists.
    Tcx {
        fd: OwnedFd,
        /// Where it is pinned.
        pin: Option<PathBuf>,
    },
    /// A legacy cls_bpf filter at priority [`LEGACY_PRIORITY`] and this handle.
    Filter { handle: TcHandle },
}

/// Where and as whom to attach.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target<'a> {
    /// The interface name (for messages: everything is done by index).
    pub(super) interface: &'a str,
    /// Its index.
    pub(super) ifindex: u32,
    /// The daemon or a command (legacy tc handles).
    pub(super) role: Role,
    /// The pin directory, when pinning.
    pub(super) pins: Option<&'a PinDir>,
}

/// Attaches our (loaded) program for `hook` to the interface with index `target.ifindex`
/// (calling thread's network namespace) with `mode`; never by name.
fn attach_hook(
    ebpf: &mut Ebpf,
    target: Target<'_>,
    hook: Hook,
    mode: AttachedMode,
) -> Result<HookAttachment, AttachError> {
    let Target {
        interface, ifindex, ..
    } = target;
    let map_err = |source: io::Error| {
        if source.raw_os_error() == Some(libc::ENODEV) {
            AttachError::NoSuchInterface {
                interface: interface.to_owned(),
            }
        } else {
            AttachError::Attach {
                interface: interface.to_owned(),
                hook,
                mode,
                source,
            }
        }
    };
    let program = classifier(ebpf, hook.program()).ok_or_else(|| {
        map_err(io::Error::other(format!(
            "program {} missing from the object",
            hook.program()
        )))
    })?;
    let program_id = program
        .info()
        .map_err(|e| map_err(io::Error::other(e)))?
        .id();
    let program_fd = program.fd().map_err(|e| map_err(io::Error::other(e)))?;
    let program_fd = program_fd.as_fd();
    let link = match mode {
        AttachedMode::Tcx => {
            if !kernel_has_tcx() {
                return Err(AttachError::TcxUnsupported {
                    interface: interface.to_owned(),
                });
            }
            match target.pins {
                Some(pins) => {
                    let path = pins.link(ifindex, hook);
                    let fd = pin::attach_tcx(program_fd, ifindex, hook, &path).map_err(map_err)?;
                    HookLink::Tcx {
                        fd,
                        pin: Some(path),
                    }
                }
                None => HookLink::Tcx {
                    fd: tcx::link_create(program_fd, ifindex, hook).map_err(map_err)?,
                    pin: None,
                },
            }
        }
        AttachedMode::Tc => {
            legacy::add_clsact(ifindex).map_err(|source| {
                if source.raw_os_error() == Some(libc::ENODEV) {
                    AttachError::NoSuchInterface {
                        interface: interface.to_owned(),
                    }
                } else {
                    AttachError::Clsact {
                        interface: interface.to_owned(),
                        source,
                    }
                }
            })?;
            if let Some(pins) = target.pins {
                // An earlier daemon in TCX mode pinned a link here: it would count every
                // packet a second time into the same maps.
                pin::unpin(&pins.link(ifindex, hook));
            }
            let adopt = target.pins.is_some();
            let (handle, replace) =
                match legacy::choose_handle(interface, ifindex, hook, target.role, adopt)? {
                    legacy::Slot::Free(handle) => (handle, false),
                    legacy::Slot::Replace(handle) => (handle, true),
                };
            legacy::add_filter(
                ifindex,
                hook,
                (LEGACY_PRIORITY, handle),
                (program_fd, hook.program()),
                replace,
            )
            .map_err(map_err)?;
            HookLink::Filter { handle }
        }
    };
    Ok(HookAttachment {
        hook,
        link,
        program_id,
        persistent: target.pins.is_some(),
    })
}

impl HookAttachment {
    /// Detaches from the kernel. An interface that no longer exists counts as detached (the
    /// kernel removed the attachment with the device).
    ///
    /// A TCX link is unpinned and its descriptor closed, which releases it. A legacy filter is
    /// removed only while it still runs our program: someone may have replaced it with their
    /// own at our handle, which must stay.
    fn detach(self, interface: &str, ifindex: u32, mode: AttachedMode) -> Result<(), AttachError> {
        let hook = self.hook;
        match self.link {
            HookLink::Tcx { fd, pin } => {
                if let Some(pin) = &pin {
                    pin::unpin(pin);
                }
                drop(fd);
                Ok(())
            }
            HookLink::Filter { handle } => {
                // When the filters cannot be listed it is not removed: it might be another
                // tool's by now, and one of ours left behind is removed by the next daemon at
                // start.
                if !legacy::still_ours(ifindex, hook, handle, self.program_id).unwrap_or(false) {
                    return Ok(());
                }
                match legacy::delete_filter(ifindex, hook, LEGACY_PRIORITY, handle) {
                    Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
                        Err(AttachError::Detach {
                            interface: interface.to_owned(),
                            hook,
                            mode,
                            source: e,
                        })
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

impl HookAttachment {
    /// Lets go of the attachment: detached, unless it is persistent, which stays in the kernel
    /// (a pinned TCX link, a legacy filter) for the next daemon to adopt.
    fn release(self, interface: &str, ifindex: u32, mode: AttachedMode) {
        if !self.persistent {
            let _ignored = self.detach(interface, ifindex, mode);
        }
        // Persistent: a pinned link outlives our descriptor, a filter needs nothing.
    }
}

/// Attaches our programs to both hooks of `interface` (index `ifindex`) in the calling thread's
/// network namespace, recorded as `netns`. If the second hook fails, the first is detached
/// again before the error is returned.
///
/// # Errors
///
/// [`AttachError`] naming the interface and hook.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    target: Target<'_>,
    mode: AttachMode,
    netns: Arc<AttachNetns>,
) -> Result<InterfaceAttachment, AttachError> {
    let Target {
        interface, ifindex, ..
    } = target;
    let mode = mode.resolve();
    let mut hooks = Vec::with_capacity(2);
    for hook in Hook::ALL {
        match attach_hook(ebpf, target, hook, mode) {
            Ok(attached) => hooks.push(attached),
            Err(err) => {
                // Undo the first hook (same thread, same namespace) before reporting.
                for attached in hooks {
                    let _ignored = attached.detach(interface, ifindex, mode);
                }
                return Err(err);
            }
        }
    }
    Ok(InterfaceAttachment {
        interface: interface.to_owned(),
        ifindex,
        mode,
        hooks,
        netns,
    })
}

/// linkmeter's programs attached to both hooks of one interface.
///
/// Dropping it detaches both hooks (errors ignored); [`InterfaceAttachment::detach`] reports
/// them. Either may run on any thread: the attachment is removed from the network namespace it
/// was made in. Its counters stay in the map until [`super::EbpfCounters::forget`].
#[derive(Debug)]
pub struct InterfaceAttachment {
    interface: String,
    ifindex: u32,
    mode: AttachedMode,
    hooks: Vec<HookAttachment>,
    netns: Arc<AttachNetns>,
}

impl InterfaceAttachment {
    /// The interface index the counters are keyed by.
    pub const fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mechanism used (TCX or legacy tc).
    pub const fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Detaches both hooks. An interface that vanished counts as detached.
    ///
    /// # Errors
    ///
    /// The first [`AttachError::Detach`]; the other hook is still detached.
    pub fn detach(mut self) -> Result<(), AttachError> {
        let _restore = self.enter_netns();
        let mut first_error = None;
        for hook in std::mem::take(&mut self.hooks) {
            if let Err(err) = hook.detach(&self.interface, self.ifindex, self.mode) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Whether both hooks still run our programs (`ids`): someone else may have removed them
    /// (Cilium's TCX migration deletes legacy filters; `tc filter del` or `bpftool link
    /// detach` remove ours). TCX hooks are checked by querying the hook's chain; legacy hooks
    /// by listing the hook's filters for one at our priority and handle running our program.
    ///
    /// A check that cannot be made counts as intact, so that a netlink hiccup or an interface
    /// being deleted or renamed never triggers a re-attach (the link event or the next check
    /// settles it): the namespace cannot be entered, or a query fails (`ENODEV` for a device
    /// that is gone).
    pub(crate) fn is_intact(&self, ids: ProgramIds) -> bool {
        let _restore = match self.netns.enter() {
            Ok(restore) => restore,
            Err(err) => {
                tracing::debug!(interface = %self.interface, error = %err,
                    "cannot enter the attachment's network namespace; assuming it is intact");
                return true;
            }
        };
        self.hooks
            .iter()
            .all(|attached| match self.runs_on(attached, ids.of(attached.hook)) {
                Ok(found) => found,
                Err(err) => {
                    tracing::debug!(interface = %self.interface, hook = %attached.hook, error = %crate::Report(&err),
                        "cannot query the hook; assuming our program is still attached");
                    true
                }
            })
    }

    fn enter_netns(&self) -> Option<NetnsRestore> {
        match self.netns.enter() {
            Ok(restore) => restore,
            Err(err) => {
                tracing::warn!(interface = %self.interface, error = %err,
                    "cannot enter the attachment's network namespace");
                None
            }
        }
    }
}

impl Drop for InterfaceAttachment {
    fn drop(&mut self) {
        if self.hooks.is_empty() {
            return;
        }
        let _restore = self.enter_netns();
        for hook in std::mem::take(&mut self.hooks) {
            hook.release(&self.interface, self.ifindex, self.mode);
        }
    }
}
