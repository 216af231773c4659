//! `grant_table_op` (hypercall 20) for HVM/PVH callers: decoding each
//! element from guest memory once, acting, and writing back only the output
//! fields. Other domains' tables, physmaps and page copies come in through
//! [`GrantHost`].
//!
//! Batches: Xen preempts long batches with a continuation. Xenolith does the
//! same deterministically: at most [`MAX_OPS_PER_CALL`] elements per entry,
//! then [`GrantOutcome::Continue`] with the pointer advanced and the count
//! reduced, so the guest re-executes the hypercall. Linux never sees the
//! difference (it may pass counts in the thousands, e.g. gntdev), whereas
//! refusing large counts would break it.

use arrayvec::ArrayVec;
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::grant_table::{
    self as abi, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_APPLICATION_MAP,
    GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTTABOP_COPY,
    GNTTABOP_GET_VERSION, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SET_VERSION,
    GNTTABOP_SETUP_TABLE, GNTTABOP_UNMAP_GRANT_REF, GrantHandle, GrantRef, GrantStatus,
};
use xenolith_abi::hypercall::HypercallArgs;

use super::operations::{copy_fits, grow_table};
use super::{
    Access, GrantEntryMemory, GrantTable, GuestFrame, MapAction, MapRequest, Mapping, Maptrack,
    UnmapStep, begin_unmap, cancel_map, finish_unmap, map_grant,
};
use crate::hypercall::GuestAccess;
use crate::memory::{GuestPhysAddr, GuestVirtAddr, HostPhysAddr};

/// Most elements of a map, unmap or copy batch handled before the call is
/// continued.
pub const MAX_OPS_PER_CALL: u32 = 512;
/// Unmaps between TLB flushes (Xen's `GNTTAB_UNMAP_BATCH_SIZE`).
const UNMAP_BATCH: usize = 32;

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantCaller {
    pub domain: DomainId,
    /// May query and set up other domains' tables (Dom0).
    pub privileged: bool,
}

/// What the hypervisor does after the hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Put this in RAX, advance RIP past the hypercall instruction, resume.
    Return(u64),
    /// Part of the batch is done: set RDI, RSI and RDX from these arguments,
    /// leave RAX (the hypercall number) and RIP alone, and resume, so the
    /// guest issues the rest. (Calling [`grant_table_op`] again at once is
    /// equally correct, but lets no interrupt in between.)
    Continue(HypercallArgs),
}

impl GrantOutcome {
    fn error(errno: Errno) -> Self {
        Self::Return(errno.as_return())
    }
}

/// Where two copied ranges lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyEnd {
    /// Whose physmap `frame` is in.
    pub domain: DomainId,
    pub frame: GuestFrame,
    pub offset: u16,
}

/// A checked copy: `len` bytes, both ranges inside their page, any grants
/// involved pinned until [`GrantHost::copy`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    pub source: CopyEnd,
    pub dest: CopyEnd,
    pub len: u16,
}

/// What the hypervisor provides to grant operations.
pub trait GrantHost {
    /// Grant-entry access for the tables `with_table` lends.
    type Memory: GrantEntryMemory;

    /// Runs `f` on `domain`'s table with the table locked; `None` if there is
    /// no such domain. A dying domain's table must stay reachable until
    /// [`GrantTable::has_pins`] is false, so unmaps can end their uses.
    fn with_table<R>(
        &mut self,
        domain: DomainId,
        f: impl FnOnce(&mut GrantTable, &mut Self::Memory) -> R,
    ) -> Option<R>;

    /// A zeroed, hypervisor-owned 4 KiB frame for table growth.
    fn allocate_frame(&mut self) -> Option<HostPhysAddr>;

    /// Takes back a frame from [`Self::allocate_frame`] the table did not keep.
    fn free_frame(&mut self, frame: HostPhysAddr);

    /// The number `setup_table` reports for frame `index` of `domain`'s
    /// table. Xen reports the guest frame where the domain mapped it (all
    /// ones if unmapped) for a translated domain.
    fn setup_table_frame(&mut self, domain: DomainId, index: u32, frame: HostPhysAddr) -> u64;

    /// Inserts the granter's frame into the mapper's physmap at
    /// `action.mapper_frame`, read-only unless `action.access` is writable.
    /// `bad_page` if the granter's frame is not ordinary RAM of the granter;
    /// `general_error` if the slot cannot take it (already a grant or
    /// foreign mapping, beyond the physmap).
    fn map_grant(&mut self, action: &MapAction) -> Result<(), GrantStatus>;

    /// Removes `mapping` from `mapper`'s physmap (`general_error` if the slot
    /// no longer holds it). Need not flush: [`Self::flush_mappings`] follows
    /// before any use ends.
    fn unmap_grant(&mut self, mapper: DomainId, mapping: &Mapping) -> Result<(), GrantStatus>;

    /// Flushes `mapper`'s guest TLBs on every CPU (nested-paging ASID), so
    /// removed mappings are gone before the granter can reuse the frames.
    fn flush_mappings(&mut self, mapper: DomainId);

    /// Copies `plan.len` bytes. `bad_page` if a frame is not RAM of its
    /// domain; `general_error` if the destination is not writable RAM.
    fn copy(&mut self, plan: &CopyPlan) -> Result<(), GrantStatus>;
}

/// Runs `grant_table_op(cmd = RDI, pointer = RSI, count = RDX)` for
/// `caller`, whose own maptrack is `maptrack`. Only the sub-operations Xen
/// allows an HVM/PVH guest are accepted (swap_grant_ref is not implemented);
/// the rest return `-ENOSYS`. `cmd` and `count` are 32-bit, as in Xen.
pub fn grant_table_op(
    args: HypercallArgs,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    maptrack: &mut Maptrack,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    let command = args.rdi as u32;
    let pointer = args.rsi;
    let count = args.rdx as u32;
    if !matches!(
        command,
        GNTTABOP_MAP_GRANT_REF
            | GNTTABOP_UNMAP_GRANT_REF
            | GNTTABOP_SETUP_TABLE
            | GNTTABOP_COPY
            | GNTTABOP_QUERY_SIZE
            | GNTTABOP_SET_VERSION
            | GNTTABOP_GET_VERSION
    ) {
        return GrantOutcome::error(Errno::ENOSYS);
    }
    if count > i32::MAX as u32 {
        return GrantOutcome::error(Errno::EINVAL);
    }
    let batch = Batch {
        args,
        pointer,
        count,
    };
    match command {
        GNTTABOP_MAP_GRANT_REF => map_batch(&batch, caller, guest, maptrack, host),
        GNTTABOP_UNMAP_GRANT_REF => unmap_batch(&batch, caller, guest, maptrack, host),
        GNTTABOP_COPY => copy_batch(&batch, caller, guest, host),
        GNTTABOP_SETUP_TABLE => setup_table(&batch, caller, guest, host),
        GNTTABOP_QUERY_SIZE => query_size(&batch, caller, guest, host),
        GNTTABOP_SET_VERSION => set_version(pointer, caller, guest, host),
        _ => get_version(pointer, caller, guest, host),
    }
}

/// An array argument.
struct Batch {
    args: HypercallArgs,
    pointer: u64,
    count: u32,
}

impl Batch {
    /// Elements to handle in this entry.
    fn this_call(&self) -> u32 {
        self.count.min(MAX_OPS_PER_CALL)
    }

    /// Element `index` of `size` bytes, or `None` if the address wraps.
    fn element(&self, index: u32, size: usize) -> Option<GuestVirtAddr> {
        let offset = u64::from(index).checked_mul(size as u64)?;
        self.pointer.checked_add(offset).map(GuestVirtAddr)
    }

    /// Return 0, or continue with the elements after the first `done`.
    fn finish(&self, done: u32, size: usize) -> GrantOutcome {
        if done >= self.count {
            return GrantOutcome::Return(0);
        }
        match self.element(done, size) {
            Some(next) => GrantOutcome::Continue(HypercallArgs {
                rsi: next.0,
                rdx: u64::from(self.count - done),
                ..self.args
            }),
            None => GrantOutcome::error(Errno::EFAULT),
        }
    }
}

/// Reads `N` bytes of element `index`.
fn read_element<const N: usize>(
    guest: &impl GuestAccess,
    batch: &Batch,
    index: u32,
) -> Option<(GuestVirtAddr, [u8; N])> {
    let address = batch.element(index, N)?;
    let mut bytes = [0u8; N];
    guest.read(address, &mut bytes).ok()?;
    Some((address, bytes))
}

fn write_at(
    guest: &mut impl GuestAccess,
    base: GuestVirtAddr,
    offset: usize,
    data: &[u8],
) -> Result<(), ()> {
    let address = base.checked_add(offset as u64).ok_or(())?;
    guest.write(address, data).map_err(|_| ())
}

fn write_status(
    guest: &mut impl GuestAccess,
    base: GuestVirtAddr,
    offset: usize,
    status: GrantStatus,
) -> Result<(), ()> {
    write_at(guest, base, offset, &status.as_raw().to_le_bytes())
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    let mut raw = [0u8; 2];
    if let Some(field) = bytes.get(offset..offset + 2) {
        raw.copy_from_slice(field);
    }
    u16::from_le_bytes(raw)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut raw = [0u8; 4];
    if let Some(field) = bytes.get(offset..offset + 4) {
        raw.copy_from_slice(field);
    }
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let Some(field) = bytes.get(offset..offset + 8) {
        raw.copy_from_slice(field);
    }
    u64::from_le_bytes(raw)
}

/// A real domain id named in an argument: `DOMID_SELF` is the caller when
/// `self_allowed`, other reserved ids name nobody.
fn named_domain(caller: &GrantCaller, raw: u16, self_allowed: bool) -> Option<DomainId> {
    let domain = DomainId(raw);
    if domain == DomainId::SELF && self_allowed {
        Some(caller.domain)
    } else if domain >= DomainId::FIRST_RESERVED {
        None
    } else {
        Some(domain)
    }
}

fn domain_exists(host: &mut impl GrantHost, domain: DomainId) -> bool {
    host.with_table(domain, |_, _| ()).is_some()
}

/// Xen's `XSM_TARGET` default: oneself, or any domain if privileged.
fn may_inspect(caller: &GrantCaller, target: DomainId) -> bool {
    caller.privileged || caller.domain == target
}

// ---- map_grant_ref ----------------------------------------------------------

/// A decoded `gnttab_map_grant_ref`.
struct MapOp {
    host_addr: u64,
    flags: u32,
    gref: GrantRef,
    dom: u16,
}

impl MapOp {
    fn parse(bytes: &[u8; abi::map_grant_ref::SIZE]) -> Self {
        use abi::map_grant_ref as layout;
        Self {
            host_addr: u64_at(bytes, layout::HOST_ADDR),
            flags: u32_at(bytes, layout::FLAGS),
            gref: GrantRef(u32_at(bytes, layout::REF)),
            dom: u16_at(bytes, layout::DOM),
        }
    }
}

fn map_batch(
    batch: &Batch,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    maptrack: &mut Maptrack,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::map_grant_ref as layout;
    let this_call = batch.this_call();
    for index in 0..this_call {
        let Some((address, bytes)) = read_element::<{ layout::SIZE }>(guest, batch, index) else {
            return GrantOutcome::error(Errno::EFAULT);
        };
        let op = MapOp::parse(&bytes);
        let result = map_one(caller, &op, maptrack, host);
        let (status, handle) = match &result {
            Ok(action) => (GrantStatus::Okay, action.handle),
            Err(status) => (*status, GrantHandle(0)),
        };
        // status, handle, dev_bus_addr: the output fields, in one write.
        // dev_bus_addr stays 0: it would be a host-physical address, which
        // an HVM guest has no use for and must not learn.
        let mut output = [0u8; layout::SIZE - layout::STATUS];
        output[..2].copy_from_slice(&status.as_raw().to_le_bytes());
        let handle_at = layout::HANDLE - layout::STATUS;
        output[handle_at..handle_at + 4].copy_from_slice(&handle.0.to_le_bytes());
        if write_at(guest, address, layout::STATUS, &output).is_err() {
            // The guest cannot learn the handle, so take the mapping back
            // rather than leave it unreachable until the domain dies.
            if let Ok(action) = result {
                undo_map(caller, maptrack, host, &action);
            }
            return GrantOutcome::error(Errno::EFAULT);
        }
    }
    batch.finish(this_call, layout::SIZE)
}

fn map_one(
    caller: &GrantCaller,
    op: &MapOp,
    maptrack: &mut Maptrack,
    host: &mut impl GrantHost,
) -> Result<MapAction, GrantStatus> {
    if op.flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) == 0 {
        return Err(GrantStatus::BadGntref);
    }
    // An HVM/PVH caller may only ask for a host mapping, read-only or not.
    let legal = GNTMAP_HOST_MAP | GNTMAP_READONLY;
    if op.flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0
        || op.flags & !legal != 0
    {
        return Err(GrantStatus::GeneralError);
    }
    // Xen looks the granter up by id: DOMID_SELF names no domain here.
    let granter = named_domain(caller, op.dom, false).ok_or(GrantStatus::BadDomain)?;
    let request = MapRequest {
        granter,
        gref: op.gref,
        access: if op.flags & GNTMAP_READONLY != 0 {
            Access::ReadOnly
        } else {
            Access::Writable
        },
        mapper_frame: GuestFrame::containing(GuestPhysAddr(op.host_addr)),
    };
    let action = host
        .with_table(granter, |table, memory| {
            map_grant(caller.domain, maptrack, table, memory, &request)
        })
        .ok_or(GrantStatus::BadDomain)??;
    if let Err(status) = host.map_grant(&action) {
        host.with_table(granter, |table, memory| {
            cancel_map(maptrack, table, memory, &action)
        });
        return Err(status);
    }
    Ok(action)
}

fn undo_map(
    caller: &GrantCaller,
    maptrack: &mut Maptrack,
    host: &mut impl GrantHost,
    action: &MapAction,
) {
    if host.unmap_grant(caller.domain, &action.mapping()).is_err() {
        // The slot changed under us; the maptrack entry stays so the
        // mapping is still released when the domain dies.
        return;
    }
    host.flush_mappings(caller.domain);
    host.with_table(action.granter, |table, memory| {
        cancel_map(maptrack, table, memory, action)
    });
}

// ---- unmap_grant_ref --------------------------------------------------------

fn unmap_batch(
    batch: &Batch,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    maptrack: &mut Maptrack,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::unmap_grant_ref as layout;
    let this_call = batch.this_call();
    let mut index = 0;
    while index < this_call {
        let mut removed = ArrayVec::<Mapping, UNMAP_BATCH>::new();
        let mut faulted = false;
        while index < this_call && !removed.is_full() {
            let Some((address, bytes)) = read_element::<{ layout::SIZE }>(guest, batch, index)
            else {
                faulted = true;
                break;
            };
            let handle = GrantHandle(u32_at(&bytes, layout::HANDLE));
            let host_addr = GuestPhysAddr(u64_at(&bytes, layout::HOST_ADDR));
            let status = match unmap_one(caller, handle, host_addr, maptrack, host) {
                Ok(Some(mapping)) => {
                    removed.push(mapping);
                    GrantStatus::Okay
                }
                Ok(None) => GrantStatus::Okay,
                Err(status) => status,
            };
            index += 1;
            if write_status(guest, address, layout::STATUS, status).is_err() {
                faulted = true;
                break;
            }
        }
        // The frames leave the mapper's TLBs before the granter may reuse them.
        if !removed.is_empty() {
            host.flush_mappings(caller.domain);
        }
        for mapping in &removed {
            host.with_table(mapping.granter, |table, memory| {
                finish_unmap(table, memory, mapping)
            });
        }
        if faulted {
            return GrantOutcome::error(Errno::EFAULT);
        }
    }
    batch.finish(this_call, layout::SIZE)
}

/// Removes the mapping from the physmap and the maptrack; the caller ends
/// the use after the flush.
fn unmap_one(
    caller: &GrantCaller,
    handle: GrantHandle,
    host_addr: GuestPhysAddr,
    maptrack: &mut Maptrack,
    host: &mut impl GrantHost,
) -> Result<Option<Mapping>, GrantStatus> {
    match begin_unmap(maptrack, handle, host_addr)? {
        UnmapStep::Nothing => Ok(None),
        UnmapStep::Remove(mapping) => {
            host.unmap_grant(caller.domain, &mapping)?;
            maptrack.remove(handle);
            Ok(Some(mapping))
        }
    }
}

// ---- copy -------------------------------------------------------------------

/// One side of a decoded `gnttab_copy`.
struct CopyPointer {
    /// `ref` (low 32 bits) or `gmfn`.
    ref_or_gmfn: u64,
    domid: u16,
    offset: u16,
    is_gref: bool,
}

impl CopyPointer {
    fn parse(bytes: &[u8], base: usize, is_gref: bool) -> Self {
        use abi::copy::pointer as layout;
        Self {
            ref_or_gmfn: u64_at(bytes, base + layout::REF_OR_GMFN),
            domid: u16_at(bytes, base + layout::DOMID),
            offset: u16_at(bytes, base + layout::OFFSET),
            is_gref,
        }
    }
}

/// A copy side resolved to a domain.
enum Side {
    Grant { domain: DomainId, gref: GrantRef },
    OwnFrame(GuestFrame),
}

/// A copy side ready for the copy, with the grant it pinned if any.
struct Claimed {
    end: CopyEnd,
    pin: Option<super::CopyPin>,
}

fn copy_batch(
    batch: &Batch,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::copy as layout;
    let this_call = batch.this_call();
    for index in 0..this_call {
        let Some((address, bytes)) = read_element::<{ layout::SIZE }>(guest, batch, index) else {
            return GrantOutcome::error(Errno::EFAULT);
        };
        let flags = u16_at(&bytes, layout::FLAGS);
        let source = CopyPointer::parse(&bytes, layout::SOURCE, flags & GNTCOPY_SOURCE_GREF != 0);
        let dest = CopyPointer::parse(&bytes, layout::DEST, flags & GNTCOPY_DEST_GREF != 0);
        let len = u16_at(&bytes, layout::LEN);
        let status = match copy_one(caller, &source, &dest, len, host) {
            Ok(()) => GrantStatus::Okay,
            Err(status) => status,
        };
        // Elements complete in order, each visible before the next starts:
        // a back end publishes an index and reads the peer's event
        // threshold in one call (a store then a load across vCPUs).
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        if write_status(guest, address, layout::STATUS, status).is_err() {
            return GrantOutcome::error(Errno::EFAULT);
        }
    }
    batch.finish(this_call, layout::SIZE)
}

fn copy_one(
    caller: &GrantCaller,
    source: &CopyPointer,
    dest: &CopyPointer,
    len: u16,
    host: &mut impl GrantHost,
) -> Result<(), GrantStatus> {
    if len == 0 {
        return Ok(());
    }
    let source_side = resolve_side(caller, source, host)?;
    let dest_side = resolve_side(caller, dest, host)?;
    let source_claim = claim(caller, source_side, source.offset, Access::ReadOnly, host)?;
    let dest_claim = match claim(caller, dest_side, dest.offset, Access::Writable, host) {
        Ok(claimed) => claimed,
        Err(status) => {
            release(source_claim, host);
            return Err(status);
        }
    };
    let result = if copy_fits(source.offset, len) && copy_fits(dest.offset, len) {
        host.copy(&CopyPlan {
            source: source_claim.end,
            dest: dest_claim.end,
            len,
        })
    } else {
        Err(GrantStatus::BadCopyArg)
    };
    release(dest_claim, host);
    release(source_claim, host);
    result
}

/// Only the caller's own frames may be named by number (`DOMID_SELF`);
/// grants may name any existing domain, `DOMID_SELF` included.
fn resolve_side(
    caller: &GrantCaller,
    pointer: &CopyPointer,
    host: &mut impl GrantHost,
) -> Result<Side, GrantStatus> {
    if !pointer.is_gref {
        if DomainId(pointer.domid) != DomainId::SELF {
            return Err(GrantStatus::PermissionDenied);
        }
        return Ok(Side::OwnFrame(GuestFrame(pointer.ref_or_gmfn)));
    }
    let domain = named_domain(caller, pointer.domid, true).ok_or(GrantStatus::BadDomain)?;
    if !domain_exists(host, domain) {
        return Err(GrantStatus::BadDomain);
    }
    Ok(Side::Grant {
        domain,
        // The union's `ref` member is its low 32 bits.
        gref: GrantRef(pointer.ref_or_gmfn as u32),
    })
}

fn claim(
    caller: &GrantCaller,
    side: Side,
    offset: u16,
    access: Access,
    host: &mut impl GrantHost,
) -> Result<Claimed, GrantStatus> {
    match side {
        Side::OwnFrame(frame) => Ok(Claimed {
            end: CopyEnd {
                domain: caller.domain,
                frame,
                offset,
            },
            pin: None,
        }),
        Side::Grant { domain, gref } => {
            let pin = host
                .with_table(domain, |table, memory| {
                    table.pin_for_copy(memory, gref, caller.domain, access)
                })
                .ok_or(GrantStatus::BadDomain)??;
            Ok(Claimed {
                end: CopyEnd {
                    domain,
                    frame: pin.frame,
                    offset,
                },
                pin: Some(pin),
            })
        }
    }
}

fn release(claimed: Claimed, host: &mut impl GrantHost) {
    if let Some(pin) = claimed.pin {
        host.with_table(claimed.end.domain, |table, memory| {
            table.release_copy(memory, pin)
        });
    }
}

// ---- setup_table, query_size, versions --------------------------------------

fn setup_table(
    batch: &Batch,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::setup_table as layout;
    if batch.count != 1 {
        return GrantOutcome::error(Errno::EINVAL);
    }
    let Some((address, bytes)) = read_element::<{ layout::SIZE }>(guest, batch, 0) else {
        return GrantOutcome::error(Errno::EFAULT);
    };
    let dom = u16_at(&bytes, layout::DOM);
    let frame_count = u32_at(&bytes, layout::NR_FRAMES);
    let frame_list = u64_at(&bytes, layout::FRAME_LIST);
    let status = setup_table_status(caller, dom, frame_count, frame_list, guest, host);
    match write_status(guest, address, layout::STATUS, status) {
        Ok(()) => GrantOutcome::Return(0),
        Err(()) => GrantOutcome::error(Errno::EFAULT),
    }
}

fn setup_table_status(
    caller: &GrantCaller,
    dom: u16,
    frame_count: u32,
    frame_list: u64,
    guest: &mut impl GuestAccess,
    host: &mut impl GrantHost,
) -> GrantStatus {
    let Some(target) = named_domain(caller, dom, true) else {
        return GrantStatus::BadDomain;
    };
    let Some(max_frames) = host.with_table(target, |table, _| table.max_frames()) else {
        return GrantStatus::BadDomain;
    };
    if !may_inspect(caller, target) {
        return GrantStatus::PermissionDenied;
    }
    if frame_count > max_frames {
        return GrantStatus::GeneralError;
    }
    if grow_table(host, target, frame_count).is_err() {
        return GrantStatus::GeneralError;
    }
    for index in 0..frame_count {
        let Some(Some(frame)) = host.with_table(target, |table, _| table.frame(index)) else {
            return GrantStatus::GeneralError;
        };
        let number = host.setup_table_frame(target, index, frame);
        let written = u64::from(index)
            .checked_mul(8)
            .and_then(|offset| frame_list.checked_add(offset))
            .ok_or(())
            .and_then(|at| {
                guest
                    .write(GuestVirtAddr(at), &number.to_le_bytes())
                    .map_err(|_| ())
            });
        if written.is_err() {
            return GrantStatus::BadVirtAddr;
        }
    }
    GrantStatus::Okay
}

fn query_size(
    batch: &Batch,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::query_size as layout;
    if batch.count != 1 {
        return GrantOutcome::error(Errno::EINVAL);
    }
    let Some((address, bytes)) = read_element::<{ layout::SIZE }>(guest, batch, 0) else {
        return GrantOutcome::error(Errno::EFAULT);
    };
    let dom = u16_at(&bytes, layout::DOM);
    let sizes = named_domain(caller, dom, true)
        .and_then(|target| {
            host.with_table(target, |table, _| (table.frame_count(), table.max_frames()))
                .map(|sizes| (target, sizes))
        })
        .ok_or(GrantStatus::BadDomain)
        .and_then(|(target, sizes)| {
            if may_inspect(caller, target) {
                Ok(sizes)
            } else {
                Err(GrantStatus::PermissionDenied)
            }
        });
    let written = match sizes {
        Ok((frames, max_frames)) => {
            let mut output = [0u8; layout::STATUS + 2 - layout::NR_FRAMES];
            output[..4].copy_from_slice(&frames.to_le_bytes());
            output[4..8].copy_from_slice(&max_frames.to_le_bytes());
            // status (okay) stays zero.
            write_at(guest, address, layout::NR_FRAMES, &output)
        }
        Err(status) => write_status(guest, address, layout::STATUS, status),
    };
    match written {
        Ok(()) => GrantOutcome::Return(0),
        Err(()) => GrantOutcome::error(Errno::EFAULT),
    }
}

fn set_version(
    pointer: u64,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::set_version as layout;
    let address = GuestVirtAddr(pointer);
    let mut bytes = [0u8; layout::SIZE];
    if guest.read(address, &mut bytes).is_err() {
        return GrantOutcome::error(Errno::EFAULT);
    }
    let requested = u32::from_le_bytes(bytes);
    let Some((result, current)) = host.with_table(caller.domain, |table, _| {
        (table.set_version(requested), table.version())
    }) else {
        return GrantOutcome::error(Errno::ESRCH);
    };
    // The version in force is written back whatever the answer.
    if write_at(guest, address, layout::VERSION, &current.to_le_bytes()).is_err() {
        return GrantOutcome::error(Errno::EFAULT);
    }
    match result {
        Ok(()) => GrantOutcome::Return(0),
        Err(errno) => GrantOutcome::error(errno),
    }
}

fn get_version(
    pointer: u64,
    caller: &GrantCaller,
    guest: &mut impl GuestAccess,
    host: &mut impl GrantHost,
) -> GrantOutcome {
    use abi::get_version as layout;
    let address = GuestVirtAddr(pointer);
    let mut bytes = [0u8; layout::SIZE];
    if guest.read(address, &mut bytes).is_err() {
        return GrantOutcome::error(Errno::EFAULT);
    }
    let Some(target) = named_domain(caller, u16_at(&bytes, layout::DOM), true) else {
        return GrantOutcome::error(Errno::ESRCH);
    };
    let Some(version) = host.with_table(target, |table, _| table.version()) else {
        return GrantOutcome::error(Errno::ESRCH);
    };
    if !may_inspect(caller, target) {
        return GrantOutcome::error(Errno::EPERM);
    }
    match write_at(guest, address, layout::VERSION, &version.to_le_bytes()) {
        Ok(()) => GrantOutcome::Return(0),
        Err(()) => GrantOutcome::error(Errno::EFAULT),
    }
}
