//! The physical frame allocator: a sorted, coalesced list of free,
//! page-aligned host ranges in a fixed-size array, no heap. Allocation is
//! top-down so low memory (below 1 MiB, below 4 GiB) stays free for those
//! who need it.

use arrayvec::ArrayVec;
use core::fmt;

use super::{HostPhysAddr, HostRange, PAGE_SIZE};

/// Most disjoint free ranges tracked: twice the firmware memory map's cap,
/// room for the holes boot reservations punch into it.
pub const MAX_FREE_RANGES: usize = 256;

/// Why the allocator refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free block of `bytes` (page-rounded) fits the request.
    OutOfMemory { bytes: u64 },
    /// The free list is full: taking a block from the middle of a range, or
    /// adding or freeing a range touching no free range, needs a new entry.
    TooFragmented,
    /// A freed range does not start and end on page boundaries.
    Unaligned { range: HostRange },
    /// A freed range overlaps memory that is already free.
    DoubleFree { range: HostRange },
    /// The requested alignment is not a power of two.
    BadAlignment { align: u64 },
    /// An allocation of zero bytes was asked for.
    ZeroSize,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { bytes } => write!(f, "no free block of {bytes:#x} bytes"),
            Self::TooFragmented => write!(f, "free list full ({MAX_FREE_RANGES} ranges)"),
            Self::Unaligned { range } => write!(f, "freed range {range} is not page-aligned"),
            Self::DoubleFree { range } => write!(f, "freed range {range} is already partly free"),
            Self::BadAlignment { align } => write!(f, "alignment {align:#x} is not a power of two"),
            Self::ZeroSize => write!(f, "allocation of zero bytes"),
        }
    }
}

/// Free physical memory. Invariant: `free` is sorted by start, its ranges
/// are page-aligned and non-empty, and no two overlap or touch.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    free: ArrayVec<HostRange, MAX_FREE_RANGES>,
    lost_bytes: u64,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    /// An allocator with no free memory.
    pub const fn new() -> Self {
        Self {
            free: ArrayVec::new_const(),
            lost_bytes: 0,
        }
    }

    /// Makes `range` free, shrunk inward to whole pages; it may overlap or
    /// touch memory already free. Fails, changing nothing, only when the
    /// range touches no free range and the list is full.
    pub fn add_usable(&mut self, range: HostRange) -> Result<(), FrameError> {
        match page_interior(range) {
            Some(pages) => self.insert_merging(pages),
            None => Ok(()),
        }
    }

    /// Takes `range`, grown outward to whole pages, out of free memory; the
    /// parts of it that are not free are ignored. Never fails: should a
    /// split need an entry the full list lacks, the smaller remnant is given
    /// up and counted in [`lost_bytes`](Self::lost_bytes), so a reservation
    /// is always honoured.
    pub fn reserve(&mut self, range: HostRange) {
        let start = range.start.align_down(PAGE_SIZE);
        // Past the last page: reserve to the top.
        let end = range
            .end
            .align_up(PAGE_SIZE)
            .unwrap_or(HostPhysAddr(u64::MAX));
        if start >= end {
            return;
        }
        let (first, last) = self.overlapping(HostRange { start, end });
        if first >= last {
            return;
        }
        let (Some(low), Some(high)) = (
            self.free.get(first).copied(),
            self.free.get(last - 1).copied(),
        ) else {
            return;
        };
        let mut left = (low.start < start).then_some(HostRange {
            start: low.start,
            end: start,
        });
        let mut right = (end < high.end).then_some(HostRange {
            start: end,
            end: high.end,
        });
        // Splitting one range into two needs one more entry.
        if let (Some(left_part), Some(right_part)) = (left, right)
            && last - first == 1
            && self.free.is_full()
        {
            if left_part.len() < right_part.len() {
                self.lose(left_part);
                left = None;
            } else {
                self.lose(right_part);
                right = None;
            }
        }
        self.free.drain(first..last);
        // Inserting right first then left at the same index keeps the order.
        // The drain freed at least one slot, and two only where the check
        // above left both remnants.
        for part in [right, left].into_iter().flatten() {
            if self.free.try_insert(first, part).is_err() {
                self.lose(part);
            }
        }
    }

    /// Allocates a contiguous block of `bytes` rounded up to whole pages,
    /// aligned to `align` (a power of two; at least a page), ending at or
    /// below `below`: the highest such block.
    pub fn allocate(
        &mut self,
        bytes: u64,
        align: u64,
        below: HostPhysAddr,
    ) -> Result<HostRange, FrameError> {
        if bytes == 0 {
            return Err(FrameError::ZeroSize);
        }
        if !align.is_power_of_two() {
            return Err(FrameError::BadAlignment { align });
        }
        let align = align.max(PAGE_SIZE);
        let size = HostPhysAddr(bytes)
            .align_up(PAGE_SIZE)
            .ok_or(FrameError::OutOfMemory { bytes })?
            .raw();
        let out_of_memory = FrameError::OutOfMemory { bytes: size };

        let mut blocked_by_full_list = false;
        for index in (0..self.free.len()).rev() {
            let Some(&range) = self.free.get(index) else {
                continue;
            };
            let top = range.end.min(below);
            let Some(start) = top
                .raw()
                .checked_sub(size)
                .map(|start| HostPhysAddr(start).align_down(align))
            else {
                continue;
            };
            if start < range.start {
                continue;
            }
            let block = HostRange {
                start,
                end: HostPhysAddr(start.raw() + size),
            };
            match self.take(index, block) {
                Ok(()) => return Ok(block),
                Err(_) => blocked_by_full_list = true,
            }
        }
        Err(if blocked_by_full_list {
            FrameError::TooFragmented
        } else {
            out_of_memory
        })
    }

    /// Returns `range` to free memory. It must be page-aligned and overlap
    /// no free memory; the allocator cannot tell memory it never had.
    pub fn free(&mut self, range: HostRange) -> Result<(), FrameError> {
        if !range.start.is_aligned(PAGE_SIZE) || !range.end.is_aligned(PAGE_SIZE) {
            return Err(FrameError::Unaligned { range });
        }
        if range.is_empty() {
            return Ok(());
        }
        if self.free.iter().any(|free| free.overlaps(&range)) {
            return Err(FrameError::DoubleFree { range });
        }
        self.insert_merging(range)
    }

    /// Bytes free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(HostRange::len).sum()
    }

    /// Bytes of the largest free range.
    pub fn largest_free(&self) -> u64 {
        self.free.iter().map(HostRange::len).max().unwrap_or(0)
    }

    /// The free ranges, lowest first.
    pub fn free_ranges(&self) -> impl ExactSizeIterator<Item = HostRange> + '_ {
        self.free.iter().copied()
    }

    /// Free bytes given up because a reservation split a range while the
    /// list was full.
    pub const fn lost_bytes(&self) -> u64 {
        self.lost_bytes
    }

    /// Indices `first..last` of the free ranges that overlap `range`.
    fn overlapping(&self, range: HostRange) -> (usize, usize) {
        let first = self
            .free
            .iter()
            .position(|free| free.end > range.start)
            .unwrap_or(self.free.len());
        let last = self
            .free
            .iter()
            .rposition(|free| free.start < range.end)
            .map_or(0, |index| index + 1);
        (first, last)
    }

    /// Adds page-aligned `range`, joining every free range it overlaps or
    /// touches.
    fn insert_merging(&mut self, range: HostRange) -> Result<(), FrameError> {
        let first = self
            .free
            .iter()
            .position(|free| free.end >= range.start)
            .unwrap_or(self.free.len());
        let last = self
            .free
            .iter()
            .rposition(|free| free.start <= range.end)
            .map_or(0, |index| index + 1);
        if first >= last {
            return self
                .free
                .try_insert(first, range)
                .map_err(|_| FrameError::TooFragmented);
        }
        let (Some(low), Some(high)) = (
            self.free.get(first).copied(),
            self.free.get(last - 1).copied(),
        ) else {
            return Ok(());
        };
        let merged = HostRange {
            start: low.start.min(range.start),
            end: high.end.max(range.end),
        };
        self.free.drain(first + 1..last);
        if let Some(slot) = self.free.get_mut(first) {
            *slot = merged;
        }
        Ok(())
    }

    /// Removes `block` from the free range at `index`, which holds it.
    fn take(&mut self, index: usize, block: HostRange) -> Result<(), FrameError> {
        let Some(&range) = self.free.get(index) else {
            return Err(FrameError::OutOfMemory { bytes: block.len() });
        };
        let left = HostRange {
            start: range.start,
            end: block.start,
        };
        let right = HostRange {
            start: block.end,
            end: range.end,
        };
        match (left.is_empty(), right.is_empty()) {
            (true, true) => {
                let _ = self.free.pop_at(index);
            }
            (false, true) | (true, false) => {
                if let Some(slot) = self.free.get_mut(index) {
                    *slot = if left.is_empty() { right } else { left };
                }
            }
            (false, false) => {
                self.free
                    .try_insert(index + 1, right)
                    .map_err(|_| FrameError::TooFragmented)?;
                if let Some(slot) = self.free.get_mut(index) {
                    *slot = left;
                }
            }
        }
        Ok(())
    }

    fn lose(&mut self, range: HostRange) {
        log::warn!("frame allocator: free list full, giving up {range}");
        self.lost_bytes = self.lost_bytes.saturating_add(range.len());
    }
}

/// The whole pages inside `range`, if any.
fn page_interior(range: HostRange) -> Option<HostRange> {
    let start = range.start.align_up(PAGE_SIZE)?;
    let end = range.end.align_down(PAGE_SIZE);
    (start < end).then_some(HostRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = PAGE_SIZE;
    const NO_LIMIT: HostPhysAddr = HostPhysAddr(u64::MAX);

    fn range(start: u64, end: u64) -> HostRange {
        HostRange {
            start: HostPhysAddr(start),
            end: HostPhysAddr(end),
        }
    }

    fn ranges(allocator: &FrameAllocator) -> Vec<(u64, u64)> {
        allocator
            .free_ranges()
            .map(|range| (range.start.raw(), range.end.raw()))
            .collect()
    }

    fn assert_invariant(allocator: &FrameAllocator) {
        for free in allocator.free_ranges() {
            assert!(
                !free.is_empty() && free.start.is_aligned(PAGE) && free.end.is_aligned(PAGE),
                "{free}"
            );
        }
        let list: Vec<_> = allocator.free_ranges().collect();
        for pair in list.windows(2) {
            assert!(
                pair[0].end < pair[1].start,
                "unsorted, overlapping or touching: {list:?}"
            );
        }
    }

    /// An allocator whose list is full: ranges of one page with one-page holes.
    fn full_allocator() -> FrameAllocator {
        let mut allocator = FrameAllocator::new();
        for index in 0..MAX_FREE_RANGES as u64 {
            allocator
                .add_usable(range(index * 2 * PAGE, index * 2 * PAGE + PAGE))
                .unwrap();
        }
        assert_eq!(allocator.free_ranges().len(), MAX_FREE_RANGES);
        allocator
    }

    #[test]
    fn add_usable_shrinks_to_whole_pages() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0x1001, 0x5fff)).unwrap();
        assert_eq!(ranges(&allocator), [(0x2000, 0x5000)]);
        allocator.add_usable(range(0x9001, 0x9fff)).unwrap();
        allocator.add_usable(range(0xa000, 0xa000)).unwrap();
        allocator
            .add_usable(range(u64::MAX - 0x10, u64::MAX))
            .unwrap();
        assert_eq!(ranges(&allocator), [(0x2000, 0x5000)]);
    }

    #[test]
    fn add_usable_merges_overlapping_and_touching_ranges() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0x8000, 0x9000)).unwrap();
        allocator.add_usable(range(0x1000, 0x2000)).unwrap();
        allocator.add_usable(range(0x4000, 0x5000)).unwrap();
        assert_eq!(
            ranges(&allocator),
            [(0x1000, 0x2000), (0x4000, 0x5000), (0x8000, 0x9000)]
        );
        allocator.add_usable(range(0x2000, 0x4000)).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x5000), (0x8000, 0x9000)]);
        allocator.add_usable(range(0, 0x10000)).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0x10000)]);
        allocator.add_usable(range(0x3000, 0x4000)).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0x10000)]);
        assert_eq!(allocator.free_bytes(), 0x10000);
    }

    #[test]
    fn reserve_grows_to_whole_pages_and_splits() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0, 0x10000)).unwrap();
        allocator.reserve(range(0x4010, 0x5001));
        assert_eq!(ranges(&allocator), [(0, 0x4000), (0x6000, 0x10000)]);
        allocator.reserve(range(0, 0x1000));
        allocator.reserve(range(0xf000, 0x20000));
        assert_eq!(ranges(&allocator), [(0x1000, 0x4000), (0x6000, 0xf000)]);
    }

    #[test]
    fn reserve_spanning_several_ranges_and_holes() {
        let mut allocator = FrameAllocator::new();
        for start in [0x1000, 0x4000, 0x8000, 0xc000] {
            allocator.add_usable(range(start, start + 0x2000)).unwrap();
        }
        allocator.reserve(range(0x2000, 0x9000));
        assert_eq!(
            ranges(&allocator),
            [(0x1000, 0x2000), (0x9000, 0xa000), (0xc000, 0xe000)]
        );
        // Memory that is not free: nothing to do.
        allocator.reserve(range(0x20000, 0x30000));
        allocator.reserve(range(0x5000, 0x5000));
        assert_eq!(allocator.free_ranges().len(), 3);
        allocator.reserve(range(0, u64::MAX));
        assert_eq!(ranges(&allocator), []);
    }

    #[test]
    fn reserve_on_a_full_list_gives_up_the_smaller_remnant() {
        let mut allocator = full_allocator();
        // Grow the last range so a split has two remnants.
        let top = (MAX_FREE_RANGES as u64 - 1) * 2 * PAGE;
        allocator.add_usable(range(top, top + 8 * PAGE)).unwrap();
        allocator.reserve(range(top + 2 * PAGE, top + 3 * PAGE));
        assert_eq!(allocator.lost_bytes(), 2 * PAGE);
        assert_eq!(
            allocator.free_ranges().last(),
            Some(range(top + 3 * PAGE, top + 8 * PAGE))
        );
        assert!(
            !allocator
                .free_ranges()
                .any(|free| free.overlaps(&range(top, top + 3 * PAGE)))
        );
        assert_invariant(&allocator);
    }

    #[test]
    fn allocate_is_top_down_and_page_rounded() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0x10_0000, 0x20_0000)).unwrap();
        allocator.add_usable(range(0x1000, 0x9_f000)).unwrap();
        let block = allocator.allocate(1, 1, NO_LIMIT).unwrap();
        assert_eq!(block, range(0x1f_f000, 0x20_0000));
        let block = allocator.allocate(0x1001, PAGE, NO_LIMIT).unwrap();
        assert_eq!(block, range(0x1f_d000, 0x1f_f000));
        assert_eq!(allocator.free_bytes(), 0x9_e000 + 0xf_d000);
    }

    #[test]
    fn allocate_honours_alignment() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0x1000, 0x40_5000)).unwrap();
        let block = allocator.allocate(PAGE, 0x20_0000, NO_LIMIT).unwrap();
        assert_eq!(block, range(0x40_0000, 0x40_1000));
        assert_eq!(
            ranges(&allocator),
            [(0x1000, 0x40_0000), (0x40_1000, 0x40_5000)]
        );
        let block = allocator.allocate(0x20_0000, 0x20_0000, NO_LIMIT).unwrap();
        assert_eq!(block, range(0x20_0000, 0x40_0000));
        assert_eq!(
            allocator.allocate(PAGE, 0x20_0000, NO_LIMIT),
            Err(FrameError::OutOfMemory { bytes: PAGE })
        );
        assert_eq!(
            allocator.allocate(PAGE, 3, NO_LIMIT),
            Err(FrameError::BadAlignment { align: 3 })
        );
        assert_eq!(
            allocator.allocate(PAGE, 0, NO_LIMIT),
            Err(FrameError::BadAlignment { align: 0 })
        );
    }

    #[test]
    fn allocate_stays_below_the_limit() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0x1000, 0x10_0000)).unwrap();
        allocator
            .add_usable(range(0x1_0000_0000, 0x2_0000_0000))
            .unwrap();
        let block = allocator
            .allocate(0x2000, PAGE, HostPhysAddr(0x8_0800))
            .unwrap();
        assert_eq!(block, range(0x7_e000, 0x8_0000));
        assert_eq!(
            ranges(&allocator)[..2],
            [(0x1000, 0x7_e000), (0x8_0000, 0x10_0000)]
        );
        // Below the lowest free memory.
        assert_eq!(
            allocator.allocate(PAGE, PAGE, HostPhysAddr(0x1000)),
            Err(FrameError::OutOfMemory { bytes: PAGE })
        );
        let high = allocator.allocate(PAGE, PAGE, NO_LIMIT).unwrap();
        assert_eq!(high, range(0x1_ffff_f000, 0x2_0000_0000));
    }

    #[test]
    fn exhaustion_and_oversized_requests() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0, 4 * PAGE)).unwrap();
        assert_eq!(
            allocator.allocate(5 * PAGE, PAGE, NO_LIMIT),
            Err(FrameError::OutOfMemory { bytes: 5 * PAGE })
        );
        for _ in 0..4 {
            allocator.allocate(PAGE, PAGE, NO_LIMIT).unwrap();
        }
        assert_eq!(allocator.free_bytes(), 0);
        assert_eq!(allocator.largest_free(), 0);
        assert_eq!(
            allocator.allocate(1, PAGE, NO_LIMIT),
            Err(FrameError::OutOfMemory { bytes: PAGE })
        );
        assert_eq!(
            allocator.allocate(u64::MAX, PAGE, NO_LIMIT),
            Err(FrameError::OutOfMemory { bytes: u64::MAX })
        );
        assert_eq!(
            allocator.allocate(0, PAGE, NO_LIMIT),
            Err(FrameError::ZeroSize)
        );
    }

    #[test]
    fn fragmented_memory_has_no_large_block() {
        let mut allocator = FrameAllocator::new();
        for index in 0..8u64 {
            allocator
                .add_usable(range(index * 2 * PAGE, index * 2 * PAGE + PAGE))
                .unwrap();
        }
        assert_eq!(allocator.free_bytes(), 8 * PAGE);
        assert_eq!(allocator.largest_free(), PAGE);
        assert_eq!(
            allocator.allocate(2 * PAGE, PAGE, NO_LIMIT),
            Err(FrameError::OutOfMemory { bytes: 2 * PAGE })
        );
    }

    #[test]
    fn free_merges_with_neighbours() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0, 0x10000)).unwrap();
        let a = allocator.allocate(PAGE, PAGE, NO_LIMIT).unwrap();
        let b = allocator.allocate(PAGE, PAGE, NO_LIMIT).unwrap();
        let c = allocator.allocate(PAGE, PAGE, NO_LIMIT).unwrap();
        allocator.free(b).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0xd000), (0xe000, 0xf000)]);
        allocator.free(a).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0xd000), (0xe000, 0x10000)]);
        allocator.free(c).unwrap();
        assert_eq!(ranges(&allocator), [(0, 0x10000)]);
    }

    #[test]
    fn double_free_is_refused() {
        let mut allocator = FrameAllocator::new();
        allocator.add_usable(range(0, 0x10000)).unwrap();
        let block = allocator.allocate(2 * PAGE, PAGE, NO_LIMIT).unwrap();
        allocator.free(block).unwrap();
        assert_eq!(
            allocator.free(block),
            Err(FrameError::DoubleFree { range: block })
        );
        // Partly free is a double free too.
        let block = allocator.allocate(2 * PAGE, PAGE, NO_LIMIT).unwrap();
        let wider = range(block.start.raw() - PAGE, block.end.raw());
        assert_eq!(
            allocator.free(wider),
            Err(FrameError::DoubleFree { range: wider })
        );
        assert_eq!(ranges(&allocator), [(0, 0xe000)]);
    }

    #[test]
    fn unaligned_free_is_refused() {
        let mut allocator = FrameAllocator::new();
        for bad in [range(0x1001, 0x2000), range(0x1000, 0x2001)] {
            assert_eq!(
                allocator.free(bad),
                Err(FrameError::Unaligned { range: bad })
            );
        }
        assert_eq!(allocator.free(range(0x1000, 0x1000)), Ok(()));
        assert_eq!(allocator.free_bytes(), 0);
    }

    #[test]
    fn full_list_refuses_new_ranges_but_accepts_merges() {
        let mut allocator = full_allocator();
        let last_end = (MAX_FREE_RANGES as u64 - 1) * 2 * PAGE + PAGE;
        let beyond = last_end + PAGE;
        assert_eq!(
            allocator.add_usable(range(beyond, beyond + PAGE)),
            Err(FrameError::TooFragmented)
        );
        assert_eq!(
            allocator.free(range(beyond, beyond + PAGE)),
            Err(FrameError::TooFragmented)
        );
        // Touching an existing range needs no new entry.
        allocator
            .add_usable(range(last_end, last_end + PAGE))
            .unwrap();
        // Filling a hole removes one.
        allocator.free(range(PAGE, 2 * PAGE)).unwrap();
        assert_eq!(allocator.free_ranges().len(), MAX_FREE_RANGES - 1);
        assert_invariant(&allocator);
    }

    #[test]
    fn full_list_allocates_from_range_ends_but_not_middles() {
        let top = (MAX_FREE_RANGES as u64 - 1) * 2 * PAGE;
        let mut allocator = full_allocator();
        allocator.add_usable(range(top, top + 4 * PAGE)).unwrap();
        // Taking from either end of a range needs no new entry.
        assert_eq!(
            allocator.allocate(PAGE, PAGE, NO_LIMIT),
            Ok(range(top + 3 * PAGE, top + 4 * PAGE))
        );
        assert_eq!(
            allocator.allocate(PAGE, PAGE, HostPhysAddr(top + PAGE)),
            Ok(range(top, top + PAGE))
        );
        assert_eq!(allocator.free_ranges().len(), MAX_FREE_RANGES);

        // Only the middle of the last range fits: a split the list has no
        // room for. The other ranges are a page each, too small.
        let mut allocator = full_allocator();
        allocator.add_usable(range(top, top + 4 * PAGE)).unwrap();
        let before = ranges(&allocator);
        assert_eq!(
            allocator.allocate(2 * PAGE, PAGE, HostPhysAddr(top + 3 * PAGE)),
            Err(FrameError::TooFragmented)
        );
        assert_eq!(ranges(&allocator), before);
        // A smaller block moves down to a range it fills.
        assert_eq!(
            allocator.allocate(PAGE, PAGE, HostPhysAddr(top + 3 * PAGE)),
            Ok(range(top - 2 * PAGE, top - PAGE))
        );
    }

    #[test]
    fn random_operations_keep_the_invariant() {
        let mut allocator = FrameAllocator::new();
        let mut live: Vec<HostRange> = Vec::new();
        let mut state = 0x5eed_0005u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            match next() % 5 {
                0 => {
                    let start = next() % 0x100_0000;
                    let usable = range(start, start + next() % 0x4_0000);
                    let _ = allocator.add_usable(usable);
                    // Declaring allocated memory usable frees it (the caller's fault).
                    live.retain(|block| !block.overlaps(&usable));
                }
                1 => {
                    let start = next() % 0x100_0000;
                    allocator.reserve(range(start, start + next() % 0x1_0000));
                }
                2 | 3 => {
                    let bytes = next() % 0x8000 + 1;
                    let align = 1 << (next() % 16);
                    let below = HostPhysAddr(next() % 0x120_0000);
                    let before = allocator.free_bytes();
                    if let Ok(block) = allocator.allocate(bytes, align, below) {
                        assert!(block.end <= below && block.start.is_aligned(align.max(PAGE)));
                        assert!(block.len() >= bytes && block.len() - bytes < PAGE);
                        assert_eq!(allocator.free_bytes(), before - block.len());
                        assert!(
                            !live.iter().any(|other| other.overlaps(&block)),
                            "{block} handed out twice"
                        );
                        live.push(block);
                    }
                }
                _ => {
                    if !live.is_empty() {
                        let block = live.swap_remove((next() % live.len() as u64) as usize);
                        let _ = allocator.free(block);
                    }
                }
            }
            assert_invariant(&allocator);
        }
    }
}
