//! An in-memory [`BlockDevice`] for tests and fuzzing: it remembers which
//! sector writes are not yet flushed, so a test can "pull the plug" and get
//! the disk as it might be after any combination of lost, written and torn
//! unflushed writes; and it injects I/O errors and power cuts on request.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::block::{BlockDevice, BlockError, SECTOR_SIZE, Sector, check_range, sectors_in};

/// What became of one unflushed sector write when the power was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectorFate {
    /// Never reached the medium: the sector keeps what it had before.
    Lost,
    /// Reached the medium whole.
    Written,
    /// Torn: the first `bytes` bytes are new, the rest old.
    Torn {
        /// How many leading bytes of the sector were written (0..512).
        bytes: usize,
    },
}

/// Errors the fake reports on purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Reads touching a sector in `[start, end)` fail.
    pub failing_reads: Option<(u64, u64)>,
    /// Writes touching a sector in `[start, end)` fail (nothing is written).
    pub failing_writes: Option<(u64, u64)>,
    /// Every flush fails (writes stay unflushed).
    pub failing_flush: bool,
    /// After this many more sector writes the power is cut: the write that
    /// would exceed it is refused, and so is every later operation, as if
    /// the machine had died there. [`FakeDisk::crash`] then gives the disk
    /// as it might come back.
    pub power_cut_after_sector_writes: Option<u64>,
    /// After this many more successful flushes the power is cut at the
    /// next one: it fails without making anything durable, and so does
    /// every later operation. This reaches the crash points between a
    /// write and its flush that [`Faults::power_cut_after_sector_writes`]
    /// cannot.
    pub power_cut_after_flushes: Option<u64>,
}

/// Counters of what the fake has been asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Read calls.
    pub reads: u64,
    /// Sectors written (not calls).
    pub sectors_written: u64,
    /// Flush calls that succeeded.
    pub flushes: u64,
}

#[derive(Clone, Debug)]
struct PendingWrite {
    sector: u64,
    data: SectorData,
}

type SectorData = Box<[u8; SECTOR_SIZE]>;

/// A sparse sector map: absent sectors read as zeros, so a "disk" of
/// gigabytes costs only what has been written, and cloning it (to crash
/// it many ways) stays cheap.
#[derive(Clone, Debug, Default)]
struct Sectors {
    map: BTreeMap<u64, SectorData>,
}

impl Sectors {
    fn get(&self, sector: u64) -> [u8; SECTOR_SIZE] {
        self.map
            .get(&sector)
            .map_or([0; SECTOR_SIZE], |data| **data)
    }

    fn set(&mut self, sector: u64, data: &[u8; SECTOR_SIZE]) {
        if data.iter().all(|&byte| byte == 0) {
            self.map.remove(&sector);
        } else {
            self.map.insert(sector, Box::new(*data));
        }
    }
}

/// An in-memory disk with a volatile write cache.
#[derive(Clone, Debug)]
pub struct FakeDisk {
    sector_count: u64,
    durable: Sectors,
    current: Sectors,
    pending: Vec<PendingWrite>,
    faults: Faults,
    powered_off: bool,
    stats: FakeStats,
}

impl FakeDisk {
    /// A zero-filled disk of `sector_count` sectors (sparse: only written
    /// sectors take memory).
    pub fn new(sector_count: u64) -> Self {
        FakeDisk {
            sector_count,
            durable: Sectors::default(),
            current: Sectors::default(),
            pending: Vec::new(),
            faults: Faults::default(),
            powered_off: false,
            stats: FakeStats::default(),
        }
    }

    /// A disk holding `image` (its whole sectors), all of it durable.
    pub fn from_image(image: &[u8]) -> Self {
        let mut disk = FakeDisk::new((image.len() / SECTOR_SIZE) as u64);
        for (index, chunk) in image.chunks_exact(SECTOR_SIZE).enumerate() {
            let mut data = [0u8; SECTOR_SIZE];
            data.copy_from_slice(chunk);
            disk.current.set(index as u64, &data);
        }
        disk.durable = disk.current.clone();
        disk
    }

    /// What a reader sees now (durable contents plus unflushed writes) of
    /// `length` bytes at byte `offset`; past the end reads as zero.
    pub fn bytes(&self, offset: u64, length: usize) -> Vec<u8> {
        let mut out = vec![0u8; length];
        for (index, byte) in out.iter_mut().enumerate() {
            let at = offset + index as u64;
            let sector = at / SECTOR_SIZE as u64;
            if sector < self.sector_count {
                let data = self.current.map.get(&sector);
                *byte = data.map_or(0, |data| data[(at % SECTOR_SIZE as u64) as usize]);
            }
        }
        out
    }

    /// The whole disk as one buffer (for small disks).
    pub fn to_image(&self) -> Vec<u8> {
        self.bytes(0, self.sector_count as usize * SECTOR_SIZE)
    }

    /// Changes `length` bytes at byte `offset`, for tests that corrupt a
    /// disk (bytes past the end read as zero and are dropped). Unflushed
    /// writes are flushed first; the change is durable.
    pub fn edit(&mut self, offset: u64, length: usize, edit: impl FnOnce(&mut [u8])) {
        self.settle();
        let first = offset / SECTOR_SIZE as u64;
        let end = (offset + length as u64).div_ceil(SECTOR_SIZE as u64);
        let base = (first * SECTOR_SIZE as u64) as usize;
        let mut buffer = self.bytes(base as u64, (end - first) as usize * SECTOR_SIZE);
        let start = offset as usize - base;
        edit(&mut buffer[start..start + length]);
        for (index, chunk) in buffer.chunks_exact(SECTOR_SIZE).enumerate() {
            let mut data = [0u8; SECTOR_SIZE];
            data.copy_from_slice(chunk);
            // Bytes past the end of the disk are dropped.
            if first + (index as u64) < self.sector_count {
                self.current.set(first + index as u64, &data);
            }
        }
        self.durable = self.current.clone();
    }

    fn settle(&mut self) {
        for write in self.pending.drain(..) {
            self.durable.set(write.sector, &write.data);
        }
    }

    /// Sector writes made since the last successful flush.
    pub fn unflushed_sector_writes(&self) -> usize {
        self.pending.len()
    }

    /// The counters.
    pub fn stats(&self) -> FakeStats {
        self.stats
    }

    /// Replaces the injected faults.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Whether a power cut from [`Faults::power_cut_after_sector_writes`]
    /// has happened.
    pub fn is_powered_off(&self) -> bool {
        self.powered_off
    }

    /// The disk after a power loss now: unflushed sector write number `i`
    /// (in issue order) meets `fate(i, sector)`. Later writes to the same
    /// sector are applied after earlier ones. The new disk has no faults
    /// and nothing unflushed.
    pub fn crash(&self, mut fate: impl FnMut(usize, Sector) -> SectorFate) -> FakeDisk {
        let mut sectors = self.durable.clone();
        for (index, write) in self.pending.iter().enumerate() {
            let mut target = sectors.get(write.sector);
            match fate(index, Sector(write.sector)) {
                SectorFate::Lost => {}
                SectorFate::Written => target = *write.data,
                SectorFate::Torn { bytes } => {
                    let bytes = bytes.min(SECTOR_SIZE);
                    target[..bytes].copy_from_slice(&write.data[..bytes]);
                }
            }
            sectors.set(write.sector, &target);
        }
        let mut disk = FakeDisk::new(self.sector_count);
        disk.current = sectors.clone();
        disk.durable = sectors;
        disk
    }

    /// The disk after a power loss in which every unflushed write was lost.
    pub fn crash_losing_everything(&self) -> FakeDisk {
        self.crash(|_, _| SectorFate::Lost)
    }

    /// The disk after a power loss in which each unflushed write was lost,
    /// written or torn at random (a seeded, reproducible choice).
    pub fn crash_randomly(&self, seed: u64) -> FakeDisk {
        let mut random = SplitMix64::new(seed);
        self.crash(|_, _| match random.next_u64() % 4 {
            0 => SectorFate::Lost,
            1 => SectorFate::Torn {
                bytes: (random.next_u64() % SECTOR_SIZE as u64) as usize,
            },
            _ => SectorFate::Written,
        })
    }

    fn overlaps(range: Option<(u64, u64)>, sector: u64, count: u64) -> bool {
        match range {
            Some((start, end)) => sector < end && start < sector.saturating_add(count),
            None => false,
        }
    }
}

impl BlockDevice for FakeDisk {
    fn sector_count(&self) -> u64 {
        self.sector_count
    }

    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError> {
        let count = sectors_in(buffer.len())?;
        check_range(sector, count, self.sector_count())?;
        if self.powered_off || Self::overlaps(self.faults.failing_reads, sector.0, count) {
            return Err(BlockError::ReadFailed(sector));
        }
        self.stats.reads += 1;
        for (index, chunk) in buffer.chunks_exact_mut(SECTOR_SIZE).enumerate() {
            chunk.copy_from_slice(&self.current.get(sector.0 + index as u64));
        }
        Ok(())
    }

    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError> {
        let count = sectors_in(data.len())?;
        check_range(sector, count, self.sector_count())?;
        if self.powered_off || Self::overlaps(self.faults.failing_writes, sector.0, count) {
            return Err(BlockError::WriteFailed(sector));
        }
        for (index, chunk) in data.chunks_exact(SECTOR_SIZE).enumerate() {
            if let Some(left) = self.faults.power_cut_after_sector_writes.as_mut() {
                if *left == 0 {
                    self.powered_off = true;
                    return Err(BlockError::WriteFailed(Sector(sector.0 + index as u64)));
                }
                *left -= 1;
            }
            let at = sector.0 + index as u64;
            let mut data = Box::new([0u8; SECTOR_SIZE]);
            data.copy_from_slice(chunk);
            self.current.set(at, &data);
            self.pending.push(PendingWrite { sector: at, data });
            self.stats.sectors_written += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.powered_off || self.faults.failing_flush {
            return Err(BlockError::FlushFailed);
        }
        if let Some(left) = self.faults.power_cut_after_flushes.as_mut() {
            if *left == 0 {
                self.powered_off = true;
                return Err(BlockError::FlushFailed);
            }
            *left -= 1;
        }
        self.settle();
        self.stats.flushes += 1;
        Ok(())
    }
}

/// A small seeded pseudo-random generator (SplitMix64), so crash tests and
/// fuzz harnesses are reproducible without a dependency.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector_of(byte: u8) -> Vec<u8> {
        vec![byte; SECTOR_SIZE]
    }

    #[test]
    fn reads_see_unflushed_writes_but_a_crash_may_lose_them() {
        let mut disk = FakeDisk::new(4);
        disk.write(Sector(1), &sector_of(7)).unwrap();
        let mut buffer = sector_of(0);
        disk.read(Sector(1), &mut buffer).unwrap();
        assert_eq!(buffer, sector_of(7));
        assert_eq!(disk.unflushed_sector_writes(), 1);
        let lost = disk.crash_losing_everything();
        assert_eq!(lost.bytes(512, 512), sector_of(0));
        let kept = disk.crash(|_, _| SectorFate::Written);
        assert_eq!(kept.bytes(512, 512), sector_of(7));
    }

    #[test]
    fn flushed_writes_survive_any_crash() {
        let mut disk = FakeDisk::new(4);
        disk.write(Sector(2), &sector_of(9)).unwrap();
        disk.flush().unwrap();
        disk.write(Sector(3), &sector_of(5)).unwrap();
        let after = disk.crash_losing_everything();
        assert_eq!(after.bytes(1024, 512), sector_of(9));
        assert_eq!(after.bytes(1536, 512), sector_of(0));
    }

    #[test]
    fn a_torn_sector_is_new_then_old() {
        let mut disk = FakeDisk::new(1);
        disk.write(Sector(0), &sector_of(1)).unwrap();
        let torn = disk.crash(|_, _| SectorFate::Torn { bytes: 100 });
        assert!(torn.bytes(0, 100).iter().all(|&byte| byte == 1));
        assert!(torn.bytes(100, 412).iter().all(|&byte| byte == 0));
    }

    #[test]
    fn multi_sector_writes_are_tracked_per_sector() {
        let mut disk = FakeDisk::new(4);
        let mut data = sector_of(1);
        data.extend_from_slice(&sector_of(2));
        disk.write(Sector(0), &data).unwrap();
        assert_eq!(disk.unflushed_sector_writes(), 2);
        let half = disk.crash(|index, _| {
            if index == 1 {
                SectorFate::Written
            } else {
                SectorFate::Lost
            }
        });
        assert_eq!(half.bytes(0, 512), sector_of(0));
        assert_eq!(half.bytes(512, 512), sector_of(2));
    }

    #[test]
    fn injected_faults_fail_and_power_cut_stops_everything() {
        let mut disk = FakeDisk::new(8);
        disk.set_faults(Faults {
            failing_reads: Some((2, 3)),
            failing_writes: Some((5, 6)),
            ..Faults::default()
        });
        let mut buffer = sector_of(0);
        assert_eq!(
            disk.read(Sector(2), &mut buffer),
            Err(BlockError::ReadFailed(Sector(2)))
        );
        assert!(disk.read(Sector(3), &mut buffer).is_ok());
        assert_eq!(
            disk.write(Sector(5), &buffer),
            Err(BlockError::WriteFailed(Sector(5)))
        );
        disk.set_faults(Faults {
            power_cut_after_sector_writes: Some(1),
            ..Faults::default()
        });
        assert!(disk.write(Sector(0), &buffer).is_ok());
        assert!(disk.write(Sector(1), &buffer).is_err());
        assert!(disk.is_powered_off());
        assert_eq!(disk.flush(), Err(BlockError::FlushFailed));
        assert!(disk.read(Sector(0), &mut buffer).is_err());
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut disk = FakeDisk::new(2);
        let mut odd = [0u8; 100];
        assert_eq!(
            disk.read(Sector(0), &mut odd),
            Err(BlockError::UnalignedLength { length: 100 })
        );
        let mut two = [0u8; 1024];
        assert!(matches!(
            disk.read(Sector(1), &mut two),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            disk.write(Sector(u64::MAX), &two),
            Err(BlockError::OutOfRange { .. })
        ));
    }

    #[test]
    fn write_zeroes_default_covers_the_range() {
        let mut disk = FakeDisk::from_image(&vec![0xAA; 200 * SECTOR_SIZE]);
        disk.write_zeroes(Sector(3), 150).unwrap();
        assert!(disk.bytes(0, 3 * 512).iter().all(|&byte| byte == 0xAA));
        assert!(disk.bytes(3 * 512, 150 * 512).iter().all(|&byte| byte == 0));
        assert!(
            disk.bytes(153 * 512, 47 * 512)
                .iter()
                .all(|&byte| byte == 0xAA)
        );
        assert!(disk.write_zeroes(Sector(199), 2).is_err());
    }
}
