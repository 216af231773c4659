//! `grant_table_op` (hypercall 20), version 1: sizing and versioning the
//! table, mapping, unmapping and copying grants, and a view of one of our
//! own grant-table frames for granting and revoking access. Defined here
//! because `xenolith_abi` has no grant-table module yet.

use core::sync::atomic::{Ordering, fence};

use crate::error::{GrantError, GrantStatus, XenError};
use crate::raw::{self, FrameSlot, GuestHandle};
use crate::types::{DomainId, GrantHandle, GrantRef, GuestFrame};

pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
pub const GNTTABOP_COPY: u64 = 5;
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GNTTABOP_SET_VERSION: u64 = 8;
pub const GNTTABOP_GET_VERSION: u64 = 10;

/// Map flags (`GNTMAP_*`); HVM/PVH callers may use only host_map and
/// readonly.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// Grant entry flags (`GTF_*`).
pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the grant is mapped or read.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the grant is mapped writable.
pub const GTF_WRITING: u16 = 1 << 4;

/// Copy flags (`GNTCOPY_*`): which side names a grant reference.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// v1 entries in one 4 KiB frame.
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Entries 0..8 belong to the toolstack (0 console, 1 xenstore).
pub const RESERVED_ENTRIES: u32 = 8;

/// `struct grant_entry_v1` (8 bytes), as it sits in a grant frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: u16,
    pub frame: u32,
}

const ENTRY_FLAGS: usize = core::mem::offset_of!(GrantEntryV1, flags);
const ENTRY_DOMID: usize = core::mem::offset_of!(GrantEntryV1, domid);
const ENTRY_FRAME: usize = core::mem::offset_of!(GrantEntryV1, frame);
const ENTRY_SIZE: usize = core::mem::size_of::<GrantEntryV1>();

/// `struct gnttab_map_grant_ref` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapGrantRef {
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
    status: i16,
    handle: u32,
    dev_bus_addr: u64,
}

impl MapGrantRef {
    /// Maps `dom`'s grant `gref` at `slot`'s guest-physical address.
    pub fn new(slot: &FrameSlot, gref: GrantRef, dom: DomainId, readonly: bool) -> Self {
        let flags = GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 };
        Self::with_flags(slot, gref, dom, flags)
    }

    /// As [`MapGrantRef::new`] with raw `GNTMAP_*` flags (the hypervisor
    /// must refuse the PV-only ones for an HVM/PVH caller).
    pub fn with_flags(slot: &FrameSlot, gref: GrantRef, dom: DomainId, flags: u32) -> Self {
        Self {
            host_addr: slot.guest_physical().0,
            flags,
            gref: gref.0,
            dom: dom.0,
            status: 0,
            handle: 0,
            dev_bus_addr: 0,
        }
    }

    pub const fn status(&self) -> GrantStatus {
        GrantStatus(self.status)
    }

    pub const fn handle(&self) -> GrantHandle {
        GrantHandle(self.handle)
    }
}

/// `struct gnttab_unmap_grant_ref` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapGrantRef {
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
    status: i16,
}

impl UnmapGrantRef {
    /// Unmaps the grant `handle` mapped at `slot`.
    pub fn new(slot: &FrameSlot, handle: GrantHandle) -> Self {
        Self {
            host_addr: slot.guest_physical().0,
            dev_bus_addr: 0,
            handle: handle.0,
            status: 0,
        }
    }

    pub const fn status(&self) -> GrantStatus {
        GrantStatus(self.status)
    }
}

/// `struct gnttab_setup_table` (24 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct SetupTable<'a> {
    dom: u16,
    _pad: u16,
    nr_frames: u32,
    status: i16,
    _pad2: [u8; 6],
    frame_list: GuestHandle<'a, GuestFrame>,
}

/// One side of a copy, as the hypervisor reads it (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyPointer {
    /// `u.ref` (low 32 bits) or `u.gmfn`.
    reference_or_frame: u64,
    domid: u16,
    offset: u16,
}

/// One side of a copy, as the caller names it.
#[derive(Clone, Copy, Debug)]
pub enum CopyEnd {
    /// A frame of this guest (`domid` must be DOMID_SELF for Xen to
    /// accept it).
    Frame {
        slot: FrameSlot,
        domid: DomainId,
        offset: u16,
    },
    /// Grant `gref` of `domid`.
    Grant {
        gref: GrantRef,
        domid: DomainId,
        offset: u16,
    },
}

impl CopyEnd {
    /// A frame of this guest, named as Xen wants (DOMID_SELF).
    pub fn own(slot: FrameSlot, offset: u16) -> Self {
        Self::Frame {
            slot,
            domid: DomainId::SELF,
            offset,
        }
    }

    fn encode(self) -> (CopyPointer, bool) {
        match self {
            Self::Frame {
                slot,
                domid,
                offset,
            } => (
                CopyPointer {
                    reference_or_frame: slot.frame().0,
                    domid: domid.0,
                    offset,
                },
                false,
            ),
            Self::Grant {
                gref,
                domid,
                offset,
            } => (
                CopyPointer {
                    reference_or_frame: u64::from(gref.0),
                    domid: domid.0,
                    offset,
                },
                true,
            ),
        }
    }
}

/// `struct gnttab_copy` (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantCopy {
    source: CopyPointer,
    dest: CopyPointer,
    len: u16,
    flags: u16,
    status: i16,
}

impl GrantCopy {
    /// Copies `length` bytes from `source` to `dest`; the hypervisor checks
    /// that both ranges stay within their page.
    pub fn new(source: CopyEnd, dest: CopyEnd, length: u16) -> Self {
        let (source, source_is_grant) = source.encode();
        let (dest, dest_is_grant) = dest.encode();
        let mut flags = 0;
        if source_is_grant {
            flags |= GNTCOPY_SOURCE_GREF;
        }
        if dest_is_grant {
            flags |= GNTCOPY_DEST_GREF;
        }
        Self {
            source,
            dest,
            len: length,
            flags,
            status: 0,
        }
    }

    pub const fn status(&self) -> GrantStatus {
        GrantStatus(self.status)
    }
}

/// `struct gnttab_query_size` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuerySize {
    pub dom: u16,
    pub _pad: u16,
    pub nr_frames: u32,
    pub max_nr_frames: u32,
    pub status: i16,
}

/// `struct gnttab_set_version` (4 bytes; the version in effect comes back).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetVersion {
    pub version: u32,
}

/// `struct gnttab_get_version` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetVersion {
    pub dom: u16,
    pub _pad: u16,
    pub version: u32,
}

const _: () = assert!(ENTRY_SIZE == 8);
const _: () = assert!(core::mem::size_of::<MapGrantRef>() == 32);
const _: () = assert!(core::mem::size_of::<UnmapGrantRef>() == 24);
const _: () = assert!(core::mem::size_of::<SetupTable<'static>>() == 24);
const _: () = assert!(core::mem::size_of::<CopyPointer>() == 16);
const _: () = assert!(core::mem::size_of::<GrantCopy>() == 40);
const _: () = assert!(core::mem::size_of::<QuerySize>() == 16);
const _: () = assert!(core::mem::size_of::<SetVersion>() == 4);
const _: () = assert!(core::mem::size_of::<GetVersion>() == 8);

/// `GNTTABOP_query_size`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize {
    pub frames: u32,
    pub max_frames: u32,
}

/// `GNTTABOP_query_size` for `dom`.
pub fn query_size(dom: DomainId) -> Result<TableSize, GrantError> {
    let mut argument = QuerySize {
        dom: dom.0,
        ..QuerySize::default()
    };
    XenError::check(raw::call_with_array(
        &raw::QUERY_SIZE,
        core::slice::from_mut(&mut argument),
    ))?;
    GrantStatus(argument.status).check()?;
    Ok(TableSize {
        frames: argument.nr_frames,
        max_frames: argument.max_nr_frames,
    })
}

/// `GNTTABOP_setup_table`: grows `dom`'s table to `frames.len()` frames
/// and fills `frames` with where they are (GFNs for a translated guest).
pub fn setup_table(dom: DomainId, frames: &mut [GuestFrame]) -> Result<(), GrantError> {
    let mut argument = SetupTable {
        dom: dom.0,
        _pad: 0,
        nr_frames: frames.len().min(u32::MAX as usize) as u32,
        status: 0,
        _pad2: [0; 6],
        frame_list: GuestHandle::from_mut_slice(frames),
    };
    XenError::check(raw::call_with_array(
        &raw::SETUP_TABLE,
        core::slice::from_mut(&mut argument),
    ))?;
    GrantStatus(argument.status).check()?;
    Ok(())
}

/// `GNTTABOP_set_version`; returns the version in effect.
pub fn set_version(version: u32) -> Result<u32, XenError> {
    let mut argument = SetVersion { version };
    XenError::check(raw::call_with_array(
        &raw::SET_VERSION,
        core::slice::from_mut(&mut argument),
    ))?;
    Ok(argument.version)
}

/// `GNTTABOP_get_version` of `dom`.
pub fn get_version(dom: DomainId) -> Result<u32, XenError> {
    let mut argument = GetVersion {
        dom: dom.0,
        ..GetVersion::default()
    };
    XenError::check(raw::call_with_array(
        &raw::GET_VERSION,
        core::slice::from_mut(&mut argument),
    ))?;
    Ok(argument.version)
}

/// `GNTTABOP_map_grant_ref` on a batch; check each element's status.
pub fn map_grant_refs(operations: &mut [MapGrantRef]) -> Result<(), XenError> {
    XenError::check(raw::call_with_array(&raw::MAP_GRANT_REF, operations)).map(drop)
}

/// Maps one grant at `slot`; returns the handle for [`unmap_grant`].
pub fn map_grant(
    slot: &FrameSlot,
    gref: GrantRef,
    dom: DomainId,
    readonly: bool,
) -> Result<GrantHandle, GrantError> {
    let mut operation = MapGrantRef::new(slot, gref, dom, readonly);
    map_grant_refs(core::slice::from_mut(&mut operation))?;
    operation.status().check()?;
    Ok(operation.handle())
}

/// `GNTTABOP_unmap_grant_ref` on a batch; check each element's status.
pub fn unmap_grant_refs(operations: &mut [UnmapGrantRef]) -> Result<(), XenError> {
    XenError::check(raw::call_with_array(&raw::UNMAP_GRANT_REF, operations)).map(drop)
}

/// Unmaps the grant `handle` mapped at `slot`.
pub fn unmap_grant(slot: &FrameSlot, handle: GrantHandle) -> Result<(), GrantError> {
    let mut operation = UnmapGrantRef::new(slot, handle);
    unmap_grant_refs(core::slice::from_mut(&mut operation))?;
    operation.status().check()?;
    Ok(())
}

/// `GNTTABOP_copy` on a batch; check each element's status.
pub fn copy(operations: &mut [GrantCopy]) -> Result<(), XenError> {
    XenError::check(raw::call_with_array(&raw::GRANT_COPY, operations)).map(drop)
}

/// One copy.
pub fn copy_one(source: CopyEnd, dest: CopyEnd, length: u16) -> Result<(), GrantError> {
    let mut operation = GrantCopy::new(source, dest, length);
    copy(core::slice::from_mut(&mut operation))?;
    operation.status().check()?;
    Ok(())
}

/// Why access to a grant could not be revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndAccessError {
    /// The reference is not in this frame.
    OutOfRange,
    /// The peer still has it mapped or is copying (flags as read).
    InUse(u16),
}

/// Frame `index` of this guest's own v1 grant table, mapped at a slot
/// with `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`.
#[derive(Clone, Copy, Debug)]
pub struct GrantTableFrame {
    slot: FrameSlot,
    first: u32,
}

impl GrantTableFrame {
    pub fn new(slot: FrameSlot, index: u32) -> Self {
        Self {
            slot,
            first: index.saturating_mul(ENTRIES_PER_FRAME),
        }
    }

    /// The grant references this frame holds.
    pub fn references(&self) -> core::ops::Range<u32> {
        self.first..self.first.saturating_add(ENTRIES_PER_FRAME)
    }

    fn offset(&self, gref: GrantRef) -> Option<usize> {
        let index = gref.0.checked_sub(self.first)?;
        (index < ENTRIES_PER_FRAME).then_some(index as usize * ENTRY_SIZE)
    }

    /// Lets `domid` use `frame` through `gref` (domid and frame first,
    /// then the flags, as Linux does). False if `gref` is not in this
    /// frame or `frame` does not fit the v1 entry.
    pub fn grant_access(
        &self,
        gref: GrantRef,
        domid: DomainId,
        frame: GuestFrame,
        readonly: bool,
    ) -> bool {
        let (Some(offset), Ok(frame)) = (self.offset(gref), u32::try_from(frame.0)) else {
            return false;
        };
        let Some(flags) = self.slot.atomic_u16(offset + ENTRY_FLAGS) else {
            return false;
        };
        self.slot.store(offset + ENTRY_DOMID, domid.0);
        self.slot.store(offset + ENTRY_FRAME, frame);
        fence(Ordering::Release);
        let readonly = if readonly { GTF_READONLY } else { 0 };
        flags.store(GTF_PERMIT_ACCESS | readonly, Ordering::Release);
        true
    }

    /// The entry as it is now.
    pub fn entry(&self, gref: GrantRef) -> Option<GrantEntryV1> {
        let offset = self.offset(gref)?;
        Some(GrantEntryV1 {
            flags: self
                .slot
                .atomic_u16(offset + ENTRY_FLAGS)?
                .load(Ordering::Acquire),
            domid: self.slot.load(offset + ENTRY_DOMID)?,
            frame: self.slot.load(offset + ENTRY_FRAME)?,
        })
    }

    /// Revokes `gref` unless it is mapped or being copied.
    pub fn end_access(&self, gref: GrantRef) -> Result<(), EndAccessError> {
        let flags = self
            .offset(gref)
            .and_then(|offset| self.slot.atomic_u16(offset + ENTRY_FLAGS))
            .ok_or(EndAccessError::OutOfRange)?;
        let mut current = flags.load(Ordering::Acquire);
        // The hypervisor only ever sets reading/writing; a lost race just
        // means one more look, and a bounded one.
        for _ in 0..16 {
            if current & (GTF_READING | GTF_WRITING) != 0 {
                return Err(EndAccessError::InUse(current));
            }
            match flags.compare_exchange(current, GTF_INVALID, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => current = now,
            }
        }
        Err(EndAccessError::InUse(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_xen() {
        assert_eq!(offset_of!(MapGrantRef, host_addr), 0);
        assert_eq!(offset_of!(MapGrantRef, flags), 8);
        assert_eq!(offset_of!(MapGrantRef, gref), 12);
        assert_eq!(offset_of!(MapGrantRef, dom), 16);
        assert_eq!(offset_of!(MapGrantRef, status), 18);
        assert_eq!(offset_of!(MapGrantRef, handle), 20);
        assert_eq!(offset_of!(MapGrantRef, dev_bus_addr), 24);
        assert_eq!(offset_of!(UnmapGrantRef, dev_bus_addr), 8);
        assert_eq!(offset_of!(UnmapGrantRef, handle), 16);
        assert_eq!(offset_of!(UnmapGrantRef, status), 20);
        assert_eq!(offset_of!(SetupTable<'static>, nr_frames), 4);
        assert_eq!(offset_of!(SetupTable<'static>, status), 8);
        assert_eq!(offset_of!(SetupTable<'static>, frame_list), 16);
        assert_eq!(offset_of!(CopyPointer, domid), 8);
        assert_eq!(offset_of!(CopyPointer, offset), 10);
        assert_eq!(offset_of!(GrantCopy, dest), 16);
        assert_eq!(offset_of!(GrantCopy, len), 32);
        assert_eq!(offset_of!(GrantCopy, flags), 34);
        assert_eq!(offset_of!(GrantCopy, status), 36);
        assert_eq!(offset_of!(QuerySize, nr_frames), 4);
        assert_eq!(offset_of!(QuerySize, max_nr_frames), 8);
        assert_eq!(offset_of!(QuerySize, status), 12);
        assert_eq!(offset_of!(GetVersion, version), 4);
        assert_eq!((ENTRY_FLAGS, ENTRY_DOMID, ENTRY_FRAME), (0, 2, 4));
    }

    #[test]
    fn copy_flags_follow_the_ends() {
        let grant = |gref| CopyEnd::Grant {
            gref: GrantRef(gref),
            domid: DomainId(3),
            offset: 16,
        };
        let copy = GrantCopy::new(grant(9), grant(10), 64);
        assert_eq!(copy.flags, GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF);
        assert_eq!(copy.source.reference_or_frame, 9);
        assert_eq!(copy.dest.offset, 16);
        assert_eq!(copy.len, 64);
    }

    #[test]
    fn own_entries_are_granted_and_revoked() {
        let slot = crate::raw::test_page();
        let frame = GrantTableFrame::new(slot, 0);
        assert!(frame.grant_access(GrantRef(8), DomainId(5), GuestFrame(0x1f0), false));
        assert_eq!(
            frame.entry(GrantRef(8)),
            Some(GrantEntryV1 {
                flags: GTF_PERMIT_ACCESS,
                domid: 5,
                frame: 0x1f0
            })
        );
        assert_eq!(slot.load::<u16>(64), Some(GTF_PERMIT_ACCESS));
        // Mapped by the peer: revoking must fail until it lets go.
        slot.store::<u16>(64, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        assert_eq!(
            frame.end_access(GrantRef(8)),
            Err(EndAccessError::InUse(
                GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
            ))
        );
        slot.store::<u16>(64, GTF_PERMIT_ACCESS);
        assert_eq!(frame.end_access(GrantRef(8)), Ok(()));
        assert_eq!(frame.entry(GrantRef(8)).map(|entry| entry.flags), Some(0));
        assert!(frame.grant_access(GrantRef(9), DomainId(5), GuestFrame(1), true));
        assert_eq!(
            frame.entry(GrantRef(9)).map(|entry| entry.flags),
            Some(GTF_PERMIT_ACCESS | GTF_READONLY)
        );
        assert!(!frame.grant_access(GrantRef(512), DomainId(5), GuestFrame(1), false));
        assert!(!frame.grant_access(GrantRef(10), DomainId(5), GuestFrame(1 << 32), false));
        assert_eq!(
            frame.end_access(GrantRef(600)),
            Err(EndAccessError::OutOfRange)
        );
        let second = GrantTableFrame::new(slot, 1);
        assert_eq!(second.references(), 512..1024);
        assert!(second.grant_access(GrantRef(513), DomainId(1), GuestFrame(2), false));
        assert_eq!(slot.load::<u32>(12), Some(2));
    }

    #[test]
    fn own_frames_are_named_by_frame_number() {
        let slot = crate::raw::test_page();
        let copy = GrantCopy::new(CopyEnd::own(slot, 4000), CopyEnd::own(slot, 0), 200);
        assert_eq!(copy.flags, 0);
        assert_eq!(copy.source.reference_or_frame, 0x1234);
        assert_eq!(copy.source.domid, DomainId::SELF.0);
        let map = MapGrantRef::new(&slot, GrantRef(8), DomainId(2), true);
        assert_eq!(map.host_addr, 0x123_4000);
        assert_eq!(map.flags, GNTMAP_HOST_MAP | GNTMAP_READONLY);
    }
}
