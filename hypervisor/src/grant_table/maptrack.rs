//! One domain's maptrack: the grants of other domains (or its own) it has
//! mapped into its physmap, indexed by the handle `map_grant_ref` returned.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::{GrantHandle, GrantRef};

use super::{Access, GuestFrame};

/// One live mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub granter: DomainId,
    pub gref: GrantRef,
    pub access: Access,
    /// Where it sits in the mapper's physmap (`host_addr` of the map).
    pub mapper_frame: GuestFrame,
    /// The granter's frame it shows.
    pub granter_frame: GuestFrame,
}

/// Every handle is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaptrackFull;

/// Handle-indexed mappings with a fixed cap. Slots are allocated as they
/// are first needed, so memory follows use, not the cap.
#[derive(Debug)]
pub struct Maptrack {
    slots: Vec<Option<Mapping>>,
    /// Free handles, oldest first: reusing the longest-free handle makes a
    /// guest's stale handle less likely to hit a fresh mapping.
    free: VecDeque<u32>,
    in_use: usize,
    max_entries: u32,
}

impl Maptrack {
    /// An empty maptrack allowing `max_entries` simultaneous mappings.
    pub const fn new(max_entries: u32) -> Self {
        Self {
            slots: Vec::new(),
            free: VecDeque::new(),
            in_use: 0,
            max_entries,
        }
    }

    /// Most simultaneous mappings.
    pub const fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Mappings held now.
    pub const fn len(&self) -> usize {
        self.in_use
    }

    /// Whether no mapping is held.
    pub const fn is_empty(&self) -> bool {
        self.in_use == 0
    }

    /// Whether [`Self::insert`] would fail.
    pub fn is_full(&self) -> bool {
        self.free.is_empty() && self.slots.len() >= self.max_entries as usize
    }

    /// Records `mapping` under a new handle.
    pub fn insert(&mut self, mapping: Mapping) -> Result<GrantHandle, MaptrackFull> {
        let index = match self.free.pop_front() {
            Some(index) => index,
            None => {
                if self.slots.len() >= self.max_entries as usize {
                    return Err(MaptrackFull);
                }
                // Below `max_entries`, so it fits in a u32.
                let index = self.slots.len() as u32;
                self.slots.push(None);
                index
            }
        };
        if let Some(slot) = self.slots.get_mut(index as usize) {
            *slot = Some(mapping);
        }
        self.in_use += 1;
        Ok(GrantHandle(index))
    }

    /// The mapping behind `handle`, if it is live.
    pub fn get(&self, handle: GrantHandle) -> Option<&Mapping> {
        self.slots.get(handle.0 as usize)?.as_ref()
    }

    /// Forgets `handle`'s mapping and returns it; the caller still owes the
    /// granter the unpin.
    pub fn remove(&mut self, handle: GrantHandle) -> Option<Mapping> {
        let mapping = self.slots.get_mut(handle.0 as usize)?.take()?;
        self.free.push_back(handle.0);
        self.in_use -= 1;
        Some(mapping)
    }

    /// Live mappings with their handles.
    pub fn iter(&self) -> impl Iterator<Item = (GrantHandle, &Mapping)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            // Indices stay below `max_entries`, a u32.
            slot.as_ref()
                .map(|mapping| (GrantHandle(index as u32), mapping))
        })
    }

    /// Forgets every mapping and returns them (the mapper is going away).
    pub fn take_all(&mut self) -> Vec<Mapping> {
        let mappings = self.slots.drain(..).flatten().collect();
        self.free.clear();
        self.in_use = 0;
        mappings
    }
}
