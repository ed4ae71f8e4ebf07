//! The fuzz target `ethtool`: the `GSTRINGS` and `GSTATS` reply parsers.

use crate::backend::ethtool::{parse_names, parse_values};

/// `ETH_GSTRING_LEN`: the size of one name of an ethtool string table.
const ETH_GSTRING_LEN: usize = 32;

/// The ethtool `GSTRINGS` and `GSTATS` reply parsers. The first four bytes are the count the
/// kernel reported, the next two the count linkmeter expected (both small most of the time so
/// that the success paths are reached), the rest is the reply's data.
pub fn ethtool(data: &[u8]) {
    let [r0, r1, r2, r3, e0, e1, rest @ ..] = data else {
        return;
    };
    // Mostly small counts: the high bytes only count when the top bit of the low one is set.
    let reported = if r0 & 0x80 == 0 {
        u32::from(r0 & 0x7f)
    } else {
        u32::from_le_bytes([r0 & 0x7f, *r1, *r2, *r3])
    };
    let expected = if e0 & 0x80 == 0 {
        usize::from(e0 & 0x7f)
    } else {
        usize::from(u16::from_le_bytes([e0 & 0x7f, *e1]))
    };
    let n = reported as usize;

    match parse_names(reported, rest, expected) {
        Some(names) => {
            assert!(
                n != 0 && n == expected,
                "accepted {n} names, {expected} expected"
            );
            assert!(rest.len() >= n * ETH_GSTRING_LEN, "names past the data");
            assert_eq!(names.len(), n);
            for (name, raw) in names.iter().zip(rest.chunks_exact(ETH_GSTRING_LEN)) {
                assert!(!name.contains('\0'), "a name keeps its NUL: {name:?}");
                assert!(name.chars().count() <= ETH_GSTRING_LEN, "{name:?}");
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                if let Ok(text) = std::str::from_utf8(&raw[..end]) {
                    assert_eq!(name, text);
                }
            }
        }
        None => assert!(
            n == 0 || n != expected || rest.len() < n * ETH_GSTRING_LEN,
            "{n} names of {} bytes refused",
            rest.len()
        ),
    }

    match parse_values(reported, rest, expected) {
        Ok(values) => {
            assert_eq!(n, expected);
            assert_eq!(values.len(), n);
            for (value, raw) in values.iter().zip(rest.chunks_exact(8)) {
                assert_eq!(value.to_ne_bytes(), raw);
            }
        }
        Err(count) => {
            assert_eq!(count, n, "the error names another count");
            assert!(n != expected || rest.len() < n * 8, "{n} values refused");
        }
    }
}
