//! A pinned map is reused only when it is exactly the map this build would create: its type,
//! key size, value size, entries and flags. The loader otherwise opens whatever is pinned at a
//! map's path, and user space reads each value into a buffer sized for this build's type: a
//! pinned map with larger values (a foreign map, a build whose layout differs under the same
//! version) would have the kernel write past that buffer. A mismatch is an upgrade case: every
//! pin of the directory is replaced, said once.

use std::{collections::BTreeMap, fmt, path::Path};

use aya::maps::MapInfo;

use super::pin::{MAP_FILES, PinDir};

/// What the kernel says of a map, as compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// A pinned map that is not what this build creates.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Mismatch {
    /// Its file in the pin directory.
    pub(super) file: &'static str,
    /// What is pinned (`None`: not a map this process can read).
    pub(super) found: Option<Shape>,
    /// What this build creates.
    pub(super) wanted: Shape,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            Some(found) => write!(
                f,
                "{}: pinned {found}, this build creates {}",
                self.file, self.wanted
            ),
            None => write!(
                f,
                "{}: not a readable BPF map, this build creates {}",
                self.file, self.wanted
            ),
        }
    }
}

/// The shapes of the maps of `object`, by object map name, with the entries the loader sets
/// (`entries`: map name → max entries; others as compiled). `None` when the object cannot be
/// parsed (the loader reports that).
pub(super) fn expected(object: &[u8], entries: &[(&str, u32)]) -> Option<BTreeMap<String, Shape>> {
    let parsed = aya_obj::Object::parse(object).ok()?;
    Some(
        parsed
            .maps
            .iter()
            .map(|(name, map)| {
                let max_entries = entries
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(map.max_entries(), |(_, e)| *e);
                let shape = Shape {
                    map_type: map.map_type(),
                    key_size: map.key_size(),
                    value_size: map.value_size(),
                    max_entries,
                    flags: map.map_flags(),
                };
                (name.clone(), shape)
            })
            .collect(),
    )
}

/// What is pinned at `path`, if it is a map.
fn pinned(path: &Path) -> Option<Shape> {
    let info = MapInfo::from_pin(path).ok()?;
    let map_type = info.map_type().ok().map(|t| t as u32)?;
    Some(Shape {
        map_type,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// The first map pinned in `pins` that differs from `expected`; maps not pinned yet are fine.
pub(super) fn mismatch(pins: &PinDir, expected: &BTreeMap<String, Shape>) -> Option<Mismatch> {
    MAP_FILES.iter().find_map(|(map, file)| {
        let wanted = *expected.get(*map)?;
        let path = pins.map(file);
        if !path.exists() {
            return None;
        }
        let found = pinned(&path);
        (found != Some(wanted)).then_some(Mismatch {
            file,
            found,
            wanted,
        })
    })
}
