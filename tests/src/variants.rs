//! The benchmark's builds of the counting programs (`collector-ebpf`, `bin/variant-*` and the
//! real `linkmeter-tc`, built by `tests/build.rs`): each stops after a part of the per-packet
//! work or takes the interface's slot from load-time constants, so that `cargo xtask bench`
//! measures what each part costs. Loaded here without linkmeter's loader: one interface, slot 0.

use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
};
use collector_common::{
    DEFAULT_DIRECTORY_ENTRIES, DEFAULT_PEER_TABLE_ENTRIES, DIRECTORY_MAP, EGRESS_PROGRAM,
    INGRESS_PROGRAM, PEER_TABLE_HALF_GLOBAL, Slot, directory_position,
};

macro_rules! object {
    ($bin:literal) => {
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/", $bin))
    };
}

/// The builds by name, in the order of the work they do (`linkmeter` is the real program).
pub static BUILDS: [(&str, &[u8]); 12] = [
    ("ifindex", object!("variant-ifindex")),
    ("slot", object!("variant-slot")),
    ("stats", object!("variant-stats")),
    ("increments", object!("variant-increments")),
    ("parse", object!("variant-parse")),
    ("tunnel_key", object!("variant-tunnel-key")),
    ("linkmeter", object!("linkmeter-tc")),
    ("constant_slot", object!("variant-constant-slot")),
    ("indexed_slot", object!("variant-indexed-slot")),
    ("floor", object!("variant-floor")),
    // The real program with one instruction more: what an upgrade loads (`upgrade.rs`).
    ("upgrade", object!("variant-upgrade")),
    // The real program with the peer table off: peers in the hash map only.
    ("peer_hash", object!("linkmeter-tc")),
];

/// The empty `kfree_skb` tracing program (`variant-drops-empty`), the baseline of
/// `cargo xtask bench --only drop_storm`; not one of [`BUILDS`], which are TC programs.
pub fn drops_empty_object() -> &'static [u8] {
    object!("variant-drops-empty")
}

/// The object of build `name` of [`BUILDS`].
///
/// # Panics
///
/// When `name` is not a build.
pub fn object(name: &str) -> &'static [u8] {
    BUILDS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no build {name}"))
        .1
}

/// One build loaded for one interface: its directory holds the interface at slot 0 and its
/// constants say slot 0 with `flags`; the peer table is on (its compiled-in size) but in
/// `peer_hash`.
pub struct Build {
    name: &'static str,
    ebpf: Ebpf,
}

impl Build {
    /// Loads and verifies the build `name` of [`BUILDS`] for interface `ifindex` with slot
    /// `flags` (`SLOT_TUNNEL`, `SLOT_RAW_IP`).
    ///
    /// # Panics
    ///
    /// When `name` is not a build or the kernel refuses it.
    pub fn load(name: &'static str, ifindex: u32, flags: u32) -> Self {
        let object = object(name);
        let mut ebpf = EbpfLoader::new()
            .override_global("SLOT_INDEX", &0u32, false)
            .override_global("SLOT_FLAGS", &flags, false)
            .override_global(
                PEER_TABLE_HALF_GLOBAL,
                &if name == "peer_hash" {
                    0
                } else {
                    DEFAULT_PEER_TABLE_ENTRIES / 2
                },
                false,
            )
            .load(object)
            .unwrap_or_else(|e| panic!("load build {name}: {e}"));
        let mut directory: Array<_, Slot> = Array::try_from(
            ebpf.map_mut(DIRECTORY_MAP)
                .unwrap_or_else(|| panic!("{name} has no directory")),
        )
        .expect("directory is an array");
        let entry = Slot {
            ifindex,
            index: 0,
            flags,
            generation: 0,
            reserved: 0,
        };
        // The probed directory's first position, and the entry an array indexed by ifindex
        // would read (`indexed_slot`).
        for position in [
            directory_position(ifindex, 0, DEFAULT_DIRECTORY_ENTRIES - 1),
            ifindex,
        ] {
            directory
                .set(position, entry, 0)
                .expect("fill the directory");
        }
        let mut build = Self { name, ebpf };
        for program in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
            build
                .program(program)
                .load()
                .unwrap_or_else(|e| panic!("verify {name} {program}: {e}"));
        }
        build
    }

    /// The kernel's tag (a hash of the instructions) of the loaded `program`.
    ///
    /// # Panics
    ///
    /// When the build has no such program or the kernel does not answer.
    pub fn tag(&mut self, program: &str) -> u64 {
        self.program(program).info().expect("program info").tag()
    }

    fn program(&mut self, program: &str) -> &mut SchedClassifier {
        self.ebpf
            .program_mut(program)
            .unwrap_or_else(|| panic!("{} has no {program}", self.name))
            .try_into()
            .expect("classifier")
    }

    /// Attaches both programs to `interface` (calling thread's namespace) under TCX, first or
    /// last in the chain.
    pub fn attach_tcx(&mut self, interface: &str, first: bool) {
        let order = || {
            if first {
                LinkOrder::first()
            } else {
                LinkOrder::last()
            }
        };
        for (program, hook) in [
            (INGRESS_PROGRAM, TcAttachType::Ingress),
            (EGRESS_PROGRAM, TcAttachType::Egress),
        ] {
            self.program(program)
                .attach_with_options(interface, hook, TcAttachOptions::TcxOrder(order()))
                .unwrap_or_else(|e| panic!("attach {program} to {interface}: {e}"));
        }
    }

    /// Detaches both programs (by unloading them and loading them again: the ids change).
    pub fn detach(&mut self) {
        for program in [INGRESS_PROGRAM, EGRESS_PROGRAM] {
            let classifier = self.program(program);
            classifier.unload().expect("unload");
            classifier.load().expect("re-verify");
        }
    }

    /// Kernel ids of the (ingress, egress) programs.
    pub fn program_ids(&mut self) -> [u32; 2] {
        [INGRESS_PROGRAM, EGRESS_PROGRAM]
            .map(|program| self.program(program).info().expect("program info").id())
    }
}
