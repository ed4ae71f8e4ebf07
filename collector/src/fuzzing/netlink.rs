//! The fuzz target `netlink`: rtnetlink datagrams and interface names.

use crate::discovery::wire;

/// An rtnetlink datagram: split into messages, each read as a link message (and as an error
/// or done message); the names read are checked to unescape to bytes the kernel could send.
/// The input is also read as an interface name: escaping it and unescaping the result gives
/// the bytes back.
pub fn netlink(data: &[u8]) {
    let mut malformed = 0;
    for message in wire::messages(data) {
        let Ok(message) = message else {
            malformed += 1;
            continue;
        };
        assert!(malformed == 0, "a message after a malformed header");
        let _ = message.error();
        let _ = wire::done_error(message.payload);
        let index = wire::link_index(message.payload);
        if let Some(facts) = wire::parse_link(message.payload) {
            assert_eq!(Some(facts.link.ifindex), index);
            assert!(!facts.link.name.is_empty());
            let raw = wire::unescape_name(&facts.link.name)
                .unwrap_or_else(|| panic!("{:?} does not unescape", facts.link.name));
            assert!(!raw.is_empty() && !raw.contains(&0), "{raw:?}");
            assert_eq!(wire::escape_name(&raw), facts.link.name);
        }
    }
    assert!(malformed <= 1, "{malformed} errors from one datagram");

    let escaped = wire::escape_name(data);
    assert_eq!(
        wire::unescape_name(&escaped).as_deref(),
        Some(data),
        "{escaped:?}"
    );
    if !data.contains(&b'\\')
        && let Ok(text) = std::str::from_utf8(data)
    {
        assert_eq!(escaped, text, "escaped although UTF-8 without a backslash");
    }
    // Any string: unescaping either refuses it or gives bytes that escape back to it.
    let text = String::from_utf8_lossy(data);
    if let Some(raw) = wire::unescape_name(&text) {
        // `\x41` unescapes to `A`, which escapes as itself: compare the bytes, not the text.
        let again = wire::escape_name(&raw);
        assert_eq!(
            wire::unescape_name(&again).as_deref(),
            Some(raw.as_ref()),
            "{text:?}"
        );
    }
}
