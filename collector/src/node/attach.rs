//! The node's eBPF attachments: attaching (with the one fallback when that fails) and the
//! breakdown some interfaces get besides their routed backend; checking that they are still in
//! place and re-attaching what someone else removed; releasing them. Each attach, detach and
//! check is kernel work the node starts and finishes when it answers (see `Done`).

use futures_util::FutureExt as _;
use tracing::{debug, info, warn};

use super::{Attachment, Done, Interface, Measure, Node};
use crate::{
    Report,
    backend::{
        ebpf::{AttachError, AttachedMode, AttachmentId, CheckReport, Hook, TcCounter},
        ethtool::EthtoolIo,
    },
    discovery::{Link, Links},
    policy::{self, Reason},
};

impl<I: EthtoolIo, E: TcCounter, L: Links + Clone + 'static> Node<I, E, L> {
    /// Starts attaching the eBPF counter to `link`; `None` when the backend is unavailable.
    pub(super) fn start_attach(&mut self, link: &Link) -> Option<Attachment> {
        self.ebpf.as_ref()?;
        if self.forgetting.contains(&link.ifindex) {
            // A new lifetime of an ifindex whose old one is still being detached: its counters
            // start from zero. The old hooks, detached first (the worker keeps the order), count
            // this device's packets into the new slot meanwhile.
            self.forget(link.ifindex, &link.name);
        }
        let ebpf = self.ebpf.as_mut()?;
        let id = AttachmentId(self.next_id);
        self.next_id += 1;
        let answer = ebpf.attach(id, link, self.settings.attach_mode);
        self.start(answer.map(move |result| Done::Attached { id, result }));
        Some(Attachment::pending(id))
    }

    /// The breakdown attachment of `interface`, started when the policy asks for one (another
    /// backend than eBPF measures it and it matches a `breakdown` pattern).
    pub(super) fn breakdown_for(&mut self, interface: &Interface) -> Option<Attachment> {
        let link = &interface.link;
        if self.ebpf.is_none()
            || !policy::wants_breakdown(
                &self.settings.policy,
                &link.name,
                link.kind.as_deref(),
                interface.measure.backend(),
            )
        {
            return None;
        }
        self.start_attach(link)
    }

    /// Puts an attach's answer into effect: a new interface joins the table, measured with
    /// eBPF or — when attaching failed — with kernel link stats and reason `ebpf_map_full` (no
    /// counter slot left) or `ebpf_attach_failed`; a breakdown that failed is left out; a
    /// re-attach that failed falls back the same way. The answer of an attachment whose
    /// interface left meanwhile is dropped: its detach was asked for when it left.
    pub(super) fn attached(
        &mut self,
        id: AttachmentId,
        result: Result<Option<AttachedMode>, AttachError>,
    ) {
        let holds = |i: &Interface| i.attachments().any(|a| a.id == id);
        if let Some(ifindex) = self
            .attaching
            .iter()
            .find_map(|(&ifindex, i)| holds(i).then_some(ifindex))
        {
            let Some(mut interface) = self.attaching.remove(&ifindex) else {
                return;
            };
            if !self.put_into_effect(&mut interface, id, result, false) {
                // A new interface whose attach failed (nothing stays attached): free the slot
                // it was given.
                self.forget(ifindex, &interface.link.name);
            }
            self.enter(interface);
        } else if let Some(ifindex) = self
            .interfaces
            .iter()
            .find_map(|(&ifindex, i)| holds(i).then_some(ifindex))
            && let Some(mut interface) = self.interfaces.remove(&ifindex)
        {
            let attached = self.put_into_effect(&mut interface, id, result, true);
            if attached {
                self.stats.reattach += 1;
                info!(interface = %interface.link.name, "re-attached the eBPF counter");
            } else {
                // Measured otherwise now: its slot goes to those that found the map full.
                self.forget(ifindex, &interface.link.name);
                self.wake_map_full();
            }
            self.interfaces.insert(ifindex, interface);
        }
    }

    /// Records on `interface` what the attach of `id` answered (`again`: a re-attach); on
    /// failure, the fallback. Whether it is attached.
    fn put_into_effect(
        &mut self,
        interface: &mut Interface,
        id: AttachmentId,
        result: Result<Option<AttachedMode>, AttachError>,
        again: bool,
    ) -> bool {
        let measured = matches!(&interface.measure, Measure::Ebpf(a) if a.id == id);
        match result {
            Ok(mode) => {
                if let Some(attachment) = interface.attachment_mut(id) {
                    attachment.pending = false;
                    attachment.mode = mode;
                }
                true
            }
            Err(err) => {
                self.stats.attach_failures += 1;
                let name = &interface.link.name;
                if measured {
                    warn!(interface = %name, again, error = %Report(&err),
                        "attaching the eBPF counter failed; using kernel link stats");
                    interface.reason = if err.is_map_full() {
                        Reason::EbpfMapFull
                    } else {
                        Reason::EbpfAttachFailed
                    };
                    interface.measure = Measure::Netdev;
                } else {
                    warn!(interface = %name, again, error = %Report(&err),
                        "attaching the eBPF counter for the traffic breakdown failed");
                    interface.breakdown = None;
                }
                false
            }
        }
    }

    /// Starts detaching what `interface` holds: its eBPF measure and its breakdown. With
    /// `then_forget`, its counters are freed once the detach has answered. Returns whether it
    /// held anything.
    pub(super) fn release(
        &mut self,
        interface: &Interface,
        doing: &'static str,
        then_forget: bool,
    ) -> bool {
        let ids: Vec<AttachmentId> = interface.attachments().map(|a| a.id).collect();
        let Some(ebpf) = self.ebpf.as_mut() else {
            return false;
        };
        let answers: Vec<_> = ids.into_iter().map(|id| ebpf.detach(id)).collect();
        let held = !answers.is_empty();
        let forget = then_forget.then_some(interface.link.ifindex);
        for answer in answers {
            let name = interface.link.name.clone();
            self.start(answer.map(move |result| Done::Detached {
                interface: name,
                doing,
                result,
                forget,
            }));
        }
        held
    }

    /// Frees the counters of `ifindex` now.
    pub(super) fn forget(&mut self, ifindex: u32, name: &str) {
        self.forgetting.remove(&ifindex);
        if let Some(ebpf) = self.ebpf.as_mut()
            && let Err(err) = ebpf.forget(ifindex)
        {
            warn!(interface = %name, error = %Report(&err), "freeing eBPF map entries");
        }
    }

    /// A detach answered for an interface whose counters wait for it to be freed: freed now,
    /// unless a new lifetime of its ifindex took them over meanwhile.
    pub(super) fn detached(&mut self, ifindex: u32, name: &str) {
        if self.forgetting.contains(&ifindex) {
            self.forget(ifindex, name);
        }
    }

    /// Starts checking that the attachments in the table are still in place (one check at a
    /// time); those someone removed are re-attached when it answers.
    pub(super) fn start_check(&mut self) {
        if self.checking {
            return;
        }
        let ids: Vec<AttachmentId> = self
            .interfaces
            .values()
            .flat_map(Interface::attachments)
            .filter(|a| !a.pending && a.mode.is_some())
            .map(|a| a.id)
            .collect();
        let Some(ebpf) = self.ebpf.as_mut().filter(|_| !ids.is_empty()) else {
            return;
        };
        self.checking = true;
        let answer = ebpf.check(ids);
        self.start(answer.map(Done::Checked));
    }

    /// Records where our programs stand on their hooks (said at WARN once per attachment when
    /// one had to be moved back to the head), and re-attaches the eBPF counter where someone
    /// removed it (Cilium's TCX migration deletes legacy filters; `tc filter del` or `bpftool
    /// link detach` remove ours).
    pub(super) fn checked(&mut self, report: &CheckReport) {
        self.checking = false;
        for &(id, placed) in &report.placed {
            let Some(interface) = self
                .interfaces
                .values_mut()
                .find(|i| i.attachments().any(|a| a.id == id))
            else {
                continue;
            };
            let name = interface.link.name.clone();
            let Some(held) = interface.attachment_mut(id) else {
                continue;
            };
            held.placed = Some(placed);
            for hook in Hook::ALL {
                let place = placed[hook.index()];
                if let Some(found) = place.moved_from {
                    self.stats.reanchor += 1;
                    if held.warned {
                        debug!(interface = %name, %hook, programs_before = found, ahead = place.ahead,
                            "moved linkmeter's program back to the head of the hook again");
                    } else {
                        held.warned = true;
                        warn!(interface = %name, %hook, programs_before = found, ahead = place.ahead,
                            "another program was placed before linkmeter's on the hook (a redirect, drop or chain end there would hide packets from its counts); moved it back to the head");
                    }
                } else if place.ahead > 0 && !held.warned {
                    held.warned = true;
                    warn!(interface = %name, %hook, programs_before = place.ahead,
                        "programs run before linkmeter's on the hook and cannot be passed (TCX programs run before every legacy tc filter: attach_mode auto uses TCX); what they redirect, drop or end is not counted");
                }
            }
        }
        for &id in &report.removed {
            let Some(ifindex) = self
                .interfaces
                .iter()
                .find_map(|(&ifindex, i)| i.attachments().any(|a| a.id == id).then_some(ifindex))
            else {
                continue;
            };
            self.reattach(ifindex, id);
        }
    }

    /// Replaces the attachment `id` of interface `ifindex`, which someone removed, by a new one.
    fn reattach(&mut self, ifindex: u32, id: AttachmentId) {
        let Some(link) = self.interfaces.get(&ifindex).map(|i| i.link.clone()) else {
            return;
        };
        warn!(interface = %link.name,
            "eBPF counter was removed from the interface by someone else; re-attaching");
        // Release what is left of ours before attaching again (the worker keeps the order).
        if let Some(ebpf) = self.ebpf.as_mut() {
            let answer = ebpf.detach(id);
            let name = link.name.clone();
            self.start(answer.map(move |result| Done::Detached {
                interface: name,
                doing: "releasing the removed attachment",
                result,
                forget: None,
            }));
        }
        let Some(new) = self.start_attach(&link) else {
            return;
        };
        if let Some(held) = self
            .interfaces
            .get_mut(&ifindex)
            .and_then(|i| i.attachment_mut(id))
        {
            // Shown with the mechanism it had until the new attach answers.
            *held = Attachment {
                mode: held.mode,
                ..new
            };
        }
    }
}
