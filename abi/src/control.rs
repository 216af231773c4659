//! Xenolith's control interface: how Dom0 creates, starts, inspects and
//! destroys domains. Hypercall 36 (Xen's `domctl` slot) with Xenolith's
//! own versioned layout; only the privileged domain may call it.
//! `docs/control-interface.md` documents it for Dom0 authors.
//!
//! Request (144 bytes, as `xen_domctl`): `cmd` u32 @0,
//! `interface_version` u32 @4 (must equal [`VERSION`]), `domain` u16 @8
//! (in/out), then a 128-byte payload @16 whose layout depends on `cmd`.

/// Hypercall number (Xen's `__HYPERVISOR_domctl`).
pub const HYPERCALL: u64 = 36;
/// The layout version this hypervisor speaks ("XC" 1).
pub const VERSION: u32 = 0x5843_0001;
/// Size of a request.
pub const REQUEST_SIZE: usize = 144;

mod domain_info;

pub use domain_info::{DomainInfo, StopReason};

/// A request as it travels between Dom0 and the hypervisor.
pub type Request = [u8; REQUEST_SIZE];

/// The little-endian u32 at `offset` (0 where the request ends).
pub fn u32_at(request: &Request, offset: usize) -> u32 {
    let mut bytes = [0; 4];
    if let Some(field) = request.get(offset..offset.saturating_add(4)) {
        bytes.copy_from_slice(field);
    }
    u32::from_le_bytes(bytes)
}

/// The little-endian u64 at `offset` (0 where the request ends).
pub fn u64_at(request: &Request, offset: usize) -> u64 {
    let mut bytes = [0; 8];
    if let Some(field) = request.get(offset..offset.saturating_add(8)) {
        bytes.copy_from_slice(field);
    }
    u64::from_le_bytes(bytes)
}

/// Writes `value` at `offset` (nothing where the request ends).
pub fn put_u32(request: &mut Request, offset: usize, value: u32) {
    if let Some(field) = request.get_mut(offset..offset.saturating_add(4)) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes `value` at `offset` (nothing where the request ends).
pub fn put_u64(request: &mut Request, offset: usize, value: u64) {
    if let Some(field) = request.get_mut(offset..offset.saturating_add(8)) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}
/// Offset of the payload.
pub const PAYLOAD: usize = 16;

/// Create a paused domain. In: `max_vcpus` u32 @16, `flags` u32 @20
/// (0 PVH, [`CREATE_HVM`] HVM, other bits -EINVAL), `memory_kib` u64 @24.
/// Out: `domain`.
pub const CREATE: u32 = 1;
/// Destroy a domain and return its memory.
pub const DESTROY: u32 = 2;
/// Stop a domain's vCPUs from running.
pub const PAUSE: u32 = 3;
/// Let a domain's vCPUs run.
pub const UNPAUSE: u32 = 4;
/// Describe the first domain with an id ≥ `domain` (so Dom0 can list
/// them all). Out: `domain` (the one described), `flags` u32 @16 (Xen's
/// getdomaininfo bits: 2 shutdown, 3 paused, 4 blocked, 5 running (may
/// run, not only "on a CPU now"); shutdown reason in 23:16), `vcpus` u32 @20, `pages` u64 @24, `max_pages` u64 @32,
/// `cpu_time_ns` u64 @40. -ESRCH when there is none.
pub const GET_INFO: u32 = 5;
/// Copy from Dom0 into a paused domain's RAM (the domain builder). In:
/// `guest_address` u64 @16, `length` u32 @24 (at most [`WRITE_MAX`]),
/// `buffer` u64 @32 (Dom0 virtual address).
pub const WRITE_MEMORY: u32 = 6;
/// Set where a vCPU starts (32-bit protected mode, paging off). In:
/// `vcpu` u32 @16, `entry` u64 @24 (must fit 32 bits), `start_info` u64
/// @32 (guest-physical: in EBX for a PVH domain, the PVH start info; in
/// ESI for an HVM domain, the Linux boot protocol's zero page).
pub const SET_VCPU_ENTRY: u32 = 7;
/// Set one of a domain's HVM parameters. In: `index` u32 @16, `value`
/// u64 @24.
pub const SET_HVM_PARAM: u32 = 8;
/// Machine figures. Out: `total_pages` u64 @16, `free_pages` u64 @24,
/// `tsc_khz` u32 @32, `domains` u32 @36.
pub const PHYSINFO: u32 = 9;

/// Map guest frames into Dom0 (the domain builder's foreign mappings).
/// Dom0 is identity-mapped, so each frame appears in Dom0 at its
/// host-physical address, which the hypervisor returns. In: `gfn` u64 @16
/// (first guest frame), `count` u32 @24 (at most [`MAP_MAX`]), `addresses`
/// u64 @32 (Dom0 virtual: an array of `count` u64 that receives each
/// frame's address in Dom0). The mappings last until UNMAP_FRAMES or the
/// domain's destruction.
pub const MAP_FRAMES: u32 = 10;
/// Unmap guest frames from Dom0. In: `gfn` u64 @16, `count` u32 @24.
pub const UNMAP_FRAMES: u32 = 11;
/// Power the machine off, reporting how the appliance ended. In: `status`
/// u32 @16: 0 is a clean power off (as `SCHEDOP_shutdown(poweroff)`);
/// anything else is a deliberate power off that reports failure (e.g. a
/// guest did not shut down cleanly). Under QEMU, `isa-debug-exit` makes
/// QEMU exit with 33 for status 0 and 39 otherwise; on hardware both power
/// off through ACPI and the status is logged. Does not return.
pub const POWER_OFF: u32 = 12;

/// Most frames one MAP_FRAMES or UNMAP_FRAMES handles.
pub const MAP_MAX: u32 = 512;

/// Most bytes one WRITE_MEMORY copies.
pub const WRITE_MAX: u32 = 1 << 20;
/// `flags` bit of CREATE asking for an HVM guest.
pub const CREATE_HVM: u32 = 1;
