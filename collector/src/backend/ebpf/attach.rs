//! Attaching the counting programs to an interface's TC hooks, detaching them, and checking
//! that they are still there — for both kernel mechanisms, side by side:
//!
//! - **TCX** (Linux ≥ 6.6): a BPF link per hook, inserted **first** in the hook's multi-program
//!   chain (`LinkOrder::first()`), so a later program that ends the chain (as Cilium's do with
//!   `TC_ACT_OK`, `TC_ACT_REDIRECT` or `TC_ACT_SHOT`) cannot hide traffic from us. Our program
//!   returns `TCX_NEXT`, so everything behind it still runs. The link disappears when its file
//!   descriptor is closed or the device is deleted.
//! - **Legacy tc** (clsact + cls_bpf, see `legacy`): used on older kernels or when asked for.
//!
//! Either way an attachment is recognised as ours by the kernel id of the program on the hook.

use std::{error::Error, io, path::PathBuf, sync::Arc};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier,
        links::Link as _,
        tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
    },
};

use super::{
    hooks::{AttachMode, AttachedMode, Hook, ProgramIds, kernel_has_tcx},
    legacy::{self, AttachNetns, LEGACY_PRIORITY, NetnsRestore, Role},
    pin::{self, PinDir},
};

/// Errors from attaching to or detaching from a TC hook. Each names the interface and hook.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The interface does not exist (or vanished meanwhile).
    #[error("interface {interface:?} not found")]
    NoSuchInterface {
        /// The interface name.
        interface: String,
    },
    /// TCX was requested but the kernel does not have it.
    #[error("attach mode tcx needs Linux >= 6.6 (interface {interface:?}); use mode tc or auto")]
    TcxUnsupported {
        /// The interface name.
        interface: String,
    },
    /// Adding the clsact qdisc failed.
    #[error("adding the clsact qdisc to {interface:?} failed")]
    Clsact {
        /// The interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: TcError,
    },
    /// Every legacy tc handle of ours on the hook is taken by other tools' filters (or other
    /// linkmeter commands').
    #[error("no free linkmeter tc filter handle on {interface:?} {hook}")]
    NoFreeHandle {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
    },
    /// Listing the hook's filters, or removing a filter an earlier linkmeter left, failed.
    #[error("checking the tc filters of {interface:?} {hook} failed")]
    StaleFilter {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the attachment.
    #[error("attaching to {interface:?} {hook} ({mode}) failed")]
    Attach {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The mechanism used.
        mode: AttachedMode,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// The kernel refused to remove the attachment.
    #[error("detaching from {interface:?} {hook} ({mode}) failed")]
    Detach {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The mechanism used.
        mode: AttachedMode,
        /// The underlying error.
        #[source]
        source: ProgramError,
    },
    /// No counter slot could be given to the interface.
    #[error("no eBPF counter slot for {interface:?}")]
    Slot {
        /// The interface name.
        interface: String,
        /// Why.
        #[source]
        source: super::MapReadError,
    },
    /// A pinned TCX link could not be made or pinned.
    #[error("pinning the TCX link of {interface:?} {hook}")]
    Pin {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// Why.
        #[source]
        source: super::pin::LinkPinError,
    },
    /// The network namespace of the calling thread cannot be recorded.
    #[error("recording the network namespace of {interface:?}")]
    Netns {
        /// The interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl AttachError {
    /// Whether the interface got no counter slot because the maps are full (`max_interfaces`
    /// slots taken, or no free directory position): worth trying again once others leave.
    pub(crate) const fn is_map_full(&self) -> bool {
        matches!(
            self,
            Self::Slot {
                source: super::MapReadError::Full { .. } | super::MapReadError::Crowded { .. },
                ..
            }
        )
    }
}

/// Our program attached to one hook of one interface. Dropping it detaches (errors ignored),
/// unless it is persistent (pinning): then it stays in the kernel, counting.
#[derive(Debug)]
struct HookAttachment {
    hook: Hook,
    link: SchedClassifierLink,
    /// The legacy tc filter handle it was attached at (legacy tc only).
    handle: Option<TcHandle>,
    /// The kernel id of the program attached.
    program_id: u32,
    /// Where its TCX link is pinned.
    pin: Option<PathBuf>,
    /// Kept in the kernel when dropped (pinning).
    persistent: bool,
}

/// Where and as whom to attach.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target<'a> {
    /// The interface name.
    pub(super) interface: &'a str,
    /// Its index.
    pub(super) ifindex: u32,
    /// The daemon or a command (legacy tc handles).
    pub(super) role: Role,
    /// The pin directory, when pinning.
    pub(super) pins: Option<&'a PinDir>,
}

/// Attaches our (loaded) program for `hook` to `target` with `mode`.
fn attach_hook(
    ebpf: &mut Ebpf,
    target: Target<'_>,
    hook: Hook,
    mode: AttachedMode,
) -> Result<HookAttachment, AttachError> {
    let interface = target.interface;
    let attach_error = |source| AttachError::Attach {
        interface: interface.to_owned(),
        hook,
        mode,
        source,
    };
    let program = super::classifier(ebpf, hook.program())
        .map_err(|_| attach_error(ProgramError::NotLoaded))?;
    let map_err = |source: ProgramError| {
        if is_no_such_device(&source) {
            AttachError::NoSuchInterface {
                interface: interface.to_owned(),
            }
        } else {
            attach_error(source)
        }
    };
    let program_id = program.info().map_err(map_err)?.id();
    let attached = |link, handle, pin| HookAttachment {
        hook,
        link,
        handle,
        program_id,
        pin,
        persistent: target.pins.is_some(),
    };
    let id = match mode {
        AttachedMode::Tcx => {
            if !kernel_has_tcx() {
                return Err(AttachError::TcxUnsupported {
                    interface: interface.to_owned(),
                });
            }
            if let Some(pins) = target.pins {
                let path = pins.link(target.ifindex, hook);
                let link =
                    pin::attach_tcx(program, interface, hook, &path).map_err(|e| match e {
                        pin::LinkPinError::Program(source) => map_err(source),
                        other => AttachError::Pin {
                            interface: interface.to_owned(),
                            hook,
                            source: other,
                        },
                    })?;
                return Ok(attached(link, None, Some(path)));
            }
            let options = TcAttachOptions::TcxOrder(LinkOrder::first());
            program.attach_with_options(interface, hook.attach_type(), options)
        }
        AttachedMode::Tc => {
            legacy::add_clsact(interface)?;
            let adopt = target.pins.is_some();
            match legacy::choose_handle(interface, target.ifindex, hook, target.role, adopt)? {
                legacy::Slot::Free(handle) => {
                    let options = TcAttachOptions::Netlink(NlOptions {
                        priority: LEGACY_PRIORITY,
                        handle,
                        classid: None,
                    });
                    let id = program
                        .attach_with_options(interface, hook.attach_type(), options)
                        .map_err(map_err)?;
                    let link = program.take_link(id).map_err(map_err)?;
                    return Ok(attached(link, Some(handle), None));
                }
                legacy::Slot::Replace(handle) => {
                    let old = SchedClassifierLink::attached(
                        interface,
                        hook.attach_type(),
                        LEGACY_PRIORITY,
                        handle,
                        None,
                    )
                    .map_err(|e| map_err(ProgramError::TcError(TcError::IoError(e))))?;
                    let id = program.attach_to_link(old).map_err(map_err)?;
                    let link = program.take_link(id).map_err(map_err)?;
                    return Ok(attached(link, Some(handle), None));
                }
            }
        }
    };
    let id = id.map_err(map_err)?;
    let link = program.take_link(id).map_err(map_err)?;
    Ok(attached(link, None, None))
}

impl HookAttachment {
    /// Detaches from the kernel. An interface that no longer exists counts as detached (the
    /// kernel removed the attachment with the device).
    ///
    /// A legacy filter is removed only while it still runs our program: someone may have
    /// replaced it with their own at our handle, which must stay.
    fn detach(self, interface: &str, ifindex: u32, mode: AttachedMode) -> Result<(), AttachError> {
        let hook = self.hook;
        if let Some(pin) = &self.pin {
            // Unpinned, the link goes when its last descriptor (ours) closes.
            pin::unpin(pin);
        }
        if let Some(handle) = self.handle
            && !self.still_ours(ifindex, handle)
        {
            // Dropping the link would delete whatever sits at our handle now: let it go.
            std::mem::forget(self.link);
            return Ok(());
        }
        match self.link.detach() {
            Ok(()) => Ok(()),
            Err(source) if is_no_such_device(&source) => Ok(()),
            Err(source) => Err(AttachError::Detach {
                interface: interface.to_owned(),
                hook,
                mode,
                source,
            }),
        }
    }
}

impl HookAttachment {
    /// Lets go of the attachment: detached, unless it is persistent, which stays in the kernel
    /// (a pinned TCX link, a legacy filter) for the next daemon to adopt.
    fn release(self, interface: &str, ifindex: u32, mode: AttachedMode) {
        if !self.persistent {
            let _ignored = self.detach(interface, ifindex, mode);
        } else if self.handle.is_some() {
            // Dropping a legacy link would delete the filter.
            std::mem::forget(self.link);
        }
    }

    /// Whether the legacy filter at `handle` still runs our program (`true` when the filters
    /// cannot be listed: detaching then behaves as before).
    fn still_ours(&self, ifindex: u32, handle: TcHandle) -> bool {
        legacy::filters(ifindex, self.hook).map_or(true, |filters| {
            filters.iter().any(|f| {
                f.priority == LEGACY_PRIORITY
                    && f.handle == handle
                    && f.program_id == Some(self.program_id)
            })
        })
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
    /// settles it): the namespace cannot be entered, the name no longer resolves to our
    /// ifindex, or a query fails.
    pub(crate) fn is_intact(&self, ids: ProgramIds) -> bool {
        let _restore = match self.netns.enter() {
            Ok(restore) => restore,
            Err(err) => {
                tracing::debug!(interface = %self.interface, error = %err,
                    "cannot enter the attachment's network namespace; assuming it is intact");
                return true;
            }
        };
        if nix::net::if_::if_nametoindex(self.interface.as_str()) != Ok(self.ifindex) {
            return true;
        }
        self.hooks
            .iter()
            .all(|attached| match self.runs_on(attached, ids.of(attached.hook)) {
                Ok(found) => found,
                Err(err) => {
                    tracing::debug!(interface = %self.interface, hook = %attached.hook, error = %crate::Report(&*err),
                        "cannot query the hook; assuming our program is still attached");
                    true
                }
            })
    }

    fn runs_on(
        &self,
        attached: &HookAttachment,
        id: u32,
    ) -> Result<bool, Box<dyn Error + Send + Sync>> {
        let hook = attached.hook;
        Ok(match attached.handle {
            None => SchedClassifier::query_tcx(&self.interface, hook.attach_type())?
                .1
                .iter()
                .any(|program| program.id() == id),
            Some(handle) => legacy::filters(self.ifindex, hook)?.iter().any(|f| {
                f.priority == LEGACY_PRIORITY && f.handle == handle && f.program_id == Some(id)
            }),
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

/// Whether `err` says the device is gone (`ENODEV`, or an unknown interface name).
fn is_no_such_device(err: &ProgramError) -> bool {
    match err {
        ProgramError::TcError(TcError::IoError(e)) => {
            e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
        }
        other => errno_in_chain(other) == Some(libc::ENODEV),
    }
}

/// Walks an error's source chain for the first `io::Error` with an errno.
fn errno_in_chain(err: &(dyn Error + 'static)) -> Option<i32> {
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_found_through_the_error_chain() {
        let err =
            ProgramError::TcError(TcError::IoError(io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(is_no_such_device(&err));
        let other =
            ProgramError::TcError(TcError::IoError(io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!is_no_such_device(&other));
        // Deeper in the chain: a syscall error carries the errno as its source.
        let syscall = |errno| {
            ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_link_detach",
                io_error: io::Error::from_raw_os_error(errno),
            })
        };
        assert!(is_no_such_device(&syscall(libc::ENODEV)));
        assert!(!is_no_such_device(&syscall(libc::EBUSY)));
    }
}
