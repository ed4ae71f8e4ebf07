//! Loading the embedded object: capacities, maps sized, programs verified.

use std::ops::RangeInclusive;

use aya::{Ebpf, EbpfError, EbpfLoader, maps::MapError, programs::ProgramError};
use aya_log::EbpfLogger;
use collector_common::{
    Counter, DIRECTORY_MAP, DIRECTORY_MASK_GLOBAL, DIRECTORY_PER_SLOT, EGRESS_PROGRAM,
    INGRESS_PROGRAM, OVERFLOW_MAP, PEER_CONTROL_MAP, PEER_TABLE_HALF_GLOBAL, PEER_TABLE_MAP,
    PEER_TOTALS_MAP, PEERS_MAP, PeerEntry, STATS_MAP, Slot, Stats,
};

use super::{
    Counters, EbpfCounters, OBJECT,
    error::MapReadError,
    hooks::{ProgramIds, classifier},
    legacy::Role,
    maps::CounterMaps,
    peer_table::PeerTable,
    pin::{MAP_FILES, PinDir},
    pin_fs::PinError,
    pin_layout,
    programs::Programs,
};
/// Default of `max_interfaces`: how many interfaces the eBPF counter can be attached to at
/// once. Each takes 512 bytes of kernel memory per possible CPU plus 128 bytes (64 KiB on a
/// 128-CPU node).
pub const DEFAULT_MAX_INTERFACES: u32 = 256;
/// Accepted values of `max_interfaces`.
pub const MAX_INTERFACES: RangeInclusive<u32> = 1..=65_536;
/// Default of `max_peers`: (tunnel device, direction, remote endpoint) counters, enough for one
/// tunnel device in a 5,000-node cluster (both directions) with room to spare. Each takes 16
/// bytes of kernel memory per possible CPU plus about 106 bytes (about 2.1 KiB on a 128-CPU
/// node).
pub const DEFAULT_MAX_PEERS: u32 = 10_240;
/// Accepted values of `max_peers`.
pub const MAX_PEERS: RangeInclusive<u32> = 1..=1 << 20;
/// The largest half of the peer table: 1,024 entries of 40 bytes per possible CPU in each of
/// the two halves (80 KiB per CPU, 10 MiB on a 128-CPU node). Peers whose entries are taken
/// are counted in the hash map.
pub const MAX_PEER_TABLE_HALF: u32 = 1024;
/// Below this `max_peers`, the peer table is not used: a capacity this small is a test or a
/// deliberate bound, which the hash map enforces exactly.
pub const MIN_PEERS_FOR_TABLE: u32 = 64;

/// The sizes of the maps, checked once, when made ([`Capacity::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    interfaces: u32,
    peers: u32,
}

/// A capacity outside its accepted values; `option` names it as the configuration does.
#[derive(Debug, thiserror::Error)]
#[error("{got}: must be {min} to {max}")]
pub struct CapacityError {
    /// The option: `max_interfaces` or `max_peers`.
    pub option: &'static str,
    /// The rejected value.
    pub got: u32,
    /// The smallest accepted value.
    pub min: u32,
    /// The largest accepted value.
    pub max: u32,
}

impl Capacity {
    /// Room for `interfaces` attached interfaces (each gets a slot of per-CPU statistics),
    /// within [`MAX_INTERFACES`], and `peers` (tunnel device, direction, remote endpoint)
    /// counters, within [`MAX_PEERS`] (packets of more peers are counted as overflow).
    ///
    /// # Errors
    ///
    /// [`CapacityError`] naming the option out of its bounds.
    pub fn new(interfaces: u32, peers: u32) -> Result<Self, CapacityError> {
        Ok(Self {
            interfaces: within("max_interfaces", interfaces, &MAX_INTERFACES)?,
            peers: within("max_peers", peers, &MAX_PEERS)?,
        })
    }

    /// How many interfaces can be attached at once.
    pub const fn interfaces(self) -> u32 {
        self.interfaces
    }

    /// How many peer counters the peer map holds.
    pub const fn peers(self) -> u32 {
        self.peers
    }

    /// Entries of one half of the peer table, in which the programs count peers without a
    /// hash lookup: the largest power of two not above a quarter of [`Capacity::peers`], at
    /// most [`MAX_PEER_TABLE_HALF`]; 0 (no table: peers in the hash map alone) below
    /// [`MIN_PEERS_FOR_TABLE`] peers.
    pub const fn peer_table_half(self) -> u32 {
        if self.peers < MIN_PEERS_FOR_TABLE {
            return 0;
        }
        let quarter = self.peers / 4;
        let floor = 1 << (31 - quarter.leading_zeros());
        if floor > MAX_PEER_TABLE_HALF {
            MAX_PEER_TABLE_HALF
        } else {
            floor
        }
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            interfaces: DEFAULT_MAX_INTERFACES,
            peers: DEFAULT_MAX_PEERS,
        }
    }
}

fn within(
    option: &'static str,
    got: u32,
    range: &RangeInclusive<u32>,
) -> Result<u32, CapacityError> {
    if range.contains(&got) {
        Ok(got)
    } else {
        Err(CapacityError {
            option,
            got,
            min: *range.start(),
            max: *range.end(),
        })
    }
}

/// Options for [`EbpfCounters::load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The sizes of the maps.
    pub capacity: Capacity,
    /// The daemon, or a one-shot command beside it: they attach at different legacy tc
    /// handles. Default [`Role::Daemon`].
    pub role: Role,
    /// Pin the maps and TCX links under this bpffs directory and adopt what an earlier daemon
    /// pinned there (see `pin`); `None` (the default): nothing outlives the process.
    pub pin: Option<std::path::PathBuf>,
    /// The eBPF object to load instead of the one built into linkmeter (`None`, the default):
    /// another build of the programs over the same map layout, as a later version's would be
    /// (the upgrade tests).
    pub object: Option<&'static [u8]>,
}

/// Errors from loading the eBPF object.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
    /// The maps cannot be prepared.
    #[error("preparing the eBPF maps")]
    Maps(#[source] MapReadError),
    /// The pin directory cannot be used.
    #[error("pinning the eBPF maps")]
    Pin(#[source] PinError),
    /// The thread that attaches the programs cannot be started.
    #[error("starting the hook worker thread")]
    Worker(#[source] std::io::Error),
}

impl LoadError {
    /// What failed, in the words of the fallback's WARN: permissions, the verifier, the map
    /// layout, or the kernel's BPF support.
    pub(crate) fn what_failed(&self) -> &'static str {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = cause {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            {
                return "permission denied: run as root or add CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON";
            }
            cause = err.source();
        }
        match self {
            Self::Verify { .. } => "the verifier refused a program (its log follows)",
            Self::MissingProgram { .. } | Self::MissingMap { .. } | Self::Maps(_) => {
                "the maps or programs are not what this build expects (map layout)"
            }
            Self::Pin(_) => "the pin directory cannot be used",
            Self::Worker(_) => "the hook worker thread cannot start",
            Self::Object(_) => "the kernel refused the object (a BPF-capable kernel is needed)",
        }
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
    /// Loads and verifies the embedded object with its maps sized by `options`.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the kernel refuses (missing privileges or BPF support) or the object
    /// is not what this build expects.
    pub fn load(options: &LoadOptions) -> Result<Self, LoadError> {
        let (interfaces, peers) = (options.capacity.interfaces(), options.capacity.peers());
        let half = options.capacity.peer_table_half();
        let directory = (interfaces * DIRECTORY_PER_SLOT).next_power_of_two();
        let mask = directory - 1;
        log_memory(interfaces, peers, directory, half);
        let pins = match &options.pin {
            Some(base) => {
                let (pins, removed) =
                    PinDir::prepare(base, interfaces, peers).map_err(LoadError::Pin)?;
                if !removed.is_empty() {
                    tracing::info!(removed = ?removed,
                        "removed pinned maps and links of another map layout or capacity; counters restart");
                }
                Some(pins)
            }
            None => None,
        };
        let entries = [
            (DIRECTORY_MAP, directory),
            (STATS_MAP, interfaces * 2),
            (PEERS_MAP, peers),
            // An array cannot be empty: without a table, one unused entry.
            (PEER_TABLE_MAP, (half * 2).max(1)),
            (PEER_TOTALS_MAP, peers),
        ];
        let object = options.object.unwrap_or(OBJECT);
        if let Some(pins) = &pins
            && let Some(mismatch) = pin_layout::expected(object, &entries)
                .and_then(|wanted| pin_layout::mismatch(pins, &wanted))
        {
            tracing::warn!(%mismatch,
                "a pinned map is not what this build creates; replacing the pinned maps and links (counters restart)");
            pins.clear().map_err(LoadError::Pin)?;
        }
        let mut loader = EbpfLoader::new();
        loader
            .override_global(DIRECTORY_MASK_GLOBAL, &mask, true)
            .override_global(PEER_TABLE_HALF_GLOBAL, &half, true);
        for (map, n) in entries {
            loader.map_max_entries(map, n);
        }
        if let Some(pins) = &pins {
            for (map, file) in MAP_FILES {
                loader.map_pin_path(map, pins.map(file));
            }
        }
        let mut ebpf = loader.load(object).map_err(LoadError::Object)?;
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %crate::Report(&err), "eBPF log forwarding unavailable");
                None
            }
        };
        let mut ids = [0; 2];
        for (slot, program) in ids.iter_mut().zip([INGRESS_PROGRAM, EGRESS_PROGRAM]) {
            let classifier =
                classifier(&mut ebpf, program).ok_or(LoadError::MissingProgram { program })?;
            classifier
                .load()
                .map_err(|source| LoadError::Verify { program, source })?;
            *slot = classifier
                .info()
                .map_err(|source| LoadError::Verify { program, source })?
                .id();
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| LoadError::Maps(MapReadError::Cpus(e)))?;
        let mut table = PeerTable::new(
            take_map(&mut ebpf, PEER_TABLE_MAP)?,
            take_map(&mut ebpf, PEER_CONTROL_MAP)?,
            take_map(&mut ebpf, PEER_TOTALS_MAP)?,
            half,
            cpus,
        );
        if table.prepare().map_err(LoadError::Maps)? {
            tracing::info!("finished emptying the peer table half an earlier daemon had begun");
        }
        let mut maps = CounterMaps::new(
            take_map(&mut ebpf, DIRECTORY_MAP)?,
            mask,
            take_map(&mut ebpf, STATS_MAP)?,
            take_map(&mut ebpf, PEERS_MAP)?,
            table,
            take_map(&mut ebpf, OVERFLOW_MAP)?,
            interfaces,
        )
        .map_err(LoadError::Maps)?;
        if let Some(pins) = &pins {
            // A slot whose pinned links no longer sit on that ifindex's device here counted
            // another device: not continued, and its links let go.
            let same_device = |ifindex| {
                let same = pins.still_linked(ifindex) != Some(false);
                if !same {
                    tracing::info!(
                        ifindex,
                        "the pinned counters of this ifindex belonged to another device (deleted, or in another network namespace); starting from zero"
                    );
                    pins.unlink(ifindex);
                }
                same
            };
            let adopted = maps.adopt(same_device).map_err(LoadError::Maps)?;
            if adopted > 0 {
                tracing::info!(
                    interfaces = adopted,
                    "continuing the pinned counters of an earlier daemon"
                );
            }
        }
        let ids = ProgramIds {
            ingress: ids[0],
            egress: ids[1],
        };
        Ok(Self {
            programs: Programs::new(ebpf, ids, options.role, pins.clone()),
            counters: Counters { maps, logger, pins },
        })
    }
}

/// Logs the kernel memory the maps will take (or may take, for the peers), which grows with the
/// number of possible CPUs: a capacity the memory cgroup cannot hold fails the load.
fn log_memory(interfaces: u32, peers: u32, directory: u32, half: u32) {
    const MIB: f64 = 1024.0 * 1024.0;
    let Ok(cpus) = aya::util::nr_cpus() else {
        return;
    };
    let cpus = cpus as u64;
    let stats = u64::from(interfaces) * 2 * std::mem::size_of::<Stats>() as u64 * cpus;
    let peer_bytes = u64::from(peers) * (std::mem::size_of::<Counter>() as u64 * cpus + 106);
    let directory = u64::from(directory) * std::mem::size_of::<Slot>() as u64;
    let table = u64::from(half) * 2 * std::mem::size_of::<PeerEntry>() as u64 * cpus;
    #[allow(clippy::cast_precision_loss)]
    let mib = |bytes: u64| bytes as f64 / MIB;
    tracing::info!(
        possible_cpus = cpus,
        stats_mib = format_args!("{:.1}", mib(stats + directory)),
        peer_table_mib = format_args!("{:.1}", mib(table)),
        peers_max_mib = format_args!("{:.1}", mib(peer_bytes)),
        "eBPF map kernel memory: stats and the peer table reserved now, other peers allocated as they appear"
    );
}
