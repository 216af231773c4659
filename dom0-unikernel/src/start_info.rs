//! Reading the `hvm_start_info` block the hypervisor (or any PVH loader)
//! leaves at the address in EBX: command line, memory map, modules.

use arrayvec::{ArrayString, ArrayVec};
use core::fmt;
use xenolith_abi::start_info::{MAGIC, memmap_type};

/// Most memory-map entries kept.
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Most modules kept.
pub const MAX_MODULES: usize = 16;
/// Longest command line kept.
pub const MAX_CMDLINE: usize = 1024;

/// Reads physical memory (Dom0 runs identity-mapped).
pub trait Physical {
    fn read(&self, address: u64, buffer: &mut [u8]) -> bool;
}

/// A range of guest-physical memory `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub range: Range,
    pub kind: u32,
}

/// A boot module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub range: Range,
    pub cmdline: ArrayString<256>,
}

/// Everything Dom0 learns at boot.
#[derive(Clone, Debug)]
pub struct StartInfo {
    pub flags: u32,
    pub cmdline: ArrayString<MAX_CMDLINE>,
    pub memory: ArrayVec<Region, MAX_MEMORY_REGIONS>,
    pub modules: ArrayVec<Module, MAX_MODULES>,
    pub rsdp: u64,
    /// The 56-byte block itself.
    pub block: Range,
}

impl StartInfo {
    /// Bytes of RAM in the memory map.
    pub fn ram_bytes(&self) -> u64 {
        self.memory
            .iter()
            .filter(|region| region.kind == memmap_type::RAM)
            .map(|region| region.range.len())
            .sum()
    }
}

/// Why the block could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    Unreadable { address: u64 },
    BadMagic { found: u32 },
    NoMemoryMap,
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { address } => write!(f, "start info unreadable at {address:#x}"),
            Self::BadMagic { found } => write!(f, "start info has bad magic {found:#x}"),
            Self::NoMemoryMap => write!(f, "start info has no memory map (version 0)"),
        }
    }
}

fn read_u32(memory: &impl Physical, address: u64) -> Result<u32, StartInfoError> {
    let mut bytes = [0; 4];
    if !memory.read(address, &mut bytes) {
        return Err(StartInfoError::Unreadable { address });
    }
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(memory: &impl Physical, address: u64) -> Result<u64, StartInfoError> {
    let mut bytes = [0; 8];
    if !memory.read(address, &mut bytes) {
        return Err(StartInfoError::Unreadable { address });
    }
    Ok(u64::from_le_bytes(bytes))
}

/// Reads a NUL-terminated string of at most `N` bytes; invalid UTF-8
/// becomes '?'.
fn read_string<const N: usize>(memory: &impl Physical, address: u64) -> ArrayString<N> {
    let mut text = ArrayString::new();
    if address == 0 {
        return text;
    }
    let mut chunk = [0u8; 64];
    let mut offset = 0u64;
    while (offset as usize) < N {
        if !memory.read(address.wrapping_add(offset), &mut chunk) {
            break;
        }
        for &byte in &chunk {
            if byte == 0 || text.is_full() {
                return text;
            }
            text.push(if byte.is_ascii() {
                char::from(byte)
            } else {
                '?'
            });
        }
        offset += chunk.len() as u64;
    }
    text
}

/// Parses the block at `address`.
pub fn parse(memory: &impl Physical, address: u64) -> Result<StartInfo, StartInfoError> {
    let magic = read_u32(memory, address)?;
    if magic != MAGIC {
        return Err(StartInfoError::BadMagic { found: magic });
    }
    let version = read_u32(memory, address + 4)?;
    let flags = read_u32(memory, address + 8)?;
    let module_count = read_u32(memory, address + 12)? as usize;
    let modlist = read_u64(memory, address + 16)?;
    let cmdline = read_string(memory, read_u64(memory, address + 24)?);
    let rsdp = read_u64(memory, address + 32)?;
    if version < 1 {
        return Err(StartInfoError::NoMemoryMap);
    }
    let memmap = read_u64(memory, address + 40)?;
    let entries = read_u32(memory, address + 48)? as usize;
    if memmap == 0 || entries == 0 {
        return Err(StartInfoError::NoMemoryMap);
    }
    let mut regions = ArrayVec::new();
    for index in 0..entries.min(MAX_MEMORY_REGIONS) {
        let entry = memmap + index as u64 * 24;
        let start = read_u64(memory, entry)?;
        let size = read_u64(memory, entry + 8)?;
        let kind = read_u32(memory, entry + 16)?;
        regions.push(Region {
            range: Range {
                start,
                end: start.saturating_add(size),
            },
            kind,
        });
    }
    let mut modules = ArrayVec::new();
    if modlist != 0 {
        for index in 0..module_count.min(MAX_MODULES) {
            let entry = modlist + index as u64 * 32;
            let start = read_u64(memory, entry)?;
            let size = read_u64(memory, entry + 8)?;
            let cmdline = read_string(memory, read_u64(memory, entry + 16)?);
            modules.push(Module {
                range: Range {
                    start,
                    end: start.saturating_add(size),
                },
                cmdline,
            });
        }
    }
    Ok(StartInfo {
        flags,
        cmdline,
        memory: regions,
        modules,
        rsdp,
        block: Range {
            start: address,
            end: address + 56,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        base: u64,
        bytes: Vec<u8>,
    }

    impl Physical for Fake {
        fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
            let Some(start) = address.checked_sub(self.base) else {
                return false;
            };
            let start = start as usize;
            match self.bytes.get(start..start + buffer.len()) {
                Some(source) => {
                    buffer.copy_from_slice(source);
                    true
                }
                None => false,
            }
        }
    }

    fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
        bytes[at..at + value.len()].copy_from_slice(value);
    }

    fn sample() -> Fake {
        let base = 0x1000;
        let mut bytes = vec![0u8; 0x1000];
        put(&mut bytes, 0, &MAGIC.to_le_bytes());
        put(&mut bytes, 4, &1u32.to_le_bytes());
        put(&mut bytes, 8, &3u32.to_le_bytes());
        put(&mut bytes, 12, &1u32.to_le_bytes());
        put(&mut bytes, 16, &(base + 0x200u64).to_le_bytes());
        put(&mut bytes, 24, &(base + 0x400u64).to_le_bytes());
        put(&mut bytes, 40, &(base + 0x100u64).to_le_bytes());
        put(&mut bytes, 48, &2u32.to_le_bytes());
        put(&mut bytes, 0x100, &0x100_0000u64.to_le_bytes());
        put(&mut bytes, 0x108, &0x1000_0000u64.to_le_bytes());
        put(&mut bytes, 0x110, &1u32.to_le_bytes());
        put(&mut bytes, 0x118, &0xfee0_0000u64.to_le_bytes());
        put(&mut bytes, 0x120, &0x1000u64.to_le_bytes());
        put(&mut bytes, 0x128, &2u32.to_le_bytes());
        put(&mut bytes, 0x200, &0x800_0000u64.to_le_bytes());
        put(&mut bytes, 0x208, &0x3000u64.to_le_bytes());
        put(&mut bytes, 0x210, &(base + 0x500u64).to_le_bytes());
        put(&mut bytes, 0x400, b"poweroff fault=page\0");
        put(&mut bytes, 0x500, b"config\0");
        Fake { base, bytes }
    }

    #[test]
    fn reads_the_block_the_hypervisor_writes() {
        let info = parse(&sample(), 0x1000).expect("valid");
        assert_eq!(info.cmdline.as_str(), "poweroff fault=page");
        assert_eq!(info.ram_bytes(), 0x1000_0000);
        assert_eq!(info.memory.len(), 2);
        assert_eq!(info.modules[0].cmdline.as_str(), "config");
        assert_eq!(info.modules[0].range.len(), 0x3000);
    }

    #[test]
    fn bad_blocks_are_errors() {
        let mut fake = sample();
        assert_eq!(
            parse(&fake, 0x9000).unwrap_err(),
            StartInfoError::Unreadable { address: 0x9000 }
        );
        fake.bytes[48] = 0;
        assert_eq!(
            parse(&fake, 0x1000).unwrap_err(),
            StartInfoError::NoMemoryMap
        );
        fake.bytes[0] = 0;
        assert!(matches!(
            parse(&fake, 0x1000),
            Err(StartInfoError::BadMagic { .. })
        ));
    }

    #[test]
    fn an_unterminated_command_line_is_cut_at_the_limit() {
        let mut fake = sample();
        fake.bytes.resize(0x2000, b'a');
        for byte in &mut fake.bytes[0x400..] {
            *byte = b'a';
        }
        let info = parse(&fake, 0x1000).expect("valid");
        assert_eq!(info.cmdline.len(), MAX_CMDLINE);
    }
}
