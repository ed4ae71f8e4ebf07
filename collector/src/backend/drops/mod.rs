//! Drops by kernel drop reason, per interface: the `kfree_skb` tracing program
//! (`collector-ebpf/src/drops.rs`), loaded with what the running kernel's BTF says, and the
//! reading of its counts.
//!
//! At load time, user space reads `/sys/kernel/btf/vmlinux` ([`btf`]): the tracepoint's
//! prototype (the skb and the reason must be its first and third arguments), the byte offsets
//! of the four kernel fields the program reads, the values of `SKB_NOT_DROPPED_YET` and
//! `SKB_CONSUMED`, and the reasons' names ([`reasons`]). They are passed to the program as
//! load-time globals: aya's Rust programs carry no CO-RE relocations, so this is how the same
//! object runs on every kernel. The daemon's network namespace is the inode number of
//! `/proc/thread-self/ns/net`.
//!
//! The program is not pinned: it detaches when the daemon exits, and its counts start with
//! each daemon (a counter reset, as Prometheus expects of a restarted exporter).

pub(crate) mod btf;
pub(crate) mod reasons;

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::{MapData, MapError, PerCpuArray, PerCpuHashMap},
    programs::BtfTracePoint,
};
use collector_common::{
    DropKey,
    drops::{DROP_OVERFLOW, DROP_PROGRAM, DROP_STATS_MAP, DROP_TRACEPOINT, DROPS_MAP, globals},
};

use self::{
    btf::{Btf, BtfError, Kind},
    reasons::{ReasonNames, module_btfs},
};

/// The embedded drop-reason program.
pub(crate) static DROP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkmeter-drops"));

/// Where the kernel publishes its BTF.
pub(crate) const BTF_DIR: &str = "/sys/kernel/btf";

/// Why drop reasons are not counted on this machine.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DropsUnavailable {
    /// The kernel's BTF is missing or lacks what the program needs.
    #[error("the kernel's BTF cannot be used")]
    Btf(#[from] BtfError),
    /// The tracepoint has no reason argument (before Linux 5.17) or another prototype.
    #[error(
        "the kfree_skb tracepoint has no drop reason as its third argument (prototype: {0}; Linux 5.17 or later is needed)"
    )]
    NoReasonArgument(String),
    /// The daemon's network namespace cannot be read.
    #[error("reading the network namespace of the daemon")]
    Netns(#[source] std::io::Error),
    /// The object cannot be loaded.
    #[error("loading the drop-reason program (needs CAP_BPF and CAP_PERFMON, or root)")]
    Load(#[source] aya::EbpfError),
    /// The verifier refused the program, or attaching to the tracepoint failed.
    #[error("loading or attaching the kfree_skb program (needs CAP_BPF and CAP_PERFMON, or root)")]
    Program(#[source] aya::programs::ProgramError),
    /// A map is missing from the object.
    #[error("the drop-reason object has no usable map {0}")]
    Map(&'static str, #[source] Option<MapError>),
}

/// What the program needs from the running kernel, read from its BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// `sk_buff.dev`, `net_device.ifindex`, `net_device.nd_net.net`, `net.ns.inum`.
    pub(crate) offsets: [u32; 4],
    /// The reasons' names, and the values that are not drops.
    pub(crate) names: ReasonNames,
}

impl Layout {
    /// Reads the layout from the BTF under `dir` (`/sys/kernel/btf`).
    ///
    /// # Errors
    ///
    /// [`DropsUnavailable::Btf`] or [`DropsUnavailable::NoReasonArgument`].
    pub(crate) fn read(dir: &Path) -> Result<Self, DropsUnavailable> {
        let vmlinux = Btf::from_file(&dir.join("vmlinux"), None)?;
        Self::from_btf(&vmlinux, &module_btfs(dir, &vmlinux))
    }

    /// The layout in `vmlinux` (and the subsystems' reason names in `modules`).
    pub(crate) fn from_btf(vmlinux: &Btf, modules: &[Btf]) -> Result<Self, DropsUnavailable> {
        let prototype = vmlinux.prototype(&format!("btf_trace_{DROP_TRACEPOINT}"))?;
        // The typedef's first parameter is the tracepoint's context (`void *`).
        let fits = prototype.get(1).map(String::as_str) == Some("struct sk_buff *")
            && prototype.get(3).map(String::as_str) == Some("enum skb_drop_reason");
        if !fits {
            return Err(DropsUnavailable::NoReasonArgument(prototype.join(", ")));
        }
        let structure = |name: &str| vmlinux.find(Kind::Struct, name);
        let skb = structure("sk_buff")?;
        let dev = structure("net_device")?;
        let net = structure("net")?;
        let offsets = [
            vmlinux.offset_of(skb, &["dev"])?,
            vmlinux.offset_of(dev, &["ifindex"])?,
            vmlinux.offset_of(dev, &["nd_net", "net"])?,
            vmlinux.offset_of(net, &["ns", "inum"])?,
        ];
        Ok(Self {
            offsets,
            names: ReasonNames::read(vmlinux, modules)?,
        })
    }
}

/// Drops of one interface for one reason, since the program was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Drops {
    /// The device.
    pub(crate) ifindex: u32,
    /// The reason's name (see [`reasons`]).
    pub(crate) reason: String,
    /// Packets.
    pub(crate) packets: u64,
}

/// One reading of the drop counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DropReading {
    /// Per interface and reason, by ifindex then reason.
    pub(crate) drops: Vec<Drops>,
    /// Drops whose (interface, reason) found the map full.
    pub(crate) overflow: u64,
}

/// The drop-reason counter as the node uses it: reads, and forgets a removed interface.
pub(crate) trait DropCounter {
    /// The counts so far.
    ///
    /// # Errors
    ///
    /// A map read failed.
    fn read(&mut self) -> Result<DropReading, MapError>;

    /// Deletes the counts of `ifindex` (the interface was removed: a device made later with
    /// the same ifindex starts from zero).
    fn forget(&mut self, ifindex: u32);

    /// Kernel memory of the drop maps, bytes, by map label.
    fn map_bytes(&self) -> Vec<(&'static str, u64)>;
}

/// How often the modules' BTF is read again for a subsystem reason without a name (a module
/// loaded after the daemon started).
const RENAME_EVERY: Duration = Duration::from_secs(300);

/// The loaded and attached `kfree_skb` program and its maps.
pub(crate) struct TracedDrops {
    /// Holds the program (and its attachment) for the daemon's lifetime.
    _ebpf: Ebpf,
    drops: PerCpuHashMap<MapData, DropKey, u64>,
    stats: PerCpuArray<MapData, u64>,
    names: ReasonNames,
    btf_dir: PathBuf,
    /// When the modules' BTF was last read for unnamed subsystem reasons.
    renamed: Option<Instant>,
}

impl std::fmt::Debug for TracedDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedDrops").finish_non_exhaustive()
    }
}

impl TracedDrops {
    /// Loads the program with the layout of the running kernel, for the calling thread's
    /// network namespace, and attaches it.
    ///
    /// # Errors
    ///
    /// [`DropsUnavailable`] naming what is missing.
    pub(crate) fn load() -> Result<Self, DropsUnavailable> {
        let btf_dir = PathBuf::from(BTF_DIR);
        let layout = Layout::read(&btf_dir)?;
        let mut ebpf = load_program(DROP_OBJECT, &layout)?;
        let drops = take(&mut ebpf, DROPS_MAP)?;
        let stats = take(&mut ebpf, DROP_STATS_MAP)?;
        Ok(Self {
            _ebpf: ebpf,
            drops,
            stats,
            names: layout.names,
            btf_dir,
            renamed: None,
        })
    }

    /// The reasons' names this program reports with.
    pub(crate) const fn reason_names(&self) -> &ReasonNames {
        &self.names
    }

    /// Reads the modules' BTF again for subsystem reasons the names lack (at most every
    /// [`RENAME_EVERY`]).
    fn rename(&mut self, reasons: impl Iterator<Item = u32>) {
        let unnamed = reasons
            .filter(|r| r >> reasons::SUBSYS_SHIFT != 0)
            .any(|r| self.names.name(r).starts_with("subsys_"));
        if !unnamed || self.renamed.is_some_and(|at| at.elapsed() < RENAME_EVERY) {
            return;
        }
        self.renamed = Some(Instant::now());
        if let Ok(layout) = Layout::read(&self.btf_dir) {
            self.names = layout.names;
        }
        release_freed_memory();
    }
}

/// Gives the memory freed after reading the kernel's BTF back to the system. The two parses at
/// load (ours and aya's, several MiB of BTF into many small allocations) leave about 29 MiB that
/// glibc's allocator would otherwise keep for the daemon's lifetime (measured RSS: 41.9 MiB
/// with drop reasons, 12.6 MiB without). Trimming alone is not enough when the parses ran in
/// the daemon's own heap: its later allocations fault the trimmed pages in again.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` only returns free memory of the allocator's arenas to the kernel;
    // no allocation is moved or freed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The inode number of the calling thread's network namespace.
fn netns_inum() -> Result<u32, DropsUnavailable> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net").map_err(DropsUnavailable::Netns)?;
    u32::try_from(meta.ino()).map_err(|_| {
        DropsUnavailable::Netns(std::io::Error::other("namespace inode number over 32 bits"))
    })
}

/// Loads `object`'s `kfree_skb` program with `layout` for the calling thread's network
/// namespace and attaches it; the returned object holds it.
///
/// # Errors
///
/// [`DropsUnavailable`] naming what failed.
pub(crate) fn load_program(object: &[u8], layout: &Layout) -> Result<Ebpf, DropsUnavailable> {
    let netns = netns_inum()?;
    let [skb_dev, dev_ifindex, dev_net, net_inum] = layout.offsets;
    let not_dropped = layout.names.not_dropped.unwrap_or(u32::MAX);
    let consumed = layout.names.consumed.unwrap_or(u32::MAX);
    let mut loader = EbpfLoader::new();
    loader
        .override_global(globals::SKB_DEV, &skb_dev, false)
        .override_global(globals::DEV_IFINDEX, &dev_ifindex, false)
        .override_global(globals::DEV_NET, &dev_net, false)
        .override_global(globals::NET_INUM, &net_inum, false)
        .override_global(globals::NETNS_INUM, &netns, false)
        .override_global(globals::NOT_DROPPED, &not_dropped, false)
        .override_global(globals::CONSUMED, &consumed, false);
    let mut ebpf = loader.load(object).map_err(DropsUnavailable::Load)?;
    let btf = AyaBtf::from_sys_fs().map_err(|e| {
        DropsUnavailable::Btf(BtfError::Missing(format!("loadable BTF for aya ({e})")))
    })?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(DROP_PROGRAM)
        .ok_or(DropsUnavailable::Map(DROP_PROGRAM, None))?
        .try_into()
        .map_err(DropsUnavailable::Program)?;
    program
        .load(DROP_TRACEPOINT, &btf)
        .map_err(DropsUnavailable::Program)?;
    program.attach().map_err(DropsUnavailable::Program)?;
    Ok(ebpf)
}

fn take<M: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    map: &'static str,
) -> Result<M, DropsUnavailable> {
    let raw = ebpf.take_map(map).ok_or(DropsUnavailable::Map(map, None))?;
    M::try_from(raw).map_err(|e| DropsUnavailable::Map(map, Some(e)))
}

impl DropCounter for TracedDrops {
    fn read(&mut self) -> Result<DropReading, MapError> {
        let mut counts: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for entry in self.drops.iter() {
            let (key, values) = entry?;
            let sum = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
            counts.insert((key.ifindex, key.reason), sum);
        }
        self.rename(counts.keys().map(|(_, reason)| *reason));
        let stat = |index: u32| -> Result<u64, MapError> {
            let values = self.stats.get(&index, 0)?;
            Ok(values.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
        };
        Ok(DropReading {
            overflow: stat(DROP_OVERFLOW)?,
            drops: counts
                .into_iter()
                .map(|((ifindex, reason), packets)| Drops {
                    ifindex,
                    reason: self.names.name(reason),
                    packets,
                })
                .collect(),
        })
    }

    fn map_bytes(&self) -> Vec<(&'static str, u64)> {
        use aya::maps::IterableMap as _;

        use crate::backend::ebpf::memory::memlock;
        [
            ("drops", memlock(self.drops.map())),
            ("drop_stats", memlock(self.stats.map())),
        ]
        .into_iter()
        .filter_map(|(map, bytes)| Some((map, bytes?)))
        .collect()
    }

    fn forget(&mut self, ifindex: u32) {
        let keys: Vec<DropKey> = self
            .drops
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.ifindex == ifindex)
            .collect();
        for key in keys {
            // Gone already (deleted by a concurrent forget) is fine.
            let _ = self.drops.remove(&key);
        }
    }
}

/// The drop-reason counter for the daemon: loaded unless turned off; when it cannot be, one
/// WARN saying why (everything else works without it).
pub(crate) fn load_or_explain(enabled: bool) -> Option<Box<dyn DropCounter>> {
    if !enabled {
        return None;
    }
    // On a thread of its own, so that the BTF parses' many small allocations land in that
    // thread's arena, never in the heap the daemon keeps allocating from. The thread stays,
    // parked: an ended thread's arena goes to the next thread started, whose allocations would
    // fault the freed and trimmed pages in again.
    let (answer, loaded) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("linkmeter-btf".to_owned())
        .spawn(move || {
            let _gone = answer.send(TracedDrops::load());
            loop {
                std::thread::park();
            }
        });
    let loaded = match spawned {
        Ok(_parked) => loaded.recv().unwrap_or_else(|_| TracedDrops::load()),
        Err(_) => TracedDrops::load(),
    };
    release_freed_memory();
    match loaded {
        Ok(drops) => Some(Box::new(drops)),
        Err(err) => {
            tracing::warn!(error = %crate::Report(&err),
                "drop reasons are not counted on this node (linkmeter_interface_drops_total is left out); `linkmeter check` says why");
            None
        }
    }
}

#[cfg(test)]
mod tests;
