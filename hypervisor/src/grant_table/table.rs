//! One domain's grant table as a granter: the frames its entries live in,
//! and the pin counts of entries other domains (or itself) are using —
//! Xen's "active entries".

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::grant_table::{
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_SUB_PAGE, GTF_TYPE_MASK, GTF_WRITING,
    GrantRef, GrantStatus, entry_v1,
};

use super::{Access, EntryHeader, GrantEntryMemory, GrantTableLimits, GuestFrame, VERSION};
use crate::memory::HostPhysAddr;

/// Most uses of one kind (read-only or writable) on one entry at once, like
/// Xen's 8-bit pin counters; one more is refused.
pub const MAX_PINS: u8 = u8::MAX;
/// Compare-exchange attempts on a grant entry before it is declared unstable
/// (the guest keeps changing it) and the use refused.
pub const ENTRY_UPDATE_ATTEMPTS: u32 = 5;
/// Largest frame count whose entries still number in a `u32`.
const FRAME_LIMIT: u32 = u32::MAX / entry_v1::PER_FRAME;

/// What a pin is for; mapping is stricter than copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinPurpose {
    /// A mapping into the user's physmap: sub-page grants are refused.
    Map,
    /// A transient `copy`.
    Copy,
}

/// Why a table could not grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError {
    /// More frames asked for than the domain's limit.
    BeyondMaximum { requested: u32, maximum: u32 },
    /// Fewer new frames supplied than the growth needs.
    MissingFrames { needed: u32, supplied: usize },
}

impl fmt::Display for GrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BeyondMaximum { requested, maximum } => write!(
                f,
                "{requested} grant-table frames requested, the limit is {maximum}"
            ),
            Self::MissingFrames { needed, supplied } => write!(
                f,
                "grant-table growth needs {needed} frames, {supplied} supplied"
            ),
        }
    }
}

/// An unpin found no matching pin: the caller's bookkeeping is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPinned {
    pub gref: GrantRef,
    pub access: Access,
}

/// Pins on one entry that is in use.
#[derive(Clone, Copy, Debug)]
struct ActiveEntry {
    /// The only domain that may add uses while any remain.
    user: DomainId,
    /// The granter's frame, read from the entry when the first use began.
    frame: GuestFrame,
    read_pins: u8,
    write_pins: u8,
}

impl ActiveEntry {
    fn pins(&self, access: Access) -> u8 {
        match access {
            Access::ReadOnly => self.read_pins,
            Access::Writable => self.write_pins,
        }
    }

    fn pins_mut(&mut self, access: Access) -> &mut u8 {
        match access {
            Access::ReadOnly => &mut self.read_pins,
            Access::Writable => &mut self.write_pins,
        }
    }
}

/// A domain's grant table (version 1).
#[derive(Debug)]
pub struct GrantTable {
    /// Hypervisor-owned, zeroed when supplied; index `i` is what the guest
    /// maps with `XENMEM_add_to_physmap` (grant_table space, idx `i`).
    frames: Vec<HostPhysAddr>,
    max_frames: u32,
    active: BTreeMap<GrantRef, ActiveEntry>,
    /// Active entries per granted frame, so freeing can be refused cheaply.
    pinned_frames: BTreeMap<GuestFrame, u32>,
    dying: bool,
}

impl GrantTable {
    /// A table of [`super::INITIAL_FRAMES`] frame: `first_frame`, which the
    /// caller allocated and zeroed.
    pub fn new(limits: &GrantTableLimits, first_frame: HostPhysAddr) -> Self {
        Self {
            frames: vec![first_frame],
            max_frames: limits.max_frames.clamp(1, FRAME_LIMIT),
            active: BTreeMap::new(),
            pinned_frames: BTreeMap::new(),
            dying: false,
        }
    }

    /// The table's version (always 1).
    pub const fn version(&self) -> u32 {
        VERSION
    }

    /// `GNTTABOP_set_version`: 1 is accepted; 2 is refused with `ENOSYS`
    /// as Xen does for a domain limited to version 1; anything else `EINVAL`.
    pub fn set_version(&mut self, requested: u32) -> Result<(), Errno> {
        match requested {
            VERSION => Ok(()),
            2 => Err(Errno::ENOSYS),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Frames the table has now.
    pub fn frame_count(&self) -> u32 {
        // At most `max_frames`, which fits.
        self.frames.len() as u32
    }

    /// Most frames the table may grow to.
    pub const fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Grant references `0..entry_count()` are valid.
    pub fn entry_count(&self) -> u32 {
        self.frame_count() * entry_v1::PER_FRAME
    }

    /// All frames, in index order.
    pub fn frames(&self) -> &[HostPhysAddr] {
        &self.frames
    }

    /// Frame `index`, if the table has grown that far.
    pub fn frame(&self, index: u32) -> Option<HostPhysAddr> {
        self.frames.get(index as usize).copied()
    }

    /// How many new frames the caller must allocate (and zero) so the table
    /// has `target` frames; 0 if it already has.
    pub fn frames_needed(&self, target: u32) -> Result<u32, GrowError> {
        if target > self.max_frames {
            return Err(GrowError::BeyondMaximum {
                requested: target,
                maximum: self.max_frames,
            });
        }
        Ok(target.saturating_sub(self.frame_count()))
    }

    /// Grows the table to `target` frames from the front of `new_frames`
    /// (zeroed, hypervisor-owned). Returns how many it kept; the caller
    /// frees the rest (another CPU may have grown the table meanwhile).
    pub fn grow(&mut self, target: u32, new_frames: &[HostPhysAddr]) -> Result<usize, GrowError> {
        let needed = self.frames_needed(target)?;
        let Some(taken) = new_frames.get(..needed as usize) else {
            return Err(GrowError::MissingFrames {
                needed,
                supplied: new_frames.len(),
            });
        };
        self.frames.extend_from_slice(taken);
        Ok(taken.len())
    }

    /// Where entry `gref` lives, if it is inside the table.
    pub fn entry_address(&self, gref: GrantRef) -> Option<HostPhysAddr> {
        let frame = self.frames.get((gref.0 / entry_v1::PER_FRAME) as usize)?;
        let offset = u64::from(gref.0 % entry_v1::PER_FRAME) * entry_v1::SIZE as u64;
        frame.checked_add(offset)
    }

    /// Starts a use of entry `gref` by domain `user` and returns the
    /// granter's frame it names. Follows Xen's `_set_status_v1`: on the
    /// first use the entry must be `permit_access` for `user` (and, to map,
    /// not sub-page); a writable use needs the entry not `GTF_readonly`;
    /// `GTF_reading` (and `GTF_writing`) are set with a bounded
    /// compare-exchange loop.
    pub fn pin(
        &mut self,
        memory: &mut impl GrantEntryMemory,
        gref: GrantRef,
        user: DomainId,
        access: Access,
        purpose: PinPurpose,
    ) -> Result<GuestFrame, GrantStatus> {
        if self.dying {
            return Err(match purpose {
                PinPurpose::Map => GrantStatus::GeneralError,
                PinPurpose::Copy => GrantStatus::BadDomain,
            });
        }
        let address = self.entry_address(gref).ok_or(GrantStatus::BadGntref)?;
        let existing = self.active.get(&gref).copied();
        if let Some(active) = existing
            && (active.user != user || active.pins(access) == MAX_PINS)
        {
            return Err(GrantStatus::GeneralError);
        }
        let already_in_use = existing.is_some();
        let needs_flags = match existing {
            None => true,
            Some(active) => access.is_writable() && active.write_pins == 0,
        };
        if needs_flags {
            set_in_use(memory, address, already_in_use, user, access, purpose)?;
        }
        let mut active = match existing {
            Some(active) => active,
            None => {
                // The entry is ours now; a well-behaved guest no longer
                // changes its frame, so read it once.
                let frame = address
                    .checked_add(entry_v1::FRAME as u64)
                    .map_or(0, |frame_address| memory.load(frame_address));
                let frame = GuestFrame(u64::from(frame));
                *self.pinned_frames.entry(frame).or_insert(0) += 1;
                ActiveEntry {
                    user,
                    frame,
                    read_pins: 0,
                    write_pins: 0,
                }
            }
        };
        *active.pins_mut(access) += 1;
        self.active.insert(gref, active);
        Ok(active.frame)
    }

    /// Ends one use begun by [`Self::pin`]. Clears `GTF_writing` when the
    /// last writable use ends and `GTF_reading` when the last use ends.
    pub fn unpin(
        &mut self,
        memory: &mut impl GrantEntryMemory,
        gref: GrantRef,
        access: Access,
    ) -> Result<(), NotPinned> {
        let not_pinned = NotPinned { gref, access };
        let active = self.active.get_mut(&gref).ok_or(not_pinned)?;
        let pins = active.pins_mut(access);
        *pins = pins.checked_sub(1).ok_or(not_pinned)?;
        let mut clear = 0;
        if access.is_writable() && active.write_pins == 0 {
            clear |= GTF_WRITING;
        }
        if active.read_pins == 0 && active.write_pins == 0 {
            clear |= GTF_READING;
            let frame = active.frame;
            self.active.remove(&gref);
            if let Some(count) = self.pinned_frames.get_mut(&frame) {
                *count -= 1;
                if *count == 0 {
                    self.pinned_frames.remove(&frame);
                }
            }
        }
        if clear != 0
            && let Some(address) = self.entry_address(gref)
        {
            memory.clear_flags(address, clear);
        }
        Ok(())
    }

    /// Read-only and writable uses of `gref` now, if any.
    pub fn pin_counts(&self, gref: GrantRef) -> Option<(u8, u8)> {
        self.active
            .get(&gref)
            .map(|active| (active.read_pins, active.write_pins))
    }

    /// The domain using `gref`, if any.
    pub fn user_of(&self, gref: GrantRef) -> Option<DomainId> {
        self.active.get(&gref).map(|active| active.user)
    }

    /// Whether some use of a grant names this frame of the granter: the
    /// hypervisor must not free, balloon out or remap it while true.
    pub fn is_frame_pinned(&self, frame: GuestFrame) -> bool {
        self.pinned_frames.contains_key(&frame)
    }

    /// The granter's frames in use through grants, each once.
    pub fn pinned_frames(&self) -> impl Iterator<Item = GuestFrame> + '_ {
        self.pinned_frames.keys().copied()
    }

    /// Entries in use now.
    pub fn pinned_entries(&self) -> usize {
        self.active.len()
    }

    /// Whether any entry is in use (the domain's memory must then outlive it).
    pub fn has_pins(&self) -> bool {
        !self.active.is_empty()
    }

    /// The domain is being destroyed: refuse new uses; existing ones may
    /// still end.
    pub fn set_dying(&mut self) {
        self.dying = true;
    }

    /// Whether [`Self::set_dying`] was called.
    pub const fn is_dying(&self) -> bool {
        self.dying
    }

    /// Gives back the table's frames for freeing, or the table itself while
    /// other domains still use its entries.
    pub fn into_frames(self) -> Result<Vec<HostPhysAddr>, Self> {
        if self.has_pins() {
            return Err(self);
        }
        Ok(self.frames)
    }
}

/// Sets the in-use flags of the entry at `address` for a new use.
/// `already_in_use`: the entry's type and domain were checked by an earlier
/// use that is still live, so only the read-only check remains (Xen skips
/// the rest too).
fn set_in_use(
    memory: &mut impl GrantEntryMemory,
    address: HostPhysAddr,
    already_in_use: bool,
    user: DomainId,
    access: Access,
    purpose: PinPurpose,
) -> Result<(), GrantStatus> {
    let type_mask = match purpose {
        PinPurpose::Map => GTF_TYPE_MASK | GTF_SUB_PAGE,
        PinPurpose::Copy => GTF_TYPE_MASK,
    };
    let mut current = memory.load(address);
    for _ in 0..ENTRY_UPDATE_ATTEMPTS {
        let header = EntryHeader::from_raw(current);
        if !already_in_use
            && (header.flags & type_mask != GTF_PERMIT_ACCESS || header.domid != user)
        {
            return Err(GrantStatus::GeneralError);
        }
        if access.is_writable() && header.flags & GTF_READONLY != 0 {
            return Err(GrantStatus::GeneralError);
        }
        let new = EntryHeader {
            flags: header.flags | access.in_use_flags(),
            ..header
        };
        match memory.compare_exchange(address, current, new.to_raw()) {
            Ok(()) => return Ok(()),
            Err(found) => current = found,
        }
    }
    Err(GrantStatus::GeneralError)
}
