//! The eBPF backend: load linkmeter's TC counting programs, attach them to interfaces, and read
//! their per-interface packet and byte counters.
//!
//! ```no_run
//! use collector::ebpf::{AttachMode, EbpfCounters, LoadOptions};
//!
//! let mut counters = EbpfCounters::load(&LoadOptions::default())?;
//! let attachment = counters.attach("cilium_vxlan", AttachMode::Auto)?;
//! let now = counters.read(attachment.ifindex())?;
//! println!("rx {} packets, tx {} packets", now.rx.packets, now.tx.packets);
//! attachment.detach()?; // or drop it
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See [`collector_common`] for the byte definition.

mod attach;
mod maps;

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapError, PerCpuArray, PerCpuHashMap},
    programs::{ProgramError, SchedClassifier},
};
use aya_log::EbpfLogger;
use collector_common::{COUNTERS_MAP, Counter, EGRESS_PROGRAM, INGRESS_PROGRAM, OVERFLOW_MAP};

use attach::AttachNetns;
pub use attach::{
    AttachError, AttachMode, AttachedMode, Hook, HookAttachment, LEGACY_HANDLE, LEGACY_PRIORITY,
    kernel_has_tcx,
};
pub use maps::{InterfaceCounters, MapReadError};

use self::maps::CounterMaps;

/// The eBPF object built from `collector-ebpf` by `collector/build.rs`, embedded at compile time.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkmeter-tc"));

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// Options for [`EbpfCounters::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// How many interfaces the counter map can hold (two entries each: rx and tx). Packets of
    /// interfaces beyond that are counted in the overflow counter. Default 1024.
    pub max_interfaces: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_interfaces: 1024,
        }
    }
}

/// Errors from loading the eBPF object.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `max_interfaces` is zero or too large.
    #[error("max_interfaces must be between 1 and {max}, got {got}")]
    Capacity {
        /// The rejected value.
        got: u32,
        /// The largest accepted value.
        max: u32,
    },
    /// The kernel refused to create the maps or load the object (no privilege, no BPF, ...).
    #[error("loading the eBPF object failed: {}", chain(source))]
    Object {
        /// The underlying error.
        #[source]
        source: EbpfError,
    },
    /// A program is missing from the object or is not a TC classifier.
    #[error("eBPF program {program} missing from the object or not a classifier")]
    MissingProgram {
        /// The program name.
        program: &'static str,
    },
    /// The verifier rejected a program.
    #[error("verifying eBPF program {program} failed: {}", chain(source))]
    Verify {
        /// The program name.
        program: &'static str,
        /// The underlying error (includes the verifier log).
        #[source]
        source: ProgramError,
    },
    /// A map is missing from the object or has the wrong type.
    #[error("eBPF map {map} missing from the object or of the wrong type")]
    MissingMap {
        /// The map name.
        map: &'static str,
        /// The underlying error, when the type was wrong.
        #[source]
        source: Option<MapError>,
    },
}

/// `err` and its sources, joined with `: ` (aya's errors keep the errno in a source).
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// The loaded counting programs and their maps.
///
/// One instance serves any number of interfaces: attach with [`EbpfCounters::attach`], read with
/// [`EbpfCounters::read`] / [`EbpfCounters::read_all`]. Dropping it unloads the programs; keep
/// it alive as long as any [`InterfaceAttachment`] is meant to count.
pub struct EbpfCounters {
    ebpf: Ebpf,
    maps: CounterMaps,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
}

impl std::fmt::Debug for EbpfCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfCounters").finish_non_exhaustive()
    }
}

impl EbpfCounters {
    /// Loads and verifies the embedded object with the counter map sized for
    /// `options.max_interfaces`.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the kernel refuses (missing privileges or BPF support) or the object
    /// is not what this build expects.
    pub fn load(options: &LoadOptions) -> Result<Self, LoadError> {
        const MAX_INTERFACES: u32 = 1 << 20;
        if options.max_interfaces == 0 || options.max_interfaces > MAX_INTERFACES {
            return Err(LoadError::Capacity {
                got: options.max_interfaces,
                max: MAX_INTERFACES,
            });
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(COUNTERS_MAP, options.max_interfaces * 2)
            .load(OBJECT)
            .map_err(|source| LoadError::Object { source })?;

        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %err, "eBPF log forwarding unavailable");
                None
            }
        };
        for program in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
            classifier(&mut ebpf, program)?
                .load()
                .map_err(|source| LoadError::Verify { program, source })?;
        }
        let counters = ebpf
            .take_map(COUNTERS_MAP)
            .ok_or(LoadError::MissingMap {
                map: COUNTERS_MAP,
                source: None,
            })
            .and_then(|map| {
                PerCpuHashMap::try_from(map).map_err(|source| LoadError::MissingMap {
                    map: COUNTERS_MAP,
                    source: Some(source),
                })
            })?;
        let overflow = ebpf
            .take_map(OVERFLOW_MAP)
            .ok_or(LoadError::MissingMap {
                map: OVERFLOW_MAP,
                source: None,
            })
            .and_then(|map| {
                PerCpuArray::try_from(map).map_err(|source| LoadError::MissingMap {
                    map: OVERFLOW_MAP,
                    source: Some(source),
                })
            })?;
        Ok(Self {
            ebpf,
            maps: CounterMaps::new(counters, overflow),
            logger,
        })
    }

    /// Attaches the counting programs to both TC hooks of `interface` (in the calling thread's
    /// network namespace). Counting starts immediately.
    ///
    /// With [`AttachMode::Auto`], TCX is used where the kernel has it and legacy tc otherwise.
    /// If the second hook fails, the first is detached again before the error is returned.
    ///
    /// # Errors
    ///
    /// [`AttachError`] naming the interface and hook.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<InterfaceAttachment, AttachError> {
        let ifindex = ifindex_of(interface)?;
        let mode = mode.resolve();
        // Legacy filters must be removed from the namespace they were added in.
        let netns = match mode {
            AttachedMode::Tc => AttachNetns::current().ok(),
            AttachedMode::Tcx => None,
        };
        let mut hooks = Vec::with_capacity(2);
        for (hook, program) in [
            (Hook::Ingress, INGRESS_PROGRAM),
            (Hook::Egress, EGRESS_PROGRAM),
        ] {
            let classifier =
                classifier(&mut self.ebpf, program).map_err(|_| AttachError::Attach {
                    interface: interface.to_owned(),
                    hook,
                    mode,
                    source: ProgramError::NotLoaded,
                })?;
            match attach::attach_hook(classifier, program, interface, hook, mode) {
                Ok(attached) => hooks.push(attached),
                Err(err) => {
                    // Undo the first hook (same thread, same namespace) before reporting.
                    for attached in hooks {
                        let _ignored = attached.detach(interface, mode);
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

    /// Current counters of `ifindex`, summed over CPUs; zero before the first packet.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map lookup.
    pub fn read(&self, ifindex: u32) -> Result<InterfaceCounters, MapReadError> {
        self.maps.interface(ifindex)
    }

    /// Counters of every interface that has seen a packet, keyed by ifindex.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map iteration.
    pub fn read_all(&self) -> Result<BTreeMap<u32, InterfaceCounters>, MapReadError> {
        self.maps.all()
    }

    /// Packets (and bytes) that could not be counted per interface because the counter map was
    /// full. Non-zero means `max_interfaces` is too small.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map lookup.
    pub fn overflow(&self) -> Result<Counter, MapReadError> {
        self.maps.overflow()
    }

    /// Frees the map entries of `ifindex`, e.g. after its interface was deleted. Counting
    /// restarts from zero if packets arrive for it again.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the deletion.
    pub fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        self.maps.remove(ifindex)
    }

    /// Kernel ids of the ingress and egress programs, to recognise our attachments.
    pub fn program_ids(&self) -> Vec<u32> {
        [INGRESS_PROGRAM, EGRESS_PROGRAM]
            .iter()
            .filter_map(|name| {
                let program: &SchedClassifier = self.ebpf.program(name)?.try_into().ok()?;
                Some(program.info().ok()?.id())
            })
            .collect()
    }

    /// Whether both TCX hooks of `attachment`'s interface still run our programs (someone may
    /// have removed them). Legacy tc attachments are checked by the caller over netlink.
    ///
    /// # Errors
    ///
    /// The TCX query fails (e.g. the interface vanished).
    pub fn tcx_attached(&self, attachment: &InterfaceAttachment) -> Result<bool, ProgramError> {
        let ids = self.program_ids();
        for hook in Hook::ALL {
            let (_, programs) =
                SchedClassifier::query_tcx(attachment.interface(), hook.attach_type())?;
            if !programs.iter().any(|p| ids.contains(&p.id())) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Forwards pending log records of the eBPF programs to the `log` facade (and so to
    /// `tracing`). Cheap when there are none.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut SchedClassifier, LoadError> {
    ebpf.program_mut(program)
        .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
        .ok_or(LoadError::MissingProgram { program })
}

/// Resolves an interface name in the calling thread's network namespace.
fn ifindex_of(interface: &str) -> Result<u32, AttachError> {
    let not_found = || AttachError::NoSuchInterface {
        interface: interface.to_owned(),
    };
    if interface.is_empty() || interface.len() > IFNAME_MAX || interface.contains(['/', '\0']) {
        return Err(not_found());
    }
    nix::net::if_::if_nametoindex(interface).map_err(|_| not_found())
}

/// linkmeter's programs attached to both hooks of one interface.
///
/// Dropping it detaches both hooks (errors ignored); [`InterfaceAttachment::detach`] reports
/// them. Either may run on any thread: a legacy tc attachment is removed from the network
/// namespace it was made in. Its counters stay in the map until [`EbpfCounters::forget`].
#[derive(Debug)]
pub struct InterfaceAttachment {
    interface: String,
    ifindex: u32,
    mode: AttachedMode,
    hooks: Vec<HookAttachment>,
    netns: Option<AttachNetns>,
}

impl InterfaceAttachment {
    /// The interface name at attach time.
    pub fn interface(&self) -> &str {
        &self.interface
    }

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
            if let Err(err) = hook.detach(&self.interface, self.mode) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn enter_netns(&self) -> Option<attach::NetnsRestore> {
        let netns = self.netns.as_ref()?;
        match netns.enter() {
            Ok(restore) => restore,
            Err(err) => {
                tracing::warn!(interface = %self.interface, error = %err,
                    "cannot enter the attachment's network namespace to detach");
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
        self.hooks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_outside_bounds_is_rejected_before_touching_the_kernel() {
        for max_interfaces in [0, (1 << 20) + 1] {
            let err = EbpfCounters::load(&LoadOptions { max_interfaces }).expect_err("rejected");
            assert!(matches!(err, LoadError::Capacity { got, .. } if got == max_interfaces));
        }
    }

    #[test]
    fn odd_interface_names_are_not_found_not_a_panic() {
        for name in [
            "",
            "a/b",
            "nul\0byte",
            "sixteen-chars-xx",
            "\u{1F600}\u{1F600}\u{1F600}\u{1F600}x",
        ] {
            match ifindex_of(name) {
                Err(AttachError::NoSuchInterface { interface }) => assert_eq!(interface, name),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn embedded_object_is_an_ebpf_elf() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        // EM_BPF (247) in the ELF header's e_machine field.
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
    }
}
