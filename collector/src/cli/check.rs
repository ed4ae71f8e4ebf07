//! `linkmeter check`: can this node run linkmeter? One line per requirement with ok / warn /
//! fail and what to do. Exit status 0: fully; 1: degraded (e.g. no eBPF, so kernel link stats
//! stand in); 2: cannot run.

use std::{fmt, fs, path::Path};

use crate::{
    backend::ethtool::{Ethtool, Ioctl, Probe},
    cli::{Failure, runtime},
    config::{Config, PolicyArgs},
    discovery::Netlink,
    ebpf::{EbpfCounters, LoadOptions, kernel_has_tcx},
    policy,
};

/// Examples shown by `linkmeter check --help`.
pub const EXAMPLES: &str = "Examples:
  linkmeter check
  setpriv --bounding-set -bpf,-sys_admin,-perfmon -- linkmeter check   # what a restricted pod sees";

/// Options of `linkmeter check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Routing configuration, as for `linkmeter run` (used for the per-interface lines).
    #[command(flatten)]
    pub config: PolicyArgs,
}

/// Outcome of one requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
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
pub struct Line {
    /// Outcome.
    pub status: Status,
    /// What was checked.
    pub what: &'static str,
    /// What was found, and what to do when it is not ok.
    pub detail: String,
}

fn line(status: Status, what: &'static str, detail: impl Into<String>) -> Line {
    Line {
        status,
        what,
        detail: detail.into(),
    }
}

/// Capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn cap_name(cap: u32) -> &'static str {
    match cap {
        CAP_NET_ADMIN => "CAP_NET_ADMIN",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_PERFMON => "CAP_PERFMON",
        CAP_BPF => "CAP_BPF",
        _ => "CAP_?",
    }
}

/// The effective capability set from `/proc/self/status`.
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// (major, minor, patch) from `/proc/sys/kernel/osrelease`.
fn kernel_release() -> Option<(String, (u32, u32))> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()?
        .trim()
        .to_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((release, (major, minor)))
}

/// The static requirements: kernel, JIT, BTF, TCX, capabilities, bpffs, the eBPF object.
pub fn system_lines() -> Vec<Line> {
    let mut lines = Vec::new();
    let version = kernel_release();
    let has_cap_bpf = match &version {
        Some((release, v)) if *v >= (5, 8) => {
            lines.push(line(Status::Ok, "kernel", release.clone()));
            true
        }
        Some((release, v)) if *v >= (4, 15) => {
            lines.push(line(
                Status::Ok,
                "kernel",
                format!("{release} (no CAP_BPF before 5.8: CAP_SYS_ADMIN is needed)"),
            ));
            false
        }
        Some((release, _)) => {
            lines.push(line(
                Status::Fatal,
                "kernel",
                format!("{release} is older than 4.15: upgrade the kernel"),
            ));
            false
        }
        None => {
            lines.push(line(
                Status::Warn,
                "kernel",
                "cannot read /proc/sys/kernel/osrelease",
            ));
            true
        }
    };
    lines.push(match fs::read_to_string("/proc/sys/net/core/bpf_jit_enable").map(|s| s.trim().to_owned()) {
        Ok(v) if v != "0" => line(Status::Ok, "bpf-jit", "enabled"),
        Ok(_) => line(Status::Warn, "bpf-jit", "disabled, eBPF runs interpreted (slower): sysctl -w net.core.bpf_jit_enable=1"),
        Err(_) => line(
            Status::Warn,
            "bpf-jit",
            "cannot read net.core.bpf_jit_enable (it is only visible in the host network namespace)",
        ),
    });
    lines.push(if Path::new("/sys/kernel/btf/vmlinux").exists() {
        line(Status::Ok, "btf", "/sys/kernel/btf/vmlinux")
    } else {
        line(
            Status::Warn,
            "btf",
            "no kernel BTF; linkmeter's programs do not need it",
        )
    });
    lines.push(if kernel_has_tcx() {
        line(
            Status::Ok,
            "tcx",
            "available: TCX links, attached first in the chain",
        )
    } else {
        line(
            Status::Warn,
            "tcx",
            "not available (Linux < 6.6): legacy tc (clsact + cls_bpf) will be used",
        )
    });

    let needed: &[u32] = if has_cap_bpf {
        &[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]
    } else {
        &[CAP_SYS_ADMIN, CAP_NET_ADMIN]
    };
    match effective_caps() {
        Some(caps) => {
            let has = |c: u32| caps & (1u64 << c) != 0;
            // CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON (not CAP_NET_ADMIN).
            let covered = |c: u32| has(c) || (c != CAP_NET_ADMIN && has(CAP_SYS_ADMIN));
            let missing: Vec<&str> = needed
                .iter()
                .filter(|&&c| !covered(c))
                .map(|&c| cap_name(c))
                .collect();
            let held: Vec<&str> = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN]
                .into_iter()
                .filter(|&c| has(c))
                .map(cap_name)
                .collect();
            if missing.is_empty() {
                lines.push(line(
                    Status::Ok,
                    "capabilities",
                    format!("held: {}", held.join(" ")),
                ));
            } else {
                let add = if has_cap_bpf {
                    "BPF, NET_ADMIN, PERFMON"
                } else {
                    "SYS_ADMIN, NET_ADMIN"
                };
                lines.push(line(
                    Status::Degraded,
                    "capabilities",
                    format!(
                        "{} missing (held: {}): run as root or add capabilities {add}",
                        missing.join(" "),
                        if held.is_empty() {
                            "none".to_owned()
                        } else {
                            held.join(" ")
                        }
                    ),
                ));
            }
        }
        None => lines.push(line(
            Status::Warn,
            "capabilities",
            "cannot read CapEff from /proc/self/status",
        )),
    }
    let bpffs = fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            let (_, target, fstype) = (f.next(), f.next(), f.next());
            target == Some("/sys/fs/bpf") && fstype == Some("bpf")
        });
    lines.push(if bpffs {
        line(Status::Ok, "bpffs", "mounted at /sys/fs/bpf")
    } else {
        line(
            Status::Warn,
            "bpffs",
            "not mounted at /sys/fs/bpf (only needed for pinning): mount -t bpf bpf /sys/fs/bpf",
        )
    });
    lines.push(match EbpfCounters::load(&LoadOptions { max_interfaces: 1 }) {
        Ok(_) => line(Status::Ok, "ebpf-object", "the embedded TC programs load and pass the verifier"),
        Err(err) => line(
            Status::Degraded,
            "ebpf-object",
            format!("{err}: interfaces without ethtool stats will use kernel link stats; run as root or add the capabilities above"),
        ),
    });
    lines
}

/// Netlink and ethtool, and one line per interface with its ethtool answer and backend.
async fn interface_lines(config: &Config, ebpf_ok: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    let dump = match Netlink::open() {
        Ok(netlink) => netlink.dump().await,
        Err(err) => Err(err),
    };
    let links = match dump {
        Ok(links) => {
            lines.push(line(
                Status::Ok,
                "netlink",
                format!("{} interfaces", links.len()),
            ));
            links
        }
        Err(err) => {
            lines.push(line(
                Status::Fatal,
                "netlink",
                format!("{err}: linkmeter cannot discover interfaces"),
            ));
            return lines;
        }
    };
    let ethtool = match Ioctl::new() {
        Ok(io) => Ethtool::new(io),
        Err(err) => {
            lines.push(line(
                Status::Fatal,
                "ethtool",
                format!("cannot open the ioctl socket: {err}"),
            ));
            return lines;
        }
    };
    for link in links {
        let mut probe = None;
        let route = policy::route(
            &config.policy,
            &link.name,
            link.kind.as_deref(),
            ebpf_ok,
            || probe.insert(ethtool.probe(&link.name)).clone(),
        );
        let answer = match &probe {
            None => "not probed".to_owned(),
            Some(Probe::Stats { driver, names }) => {
                format!("{driver}, {} driver stats", names.len())
            }
            Some(Probe::NoStats { driver }) => format!("{driver}, no driver stats"),
            Some(Probe::Unsupported { .. }) => "EOPNOTSUPP".to_owned(),
            Some(Probe::Failed { errno }) => format!("errno {errno}"),
        };
        let status = if route.backend == policy::Backend::Netdev
            && !matches!(route.reason, policy::Reason::Override)
        {
            Status::Warn
        } else {
            Status::Ok
        };
        lines.push(line(
            status,
            "interface",
            format!(
                "{}: {answer} -> {} ({})",
                link.name, route.backend, route.reason
            ),
        ));
    }
    lines
}

/// Runs `linkmeter check`, printing one line per requirement.
///
/// # Errors
///
/// A [`Failure`] with status 1 (degraded) or 2 (cannot run) after the lines are printed.
pub fn execute(args: &CheckArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config.clone().into()).map_err(Failure::usage)?;
    let mut lines = system_lines();
    let ebpf_ok = lines
        .iter()
        .any(|l| l.what == "ebpf-object" && l.status == Status::Ok);
    lines.extend(runtime()?.block_on(interface_lines(&config, ebpf_ok)));
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
