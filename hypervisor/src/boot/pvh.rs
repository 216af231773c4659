//! Xen's `hvm_start_info` (what a PVH loader such as QEMU's `-kernel` leaves
//! at EBX) read into a [`BootInfo`]. Layout: `xenolith_abi::start_info`.
//!
//! The 56-byte block is copied out once and checked; the tables it points
//! at (modules, memory map, strings) are read entry by entry, each entry
//! copied before use, and only as many as the caps allow.

use arrayvec::ArrayVec;
use xenolith_abi::start_info::{HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, MAGIC};

use super::memory_map::{self, RawMemoryMap};
use super::{
    BootInfo, BootInfoError, CmdLine, Loader, MAX_CMDLINE, MAX_MEMORY_REGIONS, MAX_MODULES, Module,
    cmdline,
};
use crate::memory::{HostPhysAddr, HostRange, PhysicalMemory};

/// Bytes of `hvm_start_info` (version 1).
pub const START_INFO_SIZE: usize = 56;
/// Bytes of one `hvm_modlist_entry`.
const MODLIST_ENTRY_SIZE: u64 = 32;
/// Bytes of one `hvm_memmap_table_entry`.
const MEMMAP_ENTRY_SIZE: u64 = 24;
/// First version with `memmap_paddr` and `memmap_entries`.
const MEMMAP_VERSION: u32 = 1;
/// Bytes read looking for a string's NUL: a cut character just past
/// `MAX_CMDLINE` is still read whole, so the cut falls on its boundary.
const MAX_STRING_READ: usize = MAX_CMDLINE + 3;

const fn malformed(what: &'static str) -> BootInfoError {
    BootInfoError::Malformed { what }
}

/// Reads the `hvm_start_info` at `start_info`.
///
/// A zero address field means "absent". Command lines are read up to their
/// NUL (at most `MAX_CMDLINE` bytes kept, invalid UTF-8 replaced, see
/// [`cmdline::copy_lossy`]). Only the first `MAX_MODULES` modules and
/// `MAX_MEMORY_REGIONS` memory-map entries are read. A version-0 block has
/// no memory map, so it fails with [`BootInfoError::NoMemoryMap`].
pub fn parse(
    memory: &impl PhysicalMemory,
    start_info: HostPhysAddr,
) -> Result<BootInfo, BootInfoError> {
    let magic = memory.read_u32(start_info)?;
    if magic != MAGIC {
        return Err(BootInfoError::BadMagic { found: magic });
    }
    let info_range = HostRange::new(start_info, START_INFO_SIZE as u64)
        .ok_or(malformed("PVH start info wraps the address space"))?;
    let mut bytes = [0; START_INFO_SIZE];
    memory.read(start_info, &mut bytes)?;
    let start = decode_start_info(&bytes);

    let command_line = match start.cmdline_paddr {
        0 => CmdLine::new(),
        address => read_string(memory, HostPhysAddr(address))?,
    };
    let modules = read_modules(memory, &start)?;
    let raw_memory = read_memory_map(memory, &start)?;
    let memory_map = memory_map::normalise(&raw_memory);
    if memory_map.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(BootInfo {
        loader: Loader::Pvh,
        cmdline: command_line,
        memory: memory_map,
        modules,
        rsdp: (start.rsdp_paddr != 0).then_some(HostPhysAddr(start.rsdp_paddr)),
        info_range,
    })
}

fn read_modules(
    memory: &impl PhysicalMemory,
    start: &HvmStartInfo,
) -> Result<ArrayVec<Module, MAX_MODULES>, BootInfoError> {
    let mut modules = ArrayVec::new();
    if start.modlist_paddr == 0 {
        return Ok(modules);
    }
    let count = usize::try_from(start.nr_modules).unwrap_or(usize::MAX);
    if count > MAX_MODULES {
        log::warn!("PVH: {count} modules, ignoring those past the first {MAX_MODULES}");
    }
    for index in 0..count.min(MAX_MODULES) as u64 {
        let address = table_entry(start.modlist_paddr, index, MODLIST_ENTRY_SIZE)
            .ok_or(malformed("PVH module list wraps the address space"))?;
        let mut bytes = [0; MODLIST_ENTRY_SIZE as usize];
        memory.read(address, &mut bytes)?;
        let entry = HvmModlistEntry {
            paddr: u64_at(&bytes, 0),
            size: u64_at(&bytes, 8),
            cmdline_paddr: u64_at(&bytes, 16),
            reserved: u64_at(&bytes, 24),
        };
        let range = HostRange::new(HostPhysAddr(entry.paddr), entry.size)
            .ok_or(malformed("PVH module wraps the address space"))?;
        let cmdline = match entry.cmdline_paddr {
            0 => CmdLine::new(),
            address => read_string(memory, HostPhysAddr(address))?,
        };
        // Cannot fail: the loop stops at the capacity.
        let _ = modules.try_push(Module { range, cmdline });
    }
    Ok(modules)
}

fn read_memory_map(
    memory: &impl PhysicalMemory,
    start: &HvmStartInfo,
) -> Result<RawMemoryMap, BootInfoError> {
    if start.version < MEMMAP_VERSION || start.memmap_paddr == 0 || start.memmap_entries == 0 {
        return Err(BootInfoError::NoMemoryMap);
    }
    let count = usize::try_from(start.memmap_entries).unwrap_or(usize::MAX);
    if count > MAX_MEMORY_REGIONS {
        log::warn!(
            "PVH: {count} memory-map entries, ignoring those past the first {MAX_MEMORY_REGIONS}"
        );
    }
    let mut map = RawMemoryMap::new();
    for index in 0..count.min(MAX_MEMORY_REGIONS) as u64 {
        let address = table_entry(start.memmap_paddr, index, MEMMAP_ENTRY_SIZE)
            .ok_or(malformed("PVH memory map wraps the address space"))?;
        let mut bytes = [0; MEMMAP_ENTRY_SIZE as usize];
        memory.read(address, &mut bytes)?;
        let entry = HvmMemmapEntry {
            addr: u64_at(&bytes, 0),
            size: u64_at(&bytes, 8),
            kind: u32_at(&bytes, 16),
            reserved: u32_at(&bytes, 20),
        };
        // Cannot fail: the loop stops at the capacity.
        let _ = map.try_push(memory_map::region_from_e820(
            HostPhysAddr(entry.addr),
            entry.size,
            entry.kind,
        ));
    }
    Ok(map)
}

/// The address of entry `index` of a table at `table`, the whole entry
/// inside the address space.
fn table_entry(table: u64, index: u64, entry_size: u64) -> Option<HostPhysAddr> {
    let address = index
        .checked_mul(entry_size)
        .and_then(|offset| table.checked_add(offset))?;
    address.checked_add(entry_size)?;
    Some(HostPhysAddr(address))
}

/// Reads a NUL-terminated string, byte by byte so that a string ending
/// just before the end of readable memory still reads. A string longer than
/// the cap needs no NUL: it is cut.
fn read_string(
    memory: &impl PhysicalMemory,
    address: HostPhysAddr,
) -> Result<CmdLine, BootInfoError> {
    let mut bytes = [0; MAX_STRING_READ];
    let mut length = 0;
    for slot in bytes.iter_mut() {
        let at = address
            .checked_add(length as u64)
            .ok_or(malformed("PVH string wraps the address space"))?;
        memory.read(at, core::slice::from_mut(slot))?;
        if *slot == 0 {
            break;
        }
        length += 1;
    }
    Ok(cmdline::copy_lossy(bytes.get(..length).unwrap_or_default()))
}

fn decode_start_info(bytes: &[u8; START_INFO_SIZE]) -> HvmStartInfo {
    HvmStartInfo {
        magic: u32_at(bytes, 0),
        version: u32_at(bytes, 4),
        flags: u32_at(bytes, 8),
        nr_modules: u32_at(bytes, 12),
        modlist_paddr: u64_at(bytes, 16),
        cmdline_paddr: u64_at(bytes, 24),
        rsdp_paddr: u64_at(bytes, 32),
        memmap_paddr: u64_at(bytes, 40),
        memmap_entries: u32_at(bytes, 48),
        reserved: u32_at(bytes, 52),
    }
}

/// The little-endian `u32` at `offset`; callers pass fixed-size blocks and
/// in-bounds offsets, and a short read would give zero.
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0; 4];
    if let Some(source) = bytes.get(offset..offset.saturating_add(4)) {
        field.copy_from_slice(source);
    }
    u32::from_le_bytes(field)
}

/// The little-endian `u64` at `offset`, as [`u32_at`].
fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0; 8];
    if let Some(source) = bytes.get(offset..offset.saturating_add(8)) {
        field.copy_from_slice(source);
    }
    u64::from_le_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory_map::testing::{FakeMemory, XorShift};
    use crate::boot::{MemoryKind, MemoryRegion};

    const BASE: u64 = 0x1000;
    const START_INFO: u64 = 0x6000;

    fn start_info_bytes(info: &HvmStartInfo) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [info.magic, info.version, info.flags, info.nr_modules] {
            bytes.extend(word.to_le_bytes());
        }
        for word in [
            info.modlist_paddr,
            info.cmdline_paddr,
            info.rsdp_paddr,
            info.memmap_paddr,
        ] {
            bytes.extend(word.to_le_bytes());
        }
        bytes.extend(info.memmap_entries.to_le_bytes());
        bytes.extend(info.reserved.to_le_bytes());
        bytes
    }

    fn module_bytes(paddr: u64, size: u64, cmdline_paddr: u64) -> Vec<u8> {
        [paddr, size, cmdline_paddr, 0]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect()
    }

    fn memmap_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(addr, size, kind) in entries {
            bytes.extend(addr.to_le_bytes());
            bytes.extend(size.to_le_bytes());
            bytes.extend(kind.to_le_bytes());
            bytes.extend(0u32.to_le_bytes());
        }
        bytes
    }

    /// QEMU's PVH option ROM: command line, the -initrd as module 0 with no
    /// command line, an e820 table, and the RSDP it found in the BIOS area.
    const QEMU_MEMMAP: [(u64, u64, u32); 6] = [
        (0, 0x9_fc00, 1),
        (0x9_fc00, 0x400, 2),
        (0xf_0000, 0x1_0000, 2),
        (0x10_0000, 0x7fee_0000, 1),
        (0xfeff_c000, 0x4000, 2),
        (0x1_0000_0000, 0x4000_0000, 1),
    ];

    fn qemu_layout() -> (FakeMemory, HvmStartInfo) {
        let mut memory = FakeMemory::new(BASE, 0x1_0000);
        let info = HvmStartInfo {
            magic: MAGIC,
            version: 1,
            flags: 0,
            nr_modules: 1,
            modlist_paddr: 0x6100,
            cmdline_paddr: 0x7000,
            rsdp_paddr: 0xf_5a40,
            memmap_paddr: 0x6200,
            memmap_entries: QEMU_MEMMAP.len() as u32,
            reserved: 0,
        };
        memory.write(START_INFO, &start_info_bytes(&info));
        memory.write(0x6100, &module_bytes(0x7ff0_0000, 0x12_3456, 0));
        memory.write(0x6200, &memmap_bytes(&QEMU_MEMMAP));
        memory.write(0x7000, b"loglevel=trace -- console=ttyS0\0");
        (memory, info)
    }

    /// Rewrites the start info of a layout.
    fn with_info(memory: &mut FakeMemory, info: &HvmStartInfo) {
        memory.write(START_INFO, &start_info_bytes(info));
    }

    fn region(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion {
            range: HostRange {
                start: HostPhysAddr(start),
                end: HostPhysAddr(end),
            },
            kind,
        }
    }

    fn parse_at_start(memory: &FakeMemory) -> Result<BootInfo, BootInfoError> {
        parse(memory, HostPhysAddr(START_INFO))
    }

    #[test]
    fn reads_a_qemu_layout() {
        let (memory, _) = qemu_layout();
        let info = parse_at_start(&memory).unwrap();
        assert_eq!(info.loader, Loader::Pvh);
        assert_eq!(info.cmdline.as_str(), "loglevel=trace -- console=ttyS0");
        assert_eq!(
            info.info_range,
            HostRange {
                start: HostPhysAddr(START_INFO),
                end: HostPhysAddr(START_INFO + 56)
            }
        );
        assert_eq!(info.rsdp, Some(HostPhysAddr(0xf_5a40)));
        assert_eq!(info.modules.len(), 1);
        assert_eq!(
            info.modules[0].range,
            HostRange::new(HostPhysAddr(0x7ff0_0000), 0x12_3456).unwrap()
        );
        assert!(info.modules[0].cmdline.is_empty());
        assert_eq!(
            info.memory.as_slice(),
            [
                region(0, 0x9_fc00, MemoryKind::Usable),
                region(0x9_fc00, 0xa_0000, MemoryKind::Reserved),
                region(0xf_0000, 0x10_0000, MemoryKind::Reserved),
                region(0x10_0000, 0x7ffe_0000, MemoryKind::Usable),
                region(0xfeff_c000, 0xff00_0000, MemoryKind::Reserved),
                region(0x1_0000_0000, 0x1_4000_0000, MemoryKind::Usable),
            ]
        );
    }

    #[test]
    fn zero_addresses_mean_absent() {
        let (mut memory, mut info) = qemu_layout();
        info.cmdline_paddr = 0;
        info.rsdp_paddr = 0;
        info.modlist_paddr = 0;
        with_info(&mut memory, &info);
        let parsed = parse_at_start(&memory).unwrap();
        assert!(parsed.cmdline.is_empty());
        assert_eq!(parsed.rsdp, None);
        assert!(parsed.modules.is_empty());
    }

    #[test]
    fn modules_with_command_lines() {
        let (mut memory, mut info) = qemu_layout();
        info.nr_modules = 2;
        memory.write(0x6100, &module_bytes(0x20_0000, 0x1000, 0x7100));
        memory.write(0x6120, &module_bytes(0x30_0000, 0, 0x7200));
        memory.write(0x7100, b"dom0 verbose\0");
        memory.write(0x7200, b"\xff\0");
        with_info(&mut memory, &info);
        let parsed = parse_at_start(&memory).unwrap();
        assert_eq!(parsed.modules[0].cmdline.as_str(), "dom0 verbose");
        assert_eq!(parsed.modules[1].cmdline.as_str(), "\u{fffd}");
        assert!(parsed.modules[1].range.is_empty());
    }

    #[test]
    fn bad_magic() {
        let (mut memory, mut info) = qemu_layout();
        info.magic = 0x336e_c579;
        with_info(&mut memory, &info);
        assert_eq!(
            parse_at_start(&memory).unwrap_err(),
            BootInfoError::BadMagic { found: 0x336e_c579 }
        );
        assert_eq!(
            parse(&memory, HostPhysAddr(BASE)).unwrap_err(),
            BootInfoError::BadMagic { found: 0 }
        );
    }

    #[test]
    fn version_zero_or_absent_map_has_no_memory_map() {
        let (mut memory, info) = qemu_layout();
        for broken in [
            HvmStartInfo { version: 0, ..info },
            HvmStartInfo {
                memmap_paddr: 0,
                ..info
            },
            HvmStartInfo {
                memmap_entries: 0,
                ..info
            },
        ] {
            with_info(&mut memory, &broken);
            assert_eq!(
                parse_at_start(&memory).unwrap_err(),
                BootInfoError::NoMemoryMap
            );
        }
        // Later versions keep the version-1 layout.
        with_info(&mut memory, &HvmStartInfo { version: 2, ..info });
        assert!(parse_at_start(&memory).is_ok());
    }

    #[test]
    fn memory_map_of_empty_entries_is_no_memory_map() {
        let (mut memory, info) = qemu_layout();
        memory.write(0x6200, &memmap_bytes(&[(0x1000, 0, 1), (0, 0, 2)]));
        with_info(
            &mut memory,
            &HvmStartInfo {
                memmap_entries: 2,
                ..info
            },
        );
        assert_eq!(
            parse_at_start(&memory).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
    }

    #[test]
    fn overlapping_memory_map_is_normalised() {
        let (mut memory, info) = qemu_layout();
        memory.write(
            0x6200,
            &memmap_bytes(&[
                (0x8000, 0x8000, 1),
                (0, 0x1_0000, 1),
                (0xc000, 0x1000, 2),
                (0, 0x2000, 5),
            ]),
        );
        with_info(
            &mut memory,
            &HvmStartInfo {
                memmap_entries: 4,
                ..info
            },
        );
        assert_eq!(
            parse_at_start(&memory).unwrap().memory.as_slice(),
            [
                region(0, 0x2000, MemoryKind::Bad),
                region(0x2000, 0xc000, MemoryKind::Usable),
                region(0xc000, 0xd000, MemoryKind::Reserved),
                region(0xd000, 0x1_0000, MemoryKind::Usable),
            ]
        );
    }

    #[test]
    fn huge_counts_read_only_the_cap() {
        // Tables of exactly the cap fill the rest of fake memory: reading
        // one entry more would be out of bounds.
        let modlist = 0x2000;
        let memmap = modlist + MAX_MODULES as u64 * 32;
        let end = memmap + MAX_MEMORY_REGIONS as u64 * 24;
        let mut memory = FakeMemory::new(BASE, (end - BASE) as usize);
        for index in 0..MAX_MODULES as u64 {
            memory.write(
                modlist + index * 32,
                &module_bytes(index * 0x1000, 0x1000, 0),
            );
        }
        let entries: Vec<_> = (0..MAX_MEMORY_REGIONS as u64)
            .map(|index| (index * 0x2000, 0x1000, 1))
            .collect();
        memory.write(memmap, &memmap_bytes(&entries));
        let info = HvmStartInfo {
            magic: MAGIC,
            version: 1,
            nr_modules: u32::MAX,
            modlist_paddr: modlist,
            memmap_paddr: memmap,
            memmap_entries: u32::MAX,
            ..HvmStartInfo::default()
        };
        memory.write(BASE, &start_info_bytes(&info));
        let parsed = parse(&memory, HostPhysAddr(BASE)).unwrap();
        assert_eq!(parsed.modules.len(), MAX_MODULES);
        assert_eq!(parsed.memory.len(), MAX_MEMORY_REGIONS);
    }

    #[test]
    fn tables_out_of_memory_are_unreadable() {
        let (mut memory, info) = qemu_layout();
        for broken in [
            HvmStartInfo {
                modlist_paddr: 0x10_0000,
                ..info
            },
            HvmStartInfo {
                memmap_paddr: 0x10_0000,
                ..info
            },
            HvmStartInfo {
                cmdline_paddr: 0x10_0000,
                ..info
            },
            HvmStartInfo {
                memmap_paddr: BASE + 0x1_0000 - 24 * 6,
                memmap_entries: 7,
                ..info
            },
        ] {
            with_info(&mut memory, &broken);
            assert!(
                matches!(parse_at_start(&memory), Err(BootInfoError::Unreadable(_))),
                "{broken:?}"
            );
        }
        // The start info itself runs past the end.
        let near_end = BASE + 0x1_0000 - 8;
        memory.write(near_end, &MAGIC.to_le_bytes());
        assert!(matches!(
            parse(&memory, HostPhysAddr(near_end)),
            Err(BootInfoError::Unreadable(_))
        ));
    }

    #[test]
    fn tables_wrapping_the_address_space_are_malformed() {
        let (mut memory, info) = qemu_layout();
        with_info(
            &mut memory,
            &HvmStartInfo {
                memmap_paddr: u64::MAX - 8,
                ..info
            },
        );
        assert_eq!(
            parse_at_start(&memory).unwrap_err(),
            BootInfoError::Malformed {
                what: "PVH memory map wraps the address space"
            }
        );
        with_info(
            &mut memory,
            &HvmStartInfo {
                modlist_paddr: u64::MAX - 16,
                ..info
            },
        );
        assert_eq!(
            parse_at_start(&memory).unwrap_err(),
            BootInfoError::Malformed {
                what: "PVH module list wraps the address space"
            }
        );
        memory.write(0x6100, &module_bytes(u64::MAX - 0xfff, 0x2000, 0));
        with_info(&mut memory, &info);
        assert_eq!(
            parse_at_start(&memory).unwrap_err(),
            BootInfoError::Malformed {
                what: "PVH module wraps the address space"
            }
        );
    }

    #[test]
    fn start_info_wrapping_the_address_space_is_malformed() {
        let at = u64::MAX - 15;
        let mut memory = FakeMemory::new(at, 16);
        memory.write(at, &MAGIC.to_le_bytes());
        assert_eq!(
            parse(&memory, HostPhysAddr(at)).unwrap_err(),
            BootInfoError::Malformed {
                what: "PVH start info wraps the address space"
            }
        );
    }

    #[test]
    fn strings_are_bounded() {
        // No NUL before readable memory ends.
        let (mut memory, _) = qemu_layout();
        let tail = BASE + 0x1_0000 - 16;
        memory.write(tail, &[b'a'; 16]);
        let (_, info) = qemu_layout();
        with_info(
            &mut memory,
            &HvmStartInfo {
                cmdline_paddr: tail,
                ..info
            },
        );
        assert!(matches!(
            parse_at_start(&memory),
            Err(BootInfoError::Unreadable(_))
        ));

        // NUL as the last readable byte.
        memory.write(BASE + 0x1_0000 - 1, &[0]);
        assert_eq!(
            parse_at_start(&memory).unwrap().cmdline.as_str(),
            "a".repeat(15)
        );

        // Longer than the cap, with no NUL anywhere near: cut at a boundary.
        memory.write(0x8000, "€".repeat(1000).as_bytes());
        with_info(
            &mut memory,
            &HvmStartInfo {
                cmdline_paddr: 0x8000,
                ..info
            },
        );
        let parsed = parse_at_start(&memory).unwrap();
        assert_eq!(parsed.cmdline.as_str(), "€".repeat(MAX_CMDLINE / 3));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = XorShift(0x5eed_0004);
        let (valid, _) = qemu_layout();
        let mut parsed = 0;
        for case in 0..3000 {
            let mut memory = FakeMemory::new(BASE, 0x1000);
            match case % 3 {
                // Noise behind a valid magic and version, pointers aimed
                // into the fake memory most of the time.
                0 | 1 => {
                    random.fill(&mut memory.bytes);
                    let mut info = HvmStartInfo {
                        magic: MAGIC,
                        version: random.below(3) as u32,
                        flags: random.next() as u32,
                        nr_modules: random.below(20) as u32,
                        modlist_paddr: BASE + random.below(0x1000),
                        cmdline_paddr: BASE + random.below(0x1000),
                        rsdp_paddr: random.next(),
                        memmap_paddr: BASE + random.below(0x1000),
                        memmap_entries: random.below(200) as u32,
                        reserved: 0,
                    };
                    if case % 3 == 1 {
                        let fields = [
                            &mut info.modlist_paddr,
                            &mut info.cmdline_paddr,
                            &mut info.memmap_paddr,
                        ];
                        for field in fields {
                            if random.below(3) == 0 {
                                *field = [0, random.next(), u64::MAX][random.below(3) as usize];
                            }
                        }
                        if random.below(2) == 0 {
                            info.nr_modules = random.next() as u32;
                            info.memmap_entries = random.next() as u32;
                        }
                    }
                    memory.write(BASE, &start_info_bytes(&info));
                }
                // The QEMU layout with a few bytes changed.
                _ => {
                    memory = FakeMemory {
                        base: valid.base,
                        bytes: valid.bytes.clone(),
                    };
                    for _ in 0..random.below(8) + 1 {
                        let at = (START_INFO - BASE) as usize + random.below(0x2100) as usize;
                        memory.bytes[at] = random.next() as u8;
                    }
                }
            }
            let start = if case % 3 == 2 { START_INFO } else { BASE };
            if let Ok(info) = parse(&memory, HostPhysAddr(start)) {
                parsed += 1;
                assert!(!info.memory.is_empty());
                assert!(info.modules.len() <= MAX_MODULES);
                for pair in info.memory.windows(2) {
                    assert!(pair[0].range.end <= pair[1].range.start);
                }
            }
        }
        assert!(
            parsed > 100,
            "only {parsed} random cases parsed: the generator is too harsh"
        );
    }
}
