//! A guest's RAM: which host frames back which guest frames, and which of
//! those frames still hold whatever their last owner left there. Extents
//! are kept sorted and never overlap; single pages can be removed and added
//! (ballooning, add_to_physmap) without giving up large extents elsewhere.
//!
//! A new domain's RAM is allocated at creation but not zeroed: each extent
//! is zeroed ("scrubbed") the first time anything resolves one of its
//! frames — the guest's first touch (a nested page fault), Dom0's writes
//! and mappings, a hypercall reading or writing guest memory. Resolving a
//! frame is the only way to learn a host address behind a guest frame, so
//! no one sees a former owner's bytes, and an extent is zeroed at most
//! once, before anyone could have written to it.

use alloc::vec::Vec;
use core::cell::Cell;

use crate::memory::address::LARGE_PAGE_SIZE;
use crate::memory::frames::{FrameAllocator, FrameError};
use crate::memory::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE};

/// Zeroes host frames before the RAM map first exposes them: the binary
/// writes through its identity map; tests record what was asked.
pub trait Scrub {
    /// Fills `range` — host frames of this RAM map, exposed to no one yet —
    /// with zeros.
    fn zero(&self, range: HostRange);
}

/// Guest frames `[gfn, gfn + pages)` backed by host memory from `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Extent {
    gfn: u64,
    host: HostRange,
    /// Whether `host` still holds its last owner's bytes. Only ever goes
    /// from true to false, through [`GuestRam::scrub`]; a `Cell` because
    /// readers resolve frames through a shared borrow.
    unscrubbed: Cell<bool>,
}

impl Extent {
    fn pages(&self) -> u64 {
        self.host.len() / PAGE_SIZE
    }

    fn end_gfn(&self) -> u64 {
        self.gfn + self.pages()
    }
}

/// A stretch of guest RAM and the host memory behind it, scrubbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backing {
    /// First guest frame.
    pub gfn: u64,
    /// The host frames behind `[gfn, gfn + host.len() / PAGE_SIZE)`.
    pub host: HostRange,
}

/// Most extents one guest may have; ballooning page by page splits them.
pub const MAX_EXTENTS: usize = 4096;

/// The guest's RAM map. Not `Clone`: two copies would disagree about which
/// extents are still to be scrubbed, and the later one would zero data the
/// guest already has.
#[derive(Debug, Default)]
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
    /// RAM for a new guest: `pages` frames at guest frame 0, in 2 MiB
    /// pieces where free memory allows, smaller ones where it does not.
    /// The frames are taken at once (so a guest that does not fit fails
    /// here, not at its first touch) but left unscrubbed. On failure
    /// everything taken is given back.
    pub fn allocate(frames: &mut FrameAllocator, pages: u64) -> Result<Self, FrameError> {
        let bytes = pages
            .checked_mul(PAGE_SIZE)
            .ok_or(FrameError::OutOfMemory { bytes: u64::MAX })?;
        let mut ram = Self::default();
        let mut done = 0;
        let anywhere = HostPhysAddr(u64::MAX);
        while done < bytes {
            let wanted = (bytes - done).min(LARGE_PAGE_SIZE);
            let align = if wanted == LARGE_PAGE_SIZE {
                LARGE_PAGE_SIZE
            } else {
                PAGE_SIZE
            };
            // Unaligned, then a single page: fragmented memory still
            // serves, in smaller extents.
            let piece = frames
                .allocate(wanted, align, anywhere)
                .or_else(|_| frames.allocate(wanted, PAGE_SIZE, anywhere))
                .or_else(|_| frames.allocate(PAGE_SIZE, PAGE_SIZE, anywhere));
            let added = match piece {
                Ok(piece) => ram
                    .insert(done / PAGE_SIZE, piece, true)
                    .map(|()| piece.len())
                    .map_err(|_| {
                        let _ = frames.free(piece);
                        FrameError::TooFragmented
                    }),
                Err(error) => Err(error),
            };
            match added {
                Ok(len) => done += len,
                Err(error) => {
                    ram.release(frames);
                    return Err(error);
                }
            }
        }
        Ok(ram)
    }

    /// Backs `[gfn, ...)` with `host`, which the caller has zeroed or
    /// filled.
    pub fn add(&mut self, gfn: u64, host: HostRange) -> Result<(), RamError> {
        self.insert(gfn, host, false)
    }

    fn insert(&mut self, gfn: u64, host: HostRange, unscrubbed: bool) -> Result<(), RamError> {
        if host.is_empty() || !host.start.is_aligned(PAGE_SIZE) || !host.end.is_aligned(PAGE_SIZE) {
            return Err(RamError::BadRange);
        }
        let extent = Extent {
            gfn,
            host,
            unscrubbed: Cell::new(unscrubbed),
        };
        let at = self.extents.partition_point(|other| other.gfn < gfn);
        let before_ok = at == 0 || self.extents[at - 1].end_gfn() <= gfn;
        let after_ok = gfn
            .checked_add(extent.pages())
            .is_some_and(|end| self.extents.get(at).is_none_or(|next| end <= next.gfn));
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

    /// Zeroes the extent at `index` if it still holds old bytes.
    fn scrub(&self, index: usize, scrubber: &impl Scrub) -> Option<&Extent> {
        let extent = self.extents.get(index)?;
        if extent.unscrubbed.get() {
            scrubber.zero(extent.host);
            extent.unscrubbed.set(false);
        }
        Some(extent)
    }

    /// Whether guest frame `gfn` is RAM. Scrubs nothing.
    pub fn contains(&self, gfn: u64) -> bool {
        self.find(gfn).is_some()
    }

    /// The host frame behind guest frame `gfn`, its extent scrubbed first.
    pub fn host_frame(&self, gfn: u64, scrubber: &impl Scrub) -> Option<HostPhysAddr> {
        let extent = self.scrub(self.find(gfn)?, scrubber)?;
        Some(HostPhysAddr(
            extent.host.start.0 + (gfn - extent.gfn) * PAGE_SIZE,
        ))
    }

    /// The host address behind `address`, if its page is backed; its
    /// extent is scrubbed first.
    pub fn translate(&self, address: GuestPhysAddr, scrubber: &impl Scrub) -> Option<HostPhysAddr> {
        let frame = self.host_frame(address.0 / PAGE_SIZE, scrubber)?;
        Some(HostPhysAddr(frame.0 + address.page_offset()))
    }

    /// The whole extent holding `gfn`, scrubbed: what a guest's first
    /// touch maps into its nested page tables.
    pub fn backing(&self, gfn: u64, scrubber: &impl Scrub) -> Option<Backing> {
        let extent = self.scrub(self.find(gfn)?, scrubber)?;
        Some(Backing {
            gfn: extent.gfn,
            host: extent.host,
        })
    }

    /// Unbacks guest frame `gfn`, returning its host frame. The frame may
    /// hold old bytes: it goes back to the allocator (whose memory is never
    /// assumed clean) or is kept out of use, never handed to anyone as is.
    pub fn remove_page(&mut self, gfn: u64) -> Result<Option<HostPhysAddr>, RamError> {
        let Some(index) = self.find(gfn) else {
            return Ok(None);
        };
        let extent = self.extents[index].clone();
        let host = HostPhysAddr(extent.host.start.0 + (gfn - extent.gfn) * PAGE_SIZE);
        let piece = |gfn, start, end| Extent {
            gfn,
            host: HostRange { start, end },
            unscrubbed: extent.unscrubbed.clone(),
        };
        let before = piece(extent.gfn, extent.host.start, host);
        let after = piece(gfn + 1, HostPhysAddr(host.0 + PAGE_SIZE), extent.host.end);
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

    /// Pages backed, scrubbed or not.
    pub fn pages(&self) -> u64 {
        self.extents.iter().map(Extent::pages).sum()
    }

    /// Pages backed but not scrubbed yet: no one has touched them.
    pub fn unscrubbed_pages(&self) -> u64 {
        self.extents
            .iter()
            .filter(|extent| extent.unscrubbed.get())
            .map(Extent::pages)
            .sum()
    }

    /// Where the RAM is: each extent's first guest frame and host range,
    /// lowest first. For laying out memory maps and page tables only: the
    /// frames may still hold old bytes, so they must not be mapped or
    /// handed out from here (use [`GuestRam::backing`]).
    pub fn layout(&self) -> impl Iterator<Item = (u64, HostRange)> + '_ {
        self.extents.iter().map(|extent| (extent.gfn, extent.host))
    }

    /// Gives every extent back to `frames` (domain destruction, or a
    /// creation that failed), scrubbed or not.
    pub fn release(&mut self, frames: &mut FrameAllocator) {
        for extent in core::mem::take(&mut self.extents) {
            let _ = frames.free(extent.host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::collections::BTreeMap;

    fn range(start: u64, pages: u64) -> HostRange {
        HostRange {
            start: HostPhysAddr(start),
            end: HostPhysAddr(start + pages * PAGE_SIZE),
        }
    }

    /// Records every range it is asked to zero.
    #[derive(Default)]
    struct Recorder {
        zeroed: RefCell<Vec<HostRange>>,
    }

    impl Scrub for Recorder {
        fn zero(&self, range: HostRange) {
            self.zeroed.borrow_mut().push(range);
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<HostRange> {
            core::mem::take(&mut *self.zeroed.borrow_mut())
        }
    }

    fn allocator(bytes: u64) -> FrameAllocator {
        let mut frames = FrameAllocator::new();
        frames
            .add_usable(HostRange {
                start: HostPhysAddr(0x4000_0000),
                end: HostPhysAddr(0x4000_0000 + bytes),
            })
            .unwrap();
        frames
    }

    #[test]
    fn translates_through_extents() {
        let scrubber = Recorder::default();
        let mut ram = GuestRam::default();
        ram.add(0, range(0x4000_0000, 512)).unwrap();
        ram.add(1024, range(0x1000_0000, 16)).unwrap();
        assert_eq!(
            ram.translate(GuestPhysAddr(0x1234), &scrubber),
            Some(HostPhysAddr(0x4000_1234))
        );
        assert_eq!(
            ram.translate(GuestPhysAddr(1024 * 4096 + 8), &scrubber),
            Some(HostPhysAddr(0x1000_0008))
        );
        assert_eq!(ram.translate(GuestPhysAddr(600 * 4096), &scrubber), None);
        assert_eq!(ram.pages(), 528);
        assert_eq!(ram.add(500, range(0x9000_0000, 20)), Err(RamError::Overlap));
        assert_eq!(
            ram.add(u64::MAX - 1, range(0x9000_0000, 20)),
            Err(RamError::Overlap),
            "guest frames past the end of the address space"
        );
        assert!(scrubber.take().is_empty(), "added memory is clean already");
    }

    #[test]
    fn removing_a_page_splits_its_extent() {
        let scrubber = Recorder::default();
        let mut ram = GuestRam::default();
        ram.add(0, range(0x4000_0000, 8)).unwrap();
        assert_eq!(ram.remove_page(3).unwrap(), Some(HostPhysAddr(0x4000_3000)));
        assert_eq!(ram.layout().count(), 2);
        assert_eq!(ram.host_frame(3, &scrubber), None);
        assert!(!ram.contains(3));
        assert_eq!(
            ram.host_frame(4, &scrubber),
            Some(HostPhysAddr(0x4000_4000))
        );
        assert_eq!(ram.remove_page(3).unwrap(), None);
        assert_eq!(ram.remove_page(0).unwrap(), Some(HostPhysAddr(0x4000_0000)));
        assert_eq!(ram.pages(), 6);
        ram.add(3, range(0x7000_0000, 1)).unwrap();
        assert_eq!(
            ram.host_frame(3, &scrubber),
            Some(HostPhysAddr(0x7000_0000))
        );
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

    #[test]
    fn new_ram_is_allocated_at_once_in_large_pieces_and_left_unscrubbed() {
        let mut frames = allocator(64 << 20);
        let scrubber = Recorder::default();
        // 10 MiB and a page: five 2 MiB extents and the odd page.
        let pages = 5 * 512 + 1;
        let ram = GuestRam::allocate(&mut frames, pages).unwrap();
        assert_eq!(frames.free_bytes(), (64 << 20) - pages * PAGE_SIZE);
        assert_eq!(ram.pages(), pages);
        assert_eq!(ram.unscrubbed_pages(), pages);
        let layout: Vec<_> = ram.layout().collect();
        assert_eq!(layout.len(), 6);
        for (index, (gfn, host)) in layout.iter().take(5).enumerate() {
            assert_eq!(*gfn, index as u64 * 512);
            assert_eq!(host.len(), LARGE_PAGE_SIZE);
            assert!(host.start.is_aligned(LARGE_PAGE_SIZE));
        }
        assert_eq!(layout[5].0, 5 * 512);
        assert_eq!(layout[5].1.len(), PAGE_SIZE);
        assert!(scrubber.take().is_empty(), "nothing zeroed at creation");
    }

    #[test]
    fn first_touch_scrubs_exactly_the_extent_once() {
        let mut frames = allocator(64 << 20);
        let scrubber = Recorder::default();
        let ram = GuestRam::allocate(&mut frames, 4 * 512).unwrap();
        let (_, second) = ram.layout().nth(1).unwrap();
        // Frame 700 is in the second 2 MiB extent.
        let frame = ram.host_frame(700, &scrubber).unwrap();
        assert_eq!(
            frame,
            HostPhysAddr(second.start.0 + (700 - 512) * PAGE_SIZE)
        );
        assert_eq!(scrubber.take(), [second]);
        assert_eq!(ram.unscrubbed_pages(), 3 * 512);
        assert_eq!(ram.pages(), 4 * 512, "accounting does not change");
        // Again, and through every other way in: nothing more to zero.
        ram.host_frame(600, &scrubber).unwrap();
        ram.translate(GuestPhysAddr(1000 * PAGE_SIZE + 5), &scrubber)
            .unwrap();
        assert_eq!(
            ram.backing(513, &scrubber),
            Some(Backing {
                gfn: 512,
                host: second
            })
        );
        assert!(scrubber.take().is_empty());
        // A look that resolves nothing scrubs nothing.
        assert!(ram.contains(0));
        assert!(scrubber.take().is_empty());
        assert_eq!(ram.unscrubbed_pages(), 3 * 512);
    }

    #[test]
    fn frames_outside_the_ram_resolve_to_nothing_and_scrub_nothing() {
        let mut frames = allocator(64 << 20);
        let scrubber = Recorder::default();
        let ram = GuestRam::allocate(&mut frames, 1024).unwrap();
        for gfn in [1024, 1025, 1 << 36, u64::MAX] {
            assert_eq!(ram.host_frame(gfn, &scrubber), None, "{gfn:#x}");
            assert_eq!(ram.backing(gfn, &scrubber), None, "{gfn:#x}");
            assert!(!ram.contains(gfn));
        }
        for address in [1024 * PAGE_SIZE, u64::MAX, 1 << 52] {
            assert_eq!(ram.translate(GuestPhysAddr(address), &scrubber), None);
        }
        assert!(scrubber.take().is_empty());
        assert_eq!(ram.unscrubbed_pages(), 1024);
    }

    #[test]
    fn creation_fails_when_memory_is_short_and_gives_everything_back() {
        let mut frames = allocator(8 << 20);
        assert_eq!(
            GuestRam::allocate(&mut frames, (8 << 20) / PAGE_SIZE + 1).unwrap_err(),
            FrameError::OutOfMemory { bytes: PAGE_SIZE }
        );
        assert_eq!(frames.free_bytes(), 8 << 20);
        assert_eq!(frames.free_ranges().len(), 1);
        // Exactly what is free fits.
        let ram = GuestRam::allocate(&mut frames, (8 << 20) / PAGE_SIZE).unwrap();
        assert_eq!(frames.free_bytes(), 0);
        assert_eq!(ram.pages(), (8 << 20) / PAGE_SIZE);
    }

    #[test]
    fn fragmented_memory_still_serves_in_smaller_extents() {
        let mut frames = FrameAllocator::new();
        // Eight free page pairs with holes between them: no 2 MiB block.
        for index in 0..8u64 {
            let start = 0x10_0000 + index * 4 * PAGE_SIZE;
            frames.add_usable(range(start, 2)).unwrap();
        }
        let scrubber = Recorder::default();
        let ram = GuestRam::allocate(&mut frames, 16).unwrap();
        assert_eq!(ram.pages(), 16);
        assert_eq!(frames.free_bytes(), 0);
        let gfns: Vec<u64> = ram.layout().map(|(gfn, _)| gfn).collect();
        assert_eq!(gfns.first(), Some(&0));
        for gfn in 0..16 {
            assert!(ram.host_frame(gfn, &scrubber).is_some());
        }
        let zeroed: u64 = scrubber.take().iter().map(HostRange::len).sum();
        assert_eq!(zeroed, 16 * PAGE_SIZE, "each extent zeroed once");
    }

    #[test]
    fn destruction_frees_exactly_what_was_allocated_touched_or_not() {
        let mut frames = allocator(64 << 20);
        let scrubber = Recorder::default();
        let before = frames.free_bytes();
        let mut ram = GuestRam::allocate(&mut frames, 3 * 512 + 7).unwrap();
        ram.host_frame(10, &scrubber).unwrap();
        // A page ballooned out (freed by the caller) and one added back.
        let out = ram.remove_page(600).unwrap().unwrap();
        frames
            .free(HostRange {
                start: out,
                end: HostPhysAddr(out.0 + PAGE_SIZE),
            })
            .unwrap();
        let fresh = frames
            .allocate(PAGE_SIZE, PAGE_SIZE, HostPhysAddr(u64::MAX))
            .unwrap();
        ram.add(600, fresh).unwrap();
        ram.release(&mut frames);
        assert_eq!(ram.pages(), 0);
        assert_eq!(frames.free_bytes(), before);
        assert_eq!(frames.free_ranges().len(), 1, "every piece came back");
    }

    #[test]
    fn removed_pages_leave_their_neighbours_unscrubbed_until_touched() {
        let mut frames = allocator(64 << 20);
        let scrubber = Recorder::default();
        let mut ram = GuestRam::allocate(&mut frames, 512).unwrap();
        let (_, whole) = ram.layout().next().unwrap();
        let removed = ram.remove_page(100).unwrap().unwrap();
        assert!(scrubber.take().is_empty());
        assert_eq!(ram.unscrubbed_pages(), 511);
        // The page put back in its place is clean; touching it scrubs nothing.
        let fresh = range(0x7000_0000, 1);
        ram.add(100, fresh).unwrap();
        assert_eq!(ram.host_frame(100, &scrubber), Some(fresh.start));
        assert!(scrubber.take().is_empty());
        // Each half is zeroed on its own first touch, the removed page never.
        ram.host_frame(101, &scrubber).unwrap();
        assert_eq!(
            scrubber.take(),
            [HostRange {
                start: HostPhysAddr(removed.0 + PAGE_SIZE),
                end: whole.end
            }]
        );
        ram.host_frame(0, &scrubber).unwrap();
        assert_eq!(
            scrubber.take(),
            [HostRange {
                start: whole.start,
                end: removed
            }]
        );
        assert_eq!(ram.unscrubbed_pages(), 0);
    }

    /// What a host frame holds, as far as the guest is concerned.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Content {
        /// Someone else's bytes.
        Old,
        Zero,
        /// The guest's own data.
        Guest,
    }

    /// Host memory in which zeroing the guest's own data is a bug.
    struct Memory {
        frames: RefCell<BTreeMap<u64, Content>>,
    }

    impl Scrub for Memory {
        fn zero(&self, range: HostRange) {
            let mut frames = self.frames.borrow_mut();
            let mut frame = range.start.0;
            while frame < range.end.0 {
                let content = frames.entry(frame).or_insert(Content::Old);
                assert_ne!(*content, Content::Guest, "zeroed guest data at {frame:#x}");
                *content = Content::Zero;
                frame += PAGE_SIZE;
            }
        }
    }

    #[test]
    fn random_operations_never_expose_old_bytes_nor_zero_guest_data() {
        let mut frames = allocator(64 << 20);
        let memory = Memory {
            frames: RefCell::new(BTreeMap::new()),
        };
        let mut state = 0x5eed_4a11u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20 {
            let pages = next() % (6 * 512) + 1;
            let mut ram = GuestRam::allocate(&mut frames, pages).unwrap();
            // Everything the allocator hands out holds old bytes.
            for (_, host) in ram.layout() {
                let mut frame = host.start.0;
                while frame < host.end.0 {
                    memory.frames.borrow_mut().insert(frame, Content::Old);
                    frame += PAGE_SIZE;
                }
            }
            for _ in 0..200 {
                let gfn = next() % (pages + 64);
                match next() % 4 {
                    0 | 1 => {
                        // A touch: the frame must be clean or the guest's,
                        // and the guest then writes it.
                        if let Some(frame) = ram.host_frame(gfn, &memory) {
                            let mut all = memory.frames.borrow_mut();
                            let content = all.get_mut(&frame.0).unwrap();
                            assert_ne!(*content, Content::Old, "old bytes at {gfn:#x}");
                            *content = Content::Guest;
                        } else {
                            assert!(!ram.contains(gfn));
                        }
                    }
                    2 => {
                        if let Ok(Some(frame)) = ram.remove_page(gfn) {
                            let range = HostRange {
                                start: frame,
                                end: HostPhysAddr(frame.0 + PAGE_SIZE),
                            };
                            frames.free(range).unwrap();
                            memory.frames.borrow_mut().insert(frame.0, Content::Old);
                        }
                    }
                    _ => {
                        if !ram.contains(gfn)
                            && let Ok(fresh) =
                                frames.allocate(PAGE_SIZE, PAGE_SIZE, HostPhysAddr(u64::MAX))
                        {
                            // populate_physmap zeroes before adding, and
                            // maps the page: the guest may write it at once.
                            memory.zero(fresh);
                            if ram.add(gfn, fresh).is_err() {
                                frames.free(fresh).unwrap();
                            } else {
                                memory
                                    .frames
                                    .borrow_mut()
                                    .insert(fresh.start.0, Content::Guest);
                            }
                        }
                    }
                }
                assert!(ram.unscrubbed_pages() <= ram.pages());
            }
            ram.release(&mut frames);
            assert_eq!(frames.free_bytes(), 64 << 20, "nothing leaked");
        }
    }
}
