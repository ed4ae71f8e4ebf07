//! The eBPF backend: load linkmeter's TC programs, attach them to interfaces (and detach, and
//! check they are still there: `attach`), and read what they count (`maps`): per interface
//! and direction the protocol mix, TCP flags and packet sizes, and on external-mode tunnel
//! devices the traffic per remote endpoint (`peers`). The node uses it through [`TcCounter`].
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
//! See [`collector_common`] for the maps and the byte definition.

mod attach;
mod counter;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod hooks;
mod legacy;
mod load;
mod maps;
mod peers;
mod pin;
mod tc_netlink;
mod tcx;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::Ebpf;
use aya_log::EbpfLogger;
use collector_common::SLOT_TUNNEL;

pub use self::{
    attach::{AttachError, InterfaceAttachment},
    hooks::{AttachMode, AttachedMode, Hook, kernel_has_tcx},
    legacy::Role,
    load::{
        Capacity, CapacityError, DEFAULT_MAX_INTERFACES, DEFAULT_MAX_PEERS, LoadError, LoadOptions,
        MAX_INTERFACES, MAX_PEERS,
    },
    maps::{InterfaceCounters, InterfaceStats, MapReadError, Overflow},
    peers::Peer,
    pin::{DEFAULT_PIN_PATH, PinError},
};
use self::{
    hooks::ProgramIds,
    legacy::AttachNetns,
    load::classifier,
    maps::CounterMaps,
    maps::slot_flags,
    peers::{PeerAges, peer_key},
};
pub use crate::discovery::Framing;
pub(crate) use counter::{
    Attachment, TcCounter, Unattached, load_or_explain, unattached_if_loadable,
};

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
    pin::remove_ours(base)
}

/// The eBPF object built from `collector-ebpf` by `collector/build.rs`, embedded at compile time.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkmeter-tc"));

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// The loaded counting programs and their maps.
///
/// One instance serves any number of interfaces: attach with [`EbpfCounters::attach`], read with
/// [`EbpfCounters::read`] / [`EbpfCounters::read_stats`]. Dropping it unloads the programs;
/// keep it alive as long as any [`InterfaceAttachment`] is meant to count.
pub struct EbpfCounters {
    ebpf: Ebpf,
    maps: CounterMaps,
    ids: ProgramIds,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    /// The namespace of the latest attachment, shared by those made in the same one.
    netns: Option<Arc<AttachNetns>>,
    /// When each peer was last seen moving.
    ages: PeerAges,
    /// The daemon or a command: which legacy tc handles it attaches at.
    role: Role,
    /// Where the maps and links are pinned, when pinning.
    pins: Option<pin::PinDir>,
}

impl std::fmt::Debug for EbpfCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfCounters")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl EbpfCounters {
    /// Attaches the counting programs to both TC hooks of `interface` (in the calling thread's
    /// network namespace), reading its packets as Ethernet frames without counting peers.
    /// Counting starts immediately. See [`EbpfCounters::attach_framed`].
    ///
    /// # Errors
    ///
    /// [`AttachError`] naming the interface and hook.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<InterfaceAttachment, AttachError> {
        self.attach_framed(interface, mode, Framing::default())
    }

    /// Gives `interface` a slot of statistics (zeroed), then attaches the counting programs to
    /// both its TC hooks. With [`AttachMode::Auto`], TCX is used where the kernel has it and
    /// legacy tc otherwise. If the second hook fails, the first is detached again and the slot
    /// freed before the error is returned.
    ///
    /// # Errors
    ///
    /// [`AttachError`] naming the interface and hook, or [`AttachError::Slot`] when no slot is
    /// free.
    pub fn attach_framed(
        &mut self,
        interface: &str,
        mode: AttachMode,
        framing: Framing,
    ) -> Result<InterfaceAttachment, AttachError> {
        let ifindex = ifindex_of(interface)?;
        self.attach_index(ifindex, interface, mode, framing)
    }

    /// As [`EbpfCounters::attach_framed`], for the interface with index `ifindex` (`interface`
    /// names it in messages only).
    pub(crate) fn attach_index(
        &mut self,
        ifindex: u32,
        interface: &str,
        mode: AttachMode,
        framing: Framing,
    ) -> Result<InterfaceAttachment, AttachError> {
        let netns = AttachNetns::current(&mut self.netns).map_err(|source| AttachError::Netns {
            interface: interface.to_owned(),
            source,
        })?;
        let had_slot = self.maps.has_slot(ifindex);
        self.maps
            .assign(ifindex, slot_flags(framing))
            .map_err(|source| AttachError::Slot {
                interface: interface.to_owned(),
                source,
            })?;
        let target = attach::Target {
            interface,
            ifindex,
            role: self.role,
            pins: self.pins.as_ref(),
        };
        attach::attach(&mut self.ebpf, target, mode, netns).inspect_err(|_| {
            if !had_slot {
                let _ignored = self.maps.release(ifindex);
            }
        })
    }

    /// Whether `attachment`'s hooks still run our programs; see
    /// [`InterfaceAttachment::is_intact`].
    pub(crate) fn is_intact(&self, attachment: &InterfaceAttachment) -> bool {
        attachment.is_intact(self.ids)
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
        self.maps.interface(ifindex)
    }

    /// Statistics of every interface that has a slot, keyed by ifindex.
    pub(crate) fn read_all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError> {
        self.maps.all()
    }

    /// Traffic per tunnel device, direction and remote endpoint.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map iteration.
    pub fn peers(&self) -> Result<Vec<Peer>, MapReadError> {
        Ok(self
            .maps
            .peers()?
            .into_iter()
            .filter_map(|(key, counter)| Peer::from_key(&key, counter))
            .collect())
    }

    /// Packets (and bytes) counted as overflow: of interfaces without a slot, and of peers that
    /// did not fit into the peer map (raise `max_peers`).
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the map lookup.
    pub fn overflow(&self) -> Result<Overflow, MapReadError> {
        self.maps.overflow()
    }

    /// Frees the slot of `ifindex`, takes it out of the directory and removes its peers, e.g.
    /// after its interface was deleted. Its counters are gone; a later attachment starts from
    /// zero.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the update.
    pub fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        // Only a tunnel device has peers: other interfaces leave without a walk of the map.
        let Some(flags) = self.maps.release(ifindex)? else {
            return Ok(());
        };
        if flags & SLOT_TUNNEL != 0 {
            for peer in self.peers()?.iter().filter(|p| p.ifindex == ifindex) {
                self.maps.remove_peer(&peer_key(peer))?;
            }
        }
        Ok(())
    }

    /// Reads the peers and removes those whose counter has not moved for `idle`; returns how
    /// many were removed. They leave the exposition with their map entry. Each is read once more
    /// just before its removal and kept if it moved; a packet of that peer counted between
    /// that read and the removal (microseconds, after `idle` of silence) is lost with it.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the iteration or a deletion.
    pub fn expire_peers(&mut self, idle: Duration) -> Result<usize, MapReadError> {
        let now = Instant::now();
        let peers = self.peers()?;
        self.ages.observe(&peers, now);
        let mut removed = 0;
        for (key, packets) in self.ages.idle(idle, now) {
            if self.maps.peer_packets(&key)? == Some(packets) {
                self.maps.remove_peer(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Reads the peers and records which moved (for [`EbpfCounters::expire_peers`]).
    pub(crate) fn observe_peers(&mut self) -> Result<Vec<Peer>, MapReadError> {
        let peers = self.peers()?;
        self.ages.observe(&peers, Instant::now());
        Ok(peers)
    }

    /// Kernel memory of each map, in bytes, as the kernel accounts it (`memlock` in the map's
    /// fdinfo); `None` for a map whose fdinfo cannot be read.
    pub(crate) fn map_bytes(&self) -> Vec<(&'static str, Option<u64>)> {
        self.maps.map_bytes()
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
    use collector_common::SLOT_RAW_IP;

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
