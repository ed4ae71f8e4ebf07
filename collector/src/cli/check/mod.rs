//! `linkmeter check`: can this node run linkmeter? One line per requirement with ok / warn /
//! fail and what to do. Exit status 0: fully; 1: degraded (e.g. no eBPF, so kernel link stats
//! stand in); 2: cannot run.

mod system;

use std::fmt;

use crate::{
    Report,
    backend::ebpf::Unattached,
    cli::{Failure, runtime},
    config::{Config, PolicyArgs},
    node::{Answer, Interface, Node, OpenError},
    policy::{Backend, Reason},
};

/// Examples shown by `linkmeter check --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  linkmeter check
  setpriv --bounding-set -bpf,-sys_admin,-perfmon -- linkmeter check   # what a restricted pod sees";

/// Options of `linkmeter check`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CheckArgs {
    /// Routing configuration, as for `linkmeter run` (used for the per-interface lines).
    #[command(flatten)]
    config: PolicyArgs,
}

/// Outcome of one requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    /// Met.
    Ok,
    /// Not met, but linkmeter works fully without it.
    Warn,
    /// Not met: linkmeter runs degraded.
    Degraded,
    /// Not met: linkmeter cannot run.
    Fatal,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Degraded | Self::Fatal => "fail",
        })
    }
}

/// One printed line.
#[derive(Debug, Clone)]
struct Line {
    /// Outcome.
    status: Status,
    /// What was checked.
    what: &'static str,
    /// What was found, and what to do when it is not ok.
    detail: String,
}

fn line(status: Status, what: &'static str, detail: impl Into<String>) -> Line {
    Line {
        status,
        what,
        detail: detail.into(),
    }
}

/// Netlink and ethtool, and one line per interface with its ethtool answer and route: the
/// daemon's routing pass, without attaching.
async fn interface_lines(config: &Config, ebpf_ok: bool) -> Vec<Line> {
    let mut node = match Node::open(&config.node, ebpf_ok.then_some(Unattached)) {
        Ok(node) => node,
        Err(OpenError::Netlink(err)) => {
            return vec![netlink_failed(&err)];
        }
        Err(err @ OpenError::Ethtool(_)) => {
            return vec![line(Status::Fatal, "ethtool", Report(&err).to_string())];
        }
    };
    let mut lines = match node.resync_now().await {
        Ok(count) => vec![line(Status::Ok, "netlink", format!("{count} interfaces"))],
        Err(err) => return vec![netlink_failed(&err)],
    };
    lines.extend(node.interfaces().map(interface_line));
    lines
}

fn netlink_failed(err: &crate::discovery::DiscoveryError) -> Line {
    line(
        Status::Fatal,
        "netlink",
        format!("{}: linkmeter cannot discover interfaces", Report(err)),
    )
}

fn interface_line(interface: &Interface) -> Line {
    let driver = interface.driver.as_deref().unwrap_or("?");
    let answer = match interface.answer {
        Answer::NotProbed => "not probed".to_owned(),
        Answer::Stats { count } => format!("{driver}, {count} driver stats"),
        Answer::NoStats => format!("{driver}, no driver stats"),
        Answer::Unsupported { .. } => "EOPNOTSUPP".to_owned(),
        Answer::Failed { errno } => format!("errno {errno}"),
    };
    let backend = interface.measure.backend();
    let status = if backend == Backend::Netdev && interface.reason != Reason::Override {
        Status::Warn
    } else {
        Status::Ok
    };
    line(
        status,
        "interface",
        format!(
            "{}: {answer} -> {backend} ({})",
            interface.link.name, interface.reason
        ),
    )
}

/// The node's zone and where it comes from, when zones are configured; a warning when it is
/// unknown (cross-zone traffic then has no source zone).
fn node_zone_line(config: &Config) -> Option<Line> {
    let overlay = &config.node.overlay;
    if overlay.zones.is_empty() && overlay.node_zone.is_none() {
        return None;
    }
    let zone = crate::zones::node_zone(
        overlay.node_zone.as_deref(),
        &overlay.zones,
        &crate::discovery::own_addresses(),
    );
    let status = if zone.zone().is_some() {
        Status::Ok
    } else {
        Status::Warn
    };
    Some(line(status, "node-zone", zone.describe()))
}

/// Whether drops can be counted by reason: the program loaded and attached for a moment, with
/// the running kernel's layout; or why not.
fn drop_reasons_line(config: &Config) -> Line {
    use crate::backend::drops::{DropsUnavailable, TracedDrops};
    if !config.drop_reasons {
        return line(
            Status::Ok,
            "drop-reasons",
            "turned off (drop_reasons = false)",
        );
    }
    match TracedDrops::load() {
        Ok(drops) => {
            let names = drops.reason_names();
            let examples: Vec<&str> = names.all().into_values().take(3).collect();
            line(
                Status::Ok,
                "drop-reasons",
                format!(
                    "the kfree_skb program loads and attaches; this kernel names {} drop reasons ({}, ...)",
                    names.all().len(),
                    examples.join(", ")
                ),
            )
        }
        // The kernel lacks what it needs: everything else works.
        Err(err @ (DropsUnavailable::Btf(_) | DropsUnavailable::NoReasonArgument(_))) => line(
            Status::Warn,
            "drop-reasons",
            format!("{}: drops are not counted by reason", Report(&err)),
        ),
        Err(err) => line(
            Status::Degraded,
            "drop-reasons",
            format!(
                "{}: drops are not counted by reason; run as root or add the capabilities above",
                Report(&err)
            ),
        ),
    }
}

/// Runs `linkmeter check`, printing one line per requirement.
///
/// # Errors
///
/// A [`Failure`] with status 1 (degraded) or 2 (cannot run) after the lines are printed.
pub(crate) fn execute(args: &CheckArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config.clone().into()).map_err(|e| Failure::config(&e))?;
    let mut lines = system::lines();
    let ebpf_ok = lines
        .iter()
        .any(|l| l.what == "ebpf-object" && l.status == Status::Ok);
    lines.extend(runtime()?.block_on(interface_lines(&config, ebpf_ok)));
    lines.extend(node_zone_line(&config));
    lines.push(drop_reasons_line(&config));
    for l in &lines {
        println!("{:<5} {:<13} {}", l.status.to_string(), l.what, l.detail);
    }
    match lines.iter().map(|l| l.status).max().unwrap_or(Status::Ok) {
        Status::Ok | Status::Warn => {
            println!("result: linkmeter can run fully");
            Ok(())
        }
        Status::Degraded => {
            println!("result: linkmeter runs degraded (see the fail lines)");
            Err(Failure {
                status: 1,
                message: String::new(),
            })
        }
        Status::Fatal => {
            println!("result: linkmeter cannot run (see the fail lines)");
            Err(Failure {
                status: 2,
                message: String::new(),
            })
        }
    }
}
