//! The eBPF backend: load linkmeter's TC counting programs, attach them to interfaces (and
//! detach, and check they are still there: `attach`), and read their per-interface packet
//! and byte counters (`maps`). The node uses it through [`TcCounter`].
//!
//! ```no_run
//! use collector::backend::ebpf::{AttachMode, EbpfCounters, LoadOptions};
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
mod counter;
#[cfg(test)]
pub(crate) mod fake;
mod hooks;
mod legacy;
mod maps;

use std::{collections::BTreeMap, sync::Arc};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{MapError, PerCpuArray, PerCpuHashMap},
    programs::{ProgramError, SchedClassifier},
};
use aya_log::EbpfLogger;
use collector_common::{COUNTERS_MAP, Counter, EGRESS_PROGRAM, INGRESS_PROGRAM, OVERFLOW_MAP};

pub use self::{
    attach::{AttachError, InterfaceAttachment},
    hooks::{AttachMode, AttachedMode, Hook, kernel_has_tcx},
    maps::{InterfaceCounters, MapReadError},
};
use self::{hooks::ProgramIds, legacy::AttachNetns, maps::CounterMaps};
use crate::config::{DEFAULT_MAX_INTERFACES, MAX_INTERFACES};
pub(crate) use counter::{
    Attachment, TcCounter, Unattached, load_or_explain, unattached_if_loadable,
};

/// The eBPF object built from `collector-ebpf` by `collector/build.rs`, embedded at compile time.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkmeter-tc"));

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// Options for [`EbpfCounters::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// How many interfaces the counter map can hold (two entries each: rx and tx), within
    /// [`MAX_INTERFACES`]. Packets of interfaces beyond that are counted in the overflow
    /// counter. Default [`DEFAULT_MAX_INTERFACES`].
    pub max_interfaces: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_interfaces: DEFAULT_MAX_INTERFACES,
        }
    }
}

/// Errors from loading the eBPF object.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `max_interfaces` is zero or too large.
    #[error("max_interfaces must be between {} and {}, got {got}", MAX_INTERFACES.start(), MAX_INTERFACES.end())]
    Capacity {
        /// The rejected value.
        got: u32,
    },
    /// The kernel refused to create the maps or load the object (no privilege, no BPF, ...).
    #[error("loading the eBPF object failed")]
    Object(#[source] EbpfError),
    /// A program is missing from the object or is not a TC classifier.
    #[error("eBPF program {program} missing from the object or not a classifier")]
    MissingProgram {
        /// The program name.
        program: &'static str,
    },
    /// The verifier rejected a program.
    #[error("verifying eBPF program {program} failed")]
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

/// The loaded counting programs and their maps.
///
/// One instance serves any number of interfaces: attach with [`EbpfCounters::attach`], read with
/// [`EbpfCounters::read`] / [`EbpfCounters::read_all`]. Dropping it unloads the programs; keep
/// it alive as long as any [`InterfaceAttachment`] is meant to count.
pub struct EbpfCounters {
    ebpf: Ebpf,
    maps: CounterMaps,
    ids: ProgramIds,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    /// The namespace of the latest attachment, shared by those made in the same one.
    netns: Option<Arc<AttachNetns>>,
}

impl std::fmt::Debug for EbpfCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfCounters")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

fn take_map<M: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    map: &'static str,
) -> Result<M, LoadError> {
    let raw = ebpf
        .take_map(map)
        .ok_or(LoadError::MissingMap { map, source: None })?;
    M::try_from(raw).map_err(|source| LoadError::MissingMap {
        map,
        source: Some(source),
    })
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
        if !MAX_INTERFACES.contains(&options.max_interfaces) {
            return Err(LoadError::Capacity {
                got: options.max_interfaces,
            });
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(COUNTERS_MAP, options.max_interfaces * 2)
            .load(OBJECT)
            .map_err(LoadError::Object)?;

        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %crate::Report(&err), "eBPF log forwarding unavailable");
                None
            }
        };
        let mut ids = [0; 2];
        for (slot, program) in ids.iter_mut().zip([INGRESS_PROGRAM, EGRESS_PROGRAM]) {
            let classifier = classifier(&mut ebpf, program)?;
            classifier
                .load()
                .map_err(|source| LoadError::Verify { program, source })?;
            *slot = classifier
                .info()
                .map_err(|source| LoadError::Verify { program, source })?
                .id();
        }
        let counters: PerCpuHashMap<_, _, _> = take_map(&mut ebpf, COUNTERS_MAP)?;
        let overflow: PerCpuArray<_, _> = take_map(&mut ebpf, OVERFLOW_MAP)?;
        Ok(Self {
            ebpf,
            maps: CounterMaps::new(counters, overflow),
            ids: ProgramIds {
                ingress: ids[0],
                egress: ids[1],
            },
            logger,
            netns: None,
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
        let netns = AttachNetns::current(&mut self.netns).map_err(|source| AttachError::Netns {
            interface: interface.to_owned(),
            source,
        })?;
        attach::attach(&mut self.ebpf, interface, ifindex, mode, netns)
    }

    /// Whether `attachment`'s hooks still run our programs; see
    /// [`InterfaceAttachment::is_intact`].
    pub(crate) fn is_intact(&self, attachment: &InterfaceAttachment) -> bool {
        attachment.is_intact(self.ids)
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
    pub(crate) fn read_all(&self) -> Result<BTreeMap<u32, InterfaceCounters>, MapReadError> {
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
    pub(crate) fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        self.maps.remove(ifindex)
    }

    /// Kernel ids of the ingress and egress programs, to recognise our attachments.
    pub fn program_ids(&self) -> [u32; 2] {
        [self.ids.ingress, self.ids.egress]
    }

    /// Forwards pending log records of the eBPF programs to the `log` facade (and so to
    /// `tracing`). Cheap when there are none.
    pub(crate) fn flush_logs(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_outside_bounds_is_rejected_before_touching_the_kernel() {
        for max_interfaces in [0, MAX_INTERFACES.end() + 1] {
            let err = EbpfCounters::load(&LoadOptions { max_interfaces }).expect_err("rejected");
            assert!(matches!(err, LoadError::Capacity { got } if got == max_interfaces));
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
