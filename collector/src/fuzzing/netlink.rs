//! The fuzz target `netlink`: rtnetlink datagrams and interface names.

use crate::discovery::wire;

/// An rtnetlink datagram: split into messages, each read as a link message (and as an error
/// or done message); the names read are checked to unescape to bytes the kernel could send.
/// The input is also read as an interface name: a UTF-8 one is shown as it is, and escaping
/// and unescaping give the bytes back.
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
            // A name with `:` is one the kernel never sends (it refuses `:` in names).
            match wire::unescape_name(&facts.link.name) {
                Some(raw) => {
                    assert!(!raw.is_empty() && !raw.contains(&0), "{raw:?}");
                    assert_eq!(wire::escape_name(&raw), facts.link.name);
                }
                None => assert!(facts.link.name.contains(':'), "{:?}", facts.link.name),
            }
        }
    }
    assert!(malformed <= 1, "{malformed} errors from one datagram");

    // Any name the kernel could have (no `:`): shown exactly when UTF-8, and reversibly.
    let escaped = wire::escape_name(data);
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(escaped, text, "a UTF-8 name escaped");
    }
    if !data.contains(&b':') {
        assert_eq!(
            wire::unescape_name(&escaped).as_deref(),
            Some(data),
            "{escaped:?}"
        );
    }
    // Any string: unescaping either refuses it or gives the one name shown as it.
    let text = String::from_utf8_lossy(data);
    if let Some(raw) = wire::unescape_name(&text) {
        assert_eq!(wire::escape_name(&raw), text, "{text:?}");
    }
}
