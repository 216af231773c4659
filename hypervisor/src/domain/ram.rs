//! A guest's RAM: which host frames back which guest frames. Extents are
//! kept sorted and never overlap; single pages can be removed and added
//! (ballooning, add_to_physmap) without giving up large extents elsewhere.

use alloc::vec::Vec;

use crate::memory::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE};

/// Guest frames `[gfn, gfn + pages)` backed by host memory from `host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub gfn: u64,
    pub host: HostRange,
}

impl Extent {
    pub fn pages(&self) -> u64 {
        self.host.len() / PAGE_SIZE
    }

    fn end_gfn(&self) -> u64 {
        self.gfn + self.pages()
    }
}

/// Most extents one guest may have; ballooning page by page splits them.
pub const MAX_EXTENTS: usize = 4096;

/// The guest's RAM map.
#[derive(Clone, Debug, Default)]
pub struct GuestRam {
    extents: Vec<Extent>,
}

/// Why a change to the RAM map was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamError {
    /// The guest frames are already backed.
    Overlap,
    /// The map has too many pieces.
    TooFragmented,
    /// The host range is empty or not page-aligned.
    BadRange,
}

impl GuestRam {
    /// Backs `[gfn, ...)` with `host`.
    pub fn add(&mut self, gfn: u64, host: HostRange) -> Result<(), RamError> {
        if host.is_empty() || !host.start.is_aligned(PAGE_SIZE) || !host.end.is_aligned(PAGE_SIZE) {
            return Err(RamError::BadRange);
        }
        let extent = Extent { gfn, host };
        let at = self.extents.partition_point(|other| other.gfn < gfn);
        let before_ok = at == 0 || self.extents[at - 1].end_gfn() <= gfn;
        let after_ok = self
            .extents
            .get(at)
            .is_none_or(|next| extent.end_gfn() <= next.gfn);
        if !before_ok || !after_ok {
            return Err(RamError::Overlap);
        }
        if self.extents.len() >= MAX_EXTENTS {
            return Err(RamError::TooFragmented);
        }
        self.extents.insert(at, extent);
        Ok(())
    }

    /// The extent holding `gfn`, if any.
    fn find(&self, gfn: u64) -> Option<usize> {
        let at = self.extents.partition_point(|extent| extent.gfn <= gfn);
        let index = at.checked_sub(1)?;
        (gfn < self.extents[index].end_gfn()).then_some(index)
    }

    /// The host frame behind guest frame `gfn`.
    pub fn host_frame(&self, gfn: u64) -> Option<HostPhysAddr> {
        let extent = self.extents[self.find(gfn)?];
        Some(HostPhysAddr(
            extent.host.start.0 + (gfn - extent.gfn) * PAGE_SIZE,
        ))
    }

    /// The host address behind `address`, if its page is backed.
    pub fn translate(&self, address: GuestPhysAddr) -> Option<HostPhysAddr> {
        let frame = self.host_frame(address.0 / PAGE_SIZE)?;
        Some(HostPhysAddr(frame.0 + address.page_offset()))
    }

    /// Unbacks guest frame `gfn`, returning its host frame.
    pub fn remove_page(&mut self, gfn: u64) -> Result<Option<HostPhysAddr>, RamError> {
        let Some(index) = self.find(gfn) else {
            return Ok(None);
        };
        let extent = self.extents[index];
        let host = HostPhysAddr(extent.host.start.0 + (gfn - extent.gfn) * PAGE_SIZE);
        let before = Extent {
            gfn: extent.gfn,
            host: HostRange {
                start: extent.host.start,
                end: host,
            },
        };
        let after_start = HostPhysAddr(host.0 + PAGE_SIZE);
        let after = Extent {
            gfn: gfn + 1,
            host: HostRange {
                start: after_start,
                end: extent.host.end,
            },
        };
        let pieces = usize::from(!before.host.is_empty()) + usize::from(!after.host.is_empty());
        if self.extents.len() - 1 + pieces > MAX_EXTENTS {
            return Err(RamError::TooFragmented);
        }
        self.extents.remove(index);
        for piece in [after, before] {
            if !piece.host.is_empty() {
                self.extents.insert(index, piece);
            }
        }
        Ok(Some(host))
    }

    /// Pages backed.
    pub fn pages(&self) -> u64 {
        self.extents.iter().map(Extent::pages).sum()
    }

    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Takes every extent out (domain destruction).
    pub fn take_all(&mut self) -> Vec<Extent> {
        core::mem::take(&mut self.extents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, pages: u64) -> HostRange {
        HostRange {
            start: HostPhysAddr(start),
            end: HostPhysAddr(start + pages * PAGE_SIZE),
        }
    }

    #[test]
    fn translates_through_extents() {
        let mut ram = GuestRam::default();
        ram.add(0, range(0x4000_0000, 512)).unwrap();
        ram.add(1024, range(0x1000_0000, 16)).unwrap();
        assert_eq!(
            ram.translate(GuestPhysAddr(0x1234)),
            Some(HostPhysAddr(0x4000_1234))
        );
        assert_eq!(
            ram.translate(GuestPhysAddr(1024 * 4096 + 8)),
            Some(HostPhysAddr(0x1000_0008))
        );
        assert_eq!(ram.translate(GuestPhysAddr(600 * 4096)), None);
        assert_eq!(ram.pages(), 528);
        assert_eq!(ram.add(500, range(0x9000_0000, 20)), Err(RamError::Overlap));
    }

    #[test]
    fn removing_a_page_splits_its_extent() {
        let mut ram = GuestRam::default();
        ram.add(0, range(0x4000_0000, 8)).unwrap();
        assert_eq!(ram.remove_page(3).unwrap(), Some(HostPhysAddr(0x4000_3000)));
        assert_eq!(ram.extents().len(), 2);
        assert_eq!(ram.host_frame(3), None);
        assert_eq!(ram.host_frame(4), Some(HostPhysAddr(0x4000_4000)));
        assert_eq!(ram.remove_page(3).unwrap(), None);
        assert_eq!(ram.remove_page(0).unwrap(), Some(HostPhysAddr(0x4000_0000)));
        assert_eq!(ram.pages(), 6);
        ram.add(3, range(0x7000_0000, 1)).unwrap();
        assert_eq!(ram.host_frame(3), Some(HostPhysAddr(0x7000_0000)));
    }

    #[test]
    fn misaligned_ranges_are_refused() {
        let mut ram = GuestRam::default();
        let bad = HostRange {
            start: HostPhysAddr(0x1001),
            end: HostPhysAddr(0x3000),
        };
        assert_eq!(ram.add(0, bad), Err(RamError::BadRange));
    }
}
