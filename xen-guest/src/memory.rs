//! `memory_op` (hypercall 12): mapping shared_info and grant frames into
//! the physmap, the memory map, and giving frames back or repopulating
//! them (the balloon).

use crate::error::XenError;
use crate::raw::{self, FrameSlot, GuestHandle};
use crate::types::{DomainId, GuestFrame};

pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMEM_MEMORY_MAP: u64 = 9;

/// Most frames one [`populate_physmap`]/[`decrease_reservation`] passes.
pub const EXTENTS_MAX: usize = 16;

/// What `XENMEM_add_to_physmap` maps (`XENMAPSPACE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpace(pub u32);

impl MapSpace {
    /// The shared_info page (index must be 0).
    pub const SHARED_INFO: Self = Self(0);
    /// Grant-table frame `index` (bit 31: a v2 status frame).
    pub const GRANT_TABLE: Self = Self(1);
    /// Another frame of this guest.
    pub const GMFN: Self = Self(2);
}

/// `struct xen_add_to_physmap` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddToPhysmap {
    domid: u16,
    size: u16,
    space: u32,
    index: u64,
    gpfn: u64,
}

impl AddToPhysmap {
    /// Maps `space`/`index` of the calling domain at guest frame `gfn`.
    pub fn at(space: MapSpace, index: u64, gfn: GuestFrame) -> Self {
        Self {
            domid: DomainId::SELF.0,
            size: 0,
            space: space.0,
            index,
            gpfn: gfn.0,
        }
    }

    /// Maps `space`/`index` of the calling domain at `slot`'s frame.
    pub fn new(space: MapSpace, index: u64, slot: &FrameSlot) -> Self {
        Self {
            domid: DomainId::SELF.0,
            size: 0,
            space: space.0,
            index,
            gpfn: slot.frame().0,
        }
    }
}

/// `struct xen_memory_reservation` (32 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct MemoryReservation<'a> {
    extent_start: GuestHandle<'a, GuestFrame>,
    nr_extents: u64,
    extent_order: u32,
    mem_flags: u32,
    domid: u16,
}

impl<'a> MemoryReservation<'a> {
    /// Single pages (order 0) of the calling domain at `frames`, which
    /// the caller filled from [`FrameSlot`]s.
    fn pages(frames: &'a mut [GuestFrame]) -> Self {
        Self {
            nr_extents: frames.len() as u64,
            extent_start: GuestHandle::from_mut_slice(frames),
            extent_order: 0,
            mem_flags: 0,
            domid: DomainId::SELF.0,
        }
    }
}

/// `struct xen_memory_map` (16 bytes): capacity in, entries written out.
#[repr(C)]
#[derive(Debug)]
pub struct MemoryMapArgument<'a> {
    nr_entries: u32,
    _pad: u32,
    buffer: GuestHandle<'a, E820Entry>,
}

/// One packed e820 entry as `XENMEM_memory_map` writes it (20 bytes).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    address: u64,
    size: u64,
    kind: u32,
}

impl E820Entry {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;

    pub const fn new(address: u64, size: u64, kind: u32) -> Self {
        Self {
            address,
            size,
            kind,
        }
    }

    pub const fn address(&self) -> u64 {
        self.address
    }

    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The e820 type (1 RAM, 2 reserved, ...).
    pub const fn kind(&self) -> u32 {
        self.kind
    }

    /// One past the last byte, saturating.
    pub const fn end(&self) -> u64 {
        self.address.saturating_add(self.size)
    }
}

/// `domid_t`, the argument of the reservation queries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainIdArgument {
    pub domid: u16,
}

const _: () = assert!(core::mem::size_of::<AddToPhysmap>() == 24);
const _: () = assert!(core::mem::size_of::<MemoryReservation<'static>>() == 32);
const _: () = assert!(core::mem::size_of::<MemoryMapArgument<'static>>() == 16);
const _: () = assert!(core::mem::size_of::<E820Entry>() == 20);
const _: () = assert!(core::mem::size_of::<DomainIdArgument>() == 2);

/// `XENMEM_add_to_physmap` at a bare guest frame, for probing the
/// hypervisor's limits with frames the program never touches. Whatever
/// the guest had at `gfn` is replaced, so pass only frames the program
/// does not use (beyond its RAM): placing one over memory in use would
/// pull that memory from under the program.
pub fn add_to_physmap_at(space: MapSpace, index: u64, gfn: GuestFrame) -> Result<(), XenError> {
    let mut argument = AddToPhysmap::at(space, index, gfn);
    XenError::check(raw::call(&raw::ADD_TO_PHYSMAP, &mut argument)).map(drop)
}

/// `XENMEM_add_to_physmap`: puts `space`/`index` at `slot`'s frame
/// (whatever was there, RAM included, is replaced).
pub fn add_to_physmap(space: MapSpace, index: u64, slot: &FrameSlot) -> Result<(), XenError> {
    let mut argument = AddToPhysmap::new(space, index, slot);
    XenError::check(raw::call(&raw::ADD_TO_PHYSMAP, &mut argument)).map(drop)
}

/// `XENMEM_memory_map`: fills `entries`, returns how many were written.
pub fn memory_map(entries: &mut [E820Entry]) -> Result<usize, XenError> {
    let mut argument = MemoryMapArgument {
        nr_entries: entries.len().min(u32::MAX as usize) as u32,
        _pad: 0,
        buffer: GuestHandle::from_mut_slice(entries),
    };
    XenError::check(raw::call(&raw::MEMORY_MAP, &mut argument))?;
    Ok((argument.nr_entries as usize).min(entries.len()))
}

fn reservation(
    command: &raw::Command<MemoryReservation<'static>>,
    slots: &[FrameSlot],
) -> Result<u64, XenError> {
    let mut done = 0;
    for chunk in slots.chunks(EXTENTS_MAX) {
        let mut frames = [GuestFrame(0); EXTENTS_MAX];
        for (frame, slot) in frames.iter_mut().zip(chunk) {
            *frame = slot.frame();
        }
        let mut argument = MemoryReservation::pages(&mut frames[..chunk.len()]);
        let count = XenError::check(raw::call(command, &mut argument))?;
        done += count;
        if count < chunk.len() as u64 {
            break;
        }
    }
    Ok(done)
}

/// `XENMEM_populate_physmap` (order 0): backs the slots' frames with new
/// pages; returns how many were populated.
pub fn populate_physmap(slots: &[FrameSlot]) -> Result<u64, XenError> {
    reservation(&raw::POPULATE_PHYSMAP, slots)
}

/// `XENMEM_decrease_reservation` (order 0): gives the slots' pages back;
/// returns how many were released. Do not touch them until repopulated.
pub fn decrease_reservation(slots: &[FrameSlot]) -> Result<u64, XenError> {
    reservation(&raw::DECREASE_RESERVATION, slots)
}

/// `XENMEM_current_reservation`: pages `domain` holds.
pub fn current_reservation(domain: DomainId) -> Result<u64, XenError> {
    let mut argument = DomainIdArgument { domid: domain.0 };
    XenError::check(raw::call(&raw::CURRENT_RESERVATION, &mut argument))
}

/// `XENMEM_maximum_reservation`: the most pages `domain` may hold.
pub fn maximum_reservation(domain: DomainId) -> Result<u64, XenError> {
    let mut argument = DomainIdArgument { domid: domain.0 };
    XenError::check(raw::call(&raw::MAXIMUM_RESERVATION, &mut argument))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_xen() {
        assert_eq!(offset_of!(AddToPhysmap, domid), 0);
        assert_eq!(offset_of!(AddToPhysmap, size), 2);
        assert_eq!(offset_of!(AddToPhysmap, space), 4);
        assert_eq!(offset_of!(AddToPhysmap, index), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        assert_eq!(offset_of!(MemoryReservation<'static>, extent_start), 0);
        assert_eq!(offset_of!(MemoryReservation<'static>, nr_extents), 8);
        assert_eq!(offset_of!(MemoryReservation<'static>, extent_order), 16);
        assert_eq!(offset_of!(MemoryReservation<'static>, mem_flags), 20);
        assert_eq!(offset_of!(MemoryReservation<'static>, domid), 24);
        assert_eq!(offset_of!(MemoryMapArgument<'static>, nr_entries), 0);
        assert_eq!(offset_of!(MemoryMapArgument<'static>, buffer), 8);
        assert_eq!(offset_of!(E820Entry, size), 8);
        assert_eq!(offset_of!(E820Entry, kind), 16);
    }

    #[test]
    fn reservation_counts_its_frames() {
        let mut frames = [GuestFrame(5), GuestFrame(6)];
        let argument = MemoryReservation::pages(&mut frames);
        assert_eq!(argument.nr_extents, 2);
        assert_eq!(argument.extent_order, 0);
        assert_eq!(argument.domid, DomainId::SELF.0);
    }

    #[test]
    fn e820_entry_reads_packed_fields() {
        let entry = E820Entry::new(0x10_0000, 0x20_0000, E820Entry::RAM);
        assert_eq!(entry.end(), 0x30_0000);
        assert_eq!(entry.kind(), 1);
        assert_eq!(E820Entry::new(u64::MAX, 2, 1).end(), u64::MAX);
    }
}
