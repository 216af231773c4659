//! The boot data block a PVH kernel finds: `hvm_start_info`, its memory
//! map, module list and command lines at fixed offsets, written as bytes
//! with their final physical addresses so the writer needs no pointers.

use arrayvec::ArrayVec;
use xenolith_abi::start_info::{MAGIC, VERSION};

/// Size of the block.
pub const BLOCK_SIZE: usize = 16 * 1024;

const MEMMAP_OFFSET: usize = 0x40;
/// Most memory-map entries written.
pub const MAX_MEMORY_ENTRIES: usize = 64;
const MODLIST_OFFSET: usize = MEMMAP_OFFSET + MAX_MEMORY_ENTRIES * 24;
/// Most modules written.
pub const MAX_MODULES: usize = 16;
const CMDLINE_OFFSET: usize = MODLIST_OFFSET + MAX_MODULES * 32;
/// Longest command line kept, with its NUL.
pub const CMDLINE_SIZE: usize = 1024;
const MODULE_CMDLINE_OFFSET: usize = CMDLINE_OFFSET + CMDLINE_SIZE;
/// Longest module command line kept, with its NUL.
pub const MODULE_CMDLINE_SIZE: usize = 256;

const _: () = assert!(MODULE_CMDLINE_OFFSET + MAX_MODULES * MODULE_CMDLINE_SIZE <= BLOCK_SIZE);

/// One memory-map entry (e820 numbering in `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEntry {
    pub address: u64,
    pub size: u64,
    pub kind: u32,
}

/// A module as the kernel will find it.
#[derive(Clone, Copy, Debug)]
pub struct ModuleEntry<'a> {
    pub address: u64,
    pub size: u64,
    pub cmdline: &'a str,
}

/// What goes into the block.
pub struct StartInfoInput<'a> {
    /// Physical address where the block will live.
    pub base: u64,
    /// SIF_* flags (privileged, initial domain).
    pub flags: u32,
    pub memory: &'a [MemoryEntry],
    pub cmdline: &'a str,
    pub modules: &'a [ModuleEntry<'a>],
    /// The ACPI root pointer, 0 for none.
    pub rsdp: u64,
}

/// Builds the block. The memory map is sorted; entries and modules beyond
/// the slots are dropped; command lines are cut to fit at a character
/// boundary.
pub fn build(input: &StartInfoInput<'_>) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    let base = input.base;

    let mut memory: ArrayVec<MemoryEntry, MAX_MEMORY_ENTRIES> = input
        .memory
        .iter()
        .copied()
        .take(MAX_MEMORY_ENTRIES)
        .collect();
    memory.sort_unstable_by_key(|entry| entry.address);
    for (index, entry) in memory.iter().enumerate() {
        let at = MEMMAP_OFFSET + index * 24;
        put(&mut block, at, &entry.address.to_le_bytes());
        put(&mut block, at + 8, &entry.size.to_le_bytes());
        put(&mut block, at + 16, &entry.kind.to_le_bytes());
    }

    let modules = &input.modules[..input.modules.len().min(MAX_MODULES)];
    for (index, module) in modules.iter().enumerate() {
        let at = MODLIST_OFFSET + index * 32;
        let cmdline_at = MODULE_CMDLINE_OFFSET + index * MODULE_CMDLINE_SIZE;
        put(&mut block, at, &module.address.to_le_bytes());
        put(&mut block, at + 8, &module.size.to_le_bytes());
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
    put(&mut block, 8, &input.flags.to_le_bytes());
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
    put(&mut block, 32, &input.rsdp.to_le_bytes());
    put(&mut block, 40, &(base + MEMMAP_OFFSET as u64).to_le_bytes());
    put(&mut block, 48, &(memory.len() as u32).to_le_bytes());
    block
}

fn put(block: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = block.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

/// Writes `text` NUL-terminated, cut to `size - 1` bytes at a character
/// boundary.
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
    use xenolith_abi::start_info::memmap_type;

    fn u64_at(block: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(block[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn the_block_reads_back_as_a_pvh_start_info() {
        let base = 0x1000_0000 - BLOCK_SIZE as u64;
        let memory = [
            MemoryEntry {
                address: 0x3ffe_0000,
                size: 0x2_0000,
                kind: memmap_type::RESERVED,
            },
            MemoryEntry {
                address: 0x100_0000,
                size: 0xf00_0000,
                kind: memmap_type::RAM,
            },
        ];
        let module = ModuleEntry {
            address: 0xf00_0000,
            size: 0x1000,
            cmdline: "config",
        };
        let block = build(&StartInfoInput {
            base,
            flags: 3,
            memory: &memory,
            cmdline: "poweroff",
            modules: &[module],
            rsdp: 0xf5a40,
        });
        assert_eq!(&block[0..4], &MAGIC.to_le_bytes());
        assert_eq!(block[8], 3);
        assert_eq!(block[12], 1);
        assert_eq!(u64_at(&block, 32), 0xf5a40);
        let cmdline = (u64_at(&block, 24) - base) as usize;
        assert_eq!(&block[cmdline..cmdline + 9], b"poweroff\0");
        let memmap = (u64_at(&block, 40) - base) as usize;
        assert_eq!(block[48], 2);
        assert_eq!(u64_at(&block, memmap), 0x100_0000, "sorted");
        assert_eq!(u64_at(&block, memmap + 24), 0x3ffe_0000);
        let modlist = (u64_at(&block, 16) - base) as usize;
        assert_eq!(u64_at(&block, modlist + 8), 0x1000);
        let module_cmdline = (u64_at(&block, modlist + 16) - base) as usize;
        assert_eq!(&block[module_cmdline..module_cmdline + 7], b"config\0");
    }

    #[test]
    fn long_command_lines_are_cut_on_a_character_boundary() {
        let text = "é".repeat(600);
        let block = build(&StartInfoInput {
            base: 0,
            flags: 0,
            memory: &[],
            cmdline: &text,
            modules: &[],
            rsdp: 0,
        });
        let slot = &block[CMDLINE_OFFSET..CMDLINE_OFFSET + CMDLINE_SIZE];
        let end = slot.iter().position(|&b| b == 0).unwrap_or(CMDLINE_SIZE);
        assert!(end < CMDLINE_SIZE && core::str::from_utf8(&slot[..end]).is_ok());
    }
}
