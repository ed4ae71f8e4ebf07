//! The ethtool backend against real drivers in a namespace: veth exports statistics, vxlan and
//! bridges answer with none, `lo` answers `EOPNOTSUPP`, a missing interface `ENODEV`.

use collector::backend::ethtool::{Ethtool, Ioctl, Probe};
use integration_tests::{kernel_tests_enabled, topology::VethPair};

#[test]
fn probe_classifies_real_drivers_by_errno() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("eth");
    topo.a.ip(&[
        "link",
        "add",
        "vx9",
        "type",
        "vxlan",
        "id",
        "9",
        "dstport",
        "4789",
        "local",
        "10.200.0.1",
    ]);
    topo.a.ip(&["link", "add", "br9", "type", "bridge"]);
    let ethtool = topo
        .a
        .within(|| Ethtool::new(Ioctl::new().expect("socket")));

    match ethtool.probe("va") {
        Probe::Stats { driver, names } => {
            assert_eq!(driver, "veth");
            assert!(names.iter().any(|n| n == "peer_ifindex"), "{names:?}");
            let values = ethtool.values("va", names.len()).expect("values");
            assert_eq!(values.len(), names.len());
            let peer = names
                .iter()
                .position(|n| n == "peer_ifindex")
                .expect("peer_ifindex");
            let vb_index = integration_tests::kernel::ifindex(&topo.b, "vb");
            assert_eq!(values[peer], u64::from(vb_index));
        }
        other => panic!("veth: {other:?}"),
    }
    assert_eq!(
        ethtool.probe("vx9"),
        Probe::NoStats {
            driver: "vxlan".into()
        }
    );
    assert_eq!(
        ethtool.probe("br9"),
        Probe::NoStats {
            driver: "bridge".into()
        }
    );
    assert_eq!(
        ethtool.probe("lo"),
        Probe::Unsupported {
            errno: nix::libc::EOPNOTSUPP
        }
    );
    assert_eq!(
        ethtool.probe("missing0"),
        Probe::Failed {
            errno: nix::libc::ENODEV
        }
    );
    assert_eq!(
        ethtool.probe("bad/name"),
        Probe::Failed {
            errno: nix::libc::ENODEV
        }
    );
}
