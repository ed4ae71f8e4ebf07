//! The eBPF backend: load linkmeter's TC programs, attach them to interfaces (and detach, and
//! check they are still there: `attach`), and read what they count (`maps`): per interface
//! and direction the protocol mix, TCP flags and packet sizes, and on external-mode tunnel
//! devices the traffic per remote endpoint (`peers`). It only reads and attaches; what the
//! numbers become is the node's business.
//!
//! Two ways in:
//!
//! - [`EbpfCounters`]: everything on the caller's thread, by interface index — a library for
//!   tools and tests;
//! - `TcCounter` (implemented by `Counting`): how the node uses it; attaching, detaching and
//!   checking run on a worker thread (`worker`), so that a netlink answer that is slow to come
//!   never holds up the daemon's owner.
//!
//! ```no_run
//! use collector::backend::ebpf::{AttachMode, EbpfCounters, Framing, LoadOptions};
//!
//! let mut counters = EbpfCounters::load(&LoadOptions::default())?;
//! let ifindex = nix::net::if_::if_nametoindex("cilium_vxlan")?;
//! let attachment = counters.attach(ifindex, AttachMode::Auto, Framing::default())?;
//! let now = counters.read(ifindex)?;
//! println!("rx {} packets, tx {} packets", now.rx.packets, now.tx.packets);
//! attachment.detach()?; // or drop it
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See [`collector_common`] for the maps and the byte definition.

mod attach;
mod batch;
mod counter;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod hooks;
mod legacy;
mod load;
mod maps;
pub(crate) mod memory;
mod netns;
mod peer_table;
mod peers;
mod pin;
mod pin_fs;
mod pin_layout;
mod programs;
mod slots;
mod tc_netlink;
mod tcx;
mod worker;

use std::collections::BTreeMap;

use aya_log::EbpfLogger;

pub(crate) use self::counter::{
    AttachmentId, CheckReport, Counting, Pending, TcCounter, Unattached, load_or_explain,
    unattached_if_loadable,
};
pub(crate) use self::hooks::Placement;
pub use self::{
    attach::InterfaceAttachment,
    error::{AttachError, MapReadError},
    hooks::{AttachMode, AttachedMode, Hook, kernel_has_tcx},
    legacy::Role,
    load::{
        Capacity, CapacityError, DEFAULT_MAX_INTERFACES, DEFAULT_MAX_PEERS, LoadError, LoadOptions,
        MAX_INTERFACES, MAX_PEERS,
    },
    maps::{InterfaceCounters, InterfaceStats, Overflow},
    peers::Peer,
    pin::DEFAULT_PIN_PATH,
    pin_fs::PinError,
};
use self::{maps::CounterMaps, maps::slot_flags, pin::PinDir, programs::Programs};
pub use crate::discovery::Framing;

/// Removes every legacy tc filter running a linkmeter program from both hooks of `ifindex`,
/// whoever attached it (`linkmeter cleanup`); returns how many.
///
/// # Errors
///
/// Listing or removing a filter failed.
pub(crate) fn remove_linkmeter_filters(ifindex: u32) -> std::io::Result<usize> {
    legacy::remove_stale_filters(ifindex, None, &[])
}

/// Removes what linkmeter pinned under `base` (`linkmeter cleanup`): its layout directories,
/// whose links detach and whose maps are freed, and `base` when nothing else is in it. Returns
/// whether there was anything.
///
/// # Errors
///
/// `base` is not on a bpffs, or a pin could not be removed.
pub(crate) fn remove_pins(base: &std::path::Path) -> Result<bool, PinError> {
    pin_fs::remove_ours(base)
}

/// The eBPF object built from `collector-ebpf` by `collector/build.rs`, embedded at compile time.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkmeter-tc"));

/// The maps as user space uses them, with the pin directory and the programs' log.
pub(crate) struct Counters {
    maps: CounterMaps,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    /// Where the maps and links are pinned, when pinning.
    pins: Option<PinDir>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("pinned", &self.pins.is_some())
            .finish_non_exhaustive()
    }
}

impl Counters {
    /// Forwards pending log records of the eBPF programs to the `log` facade (and so to
    /// `tracing`). Cheap when there are none.
    fn flush_logs(&mut self) {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
    }

    /// After the first routing pass: frees what an earlier daemon pinned for interfaces that
    /// are not `attached` now — their slots and pinned links. Returns how many interfaces.
    fn settle(&mut self, attached: &[u32]) -> usize {
        let Some(pins) = self.pins.clone() else {
            return 0;
        };
        let mut gone: Vec<u32> = self.maps.slotted();
        gone.extend(pins.linked());
        gone.retain(|ifindex| !attached.contains(ifindex));
        gone.sort_unstable();
        gone.dedup();
        for &ifindex in &gone {
            for hook in Hook::ALL {
                pin::unpin(&pins.link(ifindex, hook));
            }
            if let Err(err) = self.maps.forget(ifindex) {
                tracing::warn!(ifindex, error = %crate::Report(&err), "freeing pinned counters");
            }
        }
        gone.len()
    }
}

/// The loaded counting programs and their maps, used from the calling thread.
///
/// One instance serves any number of interfaces: attach with [`EbpfCounters::attach`], read with
/// [`EbpfCounters::read`] / [`EbpfCounters::read_stats`]. Dropping it unloads the programs;
/// keep it alive as long as any [`InterfaceAttachment`] is meant to count.
#[derive(Debug)]
pub struct EbpfCounters {
    counters: Counters,
    programs: Programs,
}

impl EbpfCounters {
    /// Gives the interface with index `ifindex` (in the calling thread's network namespace) a
    /// slot of statistics — zeroed, or kept with its counters when it has one — then attaches
    /// the counting programs to both its TC hooks, reading its packets as `framing` says.
    /// Counting starts immediately. With [`AttachMode::Auto`], TCX is used where the kernel
    /// has it and legacy tc otherwise. If a hook fails, what was attached is detached again and
    /// a slot given for this attachment freed before the error is returned.
    ///
    /// # Errors
    ///
    /// [`AttachError`] naming the interface and hook, or [`AttachError::Slot`] when no slot is
    /// free.
    pub fn attach(
        &mut self,
        ifindex: u32,
        mode: AttachMode,
        framing: Framing,
    ) -> Result<InterfaceAttachment, AttachError> {
        // The name is for messages only: everything is done by index.
        let name = nix::net::if_::if_indextoname(ifindex).map_or_else(
            |_| format!("ifindex {ifindex}"),
            |n| n.to_string_lossy().into_owned(),
        );
        let had_slot = self.counters.maps.slotted().contains(&ifindex);
        self.counters
            .maps
            .assign(ifindex, slot_flags(framing))
            .map_err(|source| AttachError::Slot {
                interface: name.clone(),
                source,
            })?;
        self.programs.attach(ifindex, &name, mode).inspect_err(|_| {
            if !had_slot {
                let _ignored = self.counters.maps.forget(ifindex);
            }
        })
    }

    /// Whether `attachment`'s hooks still run our programs: someone else may have removed
    /// them. A check that cannot be made counts as intact.
    pub fn is_intact(&self, attachment: &InterfaceAttachment) -> bool {
        self.programs.is_intact(attachment)
    }

    /// Packets and bytes of `ifindex`, summed over CPUs; zero when it has no slot.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map lookup.
    pub fn read(&self, ifindex: u32) -> Result<InterfaceCounters, MapReadError> {
        Ok(self
            .read_stats(ifindex)?
            .map(|s| InterfaceCounters::from(&s))
            .unwrap_or_default())
    }

    /// Everything counted for `ifindex` (protocols with their packets and bytes, TCP flags,
    /// sizes), summed over CPUs; `None` when it has no slot.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map lookup.
    pub fn read_stats(&self, ifindex: u32) -> Result<Option<InterfaceStats>, MapReadError> {
        self.counters.maps.interface(ifindex)
    }

    /// Statistics of every interface that has a slot, keyed by ifindex.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses a lookup.
    pub fn read_all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError> {
        self.counters.maps.all()
    }

    /// Traffic per tunnel device, direction and remote endpoint.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map iteration.
    pub fn peers(&self) -> Result<Vec<Peer>, MapReadError> {
        self.counters.maps.peers()
    }

    /// Packets (and bytes) counted as overflow: of interfaces without a slot, and of peers that
    /// did not fit into the peer map (raise `max_peers`).
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map lookup.
    pub fn overflow(&self) -> Result<Overflow, MapReadError> {
        self.counters.maps.overflow()
    }

    /// Empties the retired half of the peer table into the peer totals (when it has been out of
    /// the programs' use for a second) and forgets the peers whose count has not moved for
    /// `idle`; returns how many it forgot. The daemon calls it at every resync.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses a map access.
    pub fn expire_peers(&mut self, idle: std::time::Duration) -> Result<usize, MapReadError> {
        self.counters.maps.expire_peers(idle)
    }

    /// Frees the slot of `ifindex`, takes it out of the directory and removes its peers, e.g.
    /// after its interface was deleted. Its counters are gone; a later attachment starts from
    /// zero.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the update.
    pub fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        self.counters.maps.forget(ifindex)
    }

    /// Kernel ids of the ingress and egress programs, to recognise our attachments.
    pub fn program_ids(&self) -> [u32; 2] {
        let ids = self.programs.ids();
        [ids.ingress, ids.egress]
    }

    /// The maps' side and the programs' side, to be used from different threads.
    fn into_parts(self) -> (Counters, Programs) {
        (self.counters, self.programs)
    }
}

#[cfg(test)]
mod tests {
    use collector_common::{SLOT_RAW_IP, SLOT_TUNNEL};

    use super::*;

    #[test]
    fn capacity_outside_bounds_is_rejected_naming_the_option() {
        for max_interfaces in [0, MAX_INTERFACES.end() + 1] {
            let err = Capacity::new(max_interfaces, DEFAULT_MAX_PEERS).expect_err("rejected");
            assert_eq!((err.option, err.got), ("max_interfaces", max_interfaces));
        }
        let err = Capacity::new(DEFAULT_MAX_INTERFACES, 0).expect_err("rejected");
        assert_eq!((err.option, err.got), ("max_peers", 0));
        let edges = Capacity::new(*MAX_INTERFACES.end(), *MAX_PEERS.end()).expect("accepted");
        assert_eq!(edges.interfaces(), 65_536);
    }

    #[test]
    fn framing_sets_the_slot_flags() {
        assert_eq!(slot_flags(Framing::default()), 0);
        let both = Framing {
            tunnel_peers: true,
            raw_ip: true,
        };
        assert_eq!(slot_flags(both), SLOT_TUNNEL | SLOT_RAW_IP);
    }

    #[test]
    fn embedded_object_is_an_ebpf_elf() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        // EM_BPF (247) in the ELF header's e_machine field.
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
    }
}
