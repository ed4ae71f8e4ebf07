//! The `linkmeter` binary: parse arguments, load the configuration, set up logging, run the
//! subcommand. Exit status: 0 on success, 1 on a runtime failure, 2 on bad flags or config.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use collector::{
    config::{Config, LogFormat, RunArgs},
    daemon,
    watch::{self, WatchArgs},
};

/// Per-interface network statistics for Kubernetes nodes: ethtool, eBPF and kernel link stats.
#[derive(Debug, Parser)]
#[command(name = "linkmeter", version, about)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `collector=debug`.
    #[arg(long, global = true, default_value = "info", env = "LINKMETER_LOG")]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Route every interface to its backend and serve the merged metrics (the default).
    Run(RunArgs),
    /// Count packets and bytes with eBPF on interfaces and print them next to kernel counters.
    Watch(WatchArgs),
}

fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid --log filter {filter:?}: {e}"))?;
    // `init` also forwards `log` records (aya, the eBPF programs' aya-log messages) to tracing.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
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

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Run(RunArgs::default()));
    let config = match &command {
        Command::Run(args) => match Config::load(args) {
            Ok(config) => Some(config),
            Err(err) => {
                eprintln!("linkmeter: {err}");
                return ExitCode::from(2);
            }
        },
        Command::Watch(_) => None,
    };
    let format = config.as_ref().map_or(LogFormat::Human, |c| c.log_format);
    if let Err(err) = init_logging(&cli.log, format) {
        eprintln!("linkmeter: {err}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("linkmeter: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match (command, config) {
            (Command::Run(_), Some(config)) => {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot listen on {}: {e} (choose another --listen)",
                            config.listen
                        )
                    })?;
                daemon::run(config, listener, shutdown_signal()).await?;
                Ok(())
            }
            (Command::Watch(args), _) => watch::run(args).await,
            (Command::Run(_), None) => unreachable!("config is loaded for run"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("linkmeter: {err:#}");
            ExitCode::FAILURE
        }
    }
}
