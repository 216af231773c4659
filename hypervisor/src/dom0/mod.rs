//! Planning Dom0's boot: where its RAM is, where each ELF segment, boot
//! module and the `hvm_start_info` block go. Dom0's RAM is mapped identity
//! (guest-physical = host-physical) so it can hand device DMA addresses
//! straight to hardware without an IOMMU; the plan checks it fits the
//! machine and stays clear of the hypervisor. Pure: the binary carries it
//! out.

pub mod start_info;

use core::fmt;
use pvh::{ImageError, PvhImage};

use crate::boot::{MemoryKind, MemoryRegion};
use crate::memory::{HostPhysAddr, HostRange, PAGE_SIZE, address::LARGE_PAGE_SIZE};

/// Dom0's RAM when the command line does not say.
pub const DEFAULT_MEMORY: u64 = 256 * 1024 * 1024;
/// Least RAM Dom0 gets beyond its image: heap, stacks and boot data.
pub const MINIMUM_HEADROOM: u64 = 16 * 1024 * 1024;
/// Room at the top of Dom0's RAM for `hvm_start_info`, its memory map,
/// module list and command lines.
pub const BOOT_DATA_SIZE: u64 = pvh::start_info::BLOCK_SIZE as u64;

/// Why Dom0 cannot be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dom0Error {
    Image(ImageError),
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
            Self::Image(error) => write!(f, "Dom0 image is {error}"),
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

/// Parses the Dom0 kernel image.
pub fn parse_image(bytes: &[u8]) -> Result<PvhImage, Dom0Error> {
    pvh::image::parse(bytes).map_err(Dom0Error::Image)
}

/// A segment's place in host memory (Dom0 is identity-mapped).
pub fn segment_range(segment: &pvh::Segment) -> HostRange {
    HostRange {
        start: HostPhysAddr(segment.start),
        end: HostPhysAddr(segment.end()),
    }
}

/// Chooses Dom0's RAM: a 2 MiB-aligned range starting at or below the
/// image, inside one usable region of the memory map, clear of the
/// hypervisor. `requested` is `dom0_mem`; without it Dom0 gets
/// [`DEFAULT_MEMORY`] or what fits.
pub fn choose_ram(
    image: &PvhImage,
    requested: Option<u64>,
    memory_map: &[MemoryRegion],
    hypervisor: HostRange,
) -> Result<HostRange, Dom0Error> {
    for segment in image.segments.iter().map(segment_range) {
        if segment.overlaps(&hypervisor) {
            return Err(Dom0Error::OverlapsHypervisor {
                segment,
                hypervisor,
            });
        }
    }
    let image_start = HostPhysAddr(image.start);
    let mut start = image_start.align_down(LARGE_PAGE_SIZE);
    if start < hypervisor.end && hypervisor.end <= image_start {
        start = hypervisor.end.align_up(PAGE_SIZE).unwrap_or(hypervisor.end);
    }
    let needed = image.end - start.0 + MINIMUM_HEADROOM;
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
