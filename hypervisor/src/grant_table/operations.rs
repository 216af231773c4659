//! Map, unmap and copy as steps over the tables involved. Each step either
//! finishes or hands back exactly what the hypervisor must do next (insert a
//! frame, flush, copy bytes), and says how to undo it on failure.

use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::grant_table::{GrantHandle, GrantRef, GrantStatus};

use super::hypercall::GrantHost;
use super::{
    Access, GrantEntryMemory, GrantTable, GrowError, GuestFrame, Mapping, Maptrack, NotPinned,
    PinPurpose,
};
use crate::memory::{GuestPhysAddr, HostPhysAddr, PAGE_SIZE};

/// A domain asks to map a grant into its own physmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    pub granter: DomainId,
    pub gref: GrantRef,
    pub access: Access,
    /// Where in the mapper's physmap (`host_addr`, offset bits ignored).
    pub mapper_frame: GuestFrame,
}

/// A map the tables accepted; the hypervisor must now put the granter's
/// frame into the mapper's physmap (read-only unless `access` is writable),
/// or call [`cancel_map`] if it cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapAction {
    pub handle: GrantHandle,
    pub mapper: DomainId,
    pub mapper_frame: GuestFrame,
    pub granter: DomainId,
    pub gref: GrantRef,
    pub granter_frame: GuestFrame,
    pub access: Access,
}

impl MapAction {
    /// The maptrack record of this map.
    pub const fn mapping(&self) -> Mapping {
        Mapping {
            granter: self.granter,
            gref: self.gref,
            access: self.access,
            mapper_frame: self.mapper_frame,
            granter_frame: self.granter_frame,
        }
    }
}

/// Pins the grant in the granter's table and records the mapping in the
/// mapper's maptrack. Statuses as Xen: `no_space` (maptrack full),
/// `bad_gntref` (outside the table), `general_error` (wrong type or domain,
/// read-only grant mapped writable, in use by another domain, pin counter
/// full, entry unstable, granter dying).
pub fn map_grant(
    mapper: DomainId,
    maptrack: &mut Maptrack,
    granter_table: &mut GrantTable,
    memory: &mut impl GrantEntryMemory,
    request: &MapRequest,
) -> Result<MapAction, GrantStatus> {
    if maptrack.is_full() {
        return Err(GrantStatus::NoSpace);
    }
    let granter_frame = granter_table.pin(
        memory,
        request.gref,
        mapper,
        request.access,
        PinPurpose::Map,
    )?;
    let mut action = MapAction {
        handle: GrantHandle(0),
        mapper,
        mapper_frame: request.mapper_frame,
        granter: request.granter,
        gref: request.gref,
        granter_frame,
        access: request.access,
    };
    match maptrack.insert(action.mapping()) {
        Ok(handle) => {
            action.handle = handle;
            Ok(action)
        }
        Err(_) => {
            // Checked above; kept so a broken invariant cannot leak a pin.
            let _ = granter_table.unpin(memory, request.gref, request.access);
            Err(GrantStatus::NoSpace)
        }
    }
}

/// Undoes [`map_grant`] whose physmap insertion failed (or was removed
/// again): frees the handle and ends the use.
pub fn cancel_map(
    maptrack: &mut Maptrack,
    granter_table: &mut GrantTable,
    memory: &mut impl GrantEntryMemory,
    action: &MapAction,
) -> Result<(), NotPinned> {
    maptrack.remove(action.handle);
    granter_table.unpin(memory, action.gref, action.access)
}

/// What an unmap must do once the handle checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapStep {
    /// `host_addr` was 0: Xen does nothing and answers okay, keeping the
    /// mapping.
    Nothing,
    /// Remove this mapping from the mapper's physmap; if that worked,
    /// `maptrack.remove(handle)`, flush the mapper's TLBs, then
    /// [`finish_unmap`] in the granter's table.
    Remove(Mapping),
}

/// Checks an unmap of `handle` at `host_addr`: `bad_handle` for a handle
/// that is not live, `general_error` if `host_addr` is not where that
/// mapping sits (Xen finds no matching grant there).
pub fn begin_unmap(
    maptrack: &Maptrack,
    handle: GrantHandle,
    host_addr: GuestPhysAddr,
) -> Result<UnmapStep, GrantStatus> {
    let mapping = maptrack.get(handle).ok_or(GrantStatus::BadHandle)?;
    if host_addr.0 == 0 {
        return Ok(UnmapStep::Nothing);
    }
    if GuestFrame::containing(host_addr) != mapping.mapper_frame {
        return Err(GrantStatus::GeneralError);
    }
    Ok(UnmapStep::Remove(*mapping))
}

/// Ends the use an unmapped mapping held, after the mapper's TLBs were
/// flushed; clears the entry's in-use flags if it was the last.
pub fn finish_unmap(
    granter_table: &mut GrantTable,
    memory: &mut impl GrantEntryMemory,
    mapping: &Mapping,
) -> Result<(), NotPinned> {
    granter_table.unpin(memory, mapping.gref, mapping.access)
}

/// A grant held for the length of one copy. Hand it back to
/// [`GrantTable::release_copy`] on the same table when the copy is done.
#[must_use = "a copy pin keeps the grant in use until released"]
#[derive(Debug, PartialEq, Eq)]
pub struct CopyPin {
    pub gref: GrantRef,
    pub access: Access,
    /// The granter's frame to copy from or to.
    pub frame: GuestFrame,
}

impl GrantTable {
    /// Begins a copy from (`Access::ReadOnly`) or to (`Access::Writable`)
    /// grant `gref` by domain `user`.
    pub fn pin_for_copy(
        &mut self,
        memory: &mut impl GrantEntryMemory,
        gref: GrantRef,
        user: DomainId,
        access: Access,
    ) -> Result<CopyPin, GrantStatus> {
        let frame = self.pin(memory, gref, user, access, PinPurpose::Copy)?;
        Ok(CopyPin {
            gref,
            access,
            frame,
        })
    }

    /// Ends the use a copy held.
    pub fn release_copy(
        &mut self,
        memory: &mut impl GrantEntryMemory,
        pin: CopyPin,
    ) -> Result<(), NotPinned> {
        self.unpin(memory, pin.gref, pin.access)
    }
}

/// Whether `[offset, offset + len)` stays inside one page (else Xen answers
/// `bad_copy_arg`).
pub const fn copy_fits(offset: u16, len: u16) -> bool {
    offset as u64 + len as u64 <= PAGE_SIZE
}

/// Ends every use a dying mapper held (its vCPUs must be stopped and its
/// nested page tables no longer used, so nothing can reach the frames).
/// Returns how many mappings were released.
pub fn release_mappings(maptrack: &mut Maptrack, host: &mut impl GrantHost) -> usize {
    let mut released = 0;
    for mapping in maptrack.take_all() {
        let unpinned = host.with_table(mapping.granter, |table, memory| {
            finish_unmap(table, memory, &mapping)
        });
        if matches!(unpinned, Some(Ok(()))) {
            released += 1;
        }
    }
    released
}

/// Why [`grow_table`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrowFailure {
    NoSuchDomain,
    Limit(GrowError),
    OutOfMemory,
}

/// Grows `domain`'s table to at least `target` frames, allocating through
/// `host` outside the table's lock and freeing what it did not use.
pub(crate) fn grow_table(
    host: &mut impl GrantHost,
    domain: DomainId,
    target: u32,
) -> Result<(), GrowFailure> {
    let needed = host
        .with_table(domain, |table, _| table.frames_needed(target))
        .ok_or(GrowFailure::NoSuchDomain)?
        .map_err(GrowFailure::Limit)?;
    if needed == 0 {
        return Ok(());
    }
    // At most the domain's frame limit, a hypervisor setting.
    let mut frames = Vec::with_capacity(needed as usize);
    for _ in 0..needed {
        match host.allocate_frame() {
            Some(frame) => frames.push(frame),
            None => {
                free_all(host, &frames);
                return Err(GrowFailure::OutOfMemory);
            }
        }
    }
    let kept = host.with_table(domain, |table, _| table.grow(target, &frames));
    let (kept, result) = match kept {
        Some(Ok(kept)) => (kept, Ok(())),
        Some(Err(error)) => (0, Err(GrowFailure::Limit(error))),
        None => (0, Err(GrowFailure::NoSuchDomain)),
    };
    free_all(host, frames.get(kept..).unwrap_or(&[]));
    result
}

fn free_all(host: &mut impl GrantHost, frames: &[HostPhysAddr]) {
    for &frame in frames {
        host.free_frame(frame);
    }
}

/// `XENMEM_add_to_physmap`, space grant_table, `idx = index`: the frame to
/// insert, growing the table to `index + 1` frames if needed. `EINVAL` past
/// the limit, for a v2 status index, or if frames run out (as Xen).
pub fn shared_frame_for_physmap(
    host: &mut impl GrantHost,
    domain: DomainId,
    index: u64,
) -> Result<HostPhysAddr, Errno> {
    let index = u32::try_from(index).map_err(|_| Errno::EINVAL)?;
    let target = index.checked_add(1).ok_or(Errno::EINVAL)?;
    match grow_table(host, domain, target) {
        Ok(()) => {}
        Err(GrowFailure::NoSuchDomain) => return Err(Errno::ESRCH),
        Err(GrowFailure::Limit(_) | GrowFailure::OutOfMemory) => return Err(Errno::EINVAL),
    }
    host.with_table(domain, |table, _| table.frame(index))
        .flatten()
        .ok_or(Errno::EINVAL)
}
