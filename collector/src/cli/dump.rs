//! `linkmeter dump`: one collection printed as the `/metrics` exposition.

use std::{sync::Arc, time::Duration};

use crate::{
    cli::{Failure, once, runtime},
    config::{Config, PolicyArgs},
    metrics::{Format, View, encode},
};

/// Examples shown by `linkmeter dump --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  linkmeter dump | promtool check metrics
  linkmeter dump --duration 5 --format openmetrics";

/// Exposition format of `dump`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DumpFormat {
    /// Prometheus text format 0.0.4 (what `/metrics` answers by default).
    #[default]
    Prometheus,
    /// OpenMetrics text.
    Openmetrics,
}

/// Options of `linkmeter dump`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DumpArgs {
    /// Exposition format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Prometheus)]
    format: DumpFormat,
    /// Seconds to count with eBPF before collecting (0: attach, collect, detach).
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::seconds_in(0.0..=3600.0))]
    duration: f64,
    /// Routing configuration, as for `linkmeter run`.
    #[command(flatten)]
    config: PolicyArgs,
}

/// Runs `linkmeter dump`.
///
/// # Errors
///
/// Bad configuration (status 2), or netlink / ethtool unusable (status 1).
pub(crate) fn execute(args: &DumpArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config.clone().into()).map_err(|e| Failure::config(&e))?;
    let sample = Duration::from_secs_f64(args.duration);
    let snapshot = runtime()?.block_on(once::collect_attached(&config, sample))?;
    let format = match args.format {
        DumpFormat::Prometheus => Format::Prometheus,
        DumpFormat::Openmetrics => Format::OpenMetrics,
    };
    let text = encode(Arc::new(snapshot), format, View::All)
        .map_err(|e| Failure::runtime(format!("encoding: {e}")))?;
    print!("{text}");
    Ok(())
}
