//! Planning Dom0's boot: where its RAM is, where each ELF segment, boot
//! module and the `hvm_start_info` block go. Dom0's RAM is mapped identity
//! (guest-physical = host-physical) so it can hand device DMA addresses
//! straight to hardware without an IOMMU; the plan checks it fits the
//! machine and stays clear of the hypervisor. Pure: the binary carries it
//! out.

pub mod start_info;

use arrayvec::ArrayVec;
use core::fmt;
use elf::ElfBytes;
use elf::abi::{PT_LOAD, PT_NOTE};
use elf::endian::LittleEndian;
use xenolith_abi::elfnote::XEN_ELFNOTE_PHYS32_ENTRY;

use crate::boot::{MemoryKind, MemoryRegion};
use crate::memory::{HostPhysAddr, HostRange, PAGE_SIZE, address::LARGE_PAGE_SIZE};

/// Dom0's RAM when the command line does not say.
pub const DEFAULT_MEMORY: u64 = 256 * 1024 * 1024;
/// Least RAM Dom0 gets beyond its image: heap, stacks and boot data.
pub const MINIMUM_HEADROOM: u64 = 16 * 1024 * 1024;
/// Most PT_LOAD segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// Room at the top of Dom0's RAM for `hvm_start_info`, its memory map,
/// module list and command lines.
pub const BOOT_DATA_SIZE: u64 = 16 * 1024;

/// One PT_LOAD segment: file bytes to copy, then zeros up to `memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub memory: HostRange,
    pub file_offset: u64,
    pub file_size: u64,
}

/// The parsed Dom0 kernel image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Image {
    pub segments: ArrayVec<Segment, MAX_SEGMENTS>,
    /// The 32-bit PVH entry point (Xen note `PHYS32_ENTRY`).
    pub entry: u32,
    /// From the lowest segment start to the highest segment end.
    pub span: HostRange,
}

/// Why Dom0 cannot be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dom0Error {
    NotElf(&'static str),
    NoPvhEntry,
    NoLoadableSegment,
    TooManySegments,
    SegmentOutsideFile,
    EntryOutsideImage {
        entry: u32,
    },
    OverlapsHypervisor {
        segment: HostRange,
        hypervisor: HostRange,
    },
    NoRoom {
        wanted: u64,
        available: u64,
        at: HostPhysAddr,
    },
}

impl fmt::Display for Dom0Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf(why) => write!(f, "Dom0 image is not a valid ELF: {why}"),
            Self::NoPvhEntry => {
                write!(f, "Dom0 image is not a valid ELF: no Xen PHYS32_ENTRY note")
            }
            Self::NoLoadableSegment => {
                write!(f, "Dom0 image is not a valid ELF: no PT_LOAD segment")
            }
            Self::TooManySegments => write!(
                f,
                "Dom0 image is not a valid ELF: more than {MAX_SEGMENTS} segments"
            ),
            Self::SegmentOutsideFile => write!(
                f,
                "Dom0 image is not a valid ELF: a segment lies outside the file"
            ),
            Self::EntryOutsideImage { entry } => {
                write!(
                    f,
                    "Dom0 image is not a valid ELF: entry {entry:#x} outside its segments"
                )
            }
            Self::OverlapsHypervisor {
                segment,
                hypervisor,
            } => write!(
                f,
                "Dom0 image overlaps the hypervisor: segment {segment} against {hypervisor}"
            ),
            Self::NoRoom {
                wanted,
                available,
                at,
            } => write!(
                f,
                "no room for Dom0: it needs {} MiB of contiguous RAM from {at}, the machine has {} MiB there",
                wanted >> 20,
                available >> 20
            ),
        }
    }
}

/// Parses a Dom0 ELF image: its loadable segments and PVH entry.
pub fn parse_image(bytes: &[u8]) -> Result<Dom0Image, Dom0Error> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(bytes)
        .map_err(|_| Dom0Error::NotElf("bad header"))?;
    if file.ehdr.class != elf::file::Class::ELF64 || file.ehdr.e_machine != elf::abi::EM_X86_64 {
        return Err(Dom0Error::NotElf("not an x86_64 ELF64"));
    }
    let program_headers = file.segments().ok_or(Dom0Error::NoLoadableSegment)?;
    let mut segments = ArrayVec::new();
    let mut entry = None;
    for header in program_headers.iter() {
        match header.p_type {
            PT_LOAD if header.p_memsz > 0 => {
                let file_end = header.p_offset.checked_add(header.p_filesz);
                if header.p_filesz > header.p_memsz
                    || file_end.is_none_or(|end| end > bytes.len() as u64)
                {
                    return Err(Dom0Error::SegmentOutsideFile);
                }
                let memory = HostRange::new(HostPhysAddr(header.p_paddr), header.p_memsz)
                    .ok_or(Dom0Error::SegmentOutsideFile)?;
                let segment = Segment {
                    memory,
                    file_offset: header.p_offset,
                    file_size: header.p_filesz,
                };
                segments
                    .try_push(segment)
                    .map_err(|_| Dom0Error::TooManySegments)?;
            }
            PT_NOTE => {
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
            _ => {}
        }
    }
    let entry = entry.ok_or(Dom0Error::NoPvhEntry)?;
    let start = segments
        .iter()
        .map(|s| s.memory.start)
        .min()
        .ok_or(Dom0Error::NoLoadableSegment)?;
    let end = segments
        .iter()
        .map(|s| s.memory.end)
        .max()
        .ok_or(Dom0Error::NoLoadableSegment)?;
    let span = HostRange { start, end };
    if !segments
        .iter()
        .any(|s| s.memory.contains(HostPhysAddr(u64::from(entry))))
    {
        return Err(Dom0Error::EntryOutsideImage { entry });
    }
    Ok(Dom0Image {
        segments,
        entry,
        span,
    })
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

/// Chooses Dom0's RAM: a 2 MiB-aligned range starting at or below the
/// image, inside one usable region of the memory map, clear of the
/// hypervisor. `requested` is `dom0_mem`; without it Dom0 gets
/// [`DEFAULT_MEMORY`] or what fits.
pub fn choose_ram(
    image: &Dom0Image,
    requested: Option<u64>,
    memory_map: &[MemoryRegion],
    hypervisor: HostRange,
) -> Result<HostRange, Dom0Error> {
    for segment in &image.segments {
        if segment.memory.overlaps(&hypervisor) {
            return Err(Dom0Error::OverlapsHypervisor {
                segment: segment.memory,
                hypervisor,
            });
        }
    }
    let mut start = image.span.start.align_down(LARGE_PAGE_SIZE);
    if start < hypervisor.end && hypervisor.end <= image.span.start {
        start = hypervisor.end.align_up(PAGE_SIZE).unwrap_or(hypervisor.end);
    }
    let needed = image.span.end.0 - start.0 + MINIMUM_HEADROOM;
    let wanted = requested.unwrap_or(DEFAULT_MEMORY).max(needed);
    let region = memory_map
        .iter()
        .find(|region| region.kind == MemoryKind::Usable && region.range.contains(start));
    let available = region.map_or(0, |region| region.range.end.0 - start.0);
    let available = available & !(PAGE_SIZE - 1);
    let size = match requested {
        Some(_) if available < wanted => 0,
        _ => wanted.min(available),
    };
    if size < needed || size == 0 {
        return Err(Dom0Error::NoRoom {
            wanted,
            available,
            at: start,
        });
    }
    let ram = HostRange::new(start, size).ok_or(Dom0Error::NoRoom {
        wanted,
        available,
        at: start,
    })?;
    if ram.overlaps(&hypervisor) {
        return Err(Dom0Error::OverlapsHypervisor {
            segment: ram,
            hypervisor,
        });
    }
    Ok(ram)
}

#[cfg(test)]
mod tests;
