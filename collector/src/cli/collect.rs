//! One collection without the daemon, shared by `list` and `dump`.

use std::time::Duration;

use crate::{
    backend::ethtool::{Ethtool, Ioctl, link_modes},
    cli::Failure,
    config::Config,
    discovery::Netlink,
    ebpf::{EbpfCounters, LoadOptions},
    metrics::Snapshot,
    node::Node,
};

/// Discovers, probes and routes every interface like the daemon does, then collects once.
///
/// With `attach`, eBPF-routed interfaces are attached for `sample` and their counts reported;
/// without it they are routed but not attached. Everything is detached before returning.
pub async fn collect_once(
    config: &Config,
    attach: bool,
    sample: Duration,
) -> Result<Snapshot, Failure> {
    let ioctl = Ioctl::new()
        .map_err(|e| Failure::runtime(format!("cannot open the ethtool ioctl socket: {e}")))?;
    let ethtool = Ethtool::new(ioctl);
    let loaded = EbpfCounters::load(&LoadOptions {
        max_interfaces: config.max_interfaces,
    });
    if attach && let Err(err) = &loaded {
        tracing::warn!(error = %err, "eBPF unavailable; eBPF-routed interfaces fall back to kernel link stats");
    }
    let mut node = match loaded {
        Ok(ebpf) if attach => Node::new(config.clone(), ethtool, Some(ebpf)),
        Ok(_) => Node::dry_run(config.clone(), ethtool, true),
        Err(_) => Node::dry_run(config.clone(), ethtool, false),
    };
    let netlink = Netlink::open()
        .map_err(|e| Failure::runtime(format!("{e}; netlink needs a Linux kernel")))?;
    let dump = |n: &Netlink| {
        let n = n.clone();
        async move { n.dump().await.map_err(|e| Failure::runtime(e.to_string())) }
    };
    node.sync(dump(&netlink).await?);
    if attach && !sample.is_zero() {
        tokio::time::sleep(sample).await;
    }
    node.sync(dump(&netlink).await?);
    if let Ok(modes) = link_modes().await {
        node.set_link_modes(&modes);
    }
    let snapshot = node.collect();
    node.detach_all();
    Ok(snapshot)
}
