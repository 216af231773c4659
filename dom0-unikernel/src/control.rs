//! The hypervisor's control interface (docs/control-interface.md), one
//! typed function per command. Errors are the negative Xen errno the
//! hypervisor returned.

use xenolith_abi::control as abi;
use xenolith_abi::domain::DomainId;

use crate::hypercall;

pub use xenolith_abi::control::{DomainInfo, StopReason};

use abi::{Request, put_u32, put_u64, u64_at};

/// A negative Xen errno.
pub type Errno = i64;

fn request(cmd: u32, domain: DomainId) -> Request {
    let mut request = [0u8; abi::REQUEST_SIZE];
    put_u32(&mut request, 0, cmd);
    put_u32(&mut request, 4, abi::VERSION);
    request[8..10].copy_from_slice(&domain.0.to_le_bytes());
    request
}

fn domain_at(request: &Request) -> DomainId {
    DomainId(u16::from_le_bytes([request[8], request[9]]))
}

fn simple(cmd: u32, domain: DomainId) -> Result<(), Errno> {
    hypercall::control(&mut request(cmd, domain))
}

/// Creates a paused domain with `vcpus` vCPUs and `memory_kib` of zeroed
/// RAM at guest-physical 0.
pub fn create(vcpus: u32, memory_kib: u64) -> Result<DomainId, Errno> {
    create_with_flags(vcpus, memory_kib, 0)
}

/// Creates a paused HVM domain (vCPU 0 entered by the Linux boot protocol).
pub fn create_hvm(vcpus: u32, memory_kib: u64) -> Result<DomainId, Errno> {
    create_with_flags(vcpus, memory_kib, abi::CREATE_HVM)
}

fn create_with_flags(vcpus: u32, memory_kib: u64, flags: u32) -> Result<DomainId, Errno> {
    let mut create = request(abi::CREATE, DomainId(0));
    put_u32(&mut create, 16, vcpus);
    put_u32(&mut create, 20, flags);
    put_u64(&mut create, 24, memory_kib);
    hypercall::control(&mut create)?;
    Ok(domain_at(&create))
}

/// Destroys a domain, returning its memory.
pub fn destroy(domain: DomainId) -> Result<(), Errno> {
    simple(abi::DESTROY, domain)
}

pub fn pause(domain: DomainId) -> Result<(), Errno> {
    simple(abi::PAUSE, domain)
}

pub fn unpause(domain: DomainId) -> Result<(), Errno> {
    simple(abi::UNPAUSE, domain)
}

/// The first domain whose id is `from` or above.
pub fn info_from(from: DomainId) -> Result<DomainInfo, Errno> {
    let mut get = request(abi::GET_INFO, from);
    hypercall::control(&mut get)?;
    Ok(DomainInfo::decode(&get))
}

/// One domain's info (`-ESRCH` when it does not exist).
pub fn info(domain: DomainId) -> Result<DomainInfo, Errno> {
    let info = info_from(domain)?;
    if info.domain != domain {
        return Err(-3);
    }
    Ok(info)
}

/// Copies `bytes` into a paused domain's RAM at guest-physical `address`
/// (at most 1 MiB a call).
pub fn write_memory(domain: DomainId, address: u64, bytes: &[u8]) -> Result<(), Errno> {
    let mut write = request(abi::WRITE_MEMORY, domain);
    put_u64(&mut write, 16, address);
    put_u32(&mut write, 24, bytes.len() as u32);
    put_u64(&mut write, 32, bytes.as_ptr() as u64);
    hypercall::control(&mut write)
}

/// Where vCPU `vcpu` starts (PVH: 32-bit, paging off, EBX = start info).
pub fn set_vcpu_entry(
    domain: DomainId,
    vcpu: u32,
    entry: u64,
    start_info: u64,
) -> Result<(), Errno> {
    let mut set = request(abi::SET_VCPU_ENTRY, domain);
    put_u32(&mut set, 16, vcpu);
    put_u64(&mut set, 24, entry);
    put_u64(&mut set, 32, start_info);
    hypercall::control(&mut set)
}

/// HVM parameter indices the toolstack sets.
pub mod hvm_param {
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
}

pub fn set_hvm_param(domain: DomainId, index: u32, value: u64) -> Result<(), Errno> {
    let mut set = request(abi::SET_HVM_PARAM, domain);
    put_u32(&mut set, 16, index);
    put_u64(&mut set, 24, value);
    hypercall::control(&mut set)
}

/// Free memory, in KiB (0 if the hypervisor does not say).
pub fn free_kib() -> u64 {
    let mut physinfo = request(abi::PHYSINFO, DomainId(0));
    match hypercall::control(&mut physinfo) {
        Ok(()) => u64_at(&physinfo, 24) * 4,
        Err(_) => 0,
    }
}

/// Total memory, in KiB.
pub fn total_kib() -> u64 {
    let mut physinfo = request(abi::PHYSINFO, DomainId(0));
    match hypercall::control(&mut physinfo) {
        Ok(()) => u64_at(&physinfo, 16) * 4,
        Err(_) => 0,
    }
}

/// Maps `addresses.len()` guest frames from `gfn` into Dom0; each frame's
/// Dom0 address is written to `addresses`.
pub fn map_frames(domain: DomainId, gfn: u64, addresses: &mut [u64]) -> Result<(), Errno> {
    let mut map = request(abi::MAP_FRAMES, domain);
    put_u64(&mut map, 16, gfn);
    put_u32(&mut map, 24, addresses.len() as u32);
    put_u64(&mut map, 32, addresses.as_mut_ptr() as u64);
    hypercall::control(&mut map)
}

pub fn unmap_frames(domain: DomainId, gfn: u64, count: u32) -> Result<(), Errno> {
    let mut unmap = request(abi::UNMAP_FRAMES, domain);
    put_u64(&mut unmap, 16, gfn);
    put_u32(&mut unmap, 24, count);
    hypercall::control(&mut unmap)
}

/// Powers the machine off; `failed` reports that the appliance ended
/// badly (QEMU exits with 39 instead of 33). Returns only if refused.
pub fn power_off(failed: bool) -> Errno {
    let mut off = request(abi::POWER_OFF, DomainId(0));
    put_u32(&mut off, 16, u32::from(failed));
    match hypercall::control(&mut off) {
        Ok(()) => 0,
        Err(code) => code,
    }
}
