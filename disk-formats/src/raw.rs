//! Raw images: the virtual disk is the storage, byte for byte.

use crate::{DiskImage, DiskOffset, ImageError, Storage, StorageOffset, check_range};

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
}
