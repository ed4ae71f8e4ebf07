//! Entry points for the cargo-fuzz targets under `fuzz/` (feature `fuzzing` only).
//!
//! Each function takes the fuzzer's bytes, feeds them to one parser of kernel or user input and
//! asserts what must hold for every input; a panic (an assertion included) is a finding. The
//! targets in `fuzz/fuzz_targets/` are one line each, calling one of these.
//!
//! Where a function needs several strings, the input is split at the byte `0xFF`, which never
//! occurs in UTF-8, and each part is read as UTF-8 (invalid sequences become U+FFFD), so every
//! character, NUL and newline included, can reach the parser.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use clap::Parser as _;
use collector_common::{Direction, Stats};

use crate::{
    backend::{
        ebpf::{AttachedMode, InterfaceStats},
        ethtool::{parse_names, parse_values},
    },
    config::{
        Config, EVENT_BUFFER_BYTES, FileConfig, MAX_INTERFACES, MAX_PEERS, PEER_IDLE_SECONDS,
        RESYNC_SECONDS, RunArgs,
    },
    discovery::{LinkStats, wire},
    filter::Pattern,
    metrics::{Format, InterfaceSnapshot, PeerSnapshot, Snapshot},
    policy::{Backend, Reason},
};

/// The web configuration file (exporter-toolkit YAML), as `--web-config-file` reads it: errors,
/// never panics; an accepted configuration has its paths under the file's directory (or as
/// written when absolute), users without `:`, bcrypt hashes that parse, and only the toolkit's
/// five headers.
pub fn web_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let dir = Path::new("/etc/linkmeter/web");
    let Ok(config) = crate::web::WebConfig::parse(&text, dir) else {
        return;
    };
    if let Some(tls) = &config.tls {
        for file in tls.files() {
            assert!(file.is_absolute(), "{file:?} not resolved against {dir:?}");
        }
        assert!(tls.min_version <= tls.max_version);
    }
    for (user, hash) in &config.users {
        assert!(!user.is_empty() && !user.contains(':'), "{user:?}");
        assert!(hash.parse::<bcrypt::HashParts>().is_ok(), "{hash:?}");
    }
    for (name, _) in &config.headers {
        assert!(
            [
                "strict-transport-security",
                "x-content-type-options",
                "x-frame-options",
                "x-xss-protection",
                "content-security-policy",
            ]
            .contains(&name.as_str()),
            "{name}"
        );
    }
}

/// `ETH_GSTRING_LEN`: the size of one name of an ethtool string table.
const ETH_GSTRING_LEN: usize = 32;

/// The parts of `data` between `0xFF` bytes, as strings.
fn fields(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0xff)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

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

/// The configuration: the first field (see the module documentation) is a TOML file, parsed
/// and validated as `--config` would be; the other fields are the flags of `linkmeter run`,
/// validated as the command line would be, then each read as an interface pattern and as an
/// override. Errors are expected; what is accepted must be within the documented limits.
pub fn config(data: &[u8]) {
    let fields = fields(data);
    let Some((text, flags)) = fields.split_first() else {
        return;
    };

    if let Ok(file) = FileConfig::parse(text, Path::new("fuzz.toml"))
        && let Ok(config) = Config::build(file)
    {
        check_config(&config);
    }

    let argv = std::iter::once("linkmeter").chain(flags.iter().map(String::as_str));
    if let Ok(mut flags) = RunFlags::try_parse_from(argv) {
        // Never read a file the input names (`--config /dev/zero`).
        flags.args.policy.config = None;
        if let Ok(config) = Config::load(&flags.args) {
            check_config(&config);
        }
    }

    for text in flags {
        pattern(text);
    }
    // The other lists empty and the allowlist trivial: only the overrides compile regexes.
    if let Ok(config) = Config::build(FileConfig {
        overrides: Some(flags.to_vec()),
        exclude: Some(Vec::new()),
        ethtool_stats_interfaces: Some(Vec::new()),
        ethtool_stats_allowlist: Some(String::new()),
        ..FileConfig::default()
    }) {
        assert_eq!(config.node.policy.overrides.len(), flags.len());
        for (pattern, _) in &config.node.policy.overrides {
            check_pattern(pattern);
        }
    }
}

/// The flags of `linkmeter run`, on their own.
#[derive(Debug, clap::Parser)]
#[command(name = "linkmeter")]
struct RunFlags {
    #[command(flatten)]
    args: RunArgs,
}

fn check_config(config: &Config) {
    assert!(MAX_INTERFACES.contains(&config.ebpf.capacity.interfaces()));
    assert!(MAX_PEERS.contains(&config.ebpf.capacity.peers()));
    assert!(PEER_IDLE_SECONDS.contains(&config.node.peer_idle.as_secs()));
    assert!(RESYNC_SECONDS.contains(&config.resync_interval.as_secs()));
    let event_buffer = u32::try_from(config.event_buffer).expect("a u32 setting");
    assert!(EVENT_BUFFER_BYTES.contains(&event_buffer));
    let policy = &config.node.policy;
    for pattern in policy
        .include
        .iter()
        .chain(&policy.exclude)
        .chain(&policy.breakdown)
        .chain(&policy.ethtool_stats)
        .chain(policy.overrides.iter().map(|(p, _)| p))
    {
        check_pattern(pattern);
    }
    for (name, kind) in PROBES {
        let _ = crate::policy::exports_ethtool_stats(policy, name, kind);
    }
}

/// Names and kinds a pattern is tried on.
const PROBES: [(&str, Option<&str>); 6] = [
    ("eth0", None),
    ("lo", None),
    ("cilium_vxlan", Some("vxlan")),
    ("lxc\u{e9}1", Some("veth")),
    ("lm\\xff", Some("")),
    ("", None),
];

/// One interface pattern: parsed, and when it parses, shown as given (so that it parses again
/// the same) and matched without a panic.
fn pattern(text: &str) {
    if let Ok(pattern) = text.parse::<Pattern>() {
        assert_eq!(pattern.to_string(), text);
        check_pattern(&pattern);
    }
}

fn check_pattern(pattern: &Pattern) {
    let source = pattern.to_string();
    for (name, kind) in PROBES {
        let _ = pattern.matches(name, kind);
    }
    // A glob without wildcards matches exactly itself.
    if !source.starts_with('/') && !source.starts_with("kind:") && !source.contains(['*', '?']) {
        assert!(pattern.matches(&source, None), "{source:?}");
    }
}

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
            kernel: Some(LinkStats::default()),
            ebpf,
            ethtool: vec![(stat.clone(), 1)],
            speed_bytes: Some(1),
            full_duplex: Some(true),
        }],
        peers: vec![PeerSnapshot {
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
        let text = crate::metrics::encode(Arc::clone(&snapshot), format).expect("encodes");
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

    #[test]
    fn the_seeds_pass() {
        for dir in ["ethtool", "netlink", "config", "labels", "web_config"] {
            let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/corpus")
                .join(dir);
            for entry in std::fs::read_dir(&corpus).expect("seed corpus") {
                let data = std::fs::read(entry.expect("entry").path()).expect("seed");
                match dir {
                    "ethtool" => ethtool(&data),
                    "netlink" => netlink(&data),
                    "config" => config(&data),
                    "web_config" => web_config(&data),
                    _ => labels(&data),
                }
            }
        }
        labels(b"eth0\xffvxlan\xff\xff\xff10.0.0.2\xffbreakdown");
    }
}
