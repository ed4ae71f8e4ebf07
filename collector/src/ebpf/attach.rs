//! Attaching the counting programs to an interface's TC hooks, and detaching them.
//!
//! Two kernel mechanisms exist:
//!
//! - **TCX** (Linux ≥ 6.6): a BPF link per hook, inserted **first** in the hook's multi-program
//!   chain (`LinkOrder::first()`), so a later program that ends the chain (as Cilium's do with
//!   `TC_ACT_OK`, `TC_ACT_REDIRECT` or `TC_ACT_SHOT`) cannot hide traffic from us. Our program
//!   returns `TCX_NEXT`, so everything behind it still runs. The link disappears when its file
//!   descriptor is closed or the device is deleted.
//! - **Legacy tc** (clsact qdisc + cls_bpf in direct-action mode): used on older kernels or when
//!   asked for. The `clsact` qdisc is added when missing and **never** deleted or replaced, since
//!   other tools' filters live there. Our filters use a fixed priority and handle
//!   ([`LEGACY_PRIORITY`], [`LEGACY_HANDLE`]); before attaching, any stale filter carrying our
//!   program's name (left by a crashed run) is removed, and nothing else.

use std::{fmt, fs::File, io, os::fd::AsFd as _, os::unix::fs::MetadataExt as _};

use nix::sched::{CloneFlags, setns};

use aya::{
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
        links::Link as _,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
    },
    util::KernelVersion,
};

/// Priority of linkmeter's cls_bpf filters in legacy tc mode (lower runs earlier).
pub const LEGACY_PRIORITY: u16 = 1;
/// Handle of linkmeter's cls_bpf filters in legacy tc mode (`0x4c4d`, "LM").
pub const LEGACY_HANDLE: TcHandle = TcHandle::new(0, 0x4c4d);

/// How to attach to TC hooks, as configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// TCX where the kernel has it (≥ 6.6), legacy tc otherwise.
    #[default]
    Auto,
    /// TCX links only; fails on kernels without TCX.
    Tcx,
    /// Legacy clsact qdisc + cls_bpf filters.
    Tc,
}

/// The mechanism actually used for an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachedMode {
    /// A TCX BPF link.
    Tcx,
    /// A legacy cls_bpf filter on the clsact qdisc.
    Tc,
}

impl AttachMode {
    /// Resolves `auto` for the running kernel.
    pub fn resolve(self) -> AttachedMode {
        match self {
            Self::Tcx => AttachedMode::Tcx,
            Self::Tc => AttachedMode::Tc,
            Self::Auto if kernel_has_tcx() => AttachedMode::Tcx,
            Self::Auto => AttachedMode::Tc,
        }
    }
}

/// Whether the running kernel supports TCX links (Linux ≥ 6.6).
pub fn kernel_has_tcx() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcx => "tcx",
            Self::Tc => "tc",
        })
    }
}

/// A TC hook of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Received traffic.
    Ingress,
    /// Transmitted traffic.
    Egress,
}

impl Hook {
    /// Both hooks, ingress first.
    pub const ALL: [Self; 2] = [Self::Ingress, Self::Egress];

    /// The aya attach type of this hook.
    pub const fn attach_type(self) -> TcAttachType {
        match self {
            Self::Ingress => TcAttachType::Ingress,
            Self::Egress => TcAttachType::Egress,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

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
    #[error("adding the clsact qdisc to {interface:?} failed: {source}")]
    Clsact {
        /// The interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: TcError,
    },
    /// Removing our own stale legacy filter failed.
    #[error("removing a stale linkmeter filter from {interface:?} {hook} failed: {source}")]
    StaleFilter {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The underlying error.
        #[source]
        source: TcError,
    },
    /// The kernel refused the attachment.
    #[error("attaching to {interface:?} {hook} ({mode}) failed: {source}")]
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
    #[error("detaching from {interface:?} {hook} ({mode}) failed: {source}")]
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
}

/// Our program attached to one hook of one interface. Dropping it detaches (errors ignored);
/// [`HookAttachment::detach`] reports them.
#[derive(Debug)]
pub struct HookAttachment {
    hook: Hook,
    link: SchedClassifierLink,
}

/// Attaches `program` (already loaded) to `hook` of `interface` with `mode`.
///
/// # Errors
///
/// [`AttachError`] naming the interface and hook when the interface is missing, TCX is not
/// available for `tcx`, or the kernel refuses the attachment.
pub(crate) fn attach_hook(
    program: &mut SchedClassifier,
    program_name: &str,
    interface: &str,
    hook: Hook,
    mode: AttachedMode,
) -> Result<HookAttachment, AttachError> {
    let options = match mode {
        AttachedMode::Tcx => {
            if !kernel_has_tcx() {
                return Err(AttachError::TcxUnsupported {
                    interface: interface.to_owned(),
                });
            }
            TcAttachOptions::TcxOrder(LinkOrder::first())
        }
        AttachedMode::Tc => {
            prepare_legacy_hook(interface, hook, program_name)?;
            TcAttachOptions::Netlink(NlOptions {
                priority: LEGACY_PRIORITY,
                handle: LEGACY_HANDLE,
                classid: None,
            })
        }
    };
    let map_err = |source: ProgramError| {
        if is_no_such_device(&source) {
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
    let id = program
        .attach_with_options(interface, hook.attach_type(), options)
        .map_err(map_err)?;
    let link = program.take_link(id).map_err(map_err)?;
    Ok(HookAttachment { hook, link })
}

impl HookAttachment {
    /// The hook this attachment is on.
    pub const fn hook(&self) -> Hook {
        self.hook
    }

    /// Detaches from the kernel. An interface that no longer exists counts as detached (the
    /// kernel removed the attachment with the device).
    ///
    /// # Errors
    ///
    /// [`AttachError::Detach`] when the kernel refuses.
    pub fn detach(self, interface: &str, mode: AttachedMode) -> Result<(), AttachError> {
        let hook = self.hook;
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

/// Adds the clsact qdisc if missing (never replacing an existing one) and removes stale filters
/// that carry our program's name on this hook.
fn prepare_legacy_hook(interface: &str, hook: Hook, program_name: &str) -> Result<(), AttachError> {
    match tc::qdisc_add_clsact(interface) {
        Ok(()) => {}
        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(AttachError::NoSuchInterface {
                interface: interface.to_owned(),
            });
        }
        Err(err) if tc_errno(&err) == Some(libc::EEXIST) => {}
        Err(source) => {
            return Err(AttachError::Clsact {
                interface: interface.to_owned(),
                source,
            });
        }
    }
    match tc::qdisc_detach_program(interface, hook.attach_type(), program_name) {
        Ok(()) => Ok(()),
        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(AttachError::StaleFilter {
            interface: interface.to_owned(),
            hook,
            source,
        }),
    }
}

/// The errno inside a [`TcError`], when there is one.
fn tc_errno(err: &TcError) -> Option<i32> {
    match err {
        TcError::IoError(e) => e.raw_os_error(),
        TcError::NetlinkError(e) => e.raw_os_error(),
        _ => None,
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
fn errno_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
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

/// The network namespace an attachment was made in.
///
/// Legacy tc filters are removed over netlink, which acts on the *calling thread's* namespace
/// and names the device by ifindex; detaching from another namespace would miss the filter or,
/// worse, hit a device with the same ifindex there. Detaching therefore enters this namespace
/// first when the caller is elsewhere.
#[derive(Debug)]
pub(crate) struct AttachNetns {
    fd: File,
    inode: u64,
}

impl AttachNetns {
    /// The calling thread's namespace.
    pub(crate) fn current() -> io::Result<Self> {
        let fd = File::open("/proc/thread-self/ns/net")?;
        let inode = fd.metadata()?.ino();
        Ok(Self { fd, inode })
    }

    /// Moves the calling thread into this namespace (if it is elsewhere) until the guard drops.
    pub(crate) fn enter(&self) -> io::Result<Option<NetnsRestore>> {
        let current = Self::current()?;
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
pub(crate) struct NetnsRestore {
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
    fn explicit_modes_resolve_to_themselves() {
        assert_eq!(AttachMode::Tcx.resolve(), AttachedMode::Tcx);
        assert_eq!(AttachMode::Tc.resolve(), AttachedMode::Tc);
    }

    #[test]
    fn auto_mode_follows_the_kernel() {
        let expected = if kernel_has_tcx() {
            AttachedMode::Tcx
        } else {
            AttachedMode::Tc
        };
        assert_eq!(AttachMode::Auto.resolve(), expected);
    }

    #[test]
    fn errno_is_found_through_the_error_chain() {
        let err =
            ProgramError::TcError(TcError::IoError(io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(is_no_such_device(&err));
        let other =
            ProgramError::TcError(TcError::IoError(io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!is_no_such_device(&other));
    }
}
