//! Raw images: the virtual disk is the storage, byte for byte.

use alloc::vec;
use alloc::vec::Vec;

use crate::{DiskImage, DiskOffset, ImageError, Placement, Storage, StorageOffset, check_range};

/// A raw image. Its virtual size is the storage's length.
pub struct Raw<S: Storage> {
    storage: S,
    read_only: bool,
}

impl<S: Storage> Raw<S> {
    /// Serves `storage` as a raw image.
    pub fn new(storage: S, read_only: bool) -> Self {
        Self { storage, read_only }
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }
}

impl<S: Storage> DiskImage for Raw<S> {
    fn virtual_size(&self) -> u64 {
        self.storage.len()
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, offset: DiskOffset, buffer: &mut [u8]) -> Result<(), ImageError> {
        check_range(self.virtual_size(), offset, buffer.len() as u64)?;
        Ok(self.storage.read_at(StorageOffset(offset.0), buffer)?)
    }

    fn write(&mut self, offset: DiskOffset, data: &[u8]) -> Result<(), ImageError> {
        check_range(self.virtual_size(), offset, data.len() as u64)?;
        if self.read_only {
            return Err(ImageError::ReadOnly);
        }
        Ok(self.storage.write_at(StorageOffset(offset.0), data)?)
    }

    fn flush(&mut self) -> Result<(), ImageError> {
        Ok(self.storage.flush()?)
    }

    fn place(
        &mut self,
        offset: DiskOffset,
        length: u64,
        write: bool,
    ) -> Result<Option<Vec<Placement>>, ImageError> {
        check_range(self.virtual_size(), offset, length)?;
        if write && self.read_only {
            // `write` gives the error.
            return Ok(None);
        }
        Ok(Some(vec![Placement::Stored {
            offset: StorageOffset(offset.0),
            length,
        }]))
    }
}
