//! The boot data block Dom0 finds at the top of its RAM: `hvm_start_info`,
//! its memory map, module list and command lines, laid out at fixed
//! offsets and written as bytes with their final physical addresses.

use arrayvec::ArrayVec;
use xenolith_abi::start_info::{MAGIC, SIF_INITDOMAIN, SIF_PRIVILEGED, VERSION, memmap_type};

use super::BOOT_DATA_SIZE;
use crate::boot::{MemoryKind, MemoryRegion};
use crate::memory::{HostPhysAddr, HostRange};

const MEMMAP_OFFSET: usize = 0x40;
const MAX_MEMMAP_ENTRIES: usize = 64;
const MODLIST_OFFSET: usize = MEMMAP_OFFSET + MAX_MEMMAP_ENTRIES * 24;
const MAX_MODULES: usize = 16;
const CMDLINE_OFFSET: usize = MODLIST_OFFSET + MAX_MODULES * 32;
const CMDLINE_SIZE: usize = 1024;
const MODULE_CMDLINE_OFFSET: usize = CMDLINE_OFFSET + CMDLINE_SIZE;
const MODULE_CMDLINE_SIZE: usize = 256;

const _: () =
    assert!(MODULE_CMDLINE_OFFSET + MAX_MODULES * MODULE_CMDLINE_SIZE <= BOOT_DATA_SIZE as usize);

/// A module as Dom0 will find it.
#[derive(Clone, Copy, Debug)]
pub struct PlacedModule<'a> {
    pub range: HostRange,
    pub cmdline: &'a str,
}

/// What goes into the block.
pub struct StartInfoInput<'a> {
    /// Where the block will live.
    pub base: HostPhysAddr,
    /// Dom0's RAM.
    pub ram: HostRange,
    /// The host's memory map, from which non-RAM regions (ACPI tables,
    /// device ranges) are passed on so Dom0 can find them.
    pub host_memory: &'a [MemoryRegion],
    pub cmdline: &'a str,
    pub modules: &'a [PlacedModule<'a>],
    pub rsdp: Option<HostPhysAddr>,
}

/// Builds the block. Command lines longer than their slot are truncated;
/// memory-map entries and modules beyond the slots are dropped.
pub fn build(input: &StartInfoInput<'_>) -> [u8; BOOT_DATA_SIZE as usize] {
    let mut block = [0u8; BOOT_DATA_SIZE as usize];
    let base = input.base.0;

    let mut memmap: ArrayVec<(u64, u64, u32), MAX_MEMMAP_ENTRIES> = ArrayVec::new();
    let _ = memmap.try_push((input.ram.start.0, input.ram.len(), memmap_type::RAM));
    for region in input.host_memory {
        let kind = match region.kind {
            MemoryKind::Usable | MemoryKind::Bad => continue,
            MemoryKind::Reserved => memmap_type::RESERVED,
            MemoryKind::AcpiReclaimable => memmap_type::ACPI,
            MemoryKind::AcpiNvs => memmap_type::NVS,
        };
        if memmap
            .try_push((region.range.start.0, region.range.len(), kind))
            .is_err()
        {
            break;
        }
    }
    memmap.sort_unstable_by_key(|entry| entry.0);
    for (index, (address, size, kind)) in memmap.iter().enumerate() {
        let at = MEMMAP_OFFSET + index * 24;
        put(&mut block, at, &address.to_le_bytes());
        put(&mut block, at + 8, &size.to_le_bytes());
        put(&mut block, at + 16, &kind.to_le_bytes());
    }

    let modules = &input.modules[..input.modules.len().min(MAX_MODULES)];
    for (index, module) in modules.iter().enumerate() {
        let at = MODLIST_OFFSET + index * 32;
        let cmdline_at = MODULE_CMDLINE_OFFSET + index * MODULE_CMDLINE_SIZE;
        put(&mut block, at, &module.range.start.0.to_le_bytes());
        put(&mut block, at + 8, &module.range.len().to_le_bytes());
        put(
            &mut block,
            at + 16,
            &(base + cmdline_at as u64).to_le_bytes(),
        );
        put_string(&mut block, cmdline_at, module.cmdline, MODULE_CMDLINE_SIZE);
    }
    put_string(&mut block, CMDLINE_OFFSET, input.cmdline, CMDLINE_SIZE);

    put(&mut block, 0, &MAGIC.to_le_bytes());
    put(&mut block, 4, &VERSION.to_le_bytes());
    put(
        &mut block,
        8,
        &(SIF_PRIVILEGED | SIF_INITDOMAIN).to_le_bytes(),
    );
    put(&mut block, 12, &(modules.len() as u32).to_le_bytes());
    let modlist = if modules.is_empty() {
        0
    } else {
        base + MODLIST_OFFSET as u64
    };
    put(&mut block, 16, &modlist.to_le_bytes());
    put(
        &mut block,
        24,
        &(base + CMDLINE_OFFSET as u64).to_le_bytes(),
    );
    put(
        &mut block,
        32,
        &input.rsdp.map_or(0, |rsdp| rsdp.0).to_le_bytes(),
    );
    put(&mut block, 40, &(base + MEMMAP_OFFSET as u64).to_le_bytes());
    put(&mut block, 48, &(memmap.len() as u32).to_le_bytes());
    block
}

fn put(block: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = block.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

/// Writes `text` NUL-terminated, truncated to `size - 1` bytes at a
/// character boundary.
fn put_string(block: &mut [u8], at: usize, text: &str, size: usize) {
    let mut length = text.len().min(size - 1);
    while !text.is_char_boundary(length) {
        length -= 1;
    }
    put(block, at, &text.as_bytes()[..length]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(block: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(block[at..at + 8].try_into().unwrap_or_default())
    }

    #[test]
    fn the_block_reads_back_as_a_pvh_start_info() {
        let base = HostPhysAddr(0x1000_0000 - BOOT_DATA_SIZE);
        let ram = HostRange {
            start: HostPhysAddr(0x100_0000),
            end: HostPhysAddr(0x1000_0000),
        };
        let acpi = MemoryRegion {
            range: HostRange {
                start: HostPhysAddr(0x3ffe_0000),
                end: HostPhysAddr(0x4000_0000),
            },
            kind: MemoryKind::Reserved,
        };
        let module = PlacedModule {
            range: HostRange {
                start: HostPhysAddr(0xf00_0000),
                end: HostPhysAddr(0xf00_1000),
            },
            cmdline: "config",
        };
        let block = build(&StartInfoInput {
            base,
            ram,
            host_memory: &[acpi],
            cmdline: "poweroff",
            modules: &[module],
            rsdp: Some(HostPhysAddr(0xf5a40)),
        });
        assert_eq!(&block[0..4], &MAGIC.to_le_bytes());
        assert_eq!(block[8], 3, "privileged initial domain");
        assert_eq!(block[12], 1);
        assert_eq!(u64_at(&block, 32), 0xf5a40);
        let cmdline = (u64_at(&block, 24) - base.0) as usize;
        assert_eq!(&block[cmdline..cmdline + 9], b"poweroff\0");
        let memmap = (u64_at(&block, 40) - base.0) as usize;
        assert_eq!(block[48], 2);
        assert_eq!(u64_at(&block, memmap), 0x100_0000);
        assert_eq!(u64_at(&block, memmap + 8), 0xf00_0000);
        assert_eq!(u64_at(&block, memmap + 24), 0x3ffe_0000);
        let modlist = (u64_at(&block, 16) - base.0) as usize;
        assert_eq!(u64_at(&block, modlist + 8), 0x1000);
        let module_cmdline = (u64_at(&block, modlist + 16) - base.0) as usize;
        assert_eq!(&block[module_cmdline..module_cmdline + 7], b"config\0");
    }

    #[test]
    fn long_command_lines_are_truncated_on_a_character_boundary() {
        let text = "é".repeat(600);
        let block = build(&StartInfoInput {
            base: HostPhysAddr(0),
            ram: HostRange {
                start: HostPhysAddr(0),
                end: HostPhysAddr(0x100_0000),
            },
            host_memory: &[],
            cmdline: &text,
            modules: &[],
            rsdp: None,
        });
        let slot = &block[CMDLINE_OFFSET..CMDLINE_OFFSET + CMDLINE_SIZE];
        let end = slot.iter().position(|&b| b == 0).unwrap_or(CMDLINE_SIZE);
        assert!(end < CMDLINE_SIZE && core::str::from_utf8(&slot[..end]).is_ok());
    }
}
