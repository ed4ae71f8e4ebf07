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
    // Names: GSSET_INFO and GSTRINGS see 3. Values: GSSET_INFO still sees 3, then the driver
    // grows to 5 before GSTATS, which (like an old kernel) writes all 5.
    let ethtool = Ethtool::new(FakeDriver::new(&[3, 3, 3, 5]));
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
fn values_ask_the_count_first_and_refuse_a_changed_one_without_reading() {
    let driver = FakeDriver::new(&[3, 3, 7]).with_values_failing(libc::EIO);
    let ethtool = Ethtool::new(driver);
    let names = ethtool.names("eth0").expect("names");
    // GSSET_INFO says 7: refused before GSTATS (which would fail with EIO) is made.
    assert!(matches!(
        ethtool.values("eth0", names.len()),
        Err(EthtoolError::CountChanged {
            expected: 3,
            reported: 7,
            ..
        })
    ));
}

#[test]
fn growth_past_the_headroom_on_an_old_kernel_is_caught_by_the_canary_or_the_guard_page() {
    // Headroom for 3 is 70 entries; the canary holds 64 bytes more (8 values, 2 names), the
    // guard page stops the rest.
    for (grown, grown_names, what) in [(74, 71, "canary"), (5_000, 5_000, "guard page")] {
        let ethtool = Ethtool::new(FakeDriver::new(&[3, 3, 3, grown]));
        let names = ethtool.names("eth0").expect("names");
        match ethtool.values("eth0", names.len()) {
            Err(EthtoolError::Overrun {
                request: "GSTATS",
                capacity: 70,
                ..
            }) => {}
            other => panic!("{what}: {other:?}"),
        }
        // The same for names: GSSET_INFO 3, GSTRINGS writes `grown_names` names.
        let ethtool = Ethtool::new(FakeDriver::new(&[3, grown_names]));
        assert!(
            matches!(
                ethtool.names("eth0"),
                Err(EthtoolError::Overrun {
                    request: "GSTRINGS",
                    ..
                })
            ),
            "{what}"
        );
        // The buffer is reused afterwards: a driver that settled reads normally.
        let ethtool = Ethtool::new(FakeDriver::new(&[3, grown_names, 4]));
        assert!(ethtool.names("eth0").is_err());
        assert_eq!(ethtool.names("eth0").expect("names").len(), 4);
        assert_eq!(
            ethtool.values("eth0", 4).expect("values"),
            vec![0, 10, 20, 30]
        );
    }
}

#[test]
fn count_change_refused_by_a_fail_closed_kernel_is_count_changed() {
    let ethtool = Ethtool::new(FakeDriver::fail_closed(&[3, 3, 3, 5]));
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
    let ethtool = Ethtool::new(FakeDriver::new(&[4, 4, 4, 2]));
    let names = ethtool.names("eth0").expect("names");
    assert!(matches!(
        ethtool.values("eth0", names.len()),
        Err(EthtoolError::CountChanged { reported: 2, .. })
    ));
}

#[test]
fn gstrings_reporting_more_than_expected_or_than_the_data_holds_is_an_error() {
    assert_eq!(parse_names(10, &[0u8; 4 * ETH_GSTRING_LEN], 10), None);
    assert_eq!(parse_names(5, &[0u8; 10 * ETH_GSTRING_LEN], 4), None);
    assert_eq!(parse_names(0, &[0u8; 10 * ETH_GSTRING_LEN], 4), None);
    assert_eq!(parse_values(3, &[0u8; 16], 3), Err(3));
    assert_eq!(
        parse_values(2, &[1u8; 16], 2),
        Ok(vec![u64::from_ne_bytes([1; 8]); 2])
    );
}

#[test]
fn names_are_nul_terminated_and_lossy_utf8() {
    let mut data = vec![0u8; 2 * ETH_GSTRING_LEN];
    data[..7].copy_from_slice(b"rx_pkts");
    // A full 32-byte name with no NUL, and an invalid UTF-8 byte.
    data[ETH_GSTRING_LEN..2 * ETH_GSTRING_LEN].fill(b'a');
    data[ETH_GSTRING_LEN] = 0xff;
    let names = parse_names(2, &data, 2).expect("fits");
    assert_eq!(names[0], "rx_pkts");
    assert_eq!(names[1].chars().count(), 32);
    assert!(names[1].starts_with('\u{fffd}'));
}
