//! A domain's memory as the hypervisor reaches it: guest-physical through
//! the domain's RAM map (host frames are identity-mapped in the
//! hypervisor), guest-virtual through the vCPU's own page tables.

use hypervisor::domain::{GuestRam, Scrub};
use hypervisor::hypercall::{GuestAccess, GuestFault};
use hypervisor::memory::guest_walk::{
    self, Access, GuestMemoryError, GuestPhysicalMemory, PagingMode,
};
use hypervisor::memory::{GuestPhysAddr, GuestVirtAddr, HostRange, PAGE_SIZE};
use hypervisor::svm::vmcb::{Vmcb, save};

use crate::hw::memory as physical;

/// Zeroes a domain's RAM frames through the identity map the first time
/// its RAM map resolves them.
pub struct IdentityScrub;

impl Scrub for IdentityScrub {
    fn zero(&self, range: HostRange) {
        // SAFETY: a RAM map only asks to zero its own extents' frames: RAM
        // allocated to the domain, identity-mapped, and not yet mapped,
        // written or handed out by anyone.
        unsafe { physical::zero(range) };
    }
}

/// Guest-physical access through a domain's RAM map.
pub struct RamAccess<'a> {
    pub ram: &'a GuestRam,
}

impl RamAccess<'_> {
    /// Calls `f(host_address, offset_in_buffer, length)` for each page
    /// piece of `[address, address + len)`, or fails on the first
    /// unbacked page before touching anything.
    fn pieces(
        &self,
        address: GuestPhysAddr,
        len: usize,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), GuestMemoryError> {
        let mut done = 0usize;
        let mut plan: arrayvec::ArrayVec<(u64, usize, usize), 64> = arrayvec::ArrayVec::new();
        while done < len {
            let current = GuestPhysAddr(
                address
                    .0
                    .checked_add(done as u64)
                    .ok_or(GuestMemoryError { address })?,
            );
            let host = self
                .ram
                .translate(current, &IdentityScrub)
                .ok_or(GuestMemoryError { address: current })?;
            let in_page = (PAGE_SIZE - current.page_offset()) as usize;
            let length = in_page.min(len - done);
            plan.try_push((host.0, done, length))
                .map_err(|_| GuestMemoryError { address: current })?;
            done += length;
        }
        for (host, offset, length) in plan {
            f(host, offset, length);
        }
        Ok(())
    }
}

impl GuestPhysicalMemory for RamAccess<'_> {
    fn read(&self, address: GuestPhysAddr, buffer: &mut [u8]) -> Result<(), GuestMemoryError> {
        let target = buffer.as_mut_ptr();
        self.pieces(address, buffer.len(), |host, offset, length| {
            // SAFETY: `host` is a frame of this domain's RAM, identity-mapped
            // in the hypervisor; `offset + length` stays inside `buffer`. A
            // racing guest write only changes the bytes copied, which are
            // copied once and validated afterwards.
            unsafe {
                core::ptr::copy_nonoverlapping(host as *const u8, target.add(offset), length)
            };
        })
    }

    fn write(&mut self, address: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
        let source = data.as_ptr();
        self.pieces(address, data.len(), |host, offset, length| {
            // SAFETY: `host` is a frame of this domain's RAM, identity-mapped
            // in the hypervisor; `offset + length` stays inside `data`.
            unsafe { core::ptr::copy_nonoverlapping(source.add(offset), host as *mut u8, length) };
        })
    }
}

/// A vCPU's guest-virtual view of its domain's memory: its paging
/// registers (copied at the exit) and its RAM.
pub struct GuestView<'a> {
    mode: PagingMode,
    cr3: u64,
    no_execute: bool,
    pub ram: RamAccess<'a>,
}

impl<'a> GuestView<'a> {
    /// The view of the vCPU whose state is in `vmcb`.
    pub fn new(vmcb: &Vmcb, ram: RamAccess<'a>) -> Self {
        let efer = vmcb.read_u64(save::EFER);
        Self {
            mode: PagingMode::from_registers(
                vmcb.read_u64(save::CR0),
                vmcb.read_u64(save::CR4),
                efer,
            ),
            cr3: vmcb.read_u64(save::CR3),
            no_execute: efer & (1 << 11) != 0,
            ram,
        }
    }

    fn paging(&self) -> (PagingMode, u64, bool) {
        (self.mode, self.cr3, self.no_execute)
    }
}

impl GuestAccess for GuestView<'_> {
    fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), GuestFault> {
        let (mode, cr3, nxe) = self.paging();
        guest_walk::read_virtual(
            mode,
            cr3,
            address,
            Access::SUPERVISOR_READ,
            nxe,
            &self.ram,
            buffer,
        )
        .map_err(|error| GuestFault {
            address: error.address,
        })
    }

    fn write(&mut self, address: GuestVirtAddr, data: &[u8]) -> Result<(), GuestFault> {
        let (mode, cr3, nxe) = self.paging();
        guest_walk::write_virtual(
            mode,
            cr3,
            address,
            Access::SUPERVISOR_WRITE,
            nxe,
            &mut self.ram,
            data,
        )
        .map_err(|error| GuestFault {
            address: error.address,
        })
    }
}
