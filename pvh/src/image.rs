//! Reading a PVH kernel: its PT_LOAD segments (loaded at their physical
//! addresses) and the 32-bit entry point from the Xen `PHYS32_ENTRY` note.
//! The image is untrusted: every offset and size is checked.

use arrayvec::ArrayVec;
use core::fmt;
use elf::ElfBytes;
use elf::abi::{PT_LOAD, PT_NOTE};
use elf::endian::LittleEndian;
use xenolith_abi::elfnote::XEN_ELFNOTE_PHYS32_ENTRY;

/// Most PT_LOAD segments accepted.
pub const MAX_SEGMENTS: usize = 16;

/// One PT_LOAD segment: `file_size` bytes from `file_offset` copied to
/// physical `start`, then zeros up to `start + memory_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub memory_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
}

impl Segment {
    /// One past the segment's last byte in memory.
    pub const fn end(&self) -> u64 {
        self.start + self.memory_size
    }
}

/// A parsed PVH kernel image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvhImage {
    pub segments: ArrayVec<Segment, MAX_SEGMENTS>,
    /// The 32-bit protected-mode entry point.
    pub entry: u32,
    /// Lowest segment start.
    pub start: u64,
    /// Highest segment end.
    pub end: u64,
}

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    NotElf(&'static str),
    NoPvhEntry,
    NoLoadableSegment,
    TooManySegments,
    SegmentOutsideFile,
    EntryOutsideImage { entry: u32 },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a valid ELF: ")?;
        match self {
            Self::NotElf(why) => f.write_str(why),
            Self::NoPvhEntry => f.write_str("no Xen PHYS32_ENTRY note"),
            Self::NoLoadableSegment => f.write_str("no PT_LOAD segment"),
            Self::TooManySegments => write!(f, "more than {MAX_SEGMENTS} segments"),
            Self::SegmentOutsideFile => f.write_str("a segment lies outside the file"),
            Self::EntryOutsideImage { entry } => write!(f, "entry {entry:#x} outside its segments"),
        }
    }
}

/// Parses an image.
pub fn parse(bytes: &[u8]) -> Result<PvhImage, ImageError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(bytes)
        .map_err(|_| ImageError::NotElf("bad header"))?;
    let segments = load_segments(&file, bytes.len() as u64)?;
    let program_headers = file.segments().ok_or(ImageError::NoLoadableSegment)?;
    let mut entry = None;
    for header in program_headers.iter() {
        if header.p_type != PT_NOTE {
            continue;
        }
        let Ok(notes) = file.segment_data_as_notes(&header) else {
            continue;
        };
        for note in notes {
            if let elf::note::Note::Unknown(any) = note
                && any.name_str().is_ok_and(|name| name == "Xen")
                && any.n_type == u64::from(XEN_ELFNOTE_PHYS32_ENTRY)
            {
                entry = read_entry(any.desc);
            }
        }
    }
    let entry = entry.ok_or(ImageError::NoPvhEntry)?;
    let start = segments
        .iter()
        .map(|s| s.start)
        .min()
        .ok_or(ImageError::NoLoadableSegment)?;
    let end = segments
        .iter()
        .map(Segment::end)
        .max()
        .ok_or(ImageError::NoLoadableSegment)?;
    let entry_address = u64::from(entry);
    if !segments
        .iter()
        .any(|s| s.start <= entry_address && entry_address < s.end())
    {
        return Err(ImageError::EntryOutsideImage { entry });
    }
    Ok(PvhImage {
        segments,
        entry,
        start,
        end,
    })
}

/// Where an image's segments lie in guest memory, `(start, end)`, from
/// the start of the file alone: `prefix` holds at least its ELF and
/// program headers, `file_length` is the whole file's size (a bzImage's
/// size trailer), which the segments must lie within. Lets a caller check
/// a kernel fits a guest before decompressing all of it; [`parse`] still
/// checks the whole file (its entry note) afterwards.
pub fn extent(prefix: &[u8], file_length: u64) -> Result<(u64, u64), ImageError> {
    // The section headers sit at the end of the file, beyond the prefix,
    // and loading does not use them: a copy without them parses.
    let mut headers = alloc::vec::Vec::from(prefix);
    for field in [SECTION_HEADERS_OFFSET, SECTION_HEADER_COUNT] {
        if let Some(bytes) = headers.get_mut(field) {
            bytes.fill(0);
        }
    }
    let file = ElfBytes::<LittleEndian>::minimal_parse(&headers)
        .map_err(|_| ImageError::NotElf("bad header"))?;
    let segments = load_segments(&file, file_length)?;
    let start = segments.iter().map(|s| s.start).min();
    let end = segments.iter().map(Segment::end).max();
    start.zip(end).ok_or(ImageError::NoLoadableSegment)
}

/// ELF64 header fields: `e_shoff`, and `e_shnum` with `e_shstrndx`.
const SECTION_HEADERS_OFFSET: core::ops::Range<usize> = 0x28..0x30;
const SECTION_HEADER_COUNT: core::ops::Range<usize> = 0x3c..0x40;

/// The PT_LOAD segments of an x86_64 ELF64 file `file_length` bytes long.
fn load_segments(
    file: &ElfBytes<'_, LittleEndian>,
    file_length: u64,
) -> Result<ArrayVec<Segment, MAX_SEGMENTS>, ImageError> {
    if file.ehdr.class != elf::file::Class::ELF64 || file.ehdr.e_machine != elf::abi::EM_X86_64 {
        return Err(ImageError::NotElf("not an x86_64 ELF64"));
    }
    let program_headers = file.segments().ok_or(ImageError::NoLoadableSegment)?;
    let mut segments = ArrayVec::new();
    for header in program_headers.iter() {
        if header.p_type != PT_LOAD || header.p_memsz == 0 {
            continue;
        }
        let file_end = header.p_offset.checked_add(header.p_filesz);
        let memory_end = header.p_paddr.checked_add(header.p_memsz);
        if header.p_filesz > header.p_memsz
            || file_end.is_none_or(|end| end > file_length)
            || memory_end.is_none()
        {
            return Err(ImageError::SegmentOutsideFile);
        }
        segments
            .try_push(Segment {
                start: header.p_paddr,
                memory_size: header.p_memsz,
                file_offset: header.p_offset,
                file_size: header.p_filesz,
            })
            .map_err(|_| ImageError::TooManySegments)?;
    }
    Ok(segments)
}

/// The entry note holds a 4- or 8-byte little-endian physical address
/// that must fit 32 bits (the CPU starts in 32-bit protected mode).
fn read_entry(descriptor: &[u8]) -> Option<u32> {
    let value = match descriptor.len() {
        4 => u64::from(u32::from_le_bytes(descriptor.try_into().ok()?)),
        8 => u64::from_le_bytes(descriptor.try_into().ok()?),
        _ => return None,
    };
    u32::try_from(value).ok()
}

/// Images for tests of loaders, here and in the crates that use this one.
pub mod testing {
    /// A small ELF image in a fixed buffer.
    pub struct Image {
        bytes: [u8; 0x4000],
        len: usize,
    }

    impl Image {
        pub fn bytes(&self) -> &[u8] {
            &self.bytes[..self.len]
        }
    }

    fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
        bytes[at..at + value.len()].copy_from_slice(value);
    }

    /// An ELF64 image: one PT_LOAD of `load_size` file bytes (memory size
    /// twice that, `load_size` capped at 0x3e00) at `paddr`, and a PT_NOTE
    /// with the Xen PVH `entry` (another note type when `None`).
    pub fn elf_image(paddr: u64, load_size: u64, entry: Option<u64>) -> Image {
        let load_size = load_size.min(0x3e00);
        let mut file = [0u8; 0x4000];
        put(&mut file, 0, b"\x7fELF\x02\x01\x01");
        put(&mut file, 16, &2u16.to_le_bytes()); // ET_EXEC
        put(&mut file, 18, &62u16.to_le_bytes()); // EM_X86_64
        put(&mut file, 20, &1u32.to_le_bytes());
        put(&mut file, 24, &entry.unwrap_or(paddr).to_le_bytes());
        put(&mut file, 32, &64u64.to_le_bytes()); // e_phoff
        put(&mut file, 52, &64u16.to_le_bytes()); // e_ehsize
        put(&mut file, 54, &56u16.to_le_bytes()); // e_phentsize
        put(&mut file, 56, &2u16.to_le_bytes()); // e_phnum
        let (note_offset, load_offset) = (0x100u64, 0x200u64);
        let load = 64;
        put(&mut file, load, &1u32.to_le_bytes());
        put(&mut file, load + 4, &7u32.to_le_bytes());
        put(&mut file, load + 8, &load_offset.to_le_bytes());
        put(&mut file, load + 16, &paddr.to_le_bytes());
        put(&mut file, load + 24, &paddr.to_le_bytes());
        put(&mut file, load + 32, &load_size.to_le_bytes());
        put(&mut file, load + 40, &(load_size * 2).to_le_bytes());
        put(&mut file, load + 48, &4096u64.to_le_bytes());
        let note = 64 + 56;
        put(&mut file, note, &4u32.to_le_bytes());
        put(&mut file, note + 8, &note_offset.to_le_bytes());
        put(&mut file, note + 32, &24u64.to_le_bytes());
        put(&mut file, note + 48, &4u64.to_le_bytes());
        let n = note_offset as usize;
        put(&mut file, n, &4u32.to_le_bytes());
        put(&mut file, n + 4, &8u32.to_le_bytes());
        let kind: u32 = if entry.is_some() { 18 } else { 5 };
        put(&mut file, n + 8, &kind.to_le_bytes());
        put(&mut file, n + 12, b"Xen\0");
        put(&mut file, n + 16, &entry.unwrap_or(0).to_le_bytes());
        let len = (load_offset + load_size) as usize;
        for byte in &mut file[load_offset as usize..len] {
            *byte = 0x90;
        }
        Image { bytes: file, len }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::elf_image as test_image;
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parses_segments_and_the_pvh_entry() {
        let image = test_image(16 * MIB, 0x3000, Some(16 * MIB + 0x10));
        let parsed = parse(image.bytes()).expect("valid image");
        assert_eq!(u64::from(parsed.entry), 16 * MIB + 0x10);
        assert_eq!(parsed.segments.len(), 1);
        assert_eq!(parsed.segments[0].file_size, 0x3000);
        assert_eq!(parsed.end - parsed.start, 0x6000);
    }

    #[test]
    fn rejects_garbage_and_missing_entry() {
        assert!(matches!(
            parse(b"this is not an ELF file at all"),
            Err(ImageError::NotElf(_))
        ));
        assert_eq!(
            parse(test_image(16 * MIB, 0x1000, None).bytes()),
            Err(ImageError::NoPvhEntry)
        );
        assert_eq!(
            parse(test_image(16 * MIB, 0x1000, Some(64 * MIB)).bytes()),
            Err(ImageError::EntryOutsideImage {
                entry: 64 * MIB as u32
            })
        );
        let image = test_image(16 * MIB, 0x3000, Some(16 * MIB));
        assert_eq!(
            parse(&image.bytes()[..0x1000]),
            Err(ImageError::SegmentOutsideFile)
        );
    }

    #[test]
    fn every_prefix_of_an_image_is_handled_without_panic() {
        let image = test_image(16 * MIB, 0x400, Some(16 * MIB));
        for length in 0..image.bytes().len() {
            let _ = parse(&image.bytes()[..length]);
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        assert_eq!(
            ImageError::NoPvhEntry.to_string(),
            "not a valid ELF: no Xen PHYS32_ENTRY note"
        );
    }
}
