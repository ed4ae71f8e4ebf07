//! Which interface has which slot of statistics and which directory position: kept by user
//! space (the kernel only reads the directory). Pure bookkeeping; `maps` writes the outcome to
//! the kernel.

use std::collections::{HashMap, VecDeque};

use collector_common::{DIRECTORY_PROBES, directory_position};

use super::error::MapReadError;

/// An interface's place in the maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Taken {
    /// Its slot of statistics.
    pub(super) slot: u32,
    /// Its directory position.
    pub(super) position: u32,
    /// The directory entry's flags ([`collector_common::SLOT_TUNNEL`], ...).
    pub(super) flags: u32,
    /// The attachment's generation ([`collector_common::Slot::generation`]).
    pub(super) generation: u16,
}

/// The slots and directory positions in use.
#[derive(Debug)]
pub(super) struct Slots {
    /// By ifindex.
    taken: HashMap<u32, Taken>,
    /// Free slots, the longest free first: a slot is reused as late as possible, so that a
    /// packet still being counted into it by a CPU when it was freed lands before it is zeroed.
    free: VecDeque<u32>,
    capacity: u32,
    /// The directory's size minus one.
    mask: u32,
}

impl Slots {
    /// `capacity` free slots, a directory of `mask + 1` positions.
    pub(super) fn new(capacity: u32, mask: u32) -> Self {
        Self {
            taken: HashMap::new(),
            free: (0..capacity).collect(),
            capacity,
            mask,
        }
    }

    /// The place of `ifindex`, when it has one.
    pub(super) fn get(&self, ifindex: u32) -> Option<Taken> {
        self.taken.get(&ifindex).copied()
    }

    /// Changes the flags of `ifindex`'s place; its place, if it has one.
    pub(super) fn reflag(&mut self, ifindex: u32, flags: u32) -> Option<Taken> {
        let taken = self.taken.get_mut(&ifindex)?;
        taken.flags = flags;
        Some(*taken)
    }

    /// The place `ifindex` would get: the longest-free slot and the first directory position
    /// the program probes for it that is free, with `flags` and `generation`. Nothing is taken
    /// until [`Slots::take`].
    ///
    /// # Errors
    ///
    /// [`MapReadError::Crowded`] when every probed position is taken, [`MapReadError::Full`]
    /// when every slot is.
    pub(super) fn next_for(
        &self,
        ifindex: u32,
        flags: u32,
        generation: u16,
    ) -> Result<Taken, MapReadError> {
        let position = (0..DIRECTORY_PROBES)
            .map(|probe| directory_position(ifindex, probe, self.mask))
            .find(|position| !self.taken.values().any(|t| t.position == *position))
            .ok_or(MapReadError::Crowded { ifindex })?;
        let slot = *self.free.front().ok_or(MapReadError::Full {
            capacity: self.capacity,
        })?;
        Ok(Taken {
            slot,
            position,
            flags,
            generation,
        })
    }

    /// Records `taken`, given by [`Slots::next_for`], as the place of `ifindex`.
    pub(super) fn take(&mut self, ifindex: u32, taken: Taken) {
        self.free.retain(|&slot| slot != taken.slot);
        self.taken.insert(ifindex, taken);
    }

    /// Takes over a directory entry an earlier daemon left at `position` (its slot, flags and
    /// generation in `entry`), when it can be ours:
    /// its slot is free and in range, the program probes `position` for `ifindex`, and
    /// `ifindex` has no place yet. Returns whether it was taken over.
    pub(super) fn adopt(&mut self, ifindex: u32, position: u32, entry: Taken) -> bool {
        let Taken { slot, .. } = entry;
        let probed = (0..DIRECTORY_PROBES)
            .any(|probe| directory_position(ifindex, probe, self.mask) == position);
        let Some(at) = self.free.iter().position(|&s| s == slot) else {
            return false;
        };
        if !probed || self.taken.contains_key(&ifindex) {
            return false;
        }
        self.free.remove(at);
        self.taken.insert(ifindex, Taken { position, ..entry });
        true
    }

    /// Frees the place of `ifindex`; the place it had.
    pub(super) fn release(&mut self, ifindex: u32) -> Option<Taken> {
        let taken = self.taken.remove(&ifindex)?;
        self.free.push_back(taken.slot);
        Some(taken)
    }

    /// Slots (used, free).
    pub(super) fn usage(&self) -> (u64, u64) {
        (self.taken.len() as u64, self.free.len() as u64)
    }

    /// The ifindexes that have a place.
    pub(super) fn slotted(&self) -> impl Iterator<Item = u32> + '_ {
        self.taken.keys().copied()
    }

    /// Whether an interface with any of `flags` has a place.
    pub(super) fn any_flagged(&self, flags: u32) -> bool {
        self.taken.values().any(|taken| taken.flags & flags != 0)
    }

    /// Whether `ifindex` has a place of `generation`: whether peers counted under that pair
    /// belong to an interface that still has its slot.
    pub(super) fn holds(&self, ifindex: u32, generation: u16) -> bool {
        self.taken
            .get(&ifindex)
            .is_some_and(|taken| taken.generation == generation)
    }

    /// How many interfaces have a place.
    pub(super) fn len(&self) -> usize {
        self.taken.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_is_given_out_last_and_positions_never_collide() {
        let mut slots = Slots::new(2, 63);
        let a = slots.next_for(5, 0, 1).expect("room");
        slots.take(5, a);
        let b = slots.next_for(6, 0, 2).expect("room");
        slots.take(6, b);
        assert_ne!(a.slot, b.slot);
        assert_ne!(a.position, b.position);
        assert!(matches!(
            slots.next_for(7, 0, 3),
            Err(MapReadError::Full { capacity: 2 })
        ));
        assert_eq!(slots.release(5), Some(a));
        assert_eq!(slots.usage(), (1, 1));
        assert_eq!(slots.next_for(7, 0, 3).expect("room").slot, a.slot);
    }

    #[test]
    fn only_entries_the_program_would_find_are_adopted() {
        let mut slots = Slots::new(4, 63);
        let position = directory_position(9, 0, 63);
        let entry = |slot| Taken {
            slot,
            position: 0,
            flags: 0,
            generation: 4,
        };
        assert!(
            !slots.adopt(9, (position + 20) & 63, entry(1)),
            "not probed there"
        );
        assert!(!slots.adopt(9, position, entry(7)), "slot out of range");
        assert!(slots.adopt(9, position, entry(1)));
        assert!(!slots.adopt(9, position, entry(2)), "ifindex placed twice");
        assert_eq!(
            slots.get(9).map(|t| (t.slot, t.position)),
            Some((1, position))
        );
        assert_eq!(slots.usage(), (1, 3));
        assert!(slots.holds(9, 4));
        assert!(!slots.holds(9, 5), "another generation");
        assert!(!slots.holds(8, 4), "another interface");
    }
}
