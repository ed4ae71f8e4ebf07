//! Configuration parsing, validation and precedence.

use std::path::Path;

use super::*;

fn build(toml_text: &str) -> Result<Config, ConfigError> {
    Config::build(FileConfig::parse(toml_text, Path::new("test.toml"))?)
}

#[test]
fn defaults_come_from_the_constants() {
    let c = Config::default();
    assert_eq!(c.listen, DEFAULT_LISTEN.parse().expect("addr"));
    assert_eq!(c.node.attach_mode, AttachMode::Auto);
    assert_eq!(c.ebpf.capacity.interfaces(), DEFAULT_MAX_INTERFACES);
    assert_eq!(
        c.resync_interval,
        Duration::from_secs(DEFAULT_RESYNC_SECONDS)
    );
    assert!(c.node.policy.exclude[0].matches("lo", None));
    assert_eq!(c.node.policy.exclude.len(), DEFAULT_EXCLUDE.len());
    assert!(c.node.policy.include.is_empty() && c.node.policy.overrides.is_empty());
    assert!(
        c.node
            .ethtool_stats_allowlist
            .is_match("rx_queue_0_packets")
    );
    assert_eq!(c.log_format, LogFormat::Human);
}

/// The `[default: …]` texts of `--help` are literals (clap takes doc comments as they are);
/// this keeps them equal to the constants.
#[test]
fn help_shows_the_defaults_of_the_constants() {
    use clap::CommandFactory as _;
    #[derive(clap::Parser)]
    struct Run {
        #[command(flatten)]
        run: RunArgs,
    }
    let help = Run::command().render_long_help().to_string();
    for expected in [
        format!("[default: {DEFAULT_LISTEN}]"),
        format!("[default: {}]", DEFAULT_EXCLUDE.join(",")),
        format!("[default: {DEFAULT_MAX_INTERFACES}]"),
        format!("[default: {DEFAULT_MAX_PEERS}]"),
        format!("[default: {DEFAULT_PEER_IDLE_SECONDS}]"),
        format!("[default: {DEFAULT_RESYNC_SECONDS}]"),
        format!("[default: {DEFAULT_ETHTOOL_STATS_ALLOWLIST}]"),
        format!("[default: {DEFAULT_EVENT_BUFFER_BYTES}]"),
        "[default: auto]".to_owned(),
        "[default: human]".to_owned(),
    ] {
        assert!(help.contains(&expected), "run --help lacks {expected}");
    }
    assert_eq!(format!("{:?}", AttachMode::default()), "Auto");
}

#[test]
fn full_file_is_accepted() {
    let c = build(
        r#"
        listen = "127.0.0.1:9100"
        include = ["eth*", "kind:vxlan"]
        exclude = ["lo", "/^docker/"]
        overrides = ["cilium_*=ebpf", "kind:bridge=netdev"]
        attach_mode = "tc"
        max_interfaces = 64
        resync_interval_seconds = 5
        ethtool_stats_allowlist = "^(rx|tx)_"
        log_format = "json"
        "#,
    )
    .expect("valid");
    assert_eq!(c.node.policy.overrides.len(), 2);
    assert_eq!(c.node.policy.overrides[0].1, crate::policy::Backend::Ebpf);
    assert_eq!(c.node.attach_mode, AttachMode::Tc);
    assert_eq!(c.ebpf.capacity.interfaces(), 64);
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("listn = \"x\"", "listn"),
        ("listen = \"localhost\"", "listen"),
        ("listen = \"1.2.3.4:99999\"", "listen"),
        ("exclude = [\"/(/\"]", "exclude"),
        ("include = [\"\"]", "include"),
        ("overrides = [\"eth0\"]", "overrides"),
        ("overrides = [\"eth0=magic\"]", "overrides"),
        ("attach_mode = \"xdp\"", "attach_mode"),
        ("max_interfaces = 0", "max_interfaces"),
        ("max_interfaces = 65537", "max_interfaces"),
        ("max_peers = 0", "max_peers"),
        ("peer_idle_seconds = 0", "peer_idle_seconds"),
        ("event_buffer_bytes = 10", "event_buffer_bytes"),
        ("breakdown = [\"/(/\"]", "breakdown"),
        ("resync_interval_seconds = 0", "resync_interval_seconds"),
        ("ethtool_stats_allowlist = \"(\"", "ethtool_stats_allowlist"),
        ("log_format = \"xml\"", "log_format"),
        ("max_interfaces = \"many\"", "max_interfaces"),
        ("drop_reasons = \"no\"", "drop_reasons"),
    ];
    for (text, key) in cases {
        let err = build(text).expect_err(text);
        let shown = crate::Report(&err).to_string();
        assert!(shown.contains(key), "{text}: {shown}");
    }
}

#[test]
fn limits_are_inclusive() {
    for ok in [*MAX_INTERFACES.start(), *MAX_INTERFACES.end()] {
        assert_eq!(
            build(&format!("max_interfaces = {ok}"))
                .expect("valid")
                .ebpf
                .capacity
                .interfaces(),
            ok
        );
    }
}

#[test]
fn flags_override_the_file() {
    let file = FileConfig::parse(
        "listen = \"127.0.0.1:1\"\nmax_interfaces = 8",
        Path::new("t"),
    )
    .expect("ok");
    let args = RunArgs {
        listen: Some("127.0.0.1:2".into()),
        ..RunArgs::default()
    };
    let c = Config::build(args.over(file)).expect("valid");
    assert_eq!(c.listen().port(), 2);
    assert_eq!(c.ebpf.capacity.interfaces(), 8);
}

#[test]
fn pinning_is_off_by_default_and_the_flag_turns_it_on_or_off() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }
    let pin = |args: &[&str], toml: &str| {
        let cli = Cli::try_parse_from(std::iter::once("linkmeter").chain(args.iter().copied()))
            .expect("parses");
        let file = FileConfig::parse(toml, Path::new("t")).expect("toml");
        Config::build(cli.run.over(file)).expect("valid").ebpf.pin
    };
    let default = Some(PathBuf::from(crate::backend::ebpf::DEFAULT_PIN_PATH));
    assert_eq!(pin(&[], ""), None);
    assert_eq!(pin(&["--pin"], ""), default);
    assert_eq!(pin(&[], "pin = true"), default);
    assert_eq!(pin(&["--pin=false"], "pin = true"), None);
    assert_eq!(
        pin(&["--pin-path", "/x"], "pin = true"),
        Some(PathBuf::from("/x"))
    );
}

#[test]
fn drop_reasons_are_on_by_default_and_the_flag_or_file_turns_them_off() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }
    let on = |args: &[&str], toml: &str| {
        let cli = Cli::try_parse_from(std::iter::once("linkmeter").chain(args.iter().copied()))
            .expect("parses");
        let file = FileConfig::parse(toml, Path::new("t")).expect("toml");
        Config::build(cli.run.over(file))
            .expect("valid")
            .drop_reasons
    };
    assert!(on(&[], ""));
    assert!(!on(&[], "drop_reasons = false"));
    assert!(!on(&["--drop-reasons=false"], ""));
    assert!(on(&["--drop-reasons"], "drop_reasons = false"));
}

#[test]
fn peer_zones_set_the_overlay_series_and_bad_entries_are_named() {
    use crate::zones::OverlaySeries;
    let plain = Config::default();
    assert_eq!(plain.node.overlay.series, OverlaySeries::Peer);
    assert!(plain.node.overlay.zones.is_empty());
    let zoned = build(
        "peer_zones = [\"10.0.0.0/20=eu-west-1a\", \"fd00::/64=eu-west-1b\"]\nnode_zone = \"eu-west-1a\"",
    )
    .expect("valid");
    assert_eq!(zoned.node.overlay.series, OverlaySeries::Zone);
    assert_eq!(
        zoned
            .node
            .overlay
            .zones
            .zone_of("10.0.1.1".parse().expect("ip")),
        Some("eu-west-1a")
    );
    assert_eq!(zoned.node.overlay.node_zone.as_deref(), Some("eu-west-1a"));
    let both = build("peer_zones = [\"10.0.0.0/20=a\"]\noverlay_series = \"both\"").expect("valid");
    assert_eq!(both.node.overlay.series, OverlaySeries::Both);
    for (text, key, names) in [
        (
            "peer_zones = [\"10.0.0.0/20=a\", \"10.0.0.1/20=b\"]",
            "peer_zones",
            "10.0.0.1/20=b",
        ),
        (
            "peer_zones = [\"10.0.0.0/20\"]",
            "peer_zones",
            "10.0.0.0/20",
        ),
        (
            "peer_zones = [\"10.0.0.0/20=\"]",
            "peer_zones",
            "10.0.0.0/20=",
        ),
        ("overlay_series = \"zones\"", "overlay_series", "zones"),
        ("node_zone = \" \"", "node_zone", "empty"),
    ] {
        let message = crate::Report(&build(text).expect_err(text)).to_string();
        assert!(
            message.contains(&format!("invalid {key}")) && message.contains(names),
            "{text}: {message}"
        );
    }
}
