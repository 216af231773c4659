//! Host-physical memory through the identity map: the hypervisor reaches
//! every frame at the virtual address equal to its physical address.

use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::paging::{ENTRIES_PER_TABLE, TableMemory};
use hypervisor::memory::{HostPhysAddr, HostRange, OutOfBounds, PAGE_SIZE, PhysicalMemory};

/// Frames the boot page tables map: the first 4 GiB.
pub const BOOT_MAPPED: HostPhysAddr = HostPhysAddr(1 << 32);

/// Reads of loader structures: anything the boot map covers. (QEMU's PVH
/// loader puts its memory map in page 0, so page 0 is readable here.)
pub struct LoaderMemory;

impl PhysicalMemory for LoaderMemory {
    fn read(&self, address: HostPhysAddr, buffer: &mut [u8]) -> Result<(), OutOfBounds> {
        let fault = OutOfBounds {
            address,
            len: buffer.len(),
        };
        let end = address.checked_add(buffer.len() as u64).ok_or(fault)?;
        if end > BOOT_MAPPED {
            return Err(fault);
        }
        // SAFETY: the range lies inside the identity-mapped first 4 GiB;
        // loader structures are plain RAM we only read.
        unsafe {
            core::ptr::copy_nonoverlapping(
                address.0 as *const u8,
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        Ok(())
    }
}

/// A slice over host memory the hypervisor owns (a boot module).
///
/// # Safety
/// `range` must be mapped, reserved from the frame allocator, and not be
/// written while the slice lives.
pub unsafe fn bytes(range: HostRange) -> &'static [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(range.start.0 as *const u8, range.len() as usize) }
}

/// Copies `len` bytes between host-physical addresses (ranges may overlap).
///
/// # Safety
/// Both ranges must be mapped and owned by the caller.
pub unsafe fn copy(destination: HostPhysAddr, source: HostPhysAddr, len: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        core::ptr::copy(
            source.0 as *const u8,
            destination.0 as *mut u8,
            len as usize,
        )
    };
}

/// Copies one 32-bit word between host-physical addresses: one load and
/// one store, each a single access where its address is 4-aligned. Ring
/// indices go through here (a grant copy of 4 bytes); `copy`'s memmove
/// moves 4 bytes with `rep movsb`, a byte at a time, which can read an
/// index half before and half after the other domain's update.
///
/// # Safety
/// Both 4-byte ranges must be mapped and owned by the caller.
pub unsafe fn copy_word(destination: HostPhysAddr, source: HostPhysAddr) {
    let source = source.0 as *const u32;
    let destination = destination.0 as *mut u32;
    // SAFETY: mapped and owned (the caller's guarantee); the volatile
    // accesses are the aligned ones, a single `mov` each.
    unsafe {
        let value = if source.is_aligned() {
            source.read_volatile()
        } else {
            source.read_unaligned()
        };
        if destination.is_aligned() {
            destination.write_volatile(value);
        } else {
            destination.write_unaligned(value);
        }
    }
}

/// Writes `data` at a host-physical address.
///
/// # Safety
/// The range must be mapped and owned by the caller.
pub unsafe fn write(destination: HostPhysAddr, data: &[u8]) {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), destination.0 as *mut u8, data.len()) };
}

/// Fills a host-physical range with zeros.
///
/// # Safety
/// The range must be mapped and owned by the caller.
pub unsafe fn zero(range: HostRange) {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::write_bytes(range.start.0 as *mut u8, 0, range.len() as usize) };
}

/// A hypervisor object in frames it allocated for it.
///
/// # Safety
/// `address` must be mapped, aligned for `T`, at least `size_of::<T>()`
/// bytes long, owned by the hypervisor and not otherwise referenced; the
/// bytes must be a valid `T` (all-zero or fully initialised).
pub unsafe fn object<T>(address: HostPhysAddr) -> &'static mut T {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(address.0 as *mut T) }
}

/// Page-table frames, allocated below 4 GiB so the boot map reaches them.
pub struct TableFrames<'a> {
    pub frames: &'a mut FrameAllocator,
}

impl TableMemory for TableFrames<'_> {
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        debug_assert!(index < ENTRIES_PER_TABLE);
        // SAFETY: `table` is a frame this allocator handed out for a page
        // table; `index < 512` keeps the read inside it.
        unsafe { core::ptr::read_volatile((table.0 as *const u64).add(index % ENTRIES_PER_TABLE)) }
    }

    fn write_entry(&mut self, table: HostPhysAddr, index: usize, entry: u64) {
        // SAFETY: as for `read_entry`; page tables are hypervisor-owned.
        unsafe {
            core::ptr::write_volatile((table.0 as *mut u64).add(index % ENTRIES_PER_TABLE), entry)
        }
    }

    fn allocate_table(&mut self) -> Option<HostPhysAddr> {
        let frame = self
            .frames
            .allocate(PAGE_SIZE, PAGE_SIZE, BOOT_MAPPED)
            .ok()?;
        // SAFETY: the frame was just allocated to us and lies below 4 GiB.
        unsafe { zero(frame) };
        Some(frame.start)
    }
}

/// Page-table frames charged to a guest's allowance: a guest that maps
/// things at far-apart guest frames (shared_info, grants, ballooned pages)
/// must not make the hypervisor allocate nested tables without end.
pub struct ChargedTableFrames<'a> {
    pub frames: &'a mut FrameAllocator,
    /// Tables the guest may still cause; none left means the mapping fails.
    pub budget: &'a mut u64,
}

impl TableMemory for ChargedTableFrames<'_> {
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        // SAFETY: as for `TableFrames::read_entry`.
        unsafe { core::ptr::read_volatile((table.0 as *const u64).add(index % ENTRIES_PER_TABLE)) }
    }

    fn write_entry(&mut self, table: HostPhysAddr, index: usize, entry: u64) {
        // SAFETY: as for `TableFrames::write_entry`.
        unsafe {
            core::ptr::write_volatile((table.0 as *mut u64).add(index % ENTRIES_PER_TABLE), entry)
        }
    }

    fn allocate_table(&mut self) -> Option<HostPhysAddr> {
        *self.budget = self.budget.checked_sub(1)?;
        TableFrames {
            frames: self.frames,
        }
        .allocate_table()
    }
}
