//! Direct kernel boot of a bzImage by the Linux/x86 boot protocol (Linux's
//! `Documentation/arch/x86/boot.rst`), as QEMU's `-kernel` does without
//! firmware: the protected-mode part of the image goes to 1 MiB and the
//! vCPU starts at its 32-bit entry with ESI pointing at a "zero page"
//! (`struct boot_params`) that holds a copy of the image's setup header,
//! the e820 memory map, the command line's address, the initrd and the
//! ACPI root pointer. The kernel decompresses itself.
//!
//! The image is untrusted: every field read is bounds-checked, the parts
//! handed back are ranges of the image, and no input makes this panic.

use core::fmt;
use core::ops::Range;

use crate::start_info::MemoryEntry;

/// Where the protected-mode code is loaded and entered (`code32_start`'s
/// default, 1 MiB).
pub const CODE32_START: u64 = 0x10_0000;
/// The zero page, then the command line right after it.
pub const BLOCK_SIZE: usize = 2 * 4096;
/// Where the command line sits in the block.
const CMDLINE_OFFSET: usize = 4096;
/// The oldest protocol with `init_size` and `pref_address` (2.10), which
/// the builder needs to know where the kernel decompresses itself to.
pub const MIN_PROTOCOL: u16 = 0x020a;
/// The most e820 entries the zero page holds.
pub const MAX_E820_ENTRIES: usize = 128;

const SECTOR: usize = 512;

/// Offsets in the zero page (`zero-page.rst`) and setup header.
mod offset {
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const SETUP_HEADER: usize = 0x1f1;
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const HARDWARE_SUBARCH: usize = 0x23c;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    pub const E820_TABLE: usize = 0x2d0;
}

/// `loadflags` bit 0: the protected-mode code is loaded at 1 MiB.
const LOADED_HIGH: u8 = 1 << 0;
/// `type_of_loader`: a loader without an assigned id.
const LOADER_UNDEFINED: u8 = 0xff;

/// Why an image cannot be booted this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootImageError {
    /// No "HdrS" at 0x202 or no 0xAA55 boot flag: not a bzImage.
    NotBzImage,
    /// A protocol older than 2.10.
    UnsupportedProtocol { version: u16 },
    /// A zImage (loaded low, at 0x10000): not supported.
    NotLoadedHigh,
    /// The file ends inside the setup code or has no protected-mode part.
    Truncated,
}

impl fmt::Display for BootImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBzImage => f.write_str("not a Linux bzImage (no setup header)"),
            Self::UnsupportedProtocol { version } => write!(
                f,
                "boot protocol {}.{:02} is older than 2.10",
                version >> 8,
                version & 0xff
            ),
            Self::NotLoadedHigh => f.write_str("a zImage (not loaded at 1 MiB) is not supported"),
            Self::Truncated => f.write_str("the file ends inside the setup code"),
        }
    }
}

/// What the builder needs from a bzImage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootImage {
    /// The boot protocol version.
    pub protocol: u16,
    /// The setup header's bytes in the file (copied into the zero page).
    pub setup_header: Range<usize>,
    /// The protected-mode code's bytes in the file (loaded at
    /// [`CODE32_START`]).
    pub protected_mode: Range<usize>,
    /// Where the kernel decompresses itself to (`pref_address`).
    pub preferred_address: u64,
    /// How much memory from there it needs while booting (`init_size`).
    pub init_size: u32,
    /// The highest address the initrd may end at.
    pub initrd_addr_max: u32,
    /// The longest command line, without its NUL.
    pub cmdline_size: u32,
}

impl BootImage {
    /// Where the kernel's boot-time memory ends: the initrd and the zero
    /// page must stay above.
    pub fn boot_memory_end(&self) -> u64 {
        self.preferred_address
            .max(CODE32_START)
            .saturating_add(u64::from(self.init_size))
    }
}

fn read_u16(image: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(image.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(image: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(image: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(image.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a bzImage's setup header.
pub fn parse(image: &[u8]) -> Result<BootImage, BootImageError> {
    if image.get(offset::HEADER..offset::HEADER + 4) != Some(b"HdrS")
        || read_u16(image, offset::BOOT_FLAG) != Some(0xaa55)
    {
        return Err(BootImageError::NotBzImage);
    }
    let protocol = read_u16(image, offset::VERSION).ok_or(BootImageError::Truncated)?;
    if protocol < MIN_PROTOCOL {
        return Err(BootImageError::UnsupportedProtocol { version: protocol });
    }
    let loadflags = *image
        .get(offset::LOADFLAGS)
        .ok_or(BootImageError::Truncated)?;
    if loadflags & LOADED_HIGH == 0 {
        return Err(BootImageError::NotLoadedHigh);
    }
    // The header runs from 0x1F1 to 0x202 plus the byte at 0x201 (the
    // operand of the short jump at 0x200).
    let jump = *image
        .get(offset::JUMP + 1)
        .ok_or(BootImageError::Truncated)?;
    let header_end = offset::HEADER + usize::from(jump);
    if header_end > image.len() || header_end > CMDLINE_OFFSET || header_end <= offset::INIT_SIZE {
        return Err(BootImageError::Truncated);
    }
    let setup_sectors = match image.get(offset::SETUP_SECTS) {
        Some(0) => 4,
        Some(&count) => usize::from(count),
        None => return Err(BootImageError::Truncated),
    };
    let protected_mode_start = (setup_sectors + 1) * SECTOR;
    if protected_mode_start >= image.len() {
        return Err(BootImageError::Truncated);
    }
    let field = |at| read_u32(image, at).ok_or(BootImageError::Truncated);
    Ok(BootImage {
        protocol,
        setup_header: offset::SETUP_HEADER..header_end,
        protected_mode: protected_mode_start..image.len(),
        preferred_address: read_u64(image, offset::PREF_ADDRESS)
            .ok_or(BootImageError::Truncated)?,
        init_size: field(offset::INIT_SIZE)?,
        initrd_addr_max: field(offset::INITRD_ADDR_MAX)?,
        cmdline_size: field(offset::CMDLINE_SIZE)?,
    })
}

/// What the zero page says besides the image's own header.
pub struct ZeroPageInput<'a> {
    /// Guest-physical address of the block (zero page, then command line).
    pub base: u64,
    pub memory: &'a [MemoryEntry],
    pub cmdline: &'a str,
    /// The initrd's address and size, if any.
    pub initrd: Option<(u64, u64)>,
    /// The ACPI root pointer, 0 for none.
    pub rsdp: u64,
}

/// Builds the zero page and the command line after it. The command line
/// is cut at a character boundary to the image's `cmdline_size`; memory
/// entries beyond [`MAX_E820_ENTRIES`] are dropped.
pub fn build(image_bytes: &[u8], image: &BootImage, input: &ZeroPageInput<'_>) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    if let (Some(header), Some(target)) = (
        image_bytes.get(image.setup_header.clone()),
        block.get_mut(image.setup_header.clone()),
    ) {
        target.copy_from_slice(header);
    }
    let put = |block: &mut [u8; BLOCK_SIZE], at: usize, bytes: &[u8]| {
        if let Some(field) = block.get_mut(at..at + bytes.len()) {
            field.copy_from_slice(bytes);
        }
    };
    block[offset::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    block[offset::LOADFLAGS] |= LOADED_HIGH;
    put(
        &mut block,
        offset::CODE32_START,
        &(CODE32_START as u32).to_le_bytes(),
    );
    put(&mut block, offset::HARDWARE_SUBARCH, &0u32.to_le_bytes()); // a PC
    // The command line, NUL-terminated.
    let limit = (image.cmdline_size as usize).min(BLOCK_SIZE - CMDLINE_OFFSET - 1);
    let mut length = input.cmdline.len().min(limit);
    while !input.cmdline.is_char_boundary(length) {
        length -= 1;
    }
    put(
        &mut block,
        CMDLINE_OFFSET,
        &input.cmdline.as_bytes()[..length],
    );
    let cmdline_address = input.base + CMDLINE_OFFSET as u64;
    put(
        &mut block,
        offset::CMD_LINE_PTR,
        &(cmdline_address as u32).to_le_bytes(),
    );
    put(
        &mut block,
        offset::EXT_CMD_LINE_PTR,
        &((cmdline_address >> 32) as u32).to_le_bytes(),
    );
    if let Some((address, size)) = input.initrd {
        put(
            &mut block,
            offset::RAMDISK_IMAGE,
            &(address as u32).to_le_bytes(),
        );
        put(
            &mut block,
            offset::RAMDISK_SIZE,
            &(size as u32).to_le_bytes(),
        );
        put(
            &mut block,
            offset::EXT_RAMDISK_IMAGE,
            &((address >> 32) as u32).to_le_bytes(),
        );
        put(
            &mut block,
            offset::EXT_RAMDISK_SIZE,
            &((size >> 32) as u32).to_le_bytes(),
        );
    }
    put(
        &mut block,
        offset::ACPI_RSDP_ADDR,
        &input.rsdp.to_le_bytes(),
    );
    let mut count = 0;
    for entry in input.memory.iter().take(MAX_E820_ENTRIES) {
        let at = offset::E820_TABLE + 20 * count;
        put(&mut block, at, &entry.address.to_le_bytes());
        put(&mut block, at + 8, &entry.size.to_le_bytes());
        put(&mut block, at + 16, &entry.kind.to_le_bytes());
        count += 1;
    }
    block[offset::E820_ENTRIES] = count as u8;
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage head: `setup_sects` 3, protocol 2.15, loaded high,
    /// pref_address 16 MiB, init_size 40 MiB, then `tail` bytes of
    /// protected-mode code.
    fn image(tail: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; 4 * SECTOR + tail];
        bytes[offset::SETUP_SECTS] = 3;
        bytes[offset::BOOT_FLAG..offset::BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        bytes[offset::JUMP] = 0xeb;
        bytes[offset::JUMP + 1] = 0x6a; // header ends at 0x26c
        bytes[offset::HEADER..offset::HEADER + 4].copy_from_slice(b"HdrS");
        bytes[offset::VERSION..offset::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        bytes[offset::LOADFLAGS] = LOADED_HIGH;
        bytes[offset::INITRD_ADDR_MAX..offset::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        bytes[offset::CMDLINE_SIZE..offset::CMDLINE_SIZE + 4]
            .copy_from_slice(&2047u32.to_le_bytes());
        bytes[offset::PREF_ADDRESS..offset::PREF_ADDRESS + 8]
            .copy_from_slice(&0x100_0000u64.to_le_bytes());
        bytes[offset::INIT_SIZE..offset::INIT_SIZE + 4]
            .copy_from_slice(&(40u32 << 20).to_le_bytes());
        if let Some(first) = bytes.get_mut(4 * SECTOR) {
            *first = 0xfc; // cld, the first byte of startup_32
        }
        bytes
    }

    #[test]
    fn parses_where_the_protected_mode_code_is_and_what_it_needs() {
        let bytes = image(100);
        let boot = parse(&bytes).expect("parse");
        assert_eq!(boot.protocol, 0x020f);
        assert_eq!(boot.protected_mode, 4 * SECTOR..4 * SECTOR + 100);
        assert_eq!(boot.setup_header, 0x1f1..0x26c);
        assert_eq!(boot.boot_memory_end(), 0x100_0000 + (40 << 20));
        assert_eq!(boot.cmdline_size, 2047);
    }

    #[test]
    fn refuses_what_it_cannot_boot() {
        assert_eq!(parse(b"junk"), Err(BootImageError::NotBzImage));
        let mut old = image(10);
        old[offset::VERSION] = 0x09;
        assert_eq!(
            parse(&old),
            Err(BootImageError::UnsupportedProtocol { version: 0x0209 })
        );
        let mut low = image(10);
        low[offset::LOADFLAGS] = 0;
        assert_eq!(parse(&low), Err(BootImageError::NotLoadedHigh));
        assert_eq!(parse(&image(0)), Err(BootImageError::Truncated));
        let mut long_header = image(10);
        long_header[offset::JUMP + 1] = 0xff;
        long_header.truncate(0x280);
        assert_eq!(parse(&long_header), Err(BootImageError::Truncated));
        // Every truncation of a good head fails cleanly.
        let good = image(10);
        for length in 0..=4 * SECTOR {
            assert!(parse(&good[..length]).is_err(), "length {length}");
        }
    }

    #[test]
    fn the_zero_page_holds_the_header_memory_map_command_line_and_initrd() {
        let bytes = image(100);
        let boot = parse(&bytes).unwrap();
        let memory = [
            MemoryEntry {
                address: 0,
                size: 0xa_0000,
                kind: 1,
            },
            MemoryEntry {
                address: 0x10_0000,
                size: 0x700_0000,
                kind: 1,
            },
        ];
        let block = build(
            &bytes,
            &boot,
            &ZeroPageInput {
                base: 0x1_0000,
                memory: &memory,
                cmdline: "console=hvc0 quiet",
                initrd: Some((0x600_0000, 0x12_3456)),
                rsdp: 0xe_0000,
            },
        );
        let u32_at = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().unwrap());
        assert_eq!(&block[offset::HEADER..offset::HEADER + 4], b"HdrS");
        assert_eq!(block[offset::TYPE_OF_LOADER], 0xff);
        assert_eq!(u32_at(offset::CODE32_START), 0x10_0000);
        assert_eq!(u32_at(offset::CMD_LINE_PTR), 0x1_1000);
        assert_eq!(&block[0x1000..0x1000 + 19], b"console=hvc0 quiet\0");
        assert_eq!(u32_at(offset::RAMDISK_IMAGE), 0x600_0000);
        assert_eq!(u32_at(offset::RAMDISK_SIZE), 0x12_3456);
        assert_eq!(u64_at(offset::ACPI_RSDP_ADDR), 0xe_0000);
        assert_eq!(block[offset::E820_ENTRIES], 2);
        assert_eq!(u64_at(offset::E820_TABLE + 20), 0x10_0000);
        assert_eq!(u64_at(offset::E820_TABLE + 28), 0x700_0000);
        assert_eq!(u32_at(offset::E820_TABLE + 36), 1);
    }

    #[test]
    fn a_long_command_line_is_cut_to_the_kernels_limit_at_a_character() {
        let mut bytes = image(10);
        bytes[offset::CMDLINE_SIZE..offset::CMDLINE_SIZE + 4].copy_from_slice(&5u32.to_le_bytes());
        let boot = parse(&bytes).unwrap();
        let block = build(
            &bytes,
            &boot,
            &ZeroPageInput {
                base: 0,
                memory: &[],
                cmdline: "abcdé",
                initrd: None,
                rsdp: 0,
            },
        );
        assert_eq!(&block[0x1000..0x1006], b"abcd\0\0");
        assert_eq!(
            u32::from_le_bytes(block[offset::RAMDISK_IMAGE..][..4].try_into().unwrap()),
            0
        );
    }
}
