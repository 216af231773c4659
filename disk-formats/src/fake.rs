//! An in-memory [`Storage`] for tests and fuzzing: a byte vector with a
//! size limit, an optional log of every operation (to check write ordering
//! and replay crashes) and injected failures.

use alloc::vec::Vec;

use crate::{Storage, StorageError, StorageOffset};

/// One operation on a [`MemoryStorage`], as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A write of these bytes at this offset.
    Write {
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// A flush: writes before it are durable before writes after it.
    Flush,
    /// The storage grew (or shrank) to this length.
    SetLength(u64),
}

/// Storage in a `Vec<u8>`.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    bytes: Vec<u8>,
    max_length: u64,
    log: Option<Vec<Operation>>,
    writes_left: Option<u64>,
}

impl MemoryStorage {
    /// Empty storage that may grow to `max_length` bytes.
    pub fn new(max_length: u64) -> Self {
        Self {
            bytes: Vec::new(),
            max_length,
            log: None,
            writes_left: None,
        }
    }

    /// Storage holding `bytes`, which may grow to `max_length` bytes.
    pub fn from_bytes(bytes: Vec<u8>, max_length: u64) -> Self {
        Self {
            bytes,
            max_length,
            log: None,
            writes_left: None,
        }
    }

    /// The bytes stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Starts (or restarts) logging operations.
    pub fn start_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The operations logged since [`MemoryStorage::start_log`].
    pub fn log(&self) -> &[Operation] {
        self.log.as_deref().unwrap_or(&[])
    }

    /// Makes every write after the next `count` fail with a device error.
    pub fn fail_writes_after(&mut self, count: u64) {
        self.writes_left = Some(count);
    }

    fn range(
        &self,
        offset: StorageOffset,
        length: usize,
    ) -> Result<core::ops::Range<usize>, StorageError> {
        let out_of_bounds = StorageError::OutOfBounds {
            offset: offset.0,
            length: length as u64,
        };
        let start = usize::try_from(offset.0).map_err(|_| out_of_bounds)?;
        let end = start.checked_add(length).ok_or(out_of_bounds)?;
        if end > self.bytes.len() {
            return Err(out_of_bounds);
        }
        Ok(start..end)
    }
}

/// Applies logged operations to `bytes`, as a crash-recovery test would see
/// the medium after they (and only they) reached it.
pub fn replay(bytes: &mut Vec<u8>, operations: &[Operation]) {
    for operation in operations {
        match operation {
            Operation::Write { offset, data } => {
                let start = *offset as usize;
                let end = start + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
            }
            Operation::Flush => {}
            Operation::SetLength(length) => bytes.resize(*length as usize, 0),
        }
    }
}

impl Storage for MemoryStorage {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        let range = self.range(offset, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        if let Some(left) = self.writes_left.as_mut() {
            if *left == 0 {
                return Err(StorageError::Device(5));
            }
            *left -= 1;
        }
        let range = self.range(offset, data.len())?;
        self.bytes[range].copy_from_slice(data);
        if let Some(log) = self.log.as_mut() {
            log.push(Operation::Write {
                offset: offset.0,
                data: data.to_vec(),
            });
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if let Some(log) = self.log.as_mut() {
            log.push(Operation::Flush);
        }
        Ok(())
    }

    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        if length > self.max_length {
            return Err(StorageError::NoSpace);
        }
        let length_in_memory = usize::try_from(length).map_err(|_| StorageError::NoSpace)?;
        self.bytes.resize(length_in_memory, 0);
        if let Some(log) = self.log.as_mut() {
            log.push(Operation::SetLength(length));
        }
        Ok(())
    }
}
