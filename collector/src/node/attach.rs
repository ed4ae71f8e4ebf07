//! The node's eBPF attachments: attaching, with the one fallback (in `Node::measure`) and the
//! breakdown that some interfaces get besides their routed backend; re-attaching what someone
//! else removed; releasing on removal and shutdown.

use tracing::{debug, warn};

use super::{Interface, Measure, Node};
use crate::{
    Report,
    backend::{
        ebpf::{AttachError, Attachment as _, TcCounter},
        ethtool::EthtoolIo,
    },
    discovery::{Link, Links},
    policy::{self, Backend, Reason, Route},
};

impl<I: EthtoolIo, E: TcCounter, L: Links> Node<I, E, L> {
    /// Attaches the eBPF counter to `link`; a failure is counted
    /// (`linkmeter_ebpf_attach_failures_total`) and returned for the caller to log.
    pub(super) fn try_attach(&mut self, link: &Link) -> Result<E::Attachment, AttachError> {
        // The policy routes to eBPF, and asks for a breakdown, only where the backend exists.
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Err(AttachError::NoSuchInterface {
                interface: link.name.clone(),
            });
        };
        ebpf.attach(link, self.attach_mode).inspect_err(|_| {
            self.stats.attach_failures += 1;
        })
    }

    /// The breakdown attachment of an interface measured by `backend` for `reason`, when the
    /// policy asks for one. A failure leaves the interface with its backend alone; an interface
    /// that fell back because attaching just failed is not tried (and counted) twice.
    pub(super) fn breakdown_for(
        &mut self,
        link: &Link,
        backend: Backend,
        reason: Reason,
    ) -> Option<E::Attachment> {
        if self.ebpf.is_none()
            || matches!(reason, Reason::EbpfAttachFailed | Reason::EbpfMapFull)
            || !policy::wants_breakdown(&self.policy, &link.name, link.kind.as_deref(), backend)
        {
            return None;
        }
        self.try_attach(link)
            .inspect_err(|err| {
                warn!(interface = %link.name, error = %Report(err),
                    "attaching the eBPF counter for the traffic breakdown failed");
            })
            .ok()
    }

    /// Detaches what `interface` holds: its eBPF measure and its breakdown.
    pub(super) fn release(&mut self, interface: Interface<E::Attachment>, doing: &str) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        let attachments = [
            match interface.measure {
                Measure::Ebpf(attachment) => Some(attachment),
                _ => None,
            },
            interface.breakdown,
        ];
        for attachment in attachments.into_iter().flatten() {
            if let Err(err) = ebpf.detach(attachment) {
                warn!(interface = %interface.link.name, error = %Report(&err), "{doing}");
            }
        }
    }

    /// Detaches every eBPF attachment and forgets every interface (on shutdown).
    pub(crate) fn detach_all(&mut self) {
        for interface in std::mem::take(&mut self.interfaces).into_values() {
            self.release(interface, "detaching on shutdown");
        }
    }

    /// Re-attaches the eBPF counter where someone removed it; returns how many were re-attached.
    pub(super) fn repair(&mut self) -> u64 {
        let Some(ebpf) = self.ebpf.as_ref() else {
            return 0;
        };
        let broken: Vec<u32> = self
            .interfaces
            .iter()
            .filter(|(_, i)| {
                let routed = matches!(&i.measure, Measure::Ebpf(a) if !ebpf.is_intact(a));
                routed || i.breakdown.as_ref().is_some_and(|a| !ebpf.is_intact(a))
            })
            .map(|(&ifindex, _)| ifindex)
            .collect();
        let mut repaired = 0;
        for ifindex in broken {
            repaired += u64::from(self.reattach(ifindex));
        }
        self.stats.reattach += repaired;
        repaired
    }

    /// Re-attaches the eBPF counter of one interface; whether it is attached again.
    fn reattach(&mut self, ifindex: u32) -> bool {
        let Some(interface) = self.interfaces.get_mut(&ifindex) else {
            return false;
        };
        let (link, reason) = (interface.link.clone(), interface.reason);
        let routed = matches!(interface.measure, Measure::Ebpf(_));
        let old = if routed {
            match std::mem::replace(&mut interface.measure, Measure::Netdev) {
                Measure::Ebpf(old) => Some(old),
                _ => None,
            }
        } else {
            interface.breakdown.take()
        };
        if let (Some(old), Some(ebpf)) = (old, self.ebpf.as_mut()) {
            warn!(interface = %link.name, mode = ?old.mode(),
                "eBPF counter was removed from the interface by someone else; re-attaching");
            // Release what is left of ours before attaching again.
            if let Err(err) = ebpf.detach(old) {
                debug!(interface = %link.name, error = %Report(&err), "releasing the removed attachment");
            }
        }
        if routed {
            let (measure, reason) =
                self.measure(&link, Route::new(Backend::Ebpf, reason), Vec::new());
            let attached = matches!(measure, Measure::Ebpf(_));
            if let Some(interface) = self.interfaces.get_mut(&ifindex) {
                interface.measure = measure;
                interface.reason = reason;
            }
            attached
        } else {
            let (backend, reason) = self
                .interfaces
                .get(&ifindex)
                .map_or((Backend::None, reason), |i| (i.measure.backend(), i.reason));
            let breakdown = self.breakdown_for(&link, backend, reason);
            let attached = breakdown.is_some();
            if let Some(interface) = self.interfaces.get_mut(&ifindex) {
                interface.breakdown = breakdown;
            }
            attached
        }
    }
}
