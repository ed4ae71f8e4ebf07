//! `linkmeter dump`: one collection printed as the `/metrics` exposition.

use std::time::Duration;

use crate::{
    cli::{Failure, collect::collect_once, runtime},
    config::{Config, PolicyArgs},
    metrics::{Format, SnapshotCollector, encode},
};

/// Examples shown by `linkmeter dump --help`.
pub const EXAMPLES: &str = "Examples:
  linkmeter dump | promtool check metrics
  linkmeter dump --duration 5 --format openmetrics";

/// Exposition format of `dump`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    /// Prometheus text format 0.0.4 (what `/metrics` answers by default).
    #[default]
    Prometheus,
    /// OpenMetrics text.
    Openmetrics,
}

/// Options of `linkmeter dump`.
#[derive(Debug, Clone, clap::Args)]
pub struct DumpArgs {
    /// Exposition format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Prometheus)]
    pub format: DumpFormat,
    /// Seconds to count with eBPF before collecting (0: attach, collect, detach).
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::seconds_in(0.0..=3600.0))]
    pub duration: f64,
    /// Routing configuration, as for `linkmeter run`.
    #[command(flatten)]
    pub config: PolicyArgs,
}

/// Runs `linkmeter dump`.
///
/// # Errors
///
/// Bad configuration (status 2), or netlink / ethtool unusable (status 1).
pub fn execute(args: &DumpArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config.clone().into()).map_err(Failure::usage)?;
    let snapshot = runtime()?.block_on(collect_once(
        &config,
        true,
        Duration::from_secs_f64(args.duration),
    ))?;
    let collector = SnapshotCollector::default();
    collector.publish(snapshot);
    let format = match args.format {
        DumpFormat::Prometheus => Format::Prometheus,
        DumpFormat::Openmetrics => Format::OpenMetrics,
    };
    let text = encode(&collector.registry(), format)
        .map_err(|e| Failure::runtime(format!("encoding: {e}")))?;
    print!("{text}");
    Ok(())
}
