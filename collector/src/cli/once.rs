//! The one-shot commands run the daemon's orchestration once: open the node, route every
//! interface (a resync: discover, probe, attach), optionally count for a while, collect, and
//! detach. `list`, `dump` and `watch` collect; `check` only routes.

use std::time::Duration;

use crate::{
    Report,
    backend::{
        ebpf::{TcCounter, load_or_explain},
        ethtool::Ioctl,
    },
    cli::Failure,
    config::Config,
    discovery::Netlink,
    metrics::Snapshot,
    node::Node,
};

/// This machine's node with every interface routed, eBPF-routed ones through `ebpf`.
pub(crate) async fn route<E: TcCounter>(
    config: &Config,
    ebpf: Option<E>,
) -> Result<Node<Ioctl, E, Netlink>, Failure> {
    let mut node = Node::open(config, ebpf).map_err(|e| {
        Failure::runtime(format!(
            "{}; `linkmeter check` shows what this node lacks",
            Report(&e)
        ))
    })?;
    node.resync()
        .await
        .map_err(|e| Failure::runtime(Report(&e)))?;
    Ok(node)
}

/// Routes every interface, counts for `sample` when eBPF-routed interfaces are attached, then
/// collects once and detaches.
pub(crate) async fn collect<E: TcCounter>(
    config: &Config,
    ebpf: Option<E>,
    sample: Duration,
) -> Result<Snapshot, Failure> {
    let mut node = route(config, ebpf).await?;
    tokio::time::sleep(sample).await;
    let snapshot = node.collect().await;
    node.detach_all();
    Ok(snapshot)
}

/// As [`collect`], attaching the eBPF counter where routing says so (`--attach`, `dump`).
pub(crate) async fn collect_attached(
    config: &Config,
    sample: Duration,
) -> Result<Snapshot, Failure> {
    collect(config, load_or_explain(&config.ebpf_options()), sample).await
}
