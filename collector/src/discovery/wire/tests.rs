//! The wire format read from bytes: names escaped reversibly, truncated and garbage input
//! refused without a panic, the requests laid out as the kernel expects.

use super::*;

#[test]
fn utf8_names_are_shown_exactly_and_only_other_bytes_are_escaped_reversibly() {
    let cases: [(&[u8], &str); 6] = [
        (b"eth0", "eth0"),
        (b"lxc\xc3\xa9", "lxc\u{e9}"),
        // A valid UTF-8 name is the kernel's, backslashes and all: joins on it work.
        (b"a\\b", "a\\b"),
        (b"x\\xff", "x\\xff"),
        (b"lm\xff", "lm:xff"),
        (b"\xc3x\\y", ":xc3x\\y"),
    ];
    for (bytes, shown) in cases {
        assert_eq!(escape_name(bytes), shown);
        assert_eq!(unescape_name(shown).as_deref(), Some(bytes), "{shown}");
    }
}

#[test]
fn strings_that_are_no_escaping_are_refused() {
    // `:` never occurs in a kernel name: only `:xNN` of bytes that are not UTF-8.
    for bad in [
        "a:",
        "a:q",
        "a:x4",
        "a:xZZ",
        "a:x+f",
        "a:xFF",
        "a:x41",
        "a:xc3:xa9",
    ] {
        assert_eq!(unescape_name(bad), None, "{bad}");
    }
}

/// A link message: ifinfomsg for `ifindex` of `link_type`, then `attrs` (type, value).
fn link_message(ifindex: i32, link_type: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&link_type.to_ne_bytes());
    out.extend_from_slice(&ifindex.to_ne_bytes());
    out.extend_from_slice(&[0; 8]);
    for (kind, value) in attrs {
        out.extend_from_slice(&attr(*kind, value));
    }
    out
}

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(4 + value.len())
        .expect("small")
        .to_ne_bytes()
        .to_vec();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
    out
}

#[test]
fn a_non_utf8_name_is_read_and_escaped() {
    let msg = link_message(7, 1, &[(IFLA_IFNAME, b"lm\xff\0".to_vec())]);
    let facts = parse_link(&msg).expect("named");
    assert_eq!(facts.link.name, "lm:xff");
    assert_eq!(facts.link.ifindex, 7);
}

#[test]
fn an_external_vxlan_with_nested_flags_and_its_statistics() {
    let data = attr(IFLA_VXLAN_COLLECT_METADATA, &[1]);
    // NLA_F_NESTED set on the nested attributes, as the kernel does.
    let info = [
        attr(IFLA_INFO_KIND, b"vxlan\0"),
        attr(IFLA_INFO_DATA | 0x8000, &data),
    ]
    .concat();
    let stats: Vec<u8> = (1..=24u64).flat_map(u64::to_ne_bytes).collect();
    let msg = link_message(
        9,
        1,
        &[
            (IFLA_IFNAME, b"cilium_vxlan\0".to_vec()),
            (IFLA_LINKINFO | 0x8000, info),
            (IFLA_STATS64, stats),
        ],
    );
    let facts = parse_link(&msg).expect("named");
    assert_eq!(facts.link.kind.as_deref(), Some("vxlan"));
    assert!(facts.link.framing.tunnel_peers);
    let s = facts.stats.expect("stats");
    assert_eq!(
        (s.rx_packets, s.tx_packets, s.rx_bytes, s.tx_bytes),
        (1, 2, 3, 4)
    );
    assert_eq!(
        (s.rx_errors, s.tx_errors, s.rx_dropped, s.tx_dropped),
        (5, 6, 7, 8)
    );
}

#[test]
fn every_truncation_of_a_message_is_refused_or_read_without_panic() {
    let msg = link_message(
        3,
        768,
        &[
            (IFLA_IFNAME, b"tun0\0".to_vec()),
            (IFLA_STATS64, vec![0; 64]),
        ],
    );
    for end in 0..msg.len() {
        let _ = parse_link(&msg[..end]);
    }
    let facts = parse_link(&msg).expect("whole");
    assert!(facts.link.framing.raw_ip);
    // A short IFLA_STATS64 is no statistics, not garbage.
    let short = link_message(
        3,
        1,
        &[(IFLA_IFNAME, b"x\0".to_vec()), (IFLA_STATS64, vec![0; 20])],
    );
    assert_eq!(parse_link(&short).expect("named").stats, None);
    // An empty name is no name.
    assert_eq!(
        parse_link(&link_message(3, 1, &[(IFLA_IFNAME, b"\0".to_vec())])),
        None
    );
}

#[test]
fn messages_are_split_and_a_bad_length_ends_the_datagram() {
    let mut datagram = getlink_request(1, None);
    datagram.extend(getlink_request(2, Some(5)));
    let parsed: Vec<_> = messages(&datagram).collect();
    assert_eq!(parsed.len(), 2);
    let second = parsed[1].expect("ok");
    assert_eq!((second.kind, second.seq), (RTM_GETLINK, 2));
    assert_eq!(link_index(second.payload), Some(5));
    assert_eq!(parsed[0].expect("ok").flags, 0x301);
    // A length of 8 (shorter than a header), then nothing more is read.
    let mut bad = 8u32.to_ne_bytes().to_vec();
    bad.extend_from_slice(&[0; 40]);
    assert_eq!(messages(&bad).collect::<Vec<_>>(), vec![Err(())]);
    // An error message carries a negative errno.
    let mut error = 36u32.to_ne_bytes().to_vec();
    error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    error.extend_from_slice(&[0; 10]);
    error.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
    error.extend_from_slice(&[0; 16]);
    let message = messages(&error).next().expect("one").expect("ok");
    assert_eq!(message.error(), Some(libc::ENODEV));
}

#[test]
fn messages_about_bridge_ports_are_not_link_events() {
    let mut msg = link_message(7, 1, &[(IFLA_IFNAME, b"veth1\0".to_vec())]);
    assert!(parse_link(&msg).is_some());
    msg[0] = 7; // AF_BRIDGE
    assert_eq!(parse_link(&msg), None);
    assert_eq!(link_index(&msg), None);
}
