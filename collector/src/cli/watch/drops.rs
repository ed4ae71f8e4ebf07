//! `watch`'s section of drops by kernel drop reason: packets since start and per second.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::metrics::Snapshot;

/// Drops per (interface, reason) at the last frame, for the rates.
#[derive(Debug, Default)]
pub(super) struct DropRates {
    first: BTreeMap<(String, String), u64>,
    last: BTreeMap<(String, String), u64>,
}

fn drops(snapshot: &Snapshot) -> BTreeMap<(String, String), u64> {
    snapshot
        .drops
        .iter()
        .map(|d| ((d.interface.clone(), d.reason.clone()), d.packets))
        .collect()
}

impl DropRates {
    /// Starting from `snapshot`.
    pub(super) fn new(snapshot: &Snapshot) -> Self {
        let now = drops(snapshot);
        Self {
            first: now.clone(),
            last: now,
        }
    }

    /// The section for `snapshot` (nothing while no drop was seen), rates over `seconds`.
    pub(super) fn render(&mut self, out: &mut String, snapshot: &Snapshot, seconds: f64) {
        let now = drops(snapshot);
        if now.is_empty() {
            self.last = now;
            return;
        }
        let _ = writeln!(
            out,
            "\nDROPS BY KERNEL DROP REASON\n{:<16} {:<32} {:>12} {:>10}",
            "INTERFACE", "REASON", "PACKETS", "PPS"
        );
        for (key, packets) in &now {
            let first = *self.first.entry(key.clone()).or_insert(0);
            let before = self.last.get(key).copied().unwrap_or(first);
            let _ = writeln!(
                out,
                "{:<16} {:<32} {:>12} {:>10.0}",
                key.0,
                key.1,
                packets.wrapping_sub(first),
                packets.wrapping_sub(before) as f64 / seconds
            );
        }
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::DropSnapshot;

    fn with(packets: u64) -> Snapshot {
        Snapshot {
            drops: vec![DropSnapshot {
                interface: "eth0".into(),
                reason: "no_socket".into(),
                packets,
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn drops_are_counted_since_start_with_their_rate() {
        let mut rates = DropRates::new(&with(100));
        let mut out = String::new();
        rates.render(&mut out, &with(150), 2.0);
        assert!(out.contains("DROPS BY KERNEL DROP REASON"), "{out}");
        let row = out.lines().last().expect("a row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["eth0", "no_socket", "50", "25"]);
        // A reason first seen after the start counts from zero.
        let mut later = with(150);
        later.drops.push(DropSnapshot {
            interface: "eth0".into(),
            reason: "netfilter_drop".into(),
            packets: 4,
        });
        let mut out = String::new();
        rates.render(&mut out, &later, 1.0);
        assert!(
            out.contains("netfilter_drop                              4          4"),
            "{out}"
        );
        let mut out = String::new();
        DropRates::new(&Snapshot::default()).render(&mut out, &Snapshot::default(), 1.0);
        assert!(out.is_empty());
    }
}
