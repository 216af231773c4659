//! Free-space management: the free runs of allocation blocks, sorted and
//! coalesced, derived from the volume table at open (so free space can
//! never disagree with the volumes on disk).
//!
//! Allocation keeps volumes in few extents: it first extends a volume's
//! last extent in place, then takes the smallest free run that fits the
//! rest whole (best fit, lowest address on ties), and only when no run is
//! big enough takes the largest runs first.

use alloc::vec::Vec;

use super::format::{BlockIndex, Extent};

/// The free runs of a data area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreeSpace {
    block_count: u64,
    /// Sorted by start, never empty, never touching (always coalesced).
    runs: Vec<Extent>,
}

impl FreeSpace {
    /// The complement of `used` (valid, non-overlapping extents) in
    /// `0..block_count`.
    pub fn from_used(block_count: u64, mut used: Vec<Extent>) -> FreeSpace {
        used.sort_unstable();
        let mut runs = Vec::with_capacity(used.len() + 1);
        let mut cursor = 0u64;
        for extent in used {
            if extent.start.0 > cursor {
                runs.push(Extent {
                    start: BlockIndex(cursor),
                    blocks: extent.start.0 - cursor,
                });
            }
            cursor = cursor.max(extent.end());
        }
        if cursor < block_count {
            runs.push(Extent {
                start: BlockIndex(cursor),
                blocks: block_count - cursor,
            });
        }
        FreeSpace { block_count, runs }
    }

    /// Free blocks in total.
    pub fn free_blocks(&self) -> u64 {
        self.runs.iter().map(|run| run.blocks).sum()
    }

    /// The free runs, by address.
    pub fn runs(&self) -> &[Extent] {
        &self.runs
    }

    /// Blocks in the data area.
    pub fn block_count(&self) -> u64 {
        self.block_count
    }

    /// Takes `blocks` blocks, continuing the run that ends at `after` if it
    /// can. Returns the new extents in order, or `None` (taking nothing) if
    /// there is not enough free space.
    pub fn allocate(&mut self, blocks: u64, after: Option<BlockIndex>) -> Option<Vec<Extent>> {
        if blocks > self.free_blocks() {
            return None;
        }
        let mut taken = Vec::new();
        let mut left = blocks;
        if let Some(after) = after
            && left > 0
            && let Some(position) = self.runs.iter().position(|run| run.start == after)
        {
            left -= self.take_from(position, left, &mut taken);
        }
        if left > 0 {
            let best = self
                .runs
                .iter()
                .enumerate()
                .filter(|(_, run)| run.blocks >= left)
                .min_by_key(|(_, run)| (run.blocks, run.start))
                .map(|(position, _)| position);
            if let Some(position) = best {
                left -= self.take_from(position, left, &mut taken);
            }
        }
        while left > 0 {
            let Some(position) = self
                .runs
                .iter()
                .enumerate()
                .max_by_key(|(_, run)| (run.blocks, core::cmp::Reverse(run.start)))
                .map(|(position, _)| position)
            else {
                break;
            };
            left -= self.take_from(position, left, &mut taken);
        }
        Some(merge_adjacent(taken))
    }

    /// Takes up to `wanted` blocks from the front of run `position`.
    fn take_from(&mut self, position: usize, wanted: u64, taken: &mut Vec<Extent>) -> u64 {
        let Some(run) = self.runs.get_mut(position) else {
            return 0;
        };
        let count = wanted.min(run.blocks);
        taken.push(Extent {
            start: run.start,
            blocks: count,
        });
        run.start = BlockIndex(run.start.0 + count);
        run.blocks -= count;
        if run.blocks == 0 {
            self.runs.remove(position);
        }
        count
    }

    /// Gives `extent` back, merging it with free neighbours. The caller
    /// guarantees it was allocated (it does not overlap a free run).
    pub fn release(&mut self, extent: Extent) {
        if extent.blocks == 0 {
            return;
        }
        let position = self.runs.partition_point(|run| run.start < extent.start);
        self.runs.insert(position, extent);
        // Merge with the next run, then with the previous one.
        if position + 1 < self.runs.len()
            && self.runs[position].end() == self.runs[position + 1].start.0
        {
            self.runs[position].blocks += self.runs[position + 1].blocks;
            self.runs.remove(position + 1);
        }
        if position > 0 && self.runs[position - 1].end() == self.runs[position].start.0 {
            self.runs[position - 1].blocks += self.runs[position].blocks;
            self.runs.remove(position);
        }
    }
}

/// Joins extents where one ends exactly where the next begins.
pub fn merge_adjacent(extents: Vec<Extent>) -> Vec<Extent> {
    let mut merged: Vec<Extent> = Vec::with_capacity(extents.len());
    for extent in extents {
        match merged.last_mut() {
            Some(last) if last.end() == extent.start.0 => last.blocks += extent.blocks,
            _ => merged.push(extent),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::SplitMix64;
    use alloc::vec;

    fn extent(start: u64, blocks: u64) -> Extent {
        Extent {
            start: BlockIndex(start),
            blocks,
        }
    }

    #[test]
    fn free_space_is_the_complement_of_the_used_extents() {
        let free = FreeSpace::from_used(100, vec![extent(50, 10), extent(0, 5), extent(5, 5)]);
        assert_eq!(free.runs(), &[extent(10, 40), extent(60, 40)]);
        assert_eq!(free.free_blocks(), 80);
        assert_eq!(FreeSpace::from_used(10, vec![extent(0, 10)]).runs(), &[]);
    }

    #[test]
    fn best_fit_prefers_the_smallest_run_that_holds_the_request() {
        let mut free = FreeSpace::from_used(100, vec![extent(10, 10), extent(25, 5)]);
        // Free: 0..10, 20..25, 30..100.
        assert_eq!(free.allocate(4, None), Some(vec![extent(20, 4)]));
        assert_eq!(free.allocate(8, None), Some(vec![extent(0, 8)]));
        assert_eq!(free.allocate(50, None), Some(vec![extent(30, 50)]));
    }

    #[test]
    fn growth_continues_in_place_when_it_can() {
        let mut free = FreeSpace::from_used(100, vec![extent(0, 10)]);
        assert_eq!(
            free.allocate(5, Some(BlockIndex(10))),
            Some(vec![extent(10, 5)])
        );
        assert_eq!(free.runs(), &[extent(15, 85)]);
    }

    #[test]
    fn without_a_big_enough_run_the_largest_runs_go_first() {
        let mut free = FreeSpace::from_used(30, vec![extent(3, 2), extent(15, 2)]);
        // Free: 0..3 (3), 5..15 (10), 17..30 (13).
        assert_eq!(
            free.allocate(24, None),
            Some(vec![extent(17, 13), extent(5, 10), extent(0, 1)])
        );
        assert_eq!(free.allocate(3, None), None, "only 2 left");
        assert_eq!(free.free_blocks(), 2);
    }

    #[test]
    fn release_coalesces_with_both_neighbours() {
        let mut free = FreeSpace::from_used(30, vec![extent(0, 30)]);
        free.release(extent(10, 5));
        free.release(extent(20, 5));
        assert_eq!(free.runs(), &[extent(10, 5), extent(20, 5)]);
        free.release(extent(15, 5));
        assert_eq!(free.runs(), &[extent(10, 15)]);
        free.release(extent(0, 10));
        free.release(extent(25, 5));
        assert_eq!(free.runs(), &[extent(0, 30)]);
    }

    #[test]
    fn random_allocations_and_releases_keep_the_books_straight() {
        let mut random = SplitMix64::new(3);
        let mut free = FreeSpace::from_used(1000, Vec::new());
        let mut owned: Vec<Vec<Extent>> = Vec::new();
        for _ in 0..2000 {
            if random.below(3) > 0 || owned.is_empty() {
                if let Some(extents) = free.allocate(1 + random.below(60), None) {
                    owned.push(extents);
                }
            } else {
                let index = random.below(owned.len() as u64) as usize;
                for extent in owned.swap_remove(index) {
                    free.release(extent);
                }
            }
            let used: u64 = owned.iter().flatten().map(|extent| extent.blocks).sum();
            assert_eq!(used + free.free_blocks(), 1000);
            let mut all: Vec<Extent> = owned.iter().flatten().copied().collect();
            all.extend_from_slice(free.runs());
            all.sort_unstable();
            assert!(all.windows(2).all(|pair| pair[0].end() <= pair[1].start.0));
            assert!(
                free.runs()
                    .windows(2)
                    .all(|pair| pair[0].end() < pair[1].start.0)
            );
        }
        for extent in owned.into_iter().flatten() {
            free.release(extent);
        }
        assert_eq!(free.runs(), &[extent(0, 1000)]);
    }
}
