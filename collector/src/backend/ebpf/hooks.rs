//! The TC hooks of an interface and the two kernel mechanisms to attach to them.

use std::fmt;

use aya::util::KernelVersion;
use collector_common::{EGRESS_PROGRAM, INGRESS_PROGRAM};

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
    pub(crate) fn resolve(self) -> AttachedMode {
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

    /// The name of our program for this hook.
    pub(super) const fn program(self) -> &'static str {
        match self {
            Self::Ingress => INGRESS_PROGRAM,
            Self::Egress => EGRESS_PROGRAM,
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

/// The prefix of the names of linkmeter's TC programs (the kernel keeps 15 bytes of a name).
const PROGRAM_PREFIX: &str = "linkmeter";

/// Whether a TC program of this name is linkmeter's (of this process or another: a command such
/// as `watch` attaches its own copy, which counts into its own maps and lets every packet on).
pub(super) fn is_linkmeter_program(name: &str) -> bool {
    name.starts_with(PROGRAM_PREFIX)
}

/// Where our program stands in one hook's chain, as the last check found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Programs that run before ours, after any move back to the head: 0 when first.
    pub(crate) ahead: u32,
    /// How many programs were found before ours when it was moved back to the head (`None`:
    /// not moved).
    pub(crate) moved_from: Option<u32>,
}

impl Hook {
    /// Its index in [`Hook::ALL`] (and in per-hook arrays).
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Ingress => 0,
            Self::Egress => 1,
        }
    }
}

/// The TC classifier named `program` in the loaded object `ebpf`; `None` when it is missing
/// or of another kind.
pub(super) fn classifier<'a>(
    ebpf: &'a mut aya::Ebpf,
    program: &str,
) -> Option<&'a mut aya::programs::SchedClassifier> {
    ebpf.program_mut(program)
        .and_then(|p| <&mut aya::programs::SchedClassifier>::try_from(p).ok())
}

/// The kernel ids of our two loaded programs: how an attachment is recognised as ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProgramIds {
    pub(crate) ingress: u32,
    pub(crate) egress: u32,
}

impl ProgramIds {
    pub(super) const fn of(self, hook: Hook) -> u32 {
        match hook {
            Hook::Ingress => self.ingress,
            Hook::Egress => self.egress,
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
    fn each_hook_is_checked_against_its_own_program() {
        let ids = ProgramIds {
            ingress: 7,
            egress: 8,
        };
        assert_eq!(ids.of(Hook::Ingress), 7);
        assert_eq!(ids.of(Hook::Egress), 8);
        assert_eq!(Hook::Ingress.program(), INGRESS_PROGRAM);
        assert_eq!(Hook::Egress.program(), EGRESS_PROGRAM);
    }
}
