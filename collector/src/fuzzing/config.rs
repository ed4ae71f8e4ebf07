//! The fuzz target `config`: the configuration file, the flags of `linkmeter run`, interface
//! patterns and overrides.

use std::path::Path;

use clap::Parser as _;

use super::fields;
use crate::{
    config::{
        Config, EVENT_BUFFER_BYTES, FileConfig, MAX_INTERFACES, MAX_PEERS, PEER_IDLE_SECONDS,
        RESYNC_SECONDS, RunArgs,
    },
    filter::Pattern,
};

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
