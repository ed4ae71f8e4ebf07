//! `linkmeter cleanup`: removes what linkmeter processes left on this node.

use std::path::PathBuf;

use crate::{
    Report,
    backend::ebpf::{DEFAULT_PIN_PATH, remove_linkmeter_filters, remove_pins},
    cli::{Failure, runtime},
    discovery::{Links as _, Netlink},
};

/// Examples shown by `linkmeter cleanup --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  linkmeter cleanup                 # after uninstalling the DaemonSet
  ip netns exec NS linkmeter cleanup";

/// Options of `linkmeter cleanup`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CleanupArgs {
    /// The daemon's pin directory: linkmeter's layout directories in it are removed (their links
    /// detach, their maps are freed), nothing else.
    #[arg(long, env = "LINKMETER_PIN_PATH", value_name = "DIR", default_value = DEFAULT_PIN_PATH)]
    pin_path: PathBuf,
}

/// Removes what linkmeter pinned (the pin directory: unpinned links detach, unpinned maps are
/// freed) and every legacy tc filter running a linkmeter program, on every interface of the
/// calling process's network namespace, whoever attached it (TCX links that are not pinned go
/// with the process that made them). Prints what it removed.
///
/// # Errors
///
/// Netlink is unusable, or a pin or filter could not be removed.
pub(crate) fn execute(args: &CleanupArgs) -> Result<(), Failure> {
    if remove_pins(&args.pin_path).map_err(|e| Failure::runtime(Report(&e)))? {
        println!("removed linkmeter's pins under {}", args.pin_path.display());
    }
    let links = runtime()?.block_on(async {
        let netlink = Netlink::open().map_err(|e| Failure::runtime(Report(&e)))?;
        netlink
            .dump()
            .await
            .map_err(|e| Failure::runtime(Report(&e)))
    })?;
    let mut removed = 0;
    let mut failed = Vec::new();
    for facts in &links {
        match remove_linkmeter_filters(facts.link.ifindex) {
            Ok(n) => removed += n,
            Err(err) => failed.push(format!("{}: {err}", facts.link.name)),
        }
    }
    println!(
        "removed {removed} linkmeter tc filter(s) from {} interface(s)",
        links.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "could not clean up {}",
            failed.join("; ")
        )))
    }
}
