//! The byte-addressed medium an image lives on: a Dom0 volume, a host file
//! or the in-memory fake.

use core::fmt;

/// A byte offset in an image's storage (the qcow2 file, not the virtual disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageOffset(pub u64);

/// Why the medium under an image failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// A read or write reached past the storage's length.
    OutOfBounds {
        /// First byte of the access.
        offset: u64,
        /// Bytes accessed.
        length: u64,
    },
    /// The storage cannot grow to the length asked for.
    NoSpace,
    /// The storage refuses writes.
    ReadOnly,
    /// The device or file failed; the code is the implementation's.
    Device(u32),
}

impl fmt::Display for StorageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfBounds { offset, length } => {
                write!(
                    formatter,
                    "{length} bytes at {offset:#x} are past the storage's end"
                )
            }
            Self::NoSpace => formatter.write_str("no space to grow the storage"),
            Self::ReadOnly => formatter.write_str("the storage is read-only"),
            Self::Device(code) => write!(formatter, "storage device error {code}"),
        }
    }
}

/// Byte-addressed storage. Reads and writes must lie inside [`Storage::len`];
/// only [`Storage::set_len`] grows it. Writes may reach the medium in any
/// order until [`Storage::flush`] returns: formats that need an order flush
/// between the writes.
pub trait Storage {
    /// The storage's length in bytes.
    fn len(&self) -> u64;

    /// Whether the storage holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buffer` from `offset`.
    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError>;

    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), StorageError>;

    /// Grows the storage to `length` bytes; the new bytes read as zeros.
    /// Implementations may refuse to shrink.
    fn set_len(&mut self, length: u64) -> Result<(), StorageError>;
}

impl<T: Storage + ?Sized> Storage for &mut T {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        (**self).read_at(offset, buffer)
    }
    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        (**self).write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        (**self).flush()
    }
    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        (**self).set_len(length)
    }
}
