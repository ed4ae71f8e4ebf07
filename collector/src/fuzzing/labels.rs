//! The fuzz target `labels`: label escaping in both exposition formats, read back strictly.

use std::{collections::BTreeMap, sync::Arc};

use collector_common::{Direction, Stats};

use super::fields;
use crate::{
    backend::ebpf::{AttachedMode, InterfaceStats},
    discovery::LinkStats,
    metrics::{Format, InterfaceSnapshot, PeerSnapshot, Snapshot},
    policy::{Backend, Reason},
};

/// Label escaping in the exposition: the fields (see the module documentation) are an
/// interface name, its link kind, its driver, a driver statistic name and a tunnel peer (a
/// sixth field, whatever it holds, adds the eBPF breakdown of the interface). The
/// snapshot holding them is encoded in both formats, and the text parsed back by a strict
/// reader of the exposition formats: every sample line must be well-formed and give back the
/// exact strings as label values.
pub fn labels(data: &[u8]) {
    let fields = fields(data);
    let field = |i: usize| fields.get(i).cloned().unwrap_or_default();
    let (name, kind, driver, stat, peer) = (field(0), field(1), field(2), field(3), field(4));
    // The eBPF breakdown (about 80 more series with the name) only when there is a sixth field.
    let ebpf = (fields.len() > 5).then(|| InterfaceStats {
        rx: Stats::default(),
        tx: Stats::default(),
    });
    let snapshot = Arc::new(Snapshot {
        interfaces: vec![InterfaceSnapshot {
            name: name.clone(),
            ifindex: 7,
            kind: kind.clone(),
            driver: driver.clone(),
            backend: Backend::Ethtool,
            reason: Reason::EthtoolStats,
            attach_mode: Some(AttachedMode::Tcx),
            programs_before: None,
            kernel: Some(LinkStats::default()),
            ebpf,
            ethtool: vec![(stat.clone(), 1)],
            speed_bytes: Some(1),
            full_duplex: Some(true),
        }],
        peers: vec![PeerSnapshot {
            zone: None,
            interface: name.clone(),
            direction: Direction::Egress,
            peer: peer.clone(),
            packets: 1,
            bytes: 1,
        }],
        ..Snapshot::default()
    });
    let expected: BTreeMap<&str, &str> = [
        ("interface", name.as_str()),
        ("kind", kind.as_str()),
        ("driver", driver.as_str()),
        ("stat", stat.as_str()),
        ("peer", peer.as_str()),
    ]
    .into();
    for format in [Format::OpenMetrics, Format::Prometheus] {
        let text = crate::metrics::encode(Arc::clone(&snapshot), format, crate::metrics::View::All)
            .expect("encodes");
        let seen = read_exposition(&text, format);
        for (label, value) in &expected {
            let values = seen
                .get(*label)
                .unwrap_or_else(|| panic!("no {label} label"));
            assert_eq!(values, &[(*value).to_owned()], "{label} in {format:?}");
        }
    }
}

/// Reads an exposition strictly: comments (`#`), then sample lines
/// `name{label="value",...} number`, with only `\\`, `\"` and `\n` escaped in label values.
/// Returns the label values seen, by label name; panics at the first line that does not read.
fn read_exposition(text: &str, format: Format) -> BTreeMap<String, Vec<String>> {
    let body = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {text:?}"));
    if format == Format::OpenMetrics {
        assert!(body.ends_with("# EOF"), "no # EOF");
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in body.split('\n') {
        if line.starts_with('#') {
            continue;
        }
        let fail = |why: &str| -> ! { panic!("{why} in sample line {line:?}") };
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or_else(|| fail("no value"));
        if name_end == 0 || line.as_bytes()[0].is_ascii_digit() {
            fail("bad metric name");
        }
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            rest = labels;
            loop {
                let key_end = rest.find('=').unwrap_or_else(|| fail("no ="));
                let key = &rest[..key_end];
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    fail("bad label name");
                }
                let quoted = rest[key_end + 1..]
                    .strip_prefix('"')
                    .unwrap_or_else(|| fail("unquoted label value"));
                let (value, after) = unquote(quoted).unwrap_or_else(|| fail("bad label value"));
                let values = seen.entry(key.to_owned()).or_default();
                if !values.contains(&value) {
                    values.push(value);
                }
                if let Some(more) = after.strip_prefix(',') {
                    rest = more;
                } else if let Some(end) = after.strip_prefix('}') {
                    rest = end;
                    break;
                } else {
                    fail("label list not closed");
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| fail("no space before the value"));
        if value.parse::<f64>().is_err() {
            fail("value is not a number");
        }
    }
    seen
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[at + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                'n' => value.push('\n'),
                _ => return None,
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_refuses_what_a_scraper_would_misread() {
        let ok = "# TYPE a gauge\na{x=\"q\\\"\\\\\\n\",y=\"\"} 1\nb 2.5\n";
        let seen = read_exposition(ok, Format::Prometheus);
        assert_eq!(seen["x"], ["q\"\\\n"]);
        for bad in [
            "a{x=\"raw\"quote\"} 1\n",
            "a{x=\"raw\nnewline\"} 1\n",
            "a{x=\"bad \\t escape\"} 1\n",
            "a{x=\"unclosed} 1\n",
            "a{x=\"v\"} \n",
            "a 1",
        ] {
            let read = std::panic::catch_unwind(|| read_exposition(bad, Format::Prometheus));
            assert!(read.is_err(), "{bad:?} was read");
        }
    }
}
