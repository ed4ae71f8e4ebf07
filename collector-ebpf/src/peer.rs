//! Counting per remote tunnel endpoint on external-mode tunnel devices: the tunnel key read
//! with `bpf_skb_get_tunnel_key`, the count kept in the peer table (a per-CPU array whose free
//! entries a CPU claims with plain stores) or, for a peer whose probed entries hold other peers,
//! in a per-CPU hash; a peer that finds the hash full goes to the overflow counter.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_F_TUNINFO_IPV6, BPF_NOEXIST, bpf_tunnel_key},
    helpers::bpf_skb_get_tunnel_key,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::TcContext,
};
use collector_common::{
    Counter, DEFAULT_PEER_ENTRIES, DEFAULT_PEER_TABLE_ENTRIES, Direction, OVERFLOW_PEERS,
    PEER_CONTROL_ENTRIES, PEER_CONTROL_LIVE, PEER_IPV4, PEER_IPV6, PEER_NONE, PEER_PROBES,
    PeerEntry, PeerKey, PeerTotal, peer_position,
};

use super::{add_to, overflow};
use crate::variant::Part;

/// `EEXIST`, `EINVAL` and `EPROTO` as returned (negated) by helpers.
const EEXIST: i32 = 17;
const EINVAL: i64 = 22;
const EPROTO: i64 = 71;

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

/// Counts the packet for its remote tunnel endpoint. At ingress the sender is in the tunnel
/// key's `remote_*`; at egress the destination is in `local_*` (the helper copies the tunnel
/// info's source into `remote_*` and its destination into `local_*`). A packet without a tunnel
/// key (which an external-mode device drops at egress without counting it) is counted under
/// [`PEER_NONE`]. The key carries the slot's `generation`, so a later device with the same
/// ifindex never counts into a removed device's peers.
#[inline(always)]
pub(super) fn count_peer(
    ctx: &TcContext,
    ifindex: u32,
    generation: u16,
    direction: Direction,
    len: u32,
) {
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
