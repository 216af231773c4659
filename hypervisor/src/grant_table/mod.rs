//! Grant tables, version 1: how domains share pages (Xen's
//! `xen/common/grant_table.c` is the behavioural reference).
//!
//! Pure logic. Each domain owns a [`GrantTable`] (the frames it grants from,
//! plus the pin counts of its entries that other domains are using) and a
//! [`Maptrack`] (the mappings it holds of other domains' grants). Grant
//! entries live in hypervisor-owned frames that the guest also writes, so the
//! logic never holds them: it reads and updates them through
//! [`GrantEntryMemory`], one atomic 32-bit word at a time. The hypercall layer
//! ([`hypercall`]) reaches other domains, physmaps and page copies through
//! [`GrantHost`], which the hypervisor implements and tests fake.
//!
//! Ownership of a use: every pin taken on a granter's entry is released
//! exactly once, by the operation that took it (copy), by unmap, or by
//! [`release_mappings`] when the mapper dies. While an entry is pinned its
//! `GTF_reading` (and, for writable uses, `GTF_writing`) bit stays set, so a
//! well-behaved granter cannot revoke it, and [`GrantTable::is_frame_pinned`]
//! tells the hypervisor not to free or move the granted guest frame.

pub mod hypercall;
mod maptrack;
mod operations;
mod table;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod hypercall_tests;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;

use core::fmt;

use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::{GTF_READING, GTF_WRITING};

use crate::memory::{GuestPhysAddr, HostPhysAddr, PAGE_SIZE};

pub use hypercall::{
    CopyEnd, CopyPlan, GrantCaller, GrantHost, GrantOutcome, MAX_OPS_PER_CALL, grant_table_op,
};
pub use maptrack::{Mapping, Maptrack, MaptrackFull};
pub use operations::{
    CopyPin, MapAction, MapRequest, UnmapStep, begin_unmap, cancel_map, copy_fits, finish_unmap,
    map_grant, release_mappings, shared_frame_for_physmap,
};
pub use table::{ENTRY_UPDATE_ATTEMPTS, GrantTable, GrowError, MAX_PINS, NotPinned, PinPurpose};
pub use xenolith_abi::grant_table::{GrantHandle, GrantRef, GrantStatus};

/// Xen's default `gnttab_max_frames`: 64 frames, 32768 version-1 entries.
pub const DEFAULT_MAX_FRAMES: u32 = 64;
/// Default cap on one domain's mappings of others' grants. Xen's default is
/// 1024 maptrack *frames* (262144 handles); Xenolith caps handles directly
/// and keeps the cap small because every entry costs hypervisor heap. A
/// backend domain that maps many grants (Dom0) should be given more.
pub const DEFAULT_MAX_MAPTRACK_ENTRIES: u32 = 1024;
/// Frames a new table starts with (Xen's `INITIAL_NR_GRANT_FRAMES`).
pub const INITIAL_FRAMES: u32 = 1;
/// The only grant-table version Xenolith implements.
pub const VERSION: u32 = 1;

/// A guest frame number: a 4 KiB page of some domain's guest-physical space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestFrame(pub u64);

impl GuestFrame {
    /// The frame holding `address` (Xen ignores the offset bits too).
    pub const fn containing(address: GuestPhysAddr) -> Self {
        Self(address.0 / PAGE_SIZE)
    }

    /// The frame's first byte, or `None` if it does not fit in 64 bits.
    pub const fn address(self) -> Option<GuestPhysAddr> {
        match self.0.checked_mul(PAGE_SIZE) {
            Some(address) => Some(GuestPhysAddr(address)),
            None => None,
        }
    }
}

impl fmt::Debug for GuestFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestFrame({:#x})", self.0)
    }
}

/// Read-only or writable use of a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    ReadOnly,
    Writable,
}

impl Access {
    /// Whether the use may write the granted frame.
    pub const fn is_writable(self) -> bool {
        matches!(self, Self::Writable)
    }

    /// The GTF bits the hypervisor sets in the entry while such a use lasts.
    pub const fn in_use_flags(self) -> u16 {
        match self {
            Self::ReadOnly => GTF_READING,
            Self::Writable => GTF_READING | GTF_WRITING,
        }
    }
}

/// Limits fixed when a domain's grant table is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTableLimits {
    /// Most grant-table frames the domain may grow to (at least 1).
    pub max_frames: u32,
    /// Most simultaneous mappings the domain may hold of others' grants.
    pub max_maptrack_entries: u32,
}

impl Default for GrantTableLimits {
    fn default() -> Self {
        Self {
            max_frames: DEFAULT_MAX_FRAMES,
            max_maptrack_entries: DEFAULT_MAX_MAPTRACK_ENTRIES,
        }
    }
}

/// The first 32 bits of a version-1 grant entry: `flags` and `domid`,
/// which Xen always reads and updates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    pub flags: u16,
    /// The domain the grant is for.
    pub domid: DomainId,
}

impl EntryHeader {
    /// Splits the little-endian word at offset 0 of an entry.
    pub const fn from_raw(raw: u32) -> Self {
        Self {
            flags: raw as u16,
            domid: DomainId((raw >> 16) as u16),
        }
    }

    /// The word as it sits in memory.
    pub const fn to_raw(self) -> u32 {
        self.flags as u32 | (self.domid.0 as u32) << 16
    }
}

/// Atomic access to grant entries, which the granting guest changes
/// concurrently. Addresses are always 4-byte aligned and inside one of the
/// table's own frames (hypervisor-owned memory), never guest-chosen.
///
/// The hypervisor implements this over its direct map with `AtomicU32` and
/// `AtomicU16` (sequentially consistent, or acquire/release at least).
pub trait GrantEntryMemory {
    /// Atomically loads the 32-bit word at `address`.
    fn load(&self, address: HostPhysAddr) -> u32;

    /// Atomically replaces the word at `address` with `new` if it still holds
    /// `current` (`lock cmpxchg`); on failure returns the value found.
    fn compare_exchange(
        &mut self,
        address: HostPhysAddr,
        current: u32,
        new: u32,
    ) -> Result<(), u32>;

    /// Atomically clears `mask` in the 16-bit `flags` word at `address`
    /// (`lock and`), leaving the guest's concurrent changes to other bits.
    fn clear_flags(&mut self, address: HostPhysAddr, mask: u16);
}
