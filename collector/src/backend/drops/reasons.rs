//! Names of drop reasons, from the running kernel's BTF, never from a table compiled in:
//! `enum skb_drop_reason` without its `SKB_DROP_REASON_` prefix, lowercased (`no_socket`,
//! `netfilter_drop`). Reasons of a subsystem (the upper 16 bits, `SKB_DROP_REASON_SUBSYS_*`:
//! mac80211, openvswitch) are named by the subsystem's own enum (`enum ovs_drop_reason`, in
//! the module's BTF) or `subsys_<N>_<code>`; a core value the BTF does not name is its number.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use super::btf::{Btf, BtfError, Kind};

/// Where the subsystem number starts in a reason (`SKB_DROP_REASON_SUBSYS_SHIFT`, since 6.4).
pub(crate) const SUBSYS_SHIFT: u32 = 16;

/// The core enum.
const CORE_ENUM: &str = "skb_drop_reason";
/// Its prefix, removed from the names.
const PREFIX: &str = "SKB_DROP_REASON_";
/// Enumerators of the core enum that are not reasons.
const NOT_REASONS: [&str; 2] = ["SKB_DROP_REASON_MAX", "SKB_DROP_REASON_SUBSYS_MASK"];

/// The reason values that are not drops, and the names of the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReasonNames {
    /// `SKB_NOT_DROPPED_YET`.
    pub(crate) not_dropped: Option<u32>,
    /// `SKB_CONSUMED`.
    pub(crate) consumed: Option<u32>,
    names: HashMap<u32, String>,
}

impl ReasonNames {
    /// The names in vmlinux's BTF (`btf`) and in the modules' BTF (`modules`, split on it).
    ///
    /// # Errors
    ///
    /// [`BtfError::Missing`] when vmlinux has no `enum skb_drop_reason` (before Linux 5.17).
    pub(crate) fn read(btf: &Btf, modules: &[Btf]) -> Result<Self, BtfError> {
        let core = btf
            .find(Kind::Enum, CORE_ENUM)
            .or_else(|_| btf.find(Kind::Enum64, CORE_ENUM))?;
        let mut out = Self::default();
        for (name, value) in btf.enumerators(None, core) {
            let Ok(value) = u32::try_from(value) else {
                continue;
            };
            match name.as_str() {
                "SKB_NOT_DROPPED_YET" => out.not_dropped = Some(value),
                "SKB_CONSUMED" => out.consumed = Some(value),
                n if NOT_REASONS.contains(&n) => {}
                n => {
                    let short = n.strip_prefix(PREFIX).unwrap_or(n);
                    out.names.insert(value, short.to_ascii_lowercase());
                }
            }
        }
        // Subsystems' own enums: `enum <subsystem>_drop_reason`, in vmlinux or a module.
        let blobs = std::iter::once((btf, None)).chain(modules.iter().map(|m| (m, Some(btf))));
        for (blob, base) in blobs {
            for (id, name) in blob.named(base, Kind::Enum) {
                if !name.ends_with("_drop_reason") || name == CORE_ENUM {
                    continue;
                }
                for (enumerator, value) in blob.enumerators(base, id) {
                    if let Ok(value) = u32::try_from(value)
                        && value >> SUBSYS_SHIFT != 0
                    {
                        out.names
                            .entry(value)
                            .or_insert_with(|| enumerator.to_ascii_lowercase());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The label of reason `value`.
    pub(crate) fn name(&self, value: u32) -> String {
        if let Some(name) = self.names.get(&value) {
            return name.clone();
        }
        let subsystem = value >> SUBSYS_SHIFT;
        if subsystem == 0 {
            value.to_string()
        } else {
            format!("subsys_{subsystem}_{}", value & ((1 << SUBSYS_SHIFT) - 1))
        }
    }

    /// Every named reason, by value (for `check` and the docs).
    pub(crate) fn all(&self) -> BTreeMap<u32, &str> {
        self.names.iter().map(|(v, n)| (*v, n.as_str())).collect()
    }

    /// A table for tests: `names` by value, 0 and 1 not drops.
    #[cfg(test)]
    pub(crate) fn fixture(names: &[(u32, &str)]) -> Self {
        Self {
            not_dropped: Some(0),
            consumed: Some(1),
            names: names.iter().map(|(v, n)| (*v, (*n).to_owned())).collect(),
        }
    }
}

/// The modules' BTF under `dir` (`/sys/kernel/btf`), split on `vmlinux`; unreadable ones are
/// skipped (a module unloaded meanwhile).
pub(crate) fn module_btfs(dir: &Path, vmlinux: &Btf) -> Vec<Btf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != "vmlinux")
        .filter_map(|e| Btf::from_file(&e.path(), Some(vmlinux)).ok())
        .collect()
}
