//! Benchmark variant (`cargo xtask bench --only ebpf`): the counting programs up to
//! `Part::Peers`, slot from the directory, peers counted in a per-CPU array
//! claimed with plain stores (the hash map only when the probed entries hold other peers).
//! Measures the peer path without a hash lookup; never loaded by linkmeter (it never frees an
//! entry).
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
#[path = "../variant.rs"]
mod variant;

const VARIANT: variant::Variant = variant::Variant {
    last: variant::Part::Peers,
    slot: variant::SlotSource::Directory,
};

/// Peers counted without a hash lookup (1,024 entries per CPU).
#[aya_ebpf::macros::map(name = "LINKMETER_PEER_CACHE")]
static PEER_CACHE: aya_ebpf::maps::PerCpuArray<counter::PeerEntry> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(counter::PEER_CACHE_ENTRIES, 0);

/// This build counts peers in [`PEER_CACHE`] first.
const fn peer_cache() -> Option<&'static aya_ebpf::maps::PerCpuArray<counter::PeerEntry>> {
    Some(&PEER_CACHE)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
