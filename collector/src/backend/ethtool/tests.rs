//! The ethtool backend against fixture drivers (no kernel involved).

use super::{fake::FakeDriver, *};

#[test]
fn driver_with_stats_is_probed_with_names_in_driver_order() {
    let ethtool = Ethtool::new(FakeDriver::new(&[3]));
    assert_eq!(
        ethtool.probe("eth0"),
        Probe::Stats {
            driver: "fake".into(),
            names: vec!["stat_0".into(), "stat_1".into(), "stat_2".into()]
        }
    );
    assert_eq!(ethtool.values("eth0", 3).expect("values"), vec![0, 10, 20]);
}

#[test]
fn driver_without_stats_is_no_stats() {
    assert_eq!(
        Ethtool::new(FakeDriver::new(&[0])).probe("vxlan0"),
        Probe::NoStats {
            driver: "fake".into()
        }
    );
}

#[test]
fn eopnotsupp_is_unsupported_and_other_errnos_are_failures() {
    assert_eq!(
        Ethtool::new(FakeDriver::failing(libc::EOPNOTSUPP)).probe("cilium_vxlan"),
        Probe::Unsupported {
            errno: libc::EOPNOTSUPP
        }
    );
    assert_eq!(
        Ethtool::new(FakeDriver::failing(libc::ENODEV)).probe("gone"),
        Probe::Failed {
            errno: libc::ENODEV
        }
    );
}

#[test]
fn count_growing_between_gsset_info_and_gstats_is_refused_not_misread() {
    // GSSET_INFO and GSTRINGS see 3, then the driver grows to 5 before GSTATS.
    let ethtool = Ethtool::new(FakeDriver::new(&[3, 3, 5]));
    let names = ethtool.names("eth0").expect("names");
    assert_eq!(names.len(), 3);
    match ethtool.values("eth0", names.len()) {
        Err(EthtoolError::CountChanged {
            expected: 3,
            reported: 5,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Fetching names again picks up the new count.
    assert_eq!(ethtool.names("eth0").expect("names").len(), 5);
}

#[test]
fn count_change_refused_by_a_fail_closed_kernel_is_count_changed() {
    let ethtool = Ethtool::new(FakeDriver::fail_closed(&[3, 3, 5]));
    let names = ethtool.names("eth0").expect("names");
    assert!(matches!(
        ethtool.values("eth0", names.len()),
        Err(EthtoolError::CountChanged {
            expected: 3,
            reported: 0,
            ..
        })
    ));
    // Names change between GSSET_INFO and GSTRINGS: refused, not misread.
    let ethtool = Ethtool::new(FakeDriver::fail_closed(&[3, 4]));
    assert!(matches!(
        ethtool.names("eth0"),
        Err(EthtoolError::CountChanged { expected: 3, .. })
    ));
}

#[test]
fn count_shrinking_is_refused_too() {
    let ethtool = Ethtool::new(FakeDriver::new(&[4, 4, 2]));
    let names = ethtool.names("eth0").expect("names");
    assert!(matches!(
        ethtool.values("eth0", names.len()),
        Err(EthtoolError::CountChanged { reported: 2, .. })
    ));
}

#[test]
fn gstrings_reporting_more_than_the_buffer_holds_is_an_error() {
    let reply = Reply {
        reported: 10,
        data: vec![0u8; 4 * ETH_GSTRING_LEN],
    };
    assert_eq!(parse_names(&reply, 4), None);
}

#[test]
fn names_are_nul_terminated_and_lossy_utf8() {
    let mut data = vec![0u8; 2 * ETH_GSTRING_LEN];
    data[..7].copy_from_slice(b"rx_pkts");
    // A full 32-byte name with no NUL, and an invalid UTF-8 byte.
    data[ETH_GSTRING_LEN..2 * ETH_GSTRING_LEN].fill(b'a');
    data[ETH_GSTRING_LEN] = 0xff;
    let names = parse_names(&Reply { reported: 2, data }, 2).expect("fits");
    assert_eq!(names[0], "rx_pkts");
    assert_eq!(names[1].chars().count(), 32);
    assert!(names[1].starts_with('\u{fffd}'));
}
