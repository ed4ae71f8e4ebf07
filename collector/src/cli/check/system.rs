//! The node-wide requirements of `linkmeter check`: kernel, JIT, BTF, TCX, capabilities,
//! bpffs, and whether the embedded eBPF object loads.

use std::{fs, path::Path};

use super::{Line, Status, line};
use crate::{
    Report,
    backend::ebpf::{Capacity, EbpfCounters, LoadOptions, kernel_has_tcx},
};

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

/// The release and (major, minor) from `/proc/sys/kernel/osrelease`.
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

/// Every node-wide line, in order.
pub(super) fn lines() -> Vec<Line> {
    let (kernel, has_cap_bpf) = kernel();
    vec![
        kernel,
        jit(),
        btf(),
        tcx(),
        capabilities(has_cap_bpf),
        bpffs(),
        ebpf_object(),
    ]
}

/// The kernel line, and whether this kernel has CAP_BPF (≥ 5.8).
fn kernel() -> (Line, bool) {
    match kernel_release() {
        Some((release, v)) if v >= (5, 8) => (line(Status::Ok, "kernel", release), true),
        Some((release, v)) if v >= (4, 15) => (
            line(
                Status::Ok,
                "kernel",
                format!("{release} (no CAP_BPF before 5.8: CAP_SYS_ADMIN is needed)"),
            ),
            false,
        ),
        Some((release, _)) => (
            line(
                Status::Fatal,
                "kernel",
                format!("{release} is older than 4.15: upgrade the kernel"),
            ),
            false,
        ),
        None => (
            line(
                Status::Warn,
                "kernel",
                "cannot read /proc/sys/kernel/osrelease",
            ),
            true,
        ),
    }
}

fn jit() -> Line {
    match fs::read_to_string("/proc/sys/net/core/bpf_jit_enable").map(|s| s.trim().to_owned()) {
        Ok(v) if v != "0" => line(Status::Ok, "bpf-jit", "enabled"),
        Ok(_) => line(
            Status::Warn,
            "bpf-jit",
            "disabled, eBPF runs interpreted (slower): sysctl -w net.core.bpf_jit_enable=1",
        ),
        Err(_) => line(
            Status::Warn,
            "bpf-jit",
            "cannot read net.core.bpf_jit_enable (it is only visible in the host network namespace)",
        ),
    }
}

fn btf() -> Line {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        line(Status::Ok, "btf", "/sys/kernel/btf/vmlinux")
    } else {
        line(
            Status::Warn,
            "btf",
            "no kernel BTF; linkmeter's programs do not need it",
        )
    }
}

fn tcx() -> Line {
    if kernel_has_tcx() {
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
    }
}

fn capabilities(has_cap_bpf: bool) -> Line {
    let Some(caps) = effective_caps() else {
        return line(
            Status::Warn,
            "capabilities",
            "cannot read CapEff from /proc/self/status",
        );
    };
    let needed: &[u32] = if has_cap_bpf {
        &[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]
    } else {
        &[CAP_SYS_ADMIN, CAP_NET_ADMIN]
    };
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
        return line(
            Status::Ok,
            "capabilities",
            format!("held: {}", held.join(" ")),
        );
    }
    let add = if has_cap_bpf {
        "BPF, NET_ADMIN, PERFMON"
    } else {
        "SYS_ADMIN, NET_ADMIN"
    };
    let held = if held.is_empty() {
        "none".to_owned()
    } else {
        held.join(" ")
    };
    line(
        Status::Degraded,
        "capabilities",
        format!(
            "{} missing (held: {held}): run as root or add capabilities {add}",
            missing.join(" ")
        ),
    )
}

fn bpffs() -> Line {
    let mounted = fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            let (_, target, fstype) = (f.next(), f.next(), f.next());
            target == Some("/sys/fs/bpf") && fstype == Some("bpf")
        });
    if mounted {
        line(Status::Ok, "bpffs", "mounted at /sys/fs/bpf")
    } else {
        line(
            Status::Warn,
            "bpffs",
            "not mounted at /sys/fs/bpf (only needed for pinning): mount -t bpf bpf /sys/fs/bpf",
        )
    }
}

fn ebpf_object() -> Line {
    match EbpfCounters::load(&LoadOptions {
        capacity: Capacity::new(1, 1).expect("within the bounds"),
        ..LoadOptions::default()
    }) {
        Ok(_) => line(
            Status::Ok,
            "ebpf-object",
            "the embedded TC programs load and pass the verifier",
        ),
        Err(err) => line(
            Status::Degraded,
            "ebpf-object",
            format!(
                "{}: interfaces without ethtool stats will use kernel link stats; run as root or add the capabilities above",
                Report(&err)
            ),
        ),
    }
}
