//! The hypervisor's hold on host memory: which frames are free, and its
//! own page tables (identity map, its image mapped W^X, page 0 unmapped).

use core::sync::atomic::{AtomicU64, Ordering};

use hypervisor::boot::{BootInfo, MemoryKind};
use hypervisor::memory::address::HUGE_PAGE_SIZE;
use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::paging::{HypervisorPageTables, PageFlags, PageSize};
use hypervisor::memory::{HostPhysAddr, HostRange, PAGE_SIZE};
use log::{debug, info};
use x86_64::registers::control::{Cr0, Cr0Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

use crate::fatal;
use crate::hw::memory::TableFrames;

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static baremetal_boot_stack: u8;
}

/// The hypervisor image's sections, from the linker script.
pub struct ImageLayout {
    pub start: HostPhysAddr,
    pub text_end: HostPhysAddr,
    pub rodata_end: HostPhysAddr,
    pub end: HostPhysAddr,
}

/// Where the linker put the image (identity-mapped, so these are physical).
pub fn image() -> ImageLayout {
    // Taking the addresses of linker symbols reads nothing.
    ImageLayout {
        start: HostPhysAddr(&raw const __image_start as u64),
        text_end: HostPhysAddr(&raw const __text_end as u64),
        rodata_end: HostPhysAddr(&raw const __rodata_end as u64),
        end: HostPhysAddr(&raw const __image_end as u64),
    }
}

impl ImageLayout {
    pub fn range(&self) -> HostRange {
        HostRange {
            start: self.start,
            end: self.end,
        }
    }
}

/// Low memory the hypervisor never hands out: BIOS data, real-mode stubs.
const LEGACY_LOW_MEMORY: HostRange = HostRange {
    start: HostPhysAddr(0),
    end: HostPhysAddr(0x10_0000),
};

/// Free frames: usable RAM less low memory, the image, the loader's data
/// and the boot modules.
pub fn frame_allocator(boot: &BootInfo) -> FrameAllocator {
    let mut frames = FrameAllocator::new();
    for region in boot
        .memory
        .iter()
        .filter(|region| region.kind == MemoryKind::Usable)
    {
        if let Err(error) = frames.add_usable(region.range) {
            fatal(format_args!("memory map: {error}"));
        }
    }
    frames.reserve(LEGACY_LOW_MEMORY);
    frames.reserve(image().range());
    frames.reserve(boot.info_range);
    for module in &boot.modules {
        frames.reserve(module.range);
    }
    FREE_AT_START.store(frames.free_bytes(), Ordering::Relaxed);
    info!(
        "hypervisor image {} ({} KiB); {} MiB of RAM free",
        image().range(),
        image().range().len() / 1024,
        frames.free_bytes() >> 20
    );
    frames
}

static FREE_AT_START: AtomicU64 = AtomicU64::new(0);

/// Bytes the hypervisor uses: its image plus every frame it allocated
/// since boot (Dom0's RAM aside).
pub fn hypervisor_footprint(frames: &FrameAllocator, dom0_ram: HostRange) -> u64 {
    let allocated = FREE_AT_START
        .load(Ordering::Relaxed)
        .saturating_sub(frames.free_bytes());
    image().range().len() + allocated.saturating_sub(dom0_ram.len())
}

#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// The hypervisor's heap: domain and channel bookkeeping, sized by the
/// hypervisor's own caps, never by a guest's request alone.
pub const HEAP_SIZE: u64 = 8 * 1024 * 1024;

/// Gives the heap its frames (below 4 GiB, mapped by every page table).
pub fn init_heap(frames: &mut FrameAllocator) {
    let range = frames
        .allocate(HEAP_SIZE, PAGE_SIZE, crate::hw::memory::BOOT_MAPPED)
        .unwrap_or_else(|error| fatal(format_args!("no memory for the hypervisor heap: {error}")));
    // SAFETY: the range was just allocated to the hypervisor, is identity
    // mapped and used by nothing else.
    unsafe {
        HEAP.lock()
            .init(range.start.0 as *mut u8, range.len() as usize)
    };
}

/// Highest address the identity map covers: all RAM and firmware ranges,
/// and at least the 32-bit device window.
pub fn top_of_memory(boot: &BootInfo) -> HostPhysAddr {
    let highest = boot
        .memory
        .iter()
        .map(|region| region.range.end.0)
        .max()
        .unwrap_or(0);
    HostPhysAddr(highest.max(1 << 32))
        .align_up(HUGE_PAGE_SIZE)
        .unwrap_or(HostPhysAddr(1 << 32))
}

/// Whether the CPU maps 1 GiB pages.
pub fn huge_pages() -> bool {
    baremetal::cpu::cpuid(0x8000_0001, 0)[3] & (1 << 26) != 0
}

/// Replaces the boot page tables with the hypervisor's own.
pub fn take_over_paging(boot: &BootInfo, frames: &mut FrameAllocator) {
    let has_nx = baremetal::cpu::cpuid(0x8000_0001, 0)[3] & (1 << 20) != 0;
    if !has_nx {
        fatal(format_args!("the CPU lacks no-execute pages"));
    }
    // SAFETY: NX exists (checked above); enabling it only adds a check.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::NO_EXECUTE_ENABLE)) };

    let image = image();
    let top = top_of_memory(boot);
    let largest = if huge_pages() {
        PageSize::Huge
    } else {
        PageSize::Large
    };
    let mut memory = TableFrames { frames };
    let tables = HypervisorPageTables::new_root(&mut memory)
        .unwrap_or_else(|error| fatal(format_args!("page tables: {error}")));
    let text_end = image.text_end.align_up(PAGE_SIZE).unwrap_or(image.text_end);
    let rodata_end = image
        .rodata_end
        .align_up(PAGE_SIZE)
        .unwrap_or(image.rodata_end);
    // The lowest page of the boot stack stays unmapped: an overflow
    // faults (and is reported from the fatal-exception stack) instead of
    // silently overwriting the data below.
    let stack_guard = HostPhysAddr(&raw const baremetal_boot_stack as u64);
    let above_guard = HostPhysAddr(stack_guard.0 + PAGE_SIZE);
    // The local APIC's registers must not be cached.
    let local_apic = HostPhysAddr(crate::hw::lapic::base_address());
    let after_local_apic = HostPhysAddr(local_apic.0 + PAGE_SIZE);
    let plan = [
        (HostPhysAddr(PAGE_SIZE), image.start, PageFlags::DATA),
        (image.start, text_end, PageFlags::TEXT),
        (text_end, rodata_end, PageFlags::READ_ONLY_DATA),
        (rodata_end, stack_guard, PageFlags::DATA),
        (above_guard, local_apic, PageFlags::DATA),
        (local_apic, after_local_apic, PageFlags::DEVICE),
        (after_local_apic, top, PageFlags::DATA),
    ];
    for (start, end, flags) in plan {
        let range = HostRange { start, end };
        if range.is_empty() {
            continue;
        }
        if let Err(error) = tables.identity_map(&mut memory, range, flags, largest) {
            fatal(format_args!("page tables: mapping {range}: {error}"));
        }
    }
    // SAFETY: the new tables map the image (code, data, stack) and all
    // memory identically to the boot tables, so execution continues.
    unsafe {
        core::arch::asm!("mov cr3, {}", in(reg) tables.root().0, options(nostack));
        Cr0::update(|flags| flags.insert(Cr0Flags::WRITE_PROTECT));
    }
    debug!(
        "own page tables at {:#x}, identity map up to {:#x}",
        tables.root().0,
        top.0
    );
}
