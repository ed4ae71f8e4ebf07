//! linkmeter's TC classifiers: per interface and direction, packets and bytes, the protocol mix,
//! TCP flags and packet sizes; on external-mode tunnel devices, packets and bytes per remote
//! tunnel endpoint.
//!
//! The programs never write to a packet and always return `TC_ACT_UNSPEC` (`TCX_NEXT` under
//! TCX), so the next program in the chain — or the kernel's default action — decides the
//! packet's fate exactly as if linkmeter were absent. Parsing is bounded: at most one VLAN tag,
//! no IPv6 extension headers, no loops.
//!
//! The hot path takes no hash lookup: the interface's slot is found in a plain array (the
//! directory, filled by user space) and its counters live in a per-CPU array; the verifier
//! inlines both lookups (per-CPU arrays since Linux 6.10, on JITs with per-CPU instructions).
//! Tunnel devices also count per peer, in a per-CPU array as well (the peer table): a CPU claims
//! a free entry of its own copy with plain stores, so no compare-and-swap is needed; a peer
//! whose probed entries hold other peers is counted in a per-CPU hash instead. Packets of an
//! interface without a slot, and of a peer that finds the hash full, go to overflow counters,
//! so nothing goes missing silently.
use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_F_TUNINFO_IPV6, BPF_NOEXIST, TC_ACT_UNSPEC, bpf_tunnel_key},
    helpers::bpf_skb_get_tunnel_key,
    macros::{classifier, map},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::TcContext,
};
use aya_log_ebpf::warn;

use crate::variant::{Part, SlotSource};

#[path = "parse.rs"]
mod parse;
use collector_common::{
    Counter, DEFAULT_DIRECTORY_ENTRIES, DEFAULT_PEER_ENTRIES, DEFAULT_PEER_TABLE_ENTRIES,
    DEFAULT_STATS_ENTRIES, DIRECTORY_PROBES, Direction, OVERFLOW_ENTRIES, OVERFLOW_INTERFACES,
    OVERFLOW_PEERS, PEER_CONTROL_ENTRIES, PEER_CONTROL_LIVE, PEER_IPV4, PEER_IPV6, PEER_NONE,
    PEER_PROBES, PeerEntry, PeerKey, PeerTotal, Protocol, SLOT_TUNNEL, Slot, Stats,
    directory_position, peer_position, size_bucket, stats_index,
};
use parse::{Class, classify};

/// `EEXIST`, `EINVAL` and `EPROTO` as returned (negated) by helpers.
const EEXIST: i32 = 17;
const EINVAL: i64 = 22;
const EPROTO: i64 = 71;

/// The directory's size minus one (a power of two minus one); set by user space at load time.
#[unsafe(no_mangle)]
static DIRECTORY_MASK: u32 = DEFAULT_DIRECTORY_ENTRIES - 1;

/// The slot index of a program instance loaded for one interface (variant builds only).
#[unsafe(no_mangle)]
static SLOT_INDEX: u32 = 0;

/// The slot flags of a program instance loaded for one interface (variant builds only).
#[unsafe(no_mangle)]
static SLOT_FLAGS: u32 = 0;

#[map(name = "LINKMETER_DIRECTORY")]
static DIRECTORY: Array<Slot> = Array::with_max_entries(DEFAULT_DIRECTORY_ENTRIES, 0);

#[map(name = "LINKMETER_STATS")]
static STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(DEFAULT_STATS_ENTRIES, 0);

/// Allocated as peers appear (`BPF_F_NO_PREALLOC`): kernel memory follows the peers actually
/// seen, and a removed entry is freed only after every program that may still hold it has
/// finished (RCU), so its memory never carries another peer's counts.
#[map(name = "LINKMETER_PEERS")]
static PEERS: PerCpuHashMap<PeerKey, Counter> =
    PerCpuHashMap::with_max_entries(DEFAULT_PEER_ENTRIES, BPF_F_NO_PREALLOC);

/// Entries of one half of the peer table (a power of two), or 0 when peers are counted in the
/// hash map only; set by user space at load time.
#[unsafe(no_mangle)]
static PEER_TABLE_HALF: u32 = DEFAULT_PEER_TABLE_ENTRIES / 2;

/// The peer table: two halves of per-CPU entries. The programs count each peer in the half
/// that [`PEER_CONTROL`] names; user space empties the other one into [`PEER_TOTALS`] and then
/// swaps them (see `backend/ebpf/peer_table.rs`), which is how idle peers leave the table
/// without user space writing an entry that a CPU may be using.
#[map(name = "LINKMETER_PEER_TABLE")]
static PEER_TABLE: PerCpuArray<PeerEntry> =
    PerCpuArray::with_max_entries(DEFAULT_PEER_TABLE_ENTRIES, 0);

/// The peer table's control words ([`PEER_CONTROL_LIVE`], ...), written by user space.
#[map(name = "LINKMETER_PEER_CONTROL")]
static PEER_CONTROL: Array<u32> = Array::with_max_entries(PEER_CONTROL_ENTRIES, 0);

/// What the emptied table halves counted, per peer; only user space reads and writes it. It
/// is part of the object so that it is created, sized and pinned with the other maps.
#[map(name = "LINKMETER_PEER_TOTALS")]
static PEER_TOTALS: HashMap<PeerKey, PeerTotal> =
    HashMap::with_max_entries(DEFAULT_PEER_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "LINKMETER_OVERFLOW")]
static OVERFLOW: PerCpuArray<Counter> = PerCpuArray::with_max_entries(OVERFLOW_ENTRIES, 0);

/// Counts packets received by the interface it is attached to.
#[classifier]
pub fn linkmeter_ingress(ctx: TcContext) -> i32 {
    count(&ctx, Direction::Ingress);
    TC_ACT_UNSPEC
}

/// Counts packets transmitted by the interface it is attached to.
#[classifier]
pub fn linkmeter_egress(ctx: TcContext) -> i32 {
    count(&ctx, Direction::Egress);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn count(ctx: &TcContext, direction: Direction) {
    let variant = crate::VARIANT;
    // SAFETY: `ctx.skb.skb` is the `__sk_buff` context pointer the kernel passed to this
    // program; TC programs may read `ifindex`, and the verifier checks the access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if !variant.does(Part::Slot) {
        core::hint::black_box(ifindex);
        return;
    }
    let len = ctx.len();
    let slot = match variant.slot {
        SlotSource::Directory => find_slot(ifindex),
        SlotSource::Indexed => DIRECTORY.get(ifindex).copied(),
        SlotSource::Constant => Some(constant_slot(ifindex)),
    };
    let Some(slot) = slot else {
        overflow(ctx, OVERFLOW_INTERFACES, ifindex, len);
        return;
    };
    if !variant.does(Part::Stats) {
        core::hint::black_box(slot.index);
        return;
    }
    let Some(stats) = STATS.get_ptr_mut(stats_index(slot.index, direction)) else {
        overflow(ctx, OVERFLOW_INTERFACES, ifindex, len);
        return;
    };
    let class = if variant.does(Part::Parse) {
        classify(ctx, slot.flags)
    } else {
        Class {
            protocol: Protocol::Other,
            tcp_flag: None,
        }
    };
    // SAFETY: the pointer comes from a successful lookup in a per-CPU array, so it points at this
    // CPU's value, which only this CPU writes; BPF programs run with migration disabled, so no
    // other writer can interleave.
    unsafe {
        let stats = &mut *stats;
        if !variant.does(Part::Increments) {
            let counter = &mut stats.protocols[Protocol::Other as usize];
            counter.packets = counter.packets.wrapping_add(1);
            return;
        }
        if let Some(n) = stats.sizes.get_mut(size_bucket(len)) {
            *n = n.wrapping_add(1);
        }
        if let Some(counter) = stats.protocols.get_mut(class.protocol as usize) {
            counter.packets = counter.packets.wrapping_add(1);
            counter.bytes = counter.bytes.wrapping_add(u64::from(len));
        }
        if let Some(flag) = class.tcp_flag
            && let Some(n) = stats.tcp_flags.get_mut(flag as usize)
        {
            *n = n.wrapping_add(1);
        }
    }
    if variant.does(Part::TunnelKey) && slot.flags & SLOT_TUNNEL != 0 {
        count_peer(ctx, ifindex, slot.generation, direction, len);
    }
}

/// The slot of a program instance loaded for one interface: its index and flags are load-time
/// constants in `.rodata`, which the verifier sees (the map is frozen), so it prunes the
/// branches the flags rule out.
#[inline(always)]
fn constant_slot(ifindex: u32) -> Slot {
    // SAFETY: plain reads of `u32` globals; `read_volatile` keeps the compiler from folding the
    // compiled-in defaults, since user space sets the real values at load time.
    let (index, flags) = unsafe {
        (
            core::ptr::read_volatile(&SLOT_INDEX),
            core::ptr::read_volatile(&SLOT_FLAGS),
        )
    };
    Slot {
        ifindex,
        index,
        flags,
        generation: 0,
        reserved: 0,
    }
}

/// The directory entry of `ifindex`: at most [`DIRECTORY_PROBES`] array lookups.
#[inline(always)]
fn find_slot(ifindex: u32) -> Option<Slot> {
    // SAFETY: a plain read of a `u32` global; `read_volatile` keeps the compiler from folding
    // the compiled-in default, since user space sets the real value at load time.
    let mask = unsafe { core::ptr::read_volatile(&DIRECTORY_MASK) };
    let mut probe = 0;
    while probe < DIRECTORY_PROBES {
        if let Some(entry) = DIRECTORY.get(directory_position(ifindex, probe, mask))
            && entry.ifindex == ifindex
        {
            return Some(*entry);
        }
        probe += 1;
    }
    None
}

/// Counts the packet for its remote tunnel endpoint. At ingress the sender is in the tunnel
/// key's `remote_*`; at egress the destination is in `local_*` (the helper copies the tunnel
/// info's source into `remote_*` and its destination into `local_*`). A packet without a tunnel
/// key (which an external-mode device drops at egress without counting it) is counted under
/// [`PEER_NONE`]. The key carries the slot's `generation`, so a later device with the same
/// ifindex never counts into a removed device's peers.
#[inline(always)]
fn count_peer(ctx: &TcContext, ifindex: u32, generation: u16, direction: Direction, len: u32) {
    let Some((family, addr)) = tunnel_endpoint(ctx, direction) else {
        return;
    };
    if !crate::VARIANT.does(Part::Peers) {
        core::hint::black_box(addr);
        return;
    }
    let peer = PeerKey {
        ifindex,
        direction: direction as u8,
        family,
        generation,
        addr,
    };
    if add_to_table(&peer, len) {
        return;
    }
    if add_to(PEERS.get_ptr_mut(peer), len) {
        return;
    }
    let first = Counter {
        packets: 1,
        bytes: u64::from(len),
    };
    match PEERS.insert(peer, first, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        // Another CPU created the entry between our lookup and insert; our CPU's slot is zero.
        Err(err) if err == -EEXIST => {
            if !add_to(PEERS.get_ptr_mut(peer), len) {
                overflow(ctx, OVERFLOW_PEERS, ifindex, len);
            }
        }
        // -E2BIG: the map is full (or -ENOMEM): account the packet as overflow.
        Err(_) => overflow(ctx, OVERFLOW_PEERS, ifindex, len),
    }
}

/// Counts the packet in this CPU's entry for `peer` in the live half of the peer table,
/// claiming a free entry with plain stores (only this CPU writes its copy, and programs run
/// with migration disabled); `false` when the table is off or the probed entries hold other
/// peers.
#[inline(always)]
fn add_to_table(peer: &PeerKey, len: u32) -> bool {
    // SAFETY: a plain read of a `u32` global, volatile so that the compiler does not fold the
    // compiled-in default: user space sets the real value at load time.
    let half = unsafe { core::ptr::read_volatile(&PEER_TABLE_HALF) };
    if half == 0 {
        return false;
    }
    let Some(&live) = PEER_CONTROL.get(PEER_CONTROL_LIVE) else {
        return false;
    };
    let base = if live & 1 == 0 { 0 } else { half };
    let start = peer_position(peer, half);
    let [a, b, c, d] = peer.addr;
    let mut probe = 0;
    while probe < PEER_PROBES {
        let index = base + (start.wrapping_add(probe) & (half - 1));
        let Some(entry) = PEER_TABLE.get_ptr_mut(index) else {
            return false;
        };
        // SAFETY: this CPU's copy of a per-CPU array entry, written only by this CPU.
        let entry = unsafe { &mut *entry };
        let key = &mut entry.key;
        // Field by field: comparing or copying the whole key would compile to byte loops.
        if key.ifindex == peer.ifindex
            && key.direction == peer.direction
            && key.family == peer.family
            && key.generation == peer.generation
            && key.addr[0] == a
            && key.addr[1] == b
            && key.addr[2] == c
            && key.addr[3] == d
        {
            entry.counter.packets = entry.counter.packets.wrapping_add(1);
            entry.counter.bytes = entry.counter.bytes.wrapping_add(u64::from(len));
            return true;
        }
        if key.ifindex == 0 {
            key.ifindex = peer.ifindex;
            key.direction = peer.direction;
            key.family = peer.family;
            key.generation = peer.generation;
            key.addr = [a, b, c, d];
            entry.counter.packets = 1;
            entry.counter.bytes = u64::from(len);
            return true;
        }
        probe += 1;
    }
    false
}

/// Size of `struct bpf_tunnel_key` up to `local_ipv4`: the whole struct before Linux 6.0, which
/// every kernel accepts. Enough at ingress, where the sender is in `remote_*`.
const TUNNEL_KEY_REMOTE_ONLY: u32 = 28;

/// The remote endpoint in the packet's tunnel key as (family, address words): [`PEER_IPV4`] or
/// [`PEER_IPV6`] and the address; [`PEER_NONE`] and zeros without a key; `None` when the packet
/// has a key but the kernel cannot say where it goes (egress before Linux 6.0, whose helper has
/// no `local_*` members), so no peer is counted.
///
/// The key is read into uninitialised stack memory (the helper writes all of it, or zeroes it on
/// failure) and the address is copied word by word: zero-filling or byte copies would compile to
/// byte loops on this target.
#[inline(always)]
fn tunnel_endpoint(ctx: &TcContext, direction: Direction) -> Option<(u8, [u32; 4])> {
    let mut key = MaybeUninit::<bpf_tunnel_key>::uninit();
    let size = match direction {
        Direction::Ingress => TUNNEL_KEY_REMOTE_ONLY,
        Direction::Egress => core::mem::size_of::<bpf_tunnel_key>() as u32,
    };
    let get = |key: &mut MaybeUninit<bpf_tunnel_key>, size: u32, flags: u32| {
        // SAFETY: `key` is writable stack memory of at least `size` bytes; the helper takes it
        // as uninitialised memory and fills `size` bytes (zeroes them on failure).
        unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, key.as_mut_ptr(), size, u64::from(flags)) }
    };
    // An IPv4 key first; -EPROTO says the key is IPv6.
    let mut flags = 0;
    let mut rc = get(&mut key, size, flags);
    if rc == -EPROTO {
        flags = BPF_F_TUNINFO_IPV6;
        rc = get(&mut key, size, flags);
    }
    if rc != 0 {
        // -EINVAL: no key; or, at egress on a kernel older than 6.0, a key in the older layout,
        // which the older size still reads.
        if direction == Direction::Egress
            && rc == -EINVAL
            && get(&mut key, TUNNEL_KEY_REMOTE_ONLY, flags) == 0
        {
            return None;
        }
        return Some((PEER_NONE, [0; 4]));
    }
    // SAFETY: the helper succeeded, so `size` bytes of the key are initialised, which covers the
    // member read for `direction`; the flags say which members of the unions it filled (IPv4 in
    // host byte order, IPv6 as the address bytes in network order).
    let endpoint = unsafe {
        let key = key.assume_init_ref();
        match (direction, flags) {
            (Direction::Ingress, 0) => (
                PEER_IPV4,
                [key.__bindgen_anon_1.remote_ipv4.to_be(), 0, 0, 0],
            ),
            (Direction::Egress, 0) => (
                PEER_IPV4,
                [key.__bindgen_anon_3.local_ipv4.to_be(), 0, 0, 0],
            ),
            (Direction::Ingress, _) => (PEER_IPV6, key.__bindgen_anon_1.remote_ipv6),
            (Direction::Egress, _) => (PEER_IPV6, key.__bindgen_anon_3.local_ipv6),
        }
    };
    Some(endpoint)
}

/// Adds one packet of `len` bytes to `slot`; `false` when there is no slot.
#[inline(always)]
fn add_to(slot: Option<*mut Counter>, len: u32) -> bool {
    match slot {
        Some(counter) => {
            // SAFETY: the pointer comes from a successful lookup in a per-CPU map, so it points
            // at this CPU's value, which only this CPU writes.
            unsafe {
                (*counter).packets = (*counter).packets.wrapping_add(1);
                (*counter).bytes = (*counter).bytes.wrapping_add(u64::from(len));
            }
            true
        }
        None => false,
    }
}

/// Counts the packet as overflow; the first on each CPU is also logged through aya-log.
#[inline(always)]
fn overflow(ctx: &TcContext, index: u32, ifindex: u32, len: u32) {
    if let Some(counter) = OVERFLOW.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array, written only by this CPU.
        let first = unsafe { (*counter).packets == 0 };
        add_to(Some(counter), len);
        if first {
            if index == OVERFLOW_PEERS {
                warn!(
                    ctx,
                    "linkmeter peer map full: packets on ifindex {} counted as overflow", ifindex
                );
            } else {
                warn!(
                    ctx,
                    "linkmeter: ifindex {} has no counter slot: packets counted as overflow",
                    ifindex
                );
            }
        }
    }
}
