//! `linkmeter run`: the daemon.

use crate::{Report, cli::Failure, config::Config, daemon};

/// Examples shown by `linkmeter run --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  linkmeter run
  linkmeter run --listen 127.0.0.1:9100 --exclude lo,docker0 --override 'kind:bridge=netdev'
  LINKMETER_ATTACH_MODE=tc linkmeter run --config /etc/linkmeter/config.toml";

/// Runs the daemon until SIGINT or SIGTERM.
///
/// # Errors
///
/// The listen address cannot be bound, or netlink / the ethtool socket are unusable.
pub(crate) fn execute(config: Config) -> Result<(), Failure> {
    let web = crate::web::Web::load(config.web_config_file.clone())
        .map_err(|e| Failure::usage(Report(&e)))?;
    // Held until the daemon has let everything go (`None`: squatted by another user, said).
    let _node =
        daemon::lock::take(daemon::lock::LOCK_WAIT).map_err(|e| Failure::runtime(Report(&e)))?;
    // One thread is enough: one owner task does all the work, and a single thread keeps one
    // malloc arena instead of one per worker (about 40 % less RSS at 1,000 interfaces).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                Failure::runtime(format!(
                    "cannot listen on {}: {e}; choose another address with --listen",
                    config.listen
                ))
            })?;
        daemon::run(
            config,
            listener,
            std::sync::Arc::new(web),
            shutdown_signal(),
        )
        .await
        .map_err(|e| {
            Failure::runtime(format!(
                "{}; `linkmeter check` shows what this node lacks",
                Report(&e)
            ))
        })
    });
    // A password check still running off the async thread does not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes stopping the pod).
pub(crate) async fn shutdown_signal() {
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
