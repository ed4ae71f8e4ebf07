//! Test-only TC programs from `collector-ebpf` (bin `linkmeter-tc-testprogs`): an observer that
//! continues the chain and a chain-ending program that returns `TC_ACT_OK` like Cilium's.

use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, TcAttachOptions, TcHandle},
    },
};
use collector::backend::ebpf::AttachedMode;

/// The test programs object, built by `tests/build.rs`.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linkmeter-tc-testprogs"));

/// Which test program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counts and continues (`TC_ACT_UNSPEC`).
    Observer,
    /// Counts and ends the chain (`TC_ACT_OK`).
    ChainEnd,
    /// Does nothing and continues: the benchmark baseline.
    Noop,
}

impl Kind {
    const fn prefix(self) -> &'static str {
        match self {
            Self::Observer => "observer",
            Self::ChainEnd => "chain_end",
            Self::Noop => "noop",
        }
    }

    const fn map(self) -> &'static str {
        match self {
            Self::Observer => "OBSERVER_PACKETS",
            Self::ChainEnd | Self::Noop => "CHAIN_END_PACKETS",
        }
    }

    /// The kernel's (16-byte, truncated) name of this kind's ingress program.
    pub fn kernel_name(self, attach: TcAttachType) -> String {
        let dir = if attach == TcAttachType::Ingress {
            "ingress"
        } else {
            "egress"
        };
        let mut name = format!("{}_{dir}", self.prefix());
        name.truncate(15);
        name
    }
}

/// The loaded test programs. Attachments live as long as this value.
pub struct TestProgs {
    ebpf: Ebpf,
}

/// Priority and handle of the test programs' legacy filters: what Cilium uses.
pub const OTHER_PRIORITY: u16 = 1;
/// See [`OTHER_PRIORITY`].
pub const OTHER_HANDLE: TcHandle = TcHandle::new(0, 1);

impl TestProgs {
    /// Loads and verifies all test programs.
    pub fn load() -> Self {
        let mut ebpf = Ebpf::load(OBJECT).expect("load test programs");
        for kind in [Kind::Observer, Kind::ChainEnd, Kind::Noop] {
            for attach in [TcAttachType::Ingress, TcAttachType::Egress] {
                Self::program(&mut ebpf, kind, attach)
                    .load()
                    .expect("verify test program");
            }
        }
        Self { ebpf }
    }

    fn program(ebpf: &mut Ebpf, kind: Kind, attach: TcAttachType) -> &mut SchedClassifier {
        let dir = if attach == TcAttachType::Ingress {
            "ingress"
        } else {
            "egress"
        };
        let name = format!("{}_{dir}", kind.prefix());
        ebpf.program_mut(&name)
            .unwrap_or_else(|| panic!("no program {name}"))
            .try_into()
            .expect("classifier")
    }

    /// Attaches `kind` to both hooks of `interface` (calling thread's namespace): under TCX
    /// appended last (aya's default order), under legacy tc at Cilium's priority 1, handle 1.
    pub fn attach(&mut self, kind: Kind, interface: &str, mode: AttachedMode) {
        for attach in [TcAttachType::Ingress, TcAttachType::Egress] {
            let options = match mode {
                AttachedMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                AttachedMode::Tc => {
                    match tc::qdisc_add_clsact(interface) {
                        Ok(()) => {}
                        Err(tc::TcError::NetlinkError(e))
                            if e.raw_os_error() == Some(nix::libc::EEXIST) => {}
                        Err(e) => panic!("clsact on {interface}: {e}"),
                    }
                    TcAttachOptions::Netlink(NlOptions {
                        priority: OTHER_PRIORITY,
                        handle: OTHER_HANDLE,
                        classid: None,
                    })
                }
            };
            Self::program(&mut self.ebpf, kind, attach)
                .attach_with_options(interface, attach, options)
                .unwrap_or_else(|e| panic!("attach {kind:?} to {interface} {attach:?}: {e}"));
        }
    }

    /// Attaches `kind` to both legacy tc hooks of `interface` at priority 1 and `handle`
    /// (another tool taking linkmeter's handle, say).
    pub fn attach_legacy_at(&mut self, kind: Kind, interface: &str, handle: TcHandle) {
        match tc::qdisc_add_clsact(interface) {
            Ok(()) => {}
            Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(nix::libc::EEXIST) => {}
            Err(e) => panic!("clsact on {interface}: {e}"),
        }
        for attach in [TcAttachType::Ingress, TcAttachType::Egress] {
            let options = TcAttachOptions::Netlink(NlOptions {
                priority: OTHER_PRIORITY,
                handle,
                classid: None,
            });
            Self::program(&mut self.ebpf, kind, attach)
                .attach_with_options(interface, attach, options)
                .unwrap_or_else(|e| panic!("attach {kind:?} to {interface} {attach:?}: {e}"));
        }
    }

    /// Attaches `kind` to both TCX hooks of `interface`, first or last in the chain.
    pub fn attach_tcx(&mut self, kind: Kind, interface: &str, first: bool) {
        for attach in [TcAttachType::Ingress, TcAttachType::Egress] {
            let order = if first {
                LinkOrder::first()
            } else {
                LinkOrder::last()
            };
            Self::program(&mut self.ebpf, kind, attach)
                .attach_with_options(interface, attach, TcAttachOptions::TcxOrder(order))
                .unwrap_or_else(|e| panic!("attach {kind:?} to {interface} {attach:?}: {e}"));
        }
    }

    /// Detaches every attachment of `kind` (by unloading its programs, which drops their links,
    /// and loading them again: the kernel ids change).
    pub fn detach_all(&mut self, kind: Kind) {
        for attach in [TcAttachType::Ingress, TcAttachType::Egress] {
            let program = Self::program(&mut self.ebpf, kind, attach);
            program.unload().expect("unload test program");
            program.load().expect("re-verify test program");
        }
    }

    /// Kernel ids of `kind`'s (ingress, egress) programs.
    pub fn program_ids(&mut self, kind: Kind) -> (u32, u32) {
        let id = |ebpf: &mut Ebpf, attach| {
            Self::program(ebpf, kind, attach)
                .info()
                .expect("program info")
                .id()
        };
        (
            id(&mut self.ebpf, TcAttachType::Ingress),
            id(&mut self.ebpf, TcAttachType::Egress),
        )
    }

    /// Packets `kind` has seen so far: (ingress, egress), summed over CPUs.
    pub fn packets(&self, kind: Kind) -> (u64, u64) {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(kind.map()).expect("map")).expect("array");
        let slot = |i: u32| map.get(&i, 0).expect("read").iter().sum::<u64>();
        (slot(0), slot(1))
    }
}
