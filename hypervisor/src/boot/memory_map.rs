//! Memory-map normalisation shared by the multiboot2 and PVH parsers: the
//! loader's entries become a sorted, non-overlapping map without empty
//! entries, the more restrictive kind winning where entries overlap.

use arrayvec::ArrayVec;

use super::{MAX_MEMORY_REGIONS, MemoryKind, MemoryRegion};
use crate::memory::{HostPhysAddr, HostRange};

/// A normalised memory map: sorted by start, non-overlapping, no empty entry.
pub type MemoryMap = ArrayVec<MemoryRegion, MAX_MEMORY_REGIONS>;

/// The entries a loader listed, in its order, before normalisation.
pub type RawMemoryMap = ArrayVec<MemoryRegion, MAX_MEMORY_REGIONS>;

/// The region `[base, base + length)` of e820 type `kind`. A length that
/// would run past the top of the address space is cut at the top: the
/// loader's word is all there is, and a half-open range cannot name the
/// last byte anyway.
pub fn region_from_e820(base: HostPhysAddr, length: u64, kind: u32) -> MemoryRegion {
    let end = HostPhysAddr(base.raw().saturating_add(length));
    MemoryRegion {
        range: HostRange { start: base, end },
        kind: MemoryKind::from_e820(kind),
    }
}

/// How strongly a kind keeps memory from being used; the higher wins an
/// overlap. Anything beats `Usable`; reclaimable ACPI loses to the kinds
/// that may never be touched, and defective RAM beats everything.
const fn restrictiveness(kind: MemoryKind) -> u8 {
    match kind {
        MemoryKind::Usable => 0,
        MemoryKind::AcpiReclaimable => 1,
        MemoryKind::AcpiNvs => 2,
        MemoryKind::Reserved => 3,
        MemoryKind::Bad => 4,
    }
}

/// Normalises `raw`: the result is sorted by start, non-overlapping, holds
/// no empty entry, and joins neighbours of the same kind. Where entries
/// overlap the more restrictive kind wins (see [`restrictiveness`]).
///
/// Only the first [`MAX_MEMORY_REGIONS`] raw entries are considered. Should
/// the result need more than [`MAX_MEMORY_REGIONS`] entries (many small
/// holes punched into one large range), the highest ones are dropped: memory
/// missing from the map is never used, so dropping is always safe.
pub fn normalise(raw: &[MemoryRegion]) -> MemoryMap {
    let raw = raw.get(..MAX_MEMORY_REGIONS).unwrap_or(raw);

    // Every start and end is a point where the winning kind may change;
    // between two neighbouring points it cannot.
    let mut boundaries = ArrayVec::<u64, { 2 * MAX_MEMORY_REGIONS }>::new();
    for region in raw.iter().filter(|region| !region.range.is_empty()) {
        // Capacity is twice the number of regions considered: never full.
        let _ = boundaries.try_push(region.range.start.raw());
        let _ = boundaries.try_push(region.range.end.raw());
    }
    boundaries.sort_unstable();
    let mut unique = ArrayVec::<u64, { 2 * MAX_MEMORY_REGIONS }>::new();
    for &point in &boundaries {
        if unique.last() != Some(&point) {
            let _ = unique.try_push(point);
        }
    }

    let mut map = MemoryMap::new();
    for pair in unique.windows(2) {
        let [start, end] = *pair else { continue };
        let piece = HostRange {
            start: HostPhysAddr(start),
            end: HostPhysAddr(end),
        };
        let winner = raw
            .iter()
            .filter(|region| region.range.contains_range(&piece))
            .map(|region| region.kind)
            .max_by_key(|&kind| restrictiveness(kind));
        let Some(kind) = winner else { continue };
        match map.last_mut() {
            Some(last) if last.kind == kind && last.range.end == piece.start => {
                last.range.end = piece.end;
            }
            _ => {
                if map.try_push(MemoryRegion { range: piece, kind }).is_err() {
                    log::warn!(
                        "memory map: more than {MAX_MEMORY_REGIONS} regions, ignoring from {piece}"
                    );
                    break;
                }
            }
        }
    }
    map
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the boot parsers' tests share: fake physical memory and a
    //! seeded pseudo-random generator.

    use crate::memory::{HostPhysAddr, OutOfBounds, PhysicalMemory};

    /// Physical memory made of one byte vector placed at `base`.
    pub struct FakeMemory {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl FakeMemory {
        /// `size` zero bytes at `base`.
        pub fn new(base: u64, size: usize) -> Self {
            Self {
                base,
                bytes: vec![0; size],
            }
        }

        /// Copies `data` to `address`; the test is wrong if it does not fit.
        pub fn write(&mut self, address: u64, data: &[u8]) {
            let offset = usize::try_from(address - self.base).expect("address in fake memory");
            self.bytes[offset..offset + data.len()].copy_from_slice(data);
        }
    }

    impl PhysicalMemory for FakeMemory {
        fn read(&self, address: HostPhysAddr, buffer: &mut [u8]) -> Result<(), OutOfBounds> {
            let fault = OutOfBounds {
                address,
                len: buffer.len(),
            };
            let offset = address.raw().checked_sub(self.base).ok_or(fault)?;
            let offset = usize::try_from(offset).map_err(|_| fault)?;
            let end = offset.checked_add(buffer.len()).ok_or(fault)?;
            let source = self.bytes.get(offset..end).ok_or(fault)?;
            buffer.copy_from_slice(source);
            Ok(())
        }
    }

    /// Marsaglia's xorshift64: deterministic noise for robustness tests.
    pub struct XorShift(pub u64);

    impl XorShift {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A value in `0..bound` (`bound` > 0).
        pub fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        pub fn fill(&mut self, bytes: &mut [u8]) {
            for byte in bytes {
                *byte = self.next() as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::XorShift;
    use super::*;

    fn region(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion {
            range: HostRange {
                start: HostPhysAddr(start),
                end: HostPhysAddr(end),
            },
            kind,
        }
    }

    fn assert_normalised(map: &[MemoryRegion]) {
        for region in map {
            assert!(!region.range.is_empty(), "empty region in {map:?}");
        }
        for pair in map.windows(2) {
            assert!(
                pair[0].range.end <= pair[1].range.start,
                "unsorted or overlapping: {map:?}"
            );
            let touching = pair[0].range.end == pair[1].range.start;
            assert!(
                !(touching && pair[0].kind == pair[1].kind),
                "unjoined neighbours: {map:?}"
            );
        }
    }

    #[test]
    fn sorts_and_drops_empty_entries() {
        let raw = [
            region(0x10_0000, 0x800_0000, MemoryKind::Usable),
            region(0x5000, 0x5000, MemoryKind::Reserved),
            region(0, 0x9_f000, MemoryKind::Usable),
            region(0xf_0000, 0x10_0000, MemoryKind::Reserved),
        ];
        let map = normalise(&raw);
        assert_eq!(
            map.as_slice(),
            [
                region(0, 0x9_f000, MemoryKind::Usable),
                region(0xf_0000, 0x10_0000, MemoryKind::Reserved),
                region(0x10_0000, 0x800_0000, MemoryKind::Usable),
            ]
        );
    }

    #[test]
    fn restrictive_kind_wins_an_overlap() {
        let raw = [
            region(0, 0x1_0000, MemoryKind::Usable),
            region(0x4000, 0x8000, MemoryKind::AcpiReclaimable),
            region(0x6000, 0xc000, MemoryKind::Reserved),
            region(0x7000, 0x7001, MemoryKind::Bad),
        ];
        let map = normalise(&raw);
        assert_eq!(
            map.as_slice(),
            [
                region(0, 0x4000, MemoryKind::Usable),
                region(0x4000, 0x6000, MemoryKind::AcpiReclaimable),
                region(0x6000, 0x7000, MemoryKind::Reserved),
                region(0x7000, 0x7001, MemoryKind::Bad),
                region(0x7001, 0xc000, MemoryKind::Reserved),
                region(0xc000, 0x1_0000, MemoryKind::Usable),
            ]
        );
    }

    #[test]
    fn order_of_overlapping_entries_does_not_matter() {
        let usable = region(0, 0x2000, MemoryKind::Usable);
        let nvs = region(0x1000, 0x3000, MemoryKind::AcpiNvs);
        assert_eq!(normalise(&[usable, nvs]), normalise(&[nvs, usable]));
        assert_eq!(
            normalise(&[usable, nvs]).as_slice(),
            [
                region(0, 0x1000, MemoryKind::Usable),
                region(0x1000, 0x3000, MemoryKind::AcpiNvs)
            ]
        );
    }

    #[test]
    fn joins_touching_and_duplicate_entries_of_one_kind() {
        let raw = [
            region(0x2000, 0x3000, MemoryKind::Usable),
            region(0, 0x2000, MemoryKind::Usable),
            region(0, 0x2000, MemoryKind::Usable),
        ];
        assert_eq!(
            normalise(&raw).as_slice(),
            [region(0, 0x3000, MemoryKind::Usable)]
        );
    }

    #[test]
    fn keeps_holes() {
        let raw = [
            region(0, 0x1000, MemoryKind::Usable),
            region(0x3000, 0x4000, MemoryKind::Usable),
        ];
        assert_eq!(normalise(&raw).as_slice(), raw);
    }

    #[test]
    fn region_past_the_top_is_cut_at_the_top() {
        let cut = region_from_e820(HostPhysAddr(u64::MAX - 0xfff), 0x10_0000, 1);
        assert_eq!(cut, region(u64::MAX - 0xfff, u64::MAX, MemoryKind::Usable));
    }

    #[test]
    fn too_many_pieces_keeps_the_lowest() {
        // One usable range with 127 reserved holes: 255 pieces before the cap.
        let mut raw = vec![region(0, 0x100_0000, MemoryKind::Usable)];
        for index in 0..127u64 {
            let start = 0x1000 + index * 0x2000;
            raw.push(region(start, start + 0x1000, MemoryKind::Reserved));
        }
        let map = normalise(&raw);
        assert_eq!(map.len(), MAX_MEMORY_REGIONS);
        assert_eq!(map[0], region(0, 0x1000, MemoryKind::Usable));
        assert_normalised(&map);
    }

    #[test]
    fn entries_past_the_cap_are_ignored() {
        let raw: Vec<_> = (0..MAX_MEMORY_REGIONS as u64 + 10)
            .map(|index| region(index * 0x2000, index * 0x2000 + 0x1000, MemoryKind::Usable))
            .collect();
        let map = normalise(&raw);
        assert_eq!(map.len(), MAX_MEMORY_REGIONS);
        assert_eq!(
            map.last().map(|region| region.range.start.raw()),
            Some(127 * 0x2000)
        );
    }

    #[test]
    fn random_maps_normalise_and_keep_every_byte_kind() {
        let kinds = [
            MemoryKind::Usable,
            MemoryKind::Reserved,
            MemoryKind::AcpiReclaimable,
            MemoryKind::AcpiNvs,
            MemoryKind::Bad,
        ];
        let mut random = XorShift(0x5eed_0001);
        for _ in 0..500 {
            let count = random.below(20) as usize;
            let raw: Vec<_> = (0..count)
                .map(|_| {
                    let start = random.below(64) * 0x1000;
                    let end = start + random.below(16) * 0x1000;
                    region(start, end, kinds[random.below(5) as usize])
                })
                .collect();
            let map = normalise(&raw);
            assert_normalised(&map);
            // Each page's kind is the most restrictive kind covering it.
            for page in 0..80u64 {
                let address = HostPhysAddr(page * 0x1000);
                let expected = raw
                    .iter()
                    .filter(|region| region.range.contains(address))
                    .map(|region| region.kind)
                    .max_by_key(|&kind| restrictiveness(kind));
                let found = map
                    .iter()
                    .find(|region| region.range.contains(address))
                    .map(|region| region.kind);
                assert_eq!(found, expected, "page {page:#x} of {raw:?}");
            }
        }
    }
}
