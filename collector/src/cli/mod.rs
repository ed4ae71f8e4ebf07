//! The `linkmeter` command line (clap derive), one file per subcommand:
//!
//! - [`run`]: the daemon (the default when no subcommand is given);
//! - [`list`]: one row per interface with its backend, reason and counts;
//! - [`check`]: a preflight of everything linkmeter needs on this node;
//! - [`dump`]: one collection printed as the `/metrics` exposition;
//! - [`watch`]: eBPF counts next to the kernel's, live;
//! - [`docs`]: shell completions and man pages.
//!
//! Exit status: 0 success, 1 runtime failure (or `check`: degraded), 2 bad usage or
//! configuration (or `check`: cannot run).

mod check;
mod cleanup;
mod docs;
mod dump;
mod list;
mod once;
mod run;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;

/// Per-interface network statistics for Kubernetes nodes: ethtool, eBPF and kernel link stats.
#[derive(Debug, Parser)]
#[command(
    name = "linkmeter",
    version,
    about,
    after_help = "Examples:\n  linkmeter                      # same as `linkmeter run`\n  linkmeter list --output json\n  linkmeter check"
)]
pub(crate) struct Cli {
    /// Log filter (tracing EnvFilter syntax) [default: info for run/watch, error otherwise].
    #[arg(long, global = true, env = "LINKMETER_LOG", value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Route every interface to its backend and serve the merged metrics (the default).
    #[command(after_help = run::EXAMPLES)]
    Run(crate::config::RunArgs),
    /// List every interface with its backend, the reason, and its counts.
    #[command(after_help = list::EXAMPLES)]
    List(list::ListArgs),
    /// Check whether this node can run linkmeter, one line per requirement.
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Run one collection and print it as the /metrics exposition.
    #[command(after_help = dump::EXAMPLES)]
    Dump(dump::DumpArgs),
    /// Count packets with eBPF on interfaces and print them next to the kernel's counters.
    #[command(after_help = watch::EXAMPLES)]
    Watch(watch::WatchArgs),
    /// Remove everything linkmeter processes left on this node (legacy tc filters).
    #[command(after_help = cleanup::EXAMPLES)]
    Cleanup(cleanup::CleanupArgs),
    /// Print a shell completion script.
    #[command(after_help = docs::COMPLETIONS_EXAMPLES)]
    Completions(docs::CompletionsArgs),
    /// Write man pages (used by `cargo xtask man`).
    #[command(hide = true)]
    Man(docs::ManArgs),
}

/// A failure with the exit status it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    /// 1 runtime, 2 usage or configuration, 130 interrupted.
    pub(crate) status: u8,
    /// What failed and what to do, printed after `linkmeter: `.
    pub(crate) message: String,
}

impl Failure {
    /// A configuration or usage error (exit status 2).
    pub(crate) fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            status: 2,
            message: message.to_string(),
        }
    }

    /// A runtime failure (exit status 1).
    pub(crate) fn runtime(message: impl std::fmt::Display) -> Self {
        Self {
            status: 1,
            message: message.to_string(),
        }
    }

    /// Stopped by SIGINT or SIGTERM after detaching everything (exit status 130, as a shell
    /// reports a Ctrl-C).
    pub(crate) fn interrupted() -> Self {
        Self {
            status: 130,
            message: "interrupted; every eBPF attachment was removed".to_owned(),
        }
    }

    /// A configuration error (exit status 2), with its causes.
    pub(crate) fn config(err: &crate::config::ConfigError) -> Self {
        Self::usage(crate::Report(err))
    }
}

fn init_logging(filter: &str, format: LogFormat) -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| Failure::usage(format!("invalid --log filter {filter:?}: {e}")))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // `init` also forwards `log` records (aya, the eBPF programs' aya-log messages) to tracing.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// The runtime of the one-shot commands: one thread, as for the daemon.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Run(crate::config::RunArgs::default()));
    let log = |default: &str| cli.log.clone().unwrap_or_else(|| default.to_owned());
    let result = match command {
        Command::Run(args) => crate::config::Config::load(&args)
            .map_err(|e| Failure::config(&e))
            .and_then(|config| {
                init_logging(&log("info"), config.log_format)?;
                run::execute(config)
            }),
        Command::Watch(args) => init_logging(&log("info"), LogFormat::Human)
            .and_then(|()| runtime()?.block_on(watch::run(args))),
        other => init_logging(&log("error"), LogFormat::Human).and_then(|()| match other {
            Command::List(a) => list::execute(&a),
            Command::Check(a) => check::execute(&a),
            Command::Dump(a) => dump::execute(&a),
            Command::Cleanup(a) => cleanup::execute(&a),
            Command::Completions(a) => docs::completions(&a),
            Command::Man(a) => docs::man(&a),
            Command::Run(_) | Command::Watch(_) => unreachable!("handled above"),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, message }) => {
            if !message.is_empty() {
                eprintln!("linkmeter: {message}");
            }
            ExitCode::from(status)
        }
    }
}

/// A clap value parser for a number of seconds within `range` (finite, no NaN).
pub(crate) fn seconds_in(
    range: std::ops::RangeInclusive<f64>,
) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |s: &str| {
        let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
        if v.is_finite() && range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "must be {} to {} seconds",
                range.start(),
                range.end()
            ))
        }
    }
}

/// The clap definition, for completions, man pages and tests.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
