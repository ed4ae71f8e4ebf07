//! The `linkmeter` binary: parse arguments, set up logging, run the subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use collector::watch::{self, WatchArgs};

/// Per-interface network statistics for Kubernetes nodes: ethtool, eBPF and kernel link stats.
#[derive(Debug, Parser)]
#[command(name = "linkmeter", version, about)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `collector=debug`.
    #[arg(long, global = true, default_value = "info", env = "LINKMETER_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count packets and bytes with eBPF on interfaces and print them next to kernel counters.
    Watch(WatchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("error: invalid --log filter {:?}: {err}", cli.log);
            return ExitCode::from(2);
        }
    };
    // `init` also forwards `log` records (aya, the eBPF programs' aya-log messages) to tracing.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Watch(args) => watch::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
