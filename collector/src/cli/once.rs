//! The one-shot commands run the daemon's orchestration once: open the node, route every
//! interface (a resync: discover, probe, attach), optionally count for a while, collect, and
//! detach. `list`, `dump` and `watch` collect; `check` only routes. They attach as
//! [`Role::Command`] (legacy tc handles of their own, so a daemon's filters are never touched)
//! and detach on SIGINT or SIGTERM too, whenever it comes.

use std::time::Duration;

use tracing::warn;

use crate::{
    Report,
    backend::{
        drops,
        ebpf::{LoadOptions, Role, TcCounter, load_or_explain},
        ethtool::Ioctl,
    },
    cli::Failure,
    config::Config,
    discovery::Netlink,
    metrics::Snapshot,
    node::Node,
};

/// How long a command waits for the kernel to answer its detaches before it exits anyway.
const DETACH_WAIT: Duration = Duration::from_secs(10);

/// This machine's node with every interface routed, eBPF-routed ones through `ebpf`.
pub(crate) async fn route<E: TcCounter>(
    config: &Config,
    ebpf: Option<E>,
) -> Result<Node<Ioctl, E, Netlink>, Failure> {
    let mut node = Node::open(&config.node, ebpf).map_err(|e| {
        Failure::runtime(format!(
            "{}; `linkmeter check` shows what this node lacks",
            Report(&e)
        ))
    })?;
    if let Err(err) = node.resync_now().await {
        shut(&mut node).await;
        return Err(Failure::runtime(Report(&err)));
    }
    Ok(node)
}

/// Routes every interface, counts for `sample` when eBPF-routed interfaces are attached (and
/// drops by reason, `with_drops`), then collects once and detaches. SIGINT or SIGTERM at any point detaches and fails with
/// [`Failure::interrupted`].
pub(crate) async fn collect<E: TcCounter>(
    config: &Config,
    ebpf: Option<E>,
    sample: Duration,
    with_drops: bool,
) -> Result<Snapshot, Failure> {
    let mut interrupted = std::pin::pin!(interruption());
    let _ = futures_util::poll!(interrupted.as_mut());
    let drops = if with_drops {
        drops::load_or_explain(config.drop_reasons)
    } else {
        None
    };
    let mut node = route(config, ebpf).await?.with_drops(drops);
    let stopped = tokio::select! {
        biased;
        () = &mut interrupted => true,
        () = tokio::time::sleep(sample) => false,
    };
    if stopped {
        shut(&mut node).await;
        return Err(Failure::interrupted());
    }
    let snapshot = node.collect().await;
    shut(&mut node).await;
    Ok(snapshot)
}

/// Detaches everything the command attached, waiting at most [`DETACH_WAIT`] for the kernel.
pub(crate) async fn shut<E: TcCounter>(node: &mut Node<Ioctl, E, Netlink>) {
    if tokio::time::timeout(DETACH_WAIT, node.shutdown())
        .await
        .is_err()
    {
        warn!(
            "the kernel did not answer every detach in time; `linkmeter cleanup` removes what is left"
        );
    }
}

/// SIGINT or SIGTERM. Poll it once before attaching anything: that installs the handlers, so a
/// signal arriving while the programs are being attached is seen afterwards instead of killing
/// the process with its attachments in place.
pub(crate) async fn interruption() {
    crate::cli::run::shutdown_signal().await;
}

/// The eBPF options of a one-shot command: its own legacy tc handles, nothing pinned.
pub(crate) fn command_options(config: &Config) -> LoadOptions {
    LoadOptions {
        role: Role::Command,
        pin: None,
        ..config.ebpf_options()
    }
}

/// As [`collect`], attaching the eBPF counter where routing says so and counting drops by
/// reason (`--attach`, `dump`).
pub(crate) async fn collect_attached(
    config: &Config,
    sample: Duration,
) -> Result<Snapshot, Failure> {
    collect(
        config,
        load_or_explain(&command_options(config)),
        sample,
        true,
    )
    .await
}
