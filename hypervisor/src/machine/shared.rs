//! A domain's shared pages as the hypervisor touches them: the 2-level
//! event bitmaps in shared_info, each vCPU's vcpu_info (upcall flag,
//! selector, time record). The guest changes these bits concurrently, so
//! every access is one atomic operation or a volatile copy.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use alloc::vec::Vec;

use hypervisor::domain::Domain;
use hypervisor::event_channel::{EventMemory, Port, VcpuId};
use hypervisor::hypercall::GuestAccess;
use hypervisor::memory::{GuestVirtAddr, HostPhysAddr};
use hypervisor::time::VersionedWriter;

/// Offsets in shared_info (`xen.h`).
const PENDING: u64 = 2048;
const MASK: u64 = 2560;
/// vCPUs with a vcpu_info slot in shared_info.
const LEGACY_VCPUS: usize = 32;
/// Offset of `vcpu_time_info` in `vcpu_info`.
pub const TIME_OFFSET: u64 = 32;

/// One domain's event memory: its shared_info frame and where each vCPU's
/// vcpu_info lives.
pub struct SharedPages {
    pub shared_info: HostPhysAddr,
    /// Registered vcpu_info per vCPU (`None`: the shared_info slot).
    pub registered: Vec<Option<HostPhysAddr>>,
}

impl SharedPages {
    /// The shared pages of `domain`, as it set them up.
    pub fn of(domain: &Domain) -> Self {
        Self {
            shared_info: domain.shared_info,
            registered: domain.vcpus.iter().map(|state| state.vcpu_info).collect(),
        }
    }
}

fn word(address: u64) -> &'static AtomicU64 {
    // SAFETY: callers pass 8-byte-aligned addresses inside a shared_info
    // frame (hypervisor-owned, identity-mapped, alive as long as its
    // domain) or a registered vcpu_info (checked to lie in the guest's RAM
    // and not cross a page); AtomicU64 has the layout of u64.
    unsafe { &*(address as *const AtomicU64) }
}

fn byte(address: u64) -> &'static AtomicU8 {
    // SAFETY: as for `word`; any address is aligned for a byte.
    unsafe { &*(address as *const AtomicU8) }
}

impl SharedPages {
    /// Where vCPU `vcpu`'s vcpu_info is, if it has one.
    pub fn vcpu_info(&self, vcpu: usize) -> Option<u64> {
        match self.registered.get(vcpu).copied().flatten() {
            Some(address) => Some(address.0),
            None if vcpu < LEGACY_VCPUS => Some(self.shared_info.0 + 64 * vcpu as u64),
            None => None,
        }
    }

    /// The vCPU's shared_info slot (kept current even after registering
    /// elsewhere: Linux reads it early).
    pub fn legacy_slot(&self, vcpu: usize) -> Option<u64> {
        (vcpu < LEGACY_VCPUS).then(|| self.shared_info.0 + 64 * vcpu as u64)
    }

    /// Whether the vCPU has an upcall pending.
    pub fn upcall_pending(&self, vcpu: usize) -> bool {
        self.vcpu_info(vcpu)
            .is_some_and(|info| byte(info).load(Ordering::Acquire) != 0)
    }

    fn bit(&self, base: u64, port: Port) -> (&'static AtomicU64, u64) {
        let index = u64::from(port.0 % 4096);
        (
            word(self.shared_info.0 + base + (index / 64) * 8),
            1 << (index % 64),
        )
    }
}

impl EventMemory for SharedPages {
    fn test_and_set_pending(&mut self, port: Port) -> bool {
        let (word, bit) = self.bit(PENDING, port);
        word.fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    fn clear_pending(&mut self, port: Port) {
        let (word, bit) = self.bit(PENDING, port);
        word.fetch_and(!bit, Ordering::AcqRel);
    }

    fn is_pending(&self, port: Port) -> bool {
        let (word, bit) = self.bit(PENDING, port);
        word.load(Ordering::Acquire) & bit != 0
    }

    fn is_masked(&self, port: Port) -> bool {
        let (word, bit) = self.bit(MASK, port);
        word.load(Ordering::Acquire) & bit != 0
    }

    fn test_and_clear_mask(&mut self, port: Port) -> bool {
        let (word, bit) = self.bit(MASK, port);
        word.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    fn test_and_set_selector(&mut self, vcpu: VcpuId, selector_bit: u32) -> bool {
        let Some(info) = self.vcpu_info(vcpu.0 as usize) else {
            return true;
        };
        let bit = 1u64 << (selector_bit % 64);
        word(info + 8).fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    fn test_and_set_upcall_pending(&mut self, vcpu: VcpuId) -> bool {
        let Some(info) = self.vcpu_info(vcpu.0 as usize) else {
            return true;
        };
        byte(info).swap(1, Ordering::AcqRel) != 0
    }
}

/// A `vcpu_time_info` record in guest-visible memory.
pub struct TimeRecord {
    pub address: u64,
}

impl VersionedWriter for TimeRecord {
    fn version(&self) -> u32 {
        // SAFETY: `address` is a vcpu_time_info inside a mapped frame (see
        // `word`); the version is its first, 4-byte-aligned field.
        unsafe { core::ptr::read_volatile(self.address as *const u32) }
    }

    fn write_version(&mut self, version: u32) {
        // SAFETY: as for `version`.
        unsafe { core::ptr::write_volatile(self.address as *mut u32, version) };
        core::sync::atomic::compiler_fence(Ordering::Release);
    }

    fn write_fields(&mut self, fields: &[u8]) {
        for (offset, value) in fields.iter().enumerate().take(28) {
            // SAFETY: bytes 4..32 of the record, inside the same frame.
            unsafe {
                core::ptr::write_volatile((self.address + 4 + offset as u64) as *mut u8, *value)
            };
        }
        core::sync::atomic::compiler_fence(Ordering::Release);
    }
}

/// A `vcpu_time_info` record the guest placed at a guest-virtual address
/// (VCPUOP_register_vcpu_time_memory_area), written through its own page
/// tables. Faults drop the write: the area is the guest's to keep mapped.
pub struct GuestTimeRecord<'a, G: GuestAccess> {
    pub guest: &'a mut G,
    pub address: GuestVirtAddr,
}

impl<G: GuestAccess> VersionedWriter for GuestTimeRecord<'_, G> {
    fn version(&self) -> u32 {
        let mut bytes = [0u8; 4];
        let _ = self.guest.read(self.address, &mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn write_version(&mut self, version: u32) {
        let _ = self.guest.write(self.address, &version.to_le_bytes());
    }

    fn write_fields(&mut self, fields: &[u8]) {
        let fields = fields.get(..28).unwrap_or(fields);
        let _ = self
            .guest
            .write(GuestVirtAddr(self.address.0.wrapping_add(4)), fields);
    }
}

/// Copies `bytes` into guest-visible memory at `address` with volatile
/// stores (for records the guest reads concurrently).
pub fn store(address: u64, bytes: &[u8]) {
    for (offset, value) in bytes.iter().enumerate() {
        // SAFETY: callers pass ranges inside a shared_info frame or a
        // registered vcpu_info checked to stay within its page.
        unsafe { core::ptr::write_volatile((address + offset as u64) as *mut u8, *value) };
    }
}
