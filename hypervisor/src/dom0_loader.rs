//! Building Dom0 in memory: its RAM reserved identity-mapped, its ELF
//! segments and boot modules copied in, its `hvm_start_info` written, and
//! the nested page tables that give it its RAM and the machine's devices
//! but none of the hypervisor's memory.

use arrayvec::{ArrayString, ArrayVec};
use hypervisor::boot::cmdline::Options;
use hypervisor::boot::{BootInfo, MAX_MODULES, MemoryKind, Module};
use hypervisor::dom0::{self, BOOT_DATA_SIZE, segment_range};
use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::paging::{NestedPageTables, PageFlags, PageSize};
use hypervisor::memory::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE};
use log::info;
use pvh::PvhImage;
use pvh::start_info::ModuleEntry;

use crate::fatal;
use crate::host_memory::{self, huge_pages};
use crate::hw::memory::{self as physical, TableFrames};

/// The local APIC page stays with the hypervisor.
const LOCAL_APIC: HostRange = HostRange {
    start: HostPhysAddr(0xfee0_0000),
    end: HostPhysAddr(0xfee0_1000),
};

/// Dom0's RAM and image, chosen before anything else is allocated.
pub struct Dom0Plan {
    pub ram: HostRange,
    pub image: PvhImage,
    pub module_index: usize,
}

/// Dom0 in memory, ready to run.
pub struct Dom0 {
    pub ram: HostRange,
    pub entry: u32,
    pub start_info: HostPhysAddr,
    pub nested: NestedPageTables,
}

/// The module that is Dom0: the one whose command line starts with `dom0`,
/// else the first (QEMU's `-initrd` has no command line).
fn dom0_module(boot: &BootInfo) -> Option<usize> {
    let named = boot
        .modules
        .iter()
        .position(|module| module.cmdline.split_whitespace().next() == Some("dom0"));
    named.or(if boot.modules.is_empty() {
        None
    } else {
        Some(0)
    })
}

/// Finds and checks Dom0's image and reserves its RAM.
pub fn plan(boot: &BootInfo, options: &Options, frames: &mut FrameAllocator) -> Dom0Plan {
    let Some(module_index) = dom0_module(boot) else {
        fatal(format_args!(
            "no Dom0 module: give dom0.elf as a module2 line (GRUB) or as -initrd (QEMU -kernel)"
        ));
    };
    let module = &boot.modules[module_index];
    // SAFETY: module memory is reserved from the allocator and unchanged
    // until `load` copies it.
    let bytes = unsafe { physical::bytes(module.range) };
    let image = dom0::parse_image(bytes).unwrap_or_else(|error| fatal(format_args!("{error}")));
    let hypervisor = host_memory::image().range();
    let ram = dom0::choose_ram(&image, options.dom0_memory, &boot.memory, hypervisor)
        .unwrap_or_else(|error| fatal(format_args!("{error}")));
    frames.reserve(ram);
    info!(
        "dom0 RAM {ram} ({} MiB), entry {:#x}",
        ram.len() >> 20,
        image.entry
    );
    Dom0Plan {
        ram,
        image,
        module_index,
    }
}

/// Copies Dom0 and its modules into its RAM and builds its nested tables.
pub fn load(
    boot: &BootInfo,
    options: &Options,
    plan: Dom0Plan,
    frames: &mut FrameAllocator,
) -> Dom0 {
    let ram = plan.ram;
    // Modules inside Dom0's RAM would be overwritten: move them out first.
    let mut modules: ArrayVec<Module, MAX_MODULES> = boot.modules.clone();
    let mut staged: ArrayVec<HostRange, MAX_MODULES> = ArrayVec::new();
    for module in modules
        .iter_mut()
        .filter(|module| module.range.overlaps(&ram))
    {
        let copy = frames
            .allocate(module.range.len().max(1), PAGE_SIZE, HostPhysAddr(u64::MAX))
            .unwrap_or_else(|error| fatal(format_args!("no room to move a boot module: {error}")));
        // SAFETY: both ranges are reserved for the hypervisor right now.
        unsafe { physical::copy(copy.start, module.range.start, module.range.len()) };
        module.range = HostRange::new(copy.start, module.range.len()).unwrap_or(copy);
        let _ = staged.try_push(copy);
    }

    let image_module = &modules[plan.module_index];
    for segment in &plan.image.segments {
        // SAFETY: the segment lies in Dom0's RAM (checked by the plan),
        // reserved for Dom0; the source is the staged or original module.
        unsafe {
            physical::zero(segment_range(segment));
            physical::copy(
                HostPhysAddr(segment.start),
                HostPhysAddr(image_module.range.start.0 + segment.file_offset),
                segment.file_size,
            );
        }
    }

    // Other modules go below the boot data at the top of Dom0's RAM.
    let boot_data = HostPhysAddr(ram.end.0 - BOOT_DATA_SIZE);
    let image_end = HostPhysAddr(plan.image.end)
        .align_up(PAGE_SIZE)
        .unwrap_or(ram.end);
    let mut cursor = boot_data;
    let mut placed: ArrayVec<ModuleEntry<'_>, MAX_MODULES> = ArrayVec::new();
    for (index, module) in modules.iter().enumerate() {
        if index == plan.module_index {
            continue;
        }
        let size = module.range.len().div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if cursor.0.saturating_sub(size) < image_end.0 {
            fatal(format_args!(
                "no room for Dom0: its boot modules do not fit in {} MiB",
                ram.len() >> 20
            ));
        }
        cursor = HostPhysAddr(cursor.0 - size);
        // SAFETY: the destination lies in Dom0's RAM above its image; the
        // source is a reserved module.
        unsafe { physical::copy(cursor, module.range.start, module.range.len()) };
        let _ = placed.try_push(ModuleEntry {
            address: cursor.0,
            size: module.range.len(),
            cmdline: module.cmdline.as_str(),
        });
    }

    let cmdline = dom0_cmdline(&boot.modules[plan.module_index].cmdline, &options.dom0_args);
    let block = dom0::start_info::build(boot_data, ram, &boot.memory, &cmdline, &placed, boot.rsdp);
    // SAFETY: the boot data area is the top of Dom0's RAM.
    unsafe { physical::write(boot_data, &block) };

    // Original module frames outside Dom0's RAM, and the staging copies,
    // are the hypervisor's again.
    for range in boot.modules.iter().map(|module| module.range).chain(staged) {
        if !range.overlaps(&ram) {
            let whole = HostRange {
                start: range.start.align_down(PAGE_SIZE),
                end: range.end.align_up(PAGE_SIZE).unwrap_or(range.end),
            };
            let _ = frames.free(whole);
        }
    }

    let nested = build_nested_tables(boot, ram, frames);
    Dom0 {
        ram,
        entry: plan.image.entry,
        start_info: boot_data,
        nested,
    }
}

/// Dom0's command line: the words after `dom0` on its module line, then
/// everything after `--` on the hypervisor's.
fn dom0_cmdline(module_cmdline: &str, after_dashes: &str) -> ArrayString<1024> {
    let mut cmdline = ArrayString::new();
    let words = module_cmdline
        .split_whitespace()
        .skip_while(|word| *word == "dom0")
        .chain(after_dashes.split_whitespace());
    for word in words {
        if cmdline.len() + word.len() + 1 > cmdline.capacity() {
            break;
        }
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(word);
    }
    cmdline
}

/// Nested tables: Dom0's RAM, and every address the memory map does not
/// call usable RAM (devices, firmware, ACPI tables), identity-mapped. The
/// hypervisor's RAM and the local APIC stay out of reach.
fn build_nested_tables(
    boot: &BootInfo,
    ram: HostRange,
    frames: &mut FrameAllocator,
) -> NestedPageTables {
    let largest = if huge_pages() {
        PageSize::Huge
    } else {
        PageSize::Large
    };
    let mut memory = TableFrames { frames };
    let tables = NestedPageTables::new_root(&mut memory)
        .unwrap_or_else(|error| fatal(format_args!("nested tables: {error}")));
    let mut map = |range: HostRange| {
        let start = range.start.align_up(PAGE_SIZE).unwrap_or(range.end);
        let end = range.end.align_down(PAGE_SIZE);
        if start >= end {
            return;
        }
        let range = HostRange { start, end };
        if let Err(error) = tables.map(
            &mut memory,
            GuestPhysAddr(start.0),
            start,
            range.len(),
            PageFlags::WRITABLE,
            largest,
        ) {
            fatal(format_args!("nested tables: mapping {range}: {error}"));
        }
    };
    map(ram);
    let top = host_memory::top_of_memory(boot);
    let mut cursor = HostPhysAddr(0);
    let usable = boot
        .memory
        .iter()
        .filter(|region| region.kind == MemoryKind::Usable)
        .map(|region| region.range);
    let after_last = core::iter::once(HostRange {
        start: top,
        end: top,
    });
    for region in usable.chain(after_last) {
        if cursor < region.start {
            let hole = HostRange {
                start: cursor,
                end: region.start,
            };
            if hole.overlaps(&LOCAL_APIC) {
                map(HostRange {
                    start: hole.start,
                    end: LOCAL_APIC.start,
                });
                map(HostRange {
                    start: LOCAL_APIC.end,
                    end: hole.end,
                });
            } else {
                map(hole);
            }
        }
        cursor = cursor.max(region.end);
    }
    tables
}
