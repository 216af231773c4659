//! The multiboot2 information structure (what GRUB leaves at EBX) read into
//! a [`BootInfo`]. The structure is copied out of loader memory once and
//! only the copy is parsed, so the loader cannot change it under us.
//!
//! Layout: `u32 total_size, u32 reserved`, then tags, each 8-byte aligned,
//! starting `u32 type, u32 size` (size counts the 8-byte header but not the
//! padding after it), ending with a type-0 tag.

use super::memory_map::{self, RawMemoryMap};
use super::{BootInfo, BootInfoError, CmdLine, Loader, MAX_MODULES, Module, cmdline};
use crate::memory::{HostPhysAddr, HostRange, PhysicalMemory};

/// EAX at entry from a multiboot2 loader.
pub const MAGIC: u32 = 0x36d7_6289;

/// Largest information structure accepted. GRUB's is a few KiB; an EFI
/// memory map or many ELF sections can reach tens of KiB. [`parse`] keeps a
/// buffer of this size on the stack.
pub const MAX_INFO_SIZE: usize = 64 * 1024;

/// Smallest valid structure: the 8-byte header and the 8-byte end tag.
const MIN_INFO_SIZE: usize = 16;
/// Bytes of a tag header (`type`, `size`); also the tag alignment.
const TAG_HEADER: usize = 8;
/// Bytes of a memory-map entry as the specification defines it; later
/// versions may make entries longer, never shorter.
const MIN_MEMORY_MAP_ENTRY: usize = 24;
/// Bytes of an ACPI 1.0 RSDP and of an ACPI 2.0+ XSDP.
const RSDP_V1_SIZE: usize = 20;
const RSDP_V2_SIZE: usize = 36;

/// Tag types this parser reads; all others are skipped.
mod tag_type {
    pub const END: u32 = 0;
    pub const COMMAND_LINE: u32 = 1;
    pub const MODULE: u32 = 3;
    pub const MEMORY_MAP: u32 = 6;
    pub const ACPI_OLD_RSDP: u32 = 14;
    pub const ACPI_NEW_RSDP: u32 = 15;
}

const fn malformed(what: &'static str) -> BootInfoError {
    BootInfoError::Malformed { what }
}

/// Reads the multiboot2 information structure at `info`.
///
/// Command lines are copied with [`cmdline::copy_lossy`]: cut at the first
/// NUL or the tag's end, invalid UTF-8 replaced, cut to `MAX_CMDLINE` bytes.
/// Where a singular tag (command line, memory map) repeats, the first one
/// counts. Modules and memory-map entries past `MAX_MODULES` and
/// `MAX_MEMORY_REGIONS` are dropped. The RSDP is the address of the copy
/// inside the tag, the ACPI 2.0 one preferred.
pub fn parse(memory: &impl PhysicalMemory, info: HostPhysAddr) -> Result<BootInfo, BootInfoError> {
    if !info.is_aligned(8) {
        return Err(malformed("multiboot2 information is not 8-byte aligned"));
    }
    let total_size = memory.read_u32(info)?;
    let size = usize::try_from(total_size).unwrap_or(usize::MAX);
    if size < MIN_INFO_SIZE {
        return Err(malformed("multiboot2 information is smaller than 16 bytes"));
    }
    if size > MAX_INFO_SIZE {
        return Err(malformed("multiboot2 information is larger than 64 KiB"));
    }
    let info_range = HostRange::new(info, u64::from(total_size))
        .ok_or(malformed("multiboot2 information wraps the address space"))?;

    let mut buffer = [0; MAX_INFO_SIZE];
    let copy = buffer
        .get_mut(..size)
        .ok_or(malformed("multiboot2 information is larger than 64 KiB"))?;
    memory.read(info, copy)?;
    parse_copy(copy, info_range)
}

/// One tag of the copy: its type, where it sits in loader memory, and the
/// bytes after its header.
struct Tag<'a> {
    kind: u32,
    address: HostPhysAddr,
    body: &'a [u8],
}

/// Walks the tags of `copy` up to the end tag. Every step moves forward by
/// at least a header, so the walk ends within `copy.len() / 8` steps.
struct Tags<'a> {
    copy: &'a [u8],
    base: HostPhysAddr,
    offset: usize,
    done: bool,
}

impl<'a> Tags<'a> {
    fn new(copy: &'a [u8], base: HostPhysAddr) -> Self {
        Self {
            copy,
            base,
            offset: TAG_HEADER,
            done: false,
        }
    }

    fn next_tag(&mut self) -> Result<Option<Tag<'a>>, BootInfoError> {
        if self.done {
            return Ok(None);
        }
        // Stop for good on an error as on the end tag.
        self.done = true;
        if self.offset >= self.copy.len() {
            return Err(malformed("multiboot2 information has no end tag"));
        }
        let kind =
            u32_at(self.copy, self.offset).ok_or(malformed("multiboot2 tag header is cut off"))?;
        let size = u32_at(self.copy, self.offset + 4)
            .ok_or(malformed("multiboot2 tag header is cut off"))?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size < TAG_HEADER {
            return Err(malformed("multiboot2 tag is smaller than its header"));
        }
        let end = self
            .offset
            .checked_add(size)
            .ok_or(malformed("multiboot2 tag runs past the end"))?;
        let body = self
            .copy
            .get(self.offset + TAG_HEADER..end)
            .ok_or(malformed("multiboot2 tag runs past the end"))?;
        let offset = u64::try_from(self.offset).map_err(|_| malformed("multiboot2 tag offset"))?;
        let address = self
            .base
            .checked_add(offset)
            .ok_or(malformed("multiboot2 tag wraps the address space"))?;
        if kind == tag_type::END {
            return Ok(None);
        }
        // `end` lies within the 64 KiB copy: rounding it up cannot overflow.
        self.offset = end.next_multiple_of(TAG_HEADER);
        self.done = false;
        Ok(Some(Tag {
            kind,
            address,
            body,
        }))
    }
}

fn parse_copy(copy: &[u8], info_range: HostRange) -> Result<BootInfo, BootInfoError> {
    let mut command_line: Option<CmdLine> = None;
    let mut raw_memory: Option<RawMemoryMap> = None;
    let mut modules = arrayvec::ArrayVec::new();
    let mut dropped_modules = 0usize;
    let mut old_rsdp = None;
    let mut new_rsdp = None;

    let mut tags = Tags::new(copy, info_range.start);
    while let Some(tag) = tags.next_tag()? {
        match tag.kind {
            tag_type::COMMAND_LINE if command_line.is_none() => {
                command_line = Some(cmdline::copy_lossy(tag.body));
            }
            tag_type::MODULE => {
                let module = parse_module(tag.body)?;
                if modules.try_push(module).is_err() {
                    dropped_modules += 1;
                }
            }
            tag_type::MEMORY_MAP => {
                let map = parse_memory_map(tag.body)?;
                if raw_memory.is_none() {
                    raw_memory = Some(map);
                }
            }
            tag_type::ACPI_OLD_RSDP => old_rsdp = Some(rsdp_copy(&tag, RSDP_V1_SIZE)?),
            tag_type::ACPI_NEW_RSDP => new_rsdp = Some(rsdp_copy(&tag, RSDP_V2_SIZE)?),
            _ => {}
        }
    }
    if dropped_modules > 0 {
        log::warn!("multiboot2: {dropped_modules} modules past the first {MAX_MODULES} ignored");
    }

    let raw_memory = raw_memory.ok_or(BootInfoError::NoMemoryMap)?;
    let memory = memory_map::normalise(&raw_memory);
    if memory.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(BootInfo {
        loader: Loader::Multiboot2,
        cmdline: command_line.unwrap_or_default(),
        memory,
        modules,
        rsdp: new_rsdp.or(old_rsdp),
        info_range,
    })
}

/// Module tag body: `u32 mod_start, u32 mod_end` (exclusive), command line.
fn parse_module(body: &[u8]) -> Result<Module, BootInfoError> {
    let (Some(start), Some(end)) = (u32_at(body, 0), u32_at(body, 4)) else {
        return Err(malformed("multiboot2 module tag is too short"));
    };
    if end < start {
        return Err(malformed("multiboot2 module ends before it starts"));
    }
    let range = HostRange {
        start: HostPhysAddr(u64::from(start)),
        end: HostPhysAddr(u64::from(end)),
    };
    let cmdline = cmdline::copy_lossy(body.get(8..).unwrap_or_default());
    Ok(Module { range, cmdline })
}

/// Memory-map tag body: `u32 entry_size, u32 entry_version`, then entries
/// `u64 base, u64 length, u32 type, u32 reserved` padded to `entry_size`.
fn parse_memory_map(body: &[u8]) -> Result<RawMemoryMap, BootInfoError> {
    let entry_size = u32_at(body, 0).ok_or(malformed("multiboot2 memory-map tag is too short"))?;
    let entry_size = usize::try_from(entry_size).unwrap_or(usize::MAX);
    if entry_size < MIN_MEMORY_MAP_ENTRY {
        return Err(malformed(
            "multiboot2 memory-map entries are smaller than 24 bytes",
        ));
    }
    let entries = body
        .get(8..)
        .ok_or(malformed("multiboot2 memory-map tag is too short"))?;
    if entries.len() % entry_size != 0 {
        return Err(malformed("multiboot2 memory-map tag holds a partial entry"));
    }
    let mut map = RawMemoryMap::new();
    for entry in entries.chunks_exact(entry_size) {
        let (Some(base), Some(length), Some(kind)) =
            (u64_at(entry, 0), u64_at(entry, 8), u32_at(entry, 16))
        else {
            continue; // Unreachable: every entry holds at least 24 bytes.
        };
        if map
            .try_push(memory_map::region_from_e820(
                HostPhysAddr(base),
                length,
                kind,
            ))
            .is_err()
        {
            log::warn!(
                "multiboot2: memory-map entries past the first {} ignored",
                map.len()
            );
            break;
        }
    }
    Ok(map)
}

/// The address of the RSDP copy a tag holds, once the tag is long enough.
fn rsdp_copy(tag: &Tag<'_>, rsdp_size: usize) -> Result<HostPhysAddr, BootInfoError> {
    if tag.body.len() < rsdp_size {
        return Err(malformed("multiboot2 ACPI RSDP tag is too short"));
    }
    tag.address
        .checked_add(TAG_HEADER as u64)
        .ok_or(malformed("multiboot2 tag wraps the address space"))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::memory_map::testing::{FakeMemory, XorShift};
    use crate::boot::{MAX_CMDLINE, MAX_MEMORY_REGIONS, MemoryKind, MemoryRegion};

    const BASE: u64 = 0x10_0000;
    const INFO: u64 = BASE + 0x1000;

    /// Builds a multiboot2 information structure tag by tag.
    struct Builder {
        bytes: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Self { bytes: vec![0; 8] }
        }

        /// Appends a tag whose `size` field is the body's length plus 8.
        fn tag(self, kind: u32, body: &[u8]) -> Self {
            let size = u32::try_from(body.len() + 8).unwrap();
            self.raw_tag(kind, size, body)
        }

        /// Appends a tag with any `size` field, then pads to 8 bytes.
        fn raw_tag(mut self, kind: u32, size: u32, body: &[u8]) -> Self {
            self.bytes.extend(kind.to_le_bytes());
            self.bytes.extend(size.to_le_bytes());
            self.bytes.extend(body);
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            self
        }

        fn cmdline(self, text: &str) -> Self {
            let mut body = text.as_bytes().to_vec();
            body.push(0);
            self.tag(tag_type::COMMAND_LINE, &body)
        }

        fn module(self, start: u32, end: u32, text: &str) -> Self {
            let mut body = Vec::new();
            body.extend(start.to_le_bytes());
            body.extend(end.to_le_bytes());
            body.extend(text.as_bytes());
            body.push(0);
            self.tag(tag_type::MODULE, &body)
        }

        fn memory_map(self, entries: &[(u64, u64, u32)]) -> Self {
            self.tag(tag_type::MEMORY_MAP, &memory_map_body(24, entries))
        }

        /// Appends the end tag and sets `total_size`.
        fn finish(self) -> Vec<u8> {
            let mut bytes = self.tag(tag_type::END, &[]).bytes;
            let total = u32::try_from(bytes.len()).unwrap();
            bytes[..4].copy_from_slice(&total.to_le_bytes());
            bytes
        }
    }

    fn memory_map_body(entry_size: u32, entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(entry_size.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        for &(base, length, kind) in entries {
            let start = body.len();
            body.extend(base.to_le_bytes());
            body.extend(length.to_le_bytes());
            body.extend(kind.to_le_bytes());
            body.resize(start + entry_size as usize, 0);
        }
        body
    }

    /// GRUB on a PC: a memory map, two modules, both RSDP tags, and the
    /// tags this parser skips (loader name, basic memory, boot device,
    /// framebuffer, ELF sections, load base).
    fn grub_image() -> Vec<u8> {
        Builder::new()
            .cmdline("dom0_mem=1G loglevel=debug -- console=hvc0")
            .tag(2, b"GRUB 2.12\0")
            .tag(4, &[0x80, 2, 0, 0, 0x00, 0xfc, 0x0f, 0])
            .tag(5, &[0xff; 12])
            .module(0x20_0000, 0x28_0123, "/boot/dom0.elf verbose")
            .module(0x30_0000, 0x30_0000, "")
            .memory_map(&[
                (0, 0x9_fc00, 1),
                (0x9_fc00, 0x400, 2),
                (0xf_0000, 0x1_0000, 2),
                (0x10_0000, 0x7fee_0000, 1),
                (0x7ffe_0000, 0x2_0000, 3),
                (0xfffc_0000, 0x4_0000, 2),
                (0x1_0000_0000, 0x8000_0000, 1),
            ])
            .tag(8, &[0; 32])
            .tag(9, &[0; 84])
            .tag(
                tag_type::ACPI_OLD_RSDP,
                b"RSD PTR \x55BOCHS \x00\x00\x00\xfe\x7f",
            )
            .tag(tag_type::ACPI_NEW_RSDP, &[0x42; 36])
            .tag(21, &0x20_0000u32.to_le_bytes())
            .finish()
    }

    fn memory_with(image: &[u8]) -> FakeMemory {
        let mut memory = FakeMemory::new(BASE, 0x1_0000 + MAX_INFO_SIZE);
        memory.write(INFO, image);
        memory
    }

    fn parse_image(image: &[u8]) -> Result<BootInfo, BootInfoError> {
        parse(&memory_with(image), HostPhysAddr(INFO))
    }

    fn tag_offset(image: &[u8], kind: u32) -> u64 {
        let mut offset = 8;
        loop {
            let found = u32::from_le_bytes(image[offset..offset + 4].try_into().unwrap());
            if found == kind {
                return offset as u64;
            }
            let size =
                u32::from_le_bytes(image[offset + 4..offset + 8].try_into().unwrap()) as usize;
            offset = (offset + size).next_multiple_of(8);
        }
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

    fn malformed_reason(result: Result<BootInfo, BootInfoError>) -> &'static str {
        match result {
            Err(BootInfoError::Malformed { what }) => what,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_grub_layout() {
        let image = grub_image();
        let info = parse_image(&image).unwrap();
        assert_eq!(info.loader, Loader::Multiboot2);
        assert_eq!(
            info.cmdline.as_str(),
            "dom0_mem=1G loglevel=debug -- console=hvc0"
        );
        assert_eq!(
            info.info_range,
            HostRange::new(HostPhysAddr(INFO), image.len() as u64).unwrap()
        );
        assert_eq!(info.modules.len(), 2);
        assert_eq!(
            info.modules[0].range,
            HostRange {
                start: HostPhysAddr(0x20_0000),
                end: HostPhysAddr(0x28_0123)
            }
        );
        assert_eq!(info.modules[0].cmdline.as_str(), "/boot/dom0.elf verbose");
        assert!(info.modules[1].range.is_empty());
        assert_eq!(info.modules[1].cmdline.as_str(), "");
        assert_eq!(
            info.memory.as_slice(),
            [
                region(0, 0x9_fc00, MemoryKind::Usable),
                region(0x9_fc00, 0xa_0000, MemoryKind::Reserved),
                region(0xf_0000, 0x10_0000, MemoryKind::Reserved),
                region(0x10_0000, 0x7ffe_0000, MemoryKind::Usable),
                region(0x7ffe_0000, 0x8000_0000, MemoryKind::AcpiReclaimable),
                region(0xfffc_0000, 0x1_0000_0000, MemoryKind::Reserved),
                region(0x1_0000_0000, 0x1_8000_0000, MemoryKind::Usable),
            ]
        );
        // The ACPI 2.0 copy wins, wherever its tag sits.
        let new_tag = tag_offset(&image, tag_type::ACPI_NEW_RSDP);
        assert_eq!(info.rsdp, Some(HostPhysAddr(INFO + new_tag + 8)));
    }

    #[test]
    fn old_rsdp_is_used_alone_and_loses_to_a_later_new_one() {
        let rsdp = [0x11; 20];
        let image = Builder::new()
            .tag(tag_type::ACPI_OLD_RSDP, &rsdp)
            .memory_map(&[(0, 0x1000, 1)])
            .finish();
        assert_eq!(
            parse_image(&image).unwrap().rsdp,
            Some(HostPhysAddr(INFO + 16))
        );

        let image = Builder::new()
            .tag(tag_type::ACPI_NEW_RSDP, &[0x22; 36])
            .tag(tag_type::ACPI_OLD_RSDP, &rsdp)
            .memory_map(&[(0, 0x1000, 1)])
            .finish();
        assert_eq!(
            parse_image(&image).unwrap().rsdp,
            Some(HostPhysAddr(INFO + 16))
        );
    }

    #[test]
    fn minimal_structure_has_defaults() {
        let image = Builder::new().memory_map(&[(0x1000, 0x1000, 1)]).finish();
        let info = parse_image(&image).unwrap();
        assert!(info.cmdline.is_empty());
        assert!(info.modules.is_empty());
        assert_eq!(info.rsdp, None);
        assert_eq!(
            info.memory.as_slice(),
            [region(0x1000, 0x2000, MemoryKind::Usable)]
        );
    }

    #[test]
    fn missing_or_empty_memory_map_is_an_error() {
        let image = Builder::new().cmdline("x").finish();
        assert_eq!(parse_image(&image).unwrap_err(), BootInfoError::NoMemoryMap);
        let image = Builder::new().memory_map(&[]).finish();
        assert_eq!(parse_image(&image).unwrap_err(), BootInfoError::NoMemoryMap);
        let image = Builder::new().memory_map(&[(0x1000, 0, 1)]).finish();
        assert_eq!(parse_image(&image).unwrap_err(), BootInfoError::NoMemoryMap);
    }

    #[test]
    fn overlapping_memory_map_is_normalised() {
        let image = Builder::new()
            .memory_map(&[
                (0x10_0000, 0x10_0000, 1),
                (0, 0x20_0000, 1),
                (0x18_0000, 0x1000, 4),
                (0x5000, 0, 2),
            ])
            .finish();
        assert_eq!(
            parse_image(&image).unwrap().memory.as_slice(),
            [
                region(0, 0x18_0000, MemoryKind::Usable),
                region(0x18_0000, 0x18_1000, MemoryKind::AcpiNvs),
                region(0x18_1000, 0x20_0000, MemoryKind::Usable),
            ]
        );
    }

    #[test]
    fn longer_memory_map_entries_are_stepped_over() {
        let body = memory_map_body(32, &[(0, 0x1000, 1), (0x2000, 0x1000, 5)]);
        let image = Builder::new().tag(tag_type::MEMORY_MAP, &body).finish();
        assert_eq!(
            parse_image(&image).unwrap().memory.as_slice(),
            [
                region(0, 0x1000, MemoryKind::Usable),
                region(0x2000, 0x3000, MemoryKind::Bad)
            ]
        );
    }

    #[test]
    fn first_memory_map_and_command_line_count() {
        let image = Builder::new()
            .cmdline("first")
            .memory_map(&[(0, 0x1000, 1)])
            .cmdline("second")
            .memory_map(&[(0x8000, 0x1000, 1)])
            .finish();
        let info = parse_image(&image).unwrap();
        assert_eq!(info.cmdline.as_str(), "first");
        assert_eq!(
            info.memory.as_slice(),
            [region(0, 0x1000, MemoryKind::Usable)]
        );
    }

    #[test]
    fn bad_memory_map_tags_are_malformed() {
        let short_entries = memory_map_body(16, &[(0, 0x1000, 1)]);
        let image = Builder::new()
            .tag(tag_type::MEMORY_MAP, &short_entries)
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 memory-map entries are smaller than 24 bytes"
        );

        let mut partial = memory_map_body(24, &[(0, 0x1000, 1)]);
        partial.truncate(partial.len() - 4);
        let image = Builder::new().tag(tag_type::MEMORY_MAP, &partial).finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 memory-map tag holds a partial entry"
        );

        let image = Builder::new()
            .tag(tag_type::MEMORY_MAP, &[24, 0, 0, 0])
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 memory-map tag is too short"
        );

        let huge = memory_map_body(u32::MAX, &[]);
        let image = Builder::new().tag(tag_type::MEMORY_MAP, &huge).finish();
        assert_eq!(parse_image(&image).unwrap_err(), BootInfoError::NoMemoryMap);
    }

    #[test]
    fn memory_map_entries_past_the_cap_are_dropped() {
        let entries: Vec<_> = (0..300u64)
            .map(|index| (index * 0x2000, 0x1000, 1))
            .collect();
        let image = Builder::new().memory_map(&entries).finish();
        let info = parse_image(&image).unwrap();
        assert_eq!(info.memory.len(), MAX_MEMORY_REGIONS);
        assert_eq!(
            info.memory.last().unwrap().range.start,
            HostPhysAddr(127 * 0x2000)
        );
    }

    #[test]
    fn modules_past_the_cap_are_dropped() {
        let mut builder = Builder::new().memory_map(&[(0, 0x1000, 1)]);
        for index in 0..40u32 {
            builder = builder.module(
                index * 0x1000,
                index * 0x1000 + 0x10,
                &format!("module {index}"),
            );
        }
        let info = parse_image(&builder.finish()).unwrap();
        assert_eq!(info.modules.len(), MAX_MODULES);
        assert_eq!(info.modules[15].cmdline.as_str(), "module 15");
    }

    #[test]
    fn bad_module_tags_are_malformed() {
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .module(0x2000, 0x1000, "")
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 module ends before it starts"
        );
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .tag(tag_type::MODULE, &[0; 6])
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 module tag is too short"
        );
    }

    #[test]
    fn module_without_a_string_has_an_empty_command_line() {
        let mut body = Vec::new();
        body.extend(0x1000u32.to_le_bytes());
        body.extend(0x2000u32.to_le_bytes());
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .tag(tag_type::MODULE, &body)
            .finish();
        assert_eq!(parse_image(&image).unwrap().modules[0].cmdline.as_str(), "");
    }

    #[test]
    fn short_rsdp_tags_are_malformed() {
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .tag(tag_type::ACPI_NEW_RSDP, &[0; 20])
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 ACPI RSDP tag is too short"
        );
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .tag(tag_type::ACPI_OLD_RSDP, &[0; 19])
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 ACPI RSDP tag is too short"
        );
    }

    #[test]
    fn command_lines_are_cut_and_repaired() {
        let long = "x".repeat(3000);
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .cmdline(&long)
            .finish();
        assert_eq!(parse_image(&image).unwrap().cmdline.len(), MAX_CMDLINE);

        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .tag(tag_type::COMMAND_LINE, b"a\xfe b")
            .finish();
        assert_eq!(parse_image(&image).unwrap().cmdline.as_str(), "a\u{fffd} b");
    }

    #[test]
    fn zero_and_short_tag_sizes_are_malformed() {
        for size in [0, 1, 7] {
            let image = Builder::new()
                .memory_map(&[(0, 0x1000, 1)])
                .raw_tag(99, size, &[])
                .finish();
            assert_eq!(
                malformed_reason(parse_image(&image)),
                "multiboot2 tag is smaller than its header"
            );
        }
    }

    #[test]
    fn tag_past_the_end_is_malformed() {
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .raw_tag(99, 0x1000, &[0; 8])
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 tag runs past the end"
        );
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .raw_tag(99, u32::MAX, &[0; 8])
            .finish();
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 tag runs past the end"
        );
    }

    #[test]
    fn truncated_structure_is_malformed() {
        // total_size stops inside the memory-map tag.
        let mut image = grub_image();
        let cut = tag_offset(&image, tag_type::MEMORY_MAP) as u32 + 16;
        image[..4].copy_from_slice(&cut.to_le_bytes());
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 tag runs past the end"
        );

        // total_size ends between tags, before the end tag.
        let mut image = Builder::new().memory_map(&[(0, 0x1000, 1)]).finish();
        let without_end = (image.len() - 8) as u32;
        image[..4].copy_from_slice(&without_end.to_le_bytes());
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 information has no end tag"
        );

        // total_size ends inside a tag header.
        let mut image = Builder::new().memory_map(&[(0, 0x1000, 1)]).finish();
        let inside_header = (image.len() - 4) as u32;
        image[..4].copy_from_slice(&inside_header.to_le_bytes());
        assert_eq!(
            malformed_reason(parse_image(&image)),
            "multiboot2 tag header is cut off"
        );
    }

    #[test]
    fn total_size_limits() {
        for size in [0u32, 8, 15] {
            let mut image = Builder::new().finish();
            image[..4].copy_from_slice(&size.to_le_bytes());
            assert_eq!(
                malformed_reason(parse_image(&image)),
                "multiboot2 information is smaller than 16 bytes"
            );
        }
        for size in [MAX_INFO_SIZE as u32 + 1, u32::MAX] {
            let mut image = Builder::new().finish();
            image[..4].copy_from_slice(&size.to_le_bytes());
            assert_eq!(
                malformed_reason(parse_image(&image)),
                "multiboot2 information is larger than 64 KiB"
            );
        }
    }

    #[test]
    fn largest_structure_is_accepted() {
        let filler = vec![0; MAX_INFO_SIZE - 8 - 8 - 40 - 8];
        let image = Builder::new()
            .memory_map(&[(0, 0x1000, 1)])
            .tag(99, &filler)
            .finish();
        assert_eq!(image.len(), MAX_INFO_SIZE);
        assert!(parse_image(&image).is_ok());
    }

    #[test]
    fn structure_past_readable_memory_is_unreadable() {
        let image = grub_image();
        let mut memory = FakeMemory::new(BASE, 0x1000 + image.len() - 1);
        memory.write(INFO, &image[..image.len() - 1]);
        assert!(matches!(
            parse(&memory, HostPhysAddr(INFO)),
            Err(BootInfoError::Unreadable(_))
        ));
        assert!(matches!(
            parse(&memory, HostPhysAddr(0)),
            Err(BootInfoError::Unreadable(_))
        ));
    }

    #[test]
    fn misaligned_structure_is_malformed() {
        let image = grub_image();
        let mut memory = FakeMemory::new(BASE, 0x3000);
        memory.write(INFO + 4, &image);
        assert_eq!(
            malformed_reason(parse(&memory, HostPhysAddr(INFO + 4))),
            "multiboot2 information is not 8-byte aligned"
        );
    }

    #[test]
    fn structure_wrapping_the_address_space_is_malformed() {
        let info = u64::MAX - 15;
        let mut memory = FakeMemory::new(info, 16);
        memory.write(info, &0x20u32.to_le_bytes());
        assert_eq!(
            malformed_reason(parse(&memory, HostPhysAddr(info))),
            "multiboot2 information wraps the address space"
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = XorShift(0x5eed_0003);
        let valid = grub_image();
        let mut parsed = 0;
        for case in 0..4000 {
            let image = match case % 4 {
                // Pure noise, with a plausible total size half the time.
                0 => {
                    let mut image = vec![0; random.below(512) as usize + 16];
                    random.fill(&mut image);
                    if random.below(2) == 0 {
                        let size = image.len() as u32;
                        image[..4].copy_from_slice(&size.to_le_bytes());
                    }
                    image
                }
                // The GRUB image with a few bytes changed.
                1 => {
                    let mut image = valid.clone();
                    for _ in 0..random.below(8) + 1 {
                        let at = random.below(image.len() as u64) as usize;
                        image[at] = random.next() as u8;
                    }
                    image
                }
                // Tags of interesting types and random sizes and bodies.
                _ => {
                    let mut builder = Builder::new();
                    for _ in 0..random.below(12) {
                        let kinds = [0, 1, 3, 6, 14, 15, 2, 0xffff_ffff];
                        let kind = kinds[random.below(kinds.len() as u64) as usize];
                        let mut body = vec![0; random.below(96) as usize];
                        random.fill(&mut body);
                        if kind == 6 && body.len() >= 4 && random.below(2) == 0 {
                            body[..4].copy_from_slice(&24u32.to_le_bytes());
                        }
                        let size = match random.below(8) {
                            0 => random.next() as u32,
                            1 => random.below(16) as u32,
                            _ => body.len() as u32 + 8,
                        };
                        builder = builder.raw_tag(kind, size, &body);
                    }
                    builder.finish()
                }
            };
            if let Ok(info) = parse_image(&image) {
                parsed += 1;
                assert!(!info.memory.is_empty());
                for pair in info.memory.windows(2) {
                    assert!(pair[0].range.end <= pair[1].range.start);
                }
                assert!(info.info_range.len() as usize <= MAX_INFO_SIZE);
                if let Some(rsdp) = info.rsdp {
                    assert!(info.info_range.contains(rsdp));
                }
            }
        }
        assert!(
            parsed > 100,
            "only {parsed} random cases parsed: the generator is too harsh"
        );
    }
}
