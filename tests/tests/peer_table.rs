//! The peer table (issue 18): peers counted in per-CPU array entries without a hash lookup,
//! the hash map for those whose entries are taken, and the harvests that empty one half into
//! the totals — every count exact, across harvests and across a daemon killed mid-harvest.

use std::{collections::BTreeMap, net::IpAddr, path::Path, time::Duration};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use collector::backend::ebpf::{
    AttachMode, Capacity, DEFAULT_MAX_INTERFACES, EbpfCounters, LoadOptions,
};
use collector_common::{
    Counter, MAP_LAYOUT_VERSION, PEER_CONTROL_HARVESTING, PEER_CONTROL_LIVE, PEER_CONTROL_SEQUENCE,
    PeerEntry, PeerKey, PeerTotal, harvest_tag,
};
use integration_tests::{
    bpffs::BpfFs,
    kernel::ifindex,
    kernel_tests_enabled,
    overlay::{self, OverlayNode},
    overlay::{ingress_peers, send_from as send},
};

fn counter(packets: u64) -> Counter {
    Counter {
        packets,
        bytes: packets * 100,
    }
}

/// How many peers the hash map of `counters`' programs holds.
fn in_hash(counters: &EbpfCounters) -> usize {
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == counters.program_ids()[0])
        .expect("our program");
    let map = program
        .map_ids()
        .expect("map ids")
        .expect("map ids known")
        .into_iter()
        .filter_map(|id| aya::maps::MapInfo::from_id(id).ok())
        .find(|m| m.name_as_str() == Some("LINKMETER_PEERS"))
        .expect("the peer hash");
    let data = MapData::from_id(map.id()).expect("open the peer hash");
    let hash: aya::maps::PerCpuHashMap<_, PeerKey, Counter> =
        aya::maps::PerCpuHashMap::try_from(Map::PerCpuHashMap(data)).expect("a per-CPU hash");
    hash.keys().filter_map(Result::ok).count()
}

#[test]
fn peers_beyond_the_table_go_to_the_hash_and_every_count_stays_exact_across_harvests() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("ptb");
    // 64 peers of capacity: table halves of 16 entries.
    let options = LoadOptions {
        capacity: Capacity::new(DEFAULT_MAX_INTERFACES, 64).expect("capacity"),
        ..LoadOptions::default()
    };
    let mut counters = EbpfCounters::load(&options).expect("load");
    let _attached = topo.attach_tunnel(&mut counters, AttachMode::Auto);
    let device = ifindex(&topo.node, overlay::DEVICE);
    let peers = overlay::endpoints(&topo, 100, 40);
    let mut want: BTreeMap<IpAddr, Counter> = BTreeMap::new();
    for round in 0..3 {
        for (i, &endpoint) in peers.iter().enumerate() {
            let n = 1 + (i + round) % 3;
            send(&topo, endpoint, n);
            want.entry(endpoint.into())
                .or_default()
                .add(&counter(n as u64));
        }
        assert_eq!(ingress_peers(&counters, device), want, "round {round}");
        // Some peers found their entries taken: the hash map holds them, the table the rest.
        let hashed = in_hash(&counters);
        assert!(
            (1..40).contains(&hashed),
            "{hashed} of 40 peers in the hash"
        );
        // A harvest empties the retired half into the totals (a second after the last swap).
        std::thread::sleep(Duration::from_millis(1100));
        let forgotten = counters
            .expire_peers(Duration::from_secs(3600))
            .expect("harvest");
        assert_eq!(forgotten, 0);
        assert_eq!(
            ingress_peers(&counters, device),
            want,
            "after harvest {round}"
        );
    }
    let overflow = counters.overflow().expect("overflow");
    assert_eq!(overflow.peers, Counter::default());
}

/// The pinned peer maps of the layout `pins` holds.
struct PinnedPeerMaps {
    control: Array<MapData, u32>,
    table: PerCpuArray<MapData, PeerEntry>,
    totals: HashMap<MapData, PeerKey, PeerTotal>,
}

impl PinnedPeerMaps {
    /// Leaves the maps as a harvest cut short leaves them: the halves swapped (the programs
    /// fill the other one), the half they filled being emptied, one of its entries (copy of
    /// one CPU) carried into its peer's total already, nothing cleared. Returns the half and
    /// the table index of that entry.
    fn interrupt_harvest(&mut self) -> (u32, u32) {
        let live = self.control.get(&PEER_CONTROL_LIVE, 0).expect("live half");
        let half_entries = self.table.len() / 2;
        let (offset, cpu, carried) = (0..half_entries)
            .find_map(|offset| {
                let copies = self
                    .table
                    .get(&(live * half_entries + offset), 0)
                    .expect("entry");
                copies
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.key.ifindex != 0)
                    .map(|(cpu, c)| (offset, cpu, *c))
            })
            .expect("the peers are in the table");
        self.control
            .set(PEER_CONTROL_LIVE, live ^ 1, 0)
            .expect("swap");
        let sequence = self.control.get(&PEER_CONTROL_SEQUENCE, 0).expect("seq") + 1;
        self.control
            .set(PEER_CONTROL_SEQUENCE, sequence, 0)
            .expect("set");
        self.control
            .set(PEER_CONTROL_HARVESTING, live + 1, 0)
            .expect("set");
        let tag = harvest_tag(sequence, offset, u32::try_from(cpu).expect("cpu"));
        self.totals
            .insert(
                carried.key,
                PeerTotal {
                    counter: carried.counter,
                    applied: tag,
                },
                0,
            )
            .expect("carry one entry");
        (live, live * half_entries + offset)
    }

    fn open(pins: &Path) -> Self {
        let dir = std::fs::read_dir(pins)
            .expect("pin dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("v{MAP_LAYOUT_VERSION}-")))
            })
            .expect("the layout directory");
        let open = |name: &str| MapData::from_pin(dir.join(name)).expect("open a pinned map");
        Self {
            control: Array::try_from(Map::Array(open("peer_control"))).expect("array"),
            table: PerCpuArray::try_from(Map::PerCpuArray(open("peer_table"))).expect("array"),
            totals: HashMap::try_from(Map::HashMap(open("peer_totals"))).expect("hash"),
        }
    }
}

#[test]
fn a_harvest_cut_short_is_finished_by_the_next_daemon_without_counting_twice() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("pth");
    let bpffs = BpfFs::mount("harvest");
    let pins = bpffs.path().join("linkmeter");
    let options = LoadOptions {
        pin: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let peers = overlay::endpoints(&topo, 100, 4);
    let mut want: BTreeMap<IpAddr, Counter> = BTreeMap::new();
    {
        let mut counters = EbpfCounters::load(&options).expect("load");
        let _attached = topo.attach_tunnel(&mut counters, AttachMode::Tc);
        for (i, &endpoint) in peers.iter().enumerate() {
            send(&topo, endpoint, 2 + i);
            want.insert(endpoint.into(), counter(2 + i as u64));
        }
        let device = ifindex(&topo.node, overlay::DEVICE);
        assert_eq!(ingress_peers(&counters, device), want);
    }
    // The daemon is gone (its programs with it) after it had swapped the halves and begun
    // emptying the one the programs filled: it had carried one entry into its total and not
    // yet cleared the half.
    let mut maps = PinnedPeerMaps::open(&pins);
    let (live, entry) = maps.interrupt_harvest();
    // The next daemon finishes that harvest: every count once.
    let counters = EbpfCounters::load(&options).expect("load again");
    let device = ifindex(&topo.node, overlay::DEVICE);
    assert_eq!(ingress_peers(&counters, device), want);
    assert_eq!(
        maps.control
            .get(&PEER_CONTROL_HARVESTING, 0)
            .expect("state"),
        0,
        "the harvest is finished"
    );
    assert_eq!(
        maps.control.get(&PEER_CONTROL_LIVE, 0).expect("live"),
        live,
        "the emptied half is live again"
    );
    assert!(
        maps.table
            .get(&entry, 0)
            .expect("entry")
            .iter()
            .all(|c| c.key.ifindex == 0),
        "the half is emptied"
    );
}

#[test]
fn a_harvest_that_failed_part_way_is_finished_by_the_next_without_counting_twice() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("ptf");
    let bpffs = BpfFs::mount("failed");
    let pins = bpffs.path().join("linkmeter");
    let options = LoadOptions {
        pin: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let mut counters = EbpfCounters::load(&options).expect("load");
    let _attached = topo.attach_tunnel(&mut counters, AttachMode::Tc);
    let mut want: BTreeMap<IpAddr, Counter> = BTreeMap::new();
    for (i, endpoint) in overlay::endpoints(&topo, 100, 4).into_iter().enumerate() {
        send(&topo, endpoint, 3 + i);
        want.insert(endpoint.into(), counter(3 + i as u64));
    }
    // This daemon's harvest stopped part-way (a map access failed after it had carried one
    // entry): its next harvest finishes that one rather than beginning another.
    let mut maps = PinnedPeerMaps::open(&pins);
    let (live, _) = maps.interrupt_harvest();
    std::thread::sleep(Duration::from_millis(1100));
    counters
        .expire_peers(Duration::from_secs(3600))
        .expect("harvest");
    let device = ifindex(&topo.node, overlay::DEVICE);
    assert_eq!(ingress_peers(&counters, device), want);
    assert_eq!(
        maps.control
            .get(&PEER_CONTROL_HARVESTING, 0)
            .expect("state"),
        0
    );
    assert_eq!(maps.control.get(&PEER_CONTROL_LIVE, 0).expect("live"), live);
}
