//! The routing policy: which backend measures an interface, and why. A pure function of the
//! interface's facts, the configuration, eBPF availability and (lazily) the ethtool probe.
//!
//! In order: configured excludes → `none`; an include list that does not name it → `none`;
//! the first matching override → that backend; otherwise the ethtool probe (made once per
//! interface lifetime): driver statistics → `ethtool`, `EOPNOTSUPP` or zero statistics →
//! `ebpf`, any other errno → `netdev`. An `ebpf` decision falls back to `netdev` (reason
//! `ebpf_unavailable`) when eBPF cannot be loaded.

use std::fmt;

use crate::{backend::ethtool::Probe, filter::Pattern};

/// A statistics backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Backend {
    /// ethtool driver statistics (packets/bytes from kernel link stats, plus raw driver stats).
    Ethtool,
    /// The eBPF TC counter.
    Ebpf,
    /// Kernel link statistics only.
    Netdev,
    /// Not monitored.
    None,
}

impl Backend {
    /// All backends, in label order.
    pub(crate) const ALL: [Self; 4] = [Self::Ethtool, Self::Ebpf, Self::Netdev, Self::None];

    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Ethtool => "ethtool",
            Self::Ebpf => "ebpf",
            Self::Netdev => "netdev",
            Self::None => "none",
        }
    }

    /// Parses a label value.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an interface got its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// Matched an exclude pattern.
    Excluded,
    /// An include list is configured and does not match.
    NotIncluded,
    /// Matched an override.
    Override,
    /// The driver exports ethtool statistics.
    EthtoolStats,
    /// ethtool answered `EOPNOTSUPP`.
    EthtoolUnsupported,
    /// The driver answers ethtool but has zero statistics.
    EthtoolNoStats,
    /// ethtool failed with another errno.
    EthtoolError,
    /// eBPF was wanted but cannot be loaded on this node.
    EbpfUnavailable,
    /// eBPF was wanted but attaching to this interface failed.
    EbpfAttachFailed,
    /// eBPF was wanted but every counter slot is taken (`max_interfaces`); tried again at
    /// each resync.
    EbpfMapFull,
}

impl Reason {
    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Excluded => "excluded",
            Self::NotIncluded => "not_included",
            Self::Override => "override",
            Self::EthtoolStats => "ethtool_stats",
            Self::EthtoolUnsupported => "ethtool_unsupported",
            Self::EthtoolNoStats => "ethtool_no_stats",
            Self::EthtoolError => "ethtool_error",
            Self::EbpfUnavailable => "ebpf_unavailable",
            Self::EbpfAttachFailed => "ebpf_attach_failed",
            Self::EbpfMapFull => "ebpf_map_full",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routing decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The backend.
    pub(crate) backend: Backend,
    /// Why.
    pub(crate) reason: Reason,
}

impl Route {
    pub(crate) const fn new(backend: Backend, reason: Reason) -> Self {
        Self { backend, reason }
    }
}

/// The configured part of the policy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Policy {
    /// Interfaces to monitor; empty means all.
    pub(crate) include: Vec<Pattern>,
    /// Interfaces never monitored (checked first).
    pub(crate) exclude: Vec<Pattern>,
    /// Forced backends, first match wins.
    pub(crate) overrides: Vec<(Pattern, Backend)>,
    /// Interfaces that get the eBPF counter besides another routed backend.
    pub(crate) breakdown: Vec<Pattern>,
    /// Interfaces whose raw driver statistics are exported (`linkmeter_ethtool_stat`).
    pub(crate) ethtool_stats: Vec<Pattern>,
}

/// Whether the raw driver statistics of an ethtool-routed interface are exported.
pub(crate) fn exports_ethtool_stats(policy: &Policy, name: &str, kind: Option<&str>) -> bool {
    policy.ethtool_stats.iter().any(|p| p.matches(name, kind))
}

/// Whether an interface routed to `backend` also gets the eBPF counter for the traffic
/// breakdown: it is monitored by another backend than eBPF and matches a `breakdown` pattern.
pub(crate) fn wants_breakdown(
    policy: &Policy,
    name: &str,
    kind: Option<&str>,
    backend: Backend,
) -> bool {
    matches!(backend, Backend::Ethtool | Backend::Netdev)
        && policy.breakdown.iter().any(|p| p.matches(name, kind))
}

/// Routes one interface. `probe` is called only when the decision needs it.
pub(crate) fn route<'p>(
    policy: &Policy,
    name: &str,
    kind: Option<&str>,
    ebpf_available: bool,
    probe: impl FnOnce() -> &'p Probe,
) -> Route {
    if policy.exclude.iter().any(|p| p.matches(name, kind)) {
        return Route::new(Backend::None, Reason::Excluded);
    }
    if !policy.include.is_empty() && !policy.include.iter().any(|p| p.matches(name, kind)) {
        return Route::new(Backend::None, Reason::NotIncluded);
    }
    let wanted =
        if let Some((_, backend)) = policy.overrides.iter().find(|(p, _)| p.matches(name, kind)) {
            Route::new(*backend, Reason::Override)
        } else {
            match probe() {
                Probe::Stats { .. } => Route::new(Backend::Ethtool, Reason::EthtoolStats),
                Probe::NoStats { .. } => Route::new(Backend::Ebpf, Reason::EthtoolNoStats),
                Probe::Unsupported { .. } => Route::new(Backend::Ebpf, Reason::EthtoolUnsupported),
                Probe::Failed { .. } => Route::new(Backend::Netdev, Reason::EthtoolError),
            }
        };
    if wanted.backend == Backend::Ebpf && !ebpf_available {
        return Route::new(Backend::Netdev, Reason::EbpfUnavailable);
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            include: Vec::new(),
            exclude: vec!["lo".parse().expect("pattern")],
            overrides: vec![
                ("kind:bridge".parse().expect("pattern"), Backend::Netdev),
                ("/^cilium_geneve$/".parse().expect("pattern"), Backend::Ebpf),
            ],
            breakdown: Vec::new(),
            ethtool_stats: vec!["kind:".parse().expect("pattern")],
        }
    }

    #[test]
    fn raw_driver_stats_are_for_device_backed_interfaces_by_default() {
        let p = policy();
        assert!(exports_ethtool_stats(&p, "eth0", None));
        assert!(!exports_ethtool_stats(&p, "lxc1", Some("veth")));
        assert!(!exports_ethtool_stats(&p, "cilium_host", Some("veth")));
    }

    fn stats() -> Probe {
        Probe::Stats {
            driver: "veth".into(),
            names: vec!["peer_ifindex".into()],
        }
    }

    #[test]
    fn routing_table() {
        let unsupported = || Probe::Unsupported {
            errno: libc::EOPNOTSUPP,
        };
        let no_stats = || Probe::NoStats {
            driver: "vxlan".into(),
        };
        let failed = || Probe::Failed { errno: libc::EPERM };
        type Case = (
            &'static str,
            Option<&'static str>,
            bool,
            fn() -> Probe,
            Backend,
            Reason,
        );
        let table: &[Case] = &[
            (
                "lo",
                None,
                true,
                unsupported,
                Backend::None,
                Reason::Excluded,
            ),
            (
                "eth0",
                None,
                true,
                stats,
                Backend::Ethtool,
                Reason::EthtoolStats,
            ),
            (
                "lxc12ab",
                Some("veth"),
                true,
                stats,
                Backend::Ethtool,
                Reason::EthtoolStats,
            ),
            (
                "cilium_vxlan",
                Some("vxlan"),
                true,
                unsupported,
                Backend::Ebpf,
                Reason::EthtoolUnsupported,
            ),
            (
                "cilium_vxlan",
                Some("vxlan"),
                false,
                unsupported,
                Backend::Netdev,
                Reason::EbpfUnavailable,
            ),
            (
                "vx0",
                Some("vxlan"),
                true,
                no_stats,
                Backend::Ebpf,
                Reason::EthtoolNoStats,
            ),
            (
                "br0",
                Some("bridge"),
                true,
                no_stats,
                Backend::Netdev,
                Reason::Override,
            ),
            (
                "cilium_geneve",
                Some("geneve"),
                true,
                stats,
                Backend::Ebpf,
                Reason::Override,
            ),
            (
                "cilium_geneve",
                Some("geneve"),
                false,
                stats,
                Backend::Netdev,
                Reason::EbpfUnavailable,
            ),
            (
                "weird0",
                None,
                true,
                failed,
                Backend::Netdev,
                Reason::EthtoolError,
            ),
        ];
        for &(name, kind, ebpf, probe, backend, reason) in table {
            let answer = probe();
            assert_eq!(
                route(&policy(), name, kind, ebpf, || &answer),
                Route { backend, reason },
                "{name} ({kind:?}), ebpf available: {ebpf}"
            );
        }
    }

    #[test]
    fn excluded_and_overridden_interfaces_are_never_probed() {
        let never = || -> &Probe { panic!("probed") };
        assert_eq!(
            route(&policy(), "lo", None, true, never).backend,
            Backend::None
        );
        assert_eq!(
            route(&policy(), "br0", Some("bridge"), true, never).backend,
            Backend::Netdev
        );
    }

    #[test]
    fn breakdown_is_added_only_to_interfaces_measured_by_another_backend() {
        let p = Policy {
            breakdown: vec!["eth*".parse().expect("pattern")],
            ..policy()
        };
        assert!(wants_breakdown(&p, "eth0", None, Backend::Ethtool));
        assert!(wants_breakdown(&p, "eth1", None, Backend::Netdev));
        assert!(
            !wants_breakdown(&p, "eth2", None, Backend::Ebpf),
            "has it already"
        );
        assert!(
            !wants_breakdown(&p, "eth3", None, Backend::None),
            "not monitored"
        );
        assert!(!wants_breakdown(&p, "lxc1", Some("veth"), Backend::Ethtool));
    }

    #[test]
    fn include_list_limits_monitoring() {
        let p = Policy {
            include: vec!["eth*".parse().expect("pattern")],
            ..policy()
        };
        let stats = stats();
        assert_eq!(
            route(&p, "eth1", None, true, || &stats).backend,
            Backend::Ethtool
        );
        assert_eq!(
            route(&p, "lxc1", Some("veth"), true, || &stats),
            Route {
                backend: Backend::None,
                reason: Reason::NotIncluded
            }
        );
    }
}
