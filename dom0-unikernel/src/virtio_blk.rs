//! The virtio-blk request protocol, apart from the queue: the 16-byte
//! request header, the status byte, checking a request against the disk,
//! and the table of requests in flight keyed by the queue's token.

use alloc::vec::Vec;

/// Bytes per sector, whatever the device's block size.
pub const SECTOR_SIZE: usize = 512;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    /// Makes every completed write durable.
    Flush,
}

impl Operation {
    fn code(self) -> u32 {
        match self {
            Self::Read => 0,
            Self::Write => 1,
            Self::Flush => 4,
        }
    }
}

/// Why a request failed or was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// Every queue slot holds a request: try again after completions.
    QueueFull,
    /// The buffer is empty or not a whole number of sectors.
    BadLength(usize),
    /// The request reaches past the end of the disk.
    OutOfRange { sector: u64, sectors: u64 },
    /// A write to a read-only disk.
    ReadOnly,
    /// The device answered VIRTIO_BLK_S_IOERR.
    DeviceIo,
    /// The device answered VIRTIO_BLK_S_UNSUPP.
    Unsupported,
    /// The device answered a status that virtio does not define.
    BadStatus(u8),
    /// The queue refused the buffers (the virtio-drivers error, by name).
    Queue(&'static str),
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::QueueFull => write!(f, "queue full"),
            Self::BadLength(length) => write!(f, "{length} bytes is not whole sectors"),
            Self::OutOfRange { sector, sectors } => {
                write!(f, "sectors {sector}+{sectors} past the end of the disk")
            }
            Self::ReadOnly => write!(f, "the disk is read-only"),
            Self::DeviceIo => write!(f, "device I/O error"),
            Self::Unsupported => write!(f, "request not supported by the device"),
            Self::BadStatus(status) => write!(f, "device status {status}"),
            Self::Queue(what) => write!(f, "virtqueue: {what}"),
        }
    }
}

/// The request header the device reads first (`struct virtio_blk_req`).
pub fn header(operation: Operation, sector: u64) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&operation.code().to_le_bytes());
    header[8..].copy_from_slice(&sector.to_le_bytes());
    header
}

/// What the status byte the device wrote last means.
pub fn status(byte: u8) -> Result<(), BlockError> {
    match byte {
        0 => Ok(()),
        1 => Err(BlockError::DeviceIo),
        2 => Err(BlockError::Unsupported),
        other => Err(BlockError::BadStatus(other)),
    }
}

/// Checks a request against a disk of `capacity` sectors.
pub fn check(
    operation: Operation,
    sector: u64,
    length: usize,
    capacity: u64,
    read_only: bool,
) -> Result<(), BlockError> {
    if operation == Operation::Flush {
        return if length == 0 {
            Ok(())
        } else {
            Err(BlockError::BadLength(length))
        };
    }
    if length == 0 || !length.is_multiple_of(SECTOR_SIZE) {
        return Err(BlockError::BadLength(length));
    }
    if operation == Operation::Write && read_only {
        return Err(BlockError::ReadOnly);
    }
    let sectors = (length / SECTOR_SIZE) as u64;
    match sector.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(BlockError::OutOfRange { sector, sectors }),
    }
}

/// Requests in flight, found again by the token the queue gave each.
#[derive(Debug)]
pub struct InFlight<T> {
    slots: Vec<Option<T>>,
    count: usize,
    most: usize,
}

impl<T> InFlight<T> {
    /// A table for a queue of `size` descriptors.
    pub fn new(size: usize) -> Self {
        let mut slots = Vec::with_capacity(size);
        slots.resize_with(size, || None);
        Self {
            slots,
            count: 0,
            most: 0,
        }
    }

    /// Files `value` under `token`; gives it back if the token is out of
    /// range or already in use (a queue bug: never overwrite).
    pub fn insert(&mut self, token: u16, value: T) -> Result<(), T> {
        match self.slots.get_mut(usize::from(token)) {
            Some(slot @ None) => {
                *slot = Some(value);
                self.count += 1;
                self.most = self.most.max(self.count);
                Ok(())
            }
            _ => Err(value),
        }
    }

    /// The request filed under `token`, without taking it.
    pub fn get(&self, token: u16) -> Option<&T> {
        self.slots.get(usize::from(token))?.as_ref()
    }

    /// Takes the request filed under `token`.
    pub fn take(&mut self, token: u16) -> Option<T> {
        let value = self.slots.get_mut(usize::from(token))?.take()?;
        self.count -= 1;
        Some(value)
    }

    /// Requests in flight now.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The most requests that were ever in flight at once.
    pub fn most(&self) -> usize {
        self.most
    }
}

/// The byte pattern the device check writes into `sector` (and expects
/// back): the sector number and a running counter, so misplaced or stale
/// sectors are told apart.
pub fn test_pattern(sector: u64, buffer: &mut [u8]) {
    for (index, chunk) in buffer.chunks_mut(8).enumerate() {
        let word = sector.rotate_left(17) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for (byte, value) in chunk.iter_mut().zip(word.to_le_bytes()) {
            *byte = value;
        }
    }
}

/// The marker a disk's first sector starts with when the device check may
/// overwrite it (never a disk with data on it).
pub const SCRATCH_MARKER: &[u8] = b"XENOLITH-SCRATCH-DISK";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_little_endian_virtio_blk_req() {
        let bytes = header(Operation::Write, 0x0102_0304_0506_0708);
        assert_eq!(bytes[..4], [1, 0, 0, 0]);
        assert_eq!(bytes[4..8], [0; 4]);
        assert_eq!(bytes[8..], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(header(Operation::Flush, 0)[0], 4);
        assert_eq!(header(Operation::Read, 9)[..4], [0; 4]);
    }

    #[test]
    fn status_bytes() {
        assert_eq!(status(0), Ok(()));
        assert_eq!(status(1), Err(BlockError::DeviceIo));
        assert_eq!(status(2), Err(BlockError::Unsupported));
        assert_eq!(status(0xff), Err(BlockError::BadStatus(0xff)));
    }

    #[test]
    fn requests_are_checked_against_the_disk() {
        assert_eq!(check(Operation::Read, 0, 512, 1, false), Ok(()));
        assert_eq!(
            check(Operation::Read, 1, 512, 1, false),
            Err(BlockError::OutOfRange {
                sector: 1,
                sectors: 1
            })
        );
        assert_eq!(
            check(Operation::Read, u64::MAX, 512, u64::MAX, false),
            Err(BlockError::OutOfRange {
                sector: u64::MAX,
                sectors: 1
            })
        );
        assert_eq!(
            check(Operation::Write, 0, 100, 8, false),
            Err(BlockError::BadLength(100))
        );
        assert_eq!(
            check(Operation::Read, 0, 0, 8, false),
            Err(BlockError::BadLength(0))
        );
        assert_eq!(
            check(Operation::Write, 0, 512, 8, true),
            Err(BlockError::ReadOnly)
        );
        assert_eq!(check(Operation::Read, 0, 512, 8, true), Ok(()));
        assert_eq!(check(Operation::Flush, 0, 0, 8, true), Ok(()));
        assert_eq!(
            check(Operation::Flush, 0, 512, 8, false),
            Err(BlockError::BadLength(512))
        );
    }

    #[test]
    fn in_flight_table_counts_and_refuses_reuse() {
        let mut table = InFlight::new(4);
        assert!(table.insert(1, "a").is_ok());
        assert!(table.insert(2, "b").is_ok());
        assert_eq!(table.insert(1, "c"), Err("c"));
        assert_eq!(table.insert(4, "d"), Err("d"));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(2), Some(&"b"));
        assert_eq!(table.take(1), Some("a"));
        assert_eq!(table.take(1), None);
        assert_eq!(table.take(9), None);
        assert!(table.insert(1, "e").is_ok());
        assert_eq!(table.len(), 2);
        assert_eq!(table.most(), 2);
        assert_eq!(table.take(1), Some("e"));
        assert_eq!(table.take(2), Some("b"));
        assert!(table.is_empty());
    }

    #[test]
    fn test_patterns_differ_per_sector() {
        let mut a = [0u8; SECTOR_SIZE];
        let mut b = [0u8; SECTOR_SIZE];
        test_pattern(1, &mut a);
        test_pattern(2, &mut b);
        assert_ne!(a, b);
        let mut again = [0u8; SECTOR_SIZE];
        test_pattern(1, &mut again);
        assert_eq!(a, again);
    }
}
