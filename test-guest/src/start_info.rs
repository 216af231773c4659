//! Reading the `hvm_start_info` Dom0 leaves at the address in EBX: magic,
//! flags, command line and memory map (all this guest needs).

use arrayvec::{ArrayString, ArrayVec};
use xenolith_abi::start_info::memmap_type;

use crate::memory;

/// Longest command line kept.
pub const CMDLINE_MAX: usize = 256;
/// Most memory-map entries kept.
pub const REGIONS_MAX: usize = 32;

/// A memory-map entry `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

/// What the start info says; zeros where it could not be read.
#[derive(Clone, Debug, Default)]
pub struct StartInfo {
    pub address: u64,
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub cmdline: ArrayString<CMDLINE_MAX>,
    pub memory: ArrayVec<Region, REGIONS_MAX>,
}

impl StartInfo {
    /// Whether a RAM entry covers `[start, end)`.
    pub fn ram_covers(&self, start: u64, end: u64) -> bool {
        self.memory.iter().any(|region| {
            region.kind == memmap_type::RAM && region.start <= start && end <= region.end
        })
    }

    /// Whether any entry overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.memory
            .iter()
            .any(|region| region.start < end && start < region.end)
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    if let Some(source) = bytes.get(offset..offset + 4) {
        word.copy_from_slice(source);
    }
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    if let Some(source) = bytes.get(offset..offset + 8) {
        word.copy_from_slice(source);
    }
    u64::from_le_bytes(word)
}

/// Reads the block at `address` (56 bytes), its command line and map.
pub fn read(address: u64) -> StartInfo {
    let mut info = StartInfo {
        address,
        ..StartInfo::default()
    };
    let mut block = [0u8; 56];
    if !memory::read_physical(address, &mut block) {
        return info;
    }
    info.magic = u32_at(&block, 0);
    info.version = u32_at(&block, 4);
    info.flags = u32_at(&block, 8);
    info.cmdline = read_cmdline(u64_at(&block, 24));
    if info.version >= 1 {
        let map = u64_at(&block, 40);
        let entries = u32_at(&block, 48) as usize;
        for index in 0..entries.min(REGIONS_MAX) {
            let mut entry = [0u8; 24];
            let at = map.saturating_add(24 * index as u64);
            if !memory::read_physical(at, &mut entry) {
                break;
            }
            let start = u64_at(&entry, 0);
            info.memory.push(Region {
                start,
                end: start.saturating_add(u64_at(&entry, 8)),
                kind: u32_at(&entry, 16),
            });
        }
    }
    info
}

/// The NUL-terminated command line; non-ASCII bytes become '?'.
fn read_cmdline(address: u64) -> ArrayString<CMDLINE_MAX> {
    let mut text = ArrayString::new();
    let mut byte = [0u8; 1];
    for offset in 0..CMDLINE_MAX as u64 - 1 {
        if !memory::read_physical(address.saturating_add(offset), &mut byte) || byte[0] == 0 {
            break;
        }
        let character = if byte[0].is_ascii() && !byte[0].is_ascii_control() {
            char::from(byte[0])
        } else {
            '?'
        };
        if text.try_push(character).is_err() {
            break;
        }
    }
    text
}
