//! The block device seam: sector-addressed, synchronous I/O that Dom0's
//! virtio-blk driver implements and tests fake ([`crate::fake::FakeDisk`]).

use core::fmt;

/// Bytes in one logical sector. Xenolith only supports 512-byte logical
/// sectors (4Kn disks are refused by [`crate::gpt`]).
pub const SECTOR_SIZE: usize = 512;

/// [`SECTOR_SIZE`] as a `u64`, for offset arithmetic.
pub const SECTOR_BYTES: u64 = SECTOR_SIZE as u64;

/// A logical block address: the index of a 512-byte sector on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sector(pub u64);

impl Sector {
    /// The sector `count` sectors after this one, or `None` on overflow.
    pub fn checked_add(self, count: u64) -> Option<Sector> {
        self.0.checked_add(count).map(Sector)
    }

    /// The byte offset of this sector, or `None` on overflow.
    pub fn byte_offset(self) -> Option<u64> {
        self.0.checked_mul(SECTOR_BYTES)
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "sector {}", self.0)
    }
}

/// Why a block device operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The buffer length is not a whole number of sectors.
    UnalignedLength {
        /// The buffer length that was passed.
        length: usize,
    },
    /// The request reaches past the device's last sector.
    OutOfRange {
        /// First sector of the request.
        sector: Sector,
        /// Sectors requested.
        count: u64,
        /// Sectors on the device.
        sector_count: u64,
    },
    /// The device reported a read error.
    ReadFailed(Sector),
    /// The device reported a write error.
    WriteFailed(Sector),
    /// The device reported that a flush (cache write-back) failed.
    FlushFailed,
}

impl fmt::Display for BlockError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::UnalignedLength { length } => {
                write!(formatter, "buffer of {length} bytes is not whole sectors")
            }
            BlockError::OutOfRange {
                sector,
                count,
                sector_count,
            } => write!(
                formatter,
                "{count} sectors at {sector} reach past the device's {sector_count} sectors"
            ),
            BlockError::ReadFailed(sector) => write!(formatter, "read error at {sector}"),
            BlockError::WriteFailed(sector) => write!(formatter, "write error at {sector}"),
            BlockError::FlushFailed => formatter.write_str("flush failed"),
        }
    }
}

/// A disk of 512-byte sectors, addressed by [`Sector`].
///
/// Calls are synchronous: they return when the device has completed the
/// request. A completed write may sit in a volatile cache until
/// [`BlockDevice::flush`] returns; the store's crash-safety argument relies
/// only on that ordering (see [`crate::store`]).
pub trait BlockDevice {
    /// Number of sectors on the device.
    fn sector_count(&self) -> u64;

    /// Reads `buffer.len() / 512` sectors starting at `sector`.
    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError>;

    /// Writes `data.len() / 512` sectors starting at `sector`.
    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), BlockError>;

    /// Writes `count` zero sectors from `sector`. The default writes a
    /// zeroed buffer in chunks; a driver with a write-zeroes command
    /// (virtio-blk `VIRTIO_BLK_T_WRITE_ZEROES`) should override it.
    fn write_zeroes(&mut self, sector: Sector, count: u64) -> Result<(), BlockError> {
        const CHUNK_SECTORS: u64 = 64;
        let zeroes = [0u8; SECTOR_SIZE * CHUNK_SECTORS as usize];
        check_range(sector, count, self.sector_count())?;
        let mut done = 0u64;
        while done < count {
            let chunk = (count - done).min(CHUNK_SECTORS);
            let length = chunk as usize * SECTOR_SIZE;
            self.write(Sector(sector.0 + done), &zeroes[..length])?;
            done += chunk;
        }
        Ok(())
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    fn sector_count(&self) -> u64 {
        (**self).sector_count()
    }

    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError> {
        (**self).read(sector, buffer)
    }

    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError> {
        (**self).write(sector, data)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }

    fn write_zeroes(&mut self, sector: Sector, count: u64) -> Result<(), BlockError> {
        (**self).write_zeroes(sector, count)
    }
}

/// Number of whole sectors in a buffer of `length` bytes.
pub fn sectors_in(length: usize) -> Result<u64, BlockError> {
    if !length.is_multiple_of(SECTOR_SIZE) {
        return Err(BlockError::UnalignedLength { length });
    }
    Ok((length / SECTOR_SIZE) as u64)
}

/// Checks that `count` sectors at `sector` lie on a device of `sector_count`.
pub fn check_range(sector: Sector, count: u64, sector_count: u64) -> Result<(), BlockError> {
    match sector.0.checked_add(count) {
        Some(end) if end <= sector_count => Ok(()),
        _ => Err(BlockError::OutOfRange {
            sector,
            count,
            sector_count,
        }),
    }
}

/// A contiguous range of a device (a GPT partition) seen as a device of its
/// own: sector 0 is the range's first sector, and nothing outside the range
/// can be reached. This is how the volume store sits in its partition and
/// how a guest is given a whole partition.
#[derive(Debug)]
pub struct PartitionDevice<D> {
    device: D,
    first: Sector,
    sector_count: u64,
}

impl<D: BlockDevice> PartitionDevice<D> {
    /// The `sector_count` sectors of `device` from `first`; fails if they do
    /// not lie on the device.
    pub fn new(device: D, first: Sector, sector_count: u64) -> Result<Self, BlockError> {
        check_range(first, sector_count, device.sector_count())?;
        Ok(PartitionDevice {
            device,
            first,
            sector_count,
        })
    }

    /// The first sector of the range on the underlying device.
    pub fn first_sector(&self) -> Sector {
        self.first
    }

    /// The underlying device.
    pub fn inner(&self) -> &D {
        &self.device
    }

    /// The underlying device, mutably (for tests that crash it).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Gives the underlying device back.
    pub fn into_inner(self) -> D {
        self.device
    }

    fn translate(&self, sector: Sector, length: usize) -> Result<Sector, BlockError> {
        let count = sectors_in(length)?;
        check_range(sector, count, self.sector_count)?;
        // Cannot overflow: first + sector_count was checked in new().
        Ok(Sector(self.first.0 + sector.0))
    }
}

impl<D: BlockDevice> BlockDevice for PartitionDevice<D> {
    fn sector_count(&self) -> u64 {
        self.sector_count
    }

    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError> {
        let physical = self.translate(sector, buffer.len())?;
        self.device.read(physical, buffer)
    }

    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError> {
        let physical = self.translate(sector, data.len())?;
        self.device.write(physical, data)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.device.flush()
    }

    fn write_zeroes(&mut self, sector: Sector, count: u64) -> Result<(), BlockError> {
        check_range(sector, count, self.sector_count)?;
        self.device
            .write_zeroes(Sector(self.first.0 + sector.0), count)
    }
}
