//! A small write-through cache of metadata clusters (L2 tables, refcount
//! blocks), evicting the least recently used. Writes go to the storage at
//! once, so the cache never decides write order.

use alloc::vec;
use alloc::vec::Vec;

use crate::{ImageError, Storage, StorageOffset};

struct Slot {
    offset: u64,
    bytes: Vec<u8>,
    last_use: u64,
}

/// Cached clusters keyed by host offset.
pub struct ClusterCache {
    slots: Vec<Slot>,
    capacity: usize,
    clock: u64,
}

impl ClusterCache {
    /// A cache of at most `capacity` clusters (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    fn slot_for<S: Storage>(
        &mut self,
        storage: &mut S,
        offset: u64,
        cluster_size: usize,
    ) -> Result<usize, ImageError> {
        self.clock += 1;
        if let Some(index) = self.slots.iter().position(|slot| slot.offset == offset) {
            if let Some(slot) = self.slots.get_mut(index) {
                slot.last_use = self.clock;
            }
            return Ok(index);
        }
        let mut bytes = vec![0u8; cluster_size];
        storage.read_at(StorageOffset(offset), &mut bytes)?;
        Ok(self.put(offset, bytes))
    }

    fn put(&mut self, offset: u64, bytes: Vec<u8>) -> usize {
        self.forget(offset);
        let slot = Slot {
            offset,
            bytes,
            last_use: self.clock,
        };
        if self.slots.len() < self.capacity {
            self.slots.push(slot);
            return self.slots.len() - 1;
        }
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, slot)| slot.last_use)
            .map_or(0, |(index, _)| index);
        if let Some(target) = self.slots.get_mut(oldest) {
            *target = slot;
        }
        oldest
    }

    /// The cluster at `offset`, read from `storage` on a miss.
    pub fn get<S: Storage>(
        &mut self,
        storage: &mut S,
        offset: u64,
        cluster_size: usize,
    ) -> Result<&mut [u8], ImageError> {
        let index = self.slot_for(storage, offset, cluster_size)?;
        Ok(self
            .slots
            .get_mut(index)
            .map_or(&mut [][..], |slot| &mut slot.bytes[..]))
    }

    /// Records the contents of a cluster just written.
    pub fn insert(&mut self, offset: u64, bytes: Vec<u8>) {
        self.clock += 1;
        self.put(offset, bytes);
    }

    /// Drops the cluster at `offset` (it was freed or rewritten elsewhere).
    pub fn forget(&mut self, offset: u64) {
        self.slots.retain(|slot| slot.offset != offset);
    }
}
