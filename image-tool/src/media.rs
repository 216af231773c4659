//! The media the tool works on: an appliance disk file as a `storage`
//! block device, a host file as a `disk-formats` storage, and a store
//! volume as a `disk-formats` storage that grows the volume as a qcow2
//! image inside it grows.

use std::fs::File;
use std::os::unix::fs::FileExt;

use disk_formats::{Storage, StorageError, StorageOffset};
use storage::store::{Store, VolumeId};
use storage::{BlockDevice, BlockError, SECTOR_SIZE, Sector};

/// An appliance disk image file, as 512-byte sectors (a partial last
/// sector is not part of the device).
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    sector_count: u64,
}

impl FileDisk {
    /// The sectors of `file` as it is now.
    pub fn new(file: File) -> std::io::Result<Self> {
        let sector_count = file.metadata()?.len() / SECTOR_SIZE as u64;
        Ok(Self { file, sector_count })
    }

    fn checked(&self, sector: Sector, length: usize) -> Result<u64, BlockError> {
        let count = storage::block::sectors_in(length)?;
        storage::block::check_range(sector, count, self.sector_count)?;
        Ok(sector.0 * SECTOR_SIZE as u64)
    }
}

impl BlockDevice for FileDisk {
    fn sector_count(&self) -> u64 {
        self.sector_count
    }

    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError> {
        let offset = self.checked(sector, buffer.len())?;
        self.file
            .read_exact_at(buffer, offset)
            .map_err(|_| BlockError::ReadFailed(sector))
    }

    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError> {
        let offset = self.checked(sector, data.len())?;
        self.file
            .write_all_at(data, offset)
            .map_err(|_| BlockError::WriteFailed(sector))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|_| BlockError::FlushFailed)
    }
}

/// A host file as image storage (an image being imported or exported).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    length: u64,
}

impl FileStorage {
    /// `file` as it is now.
    pub fn new(file: File) -> std::io::Result<Self> {
        let length = file.metadata()?.len();
        Ok(Self { file, length })
    }

    fn check(&self, offset: StorageOffset, length: usize) -> Result<(), StorageError> {
        let fits = offset
            .0
            .checked_add(length as u64)
            .is_some_and(|end| end <= self.length);
        if fits {
            Ok(())
        } else {
            Err(StorageError::OutOfBounds {
                offset: offset.0,
                length: length as u64,
            })
        }
    }
}

impl Storage for FileStorage {
    fn len(&self) -> u64 {
        self.length
    }

    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        self.check(offset, buffer.len())?;
        self.file
            .read_exact_at(buffer, offset.0)
            .map_err(|_| StorageError::Device(1))
    }

    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        self.check(offset, data.len())?;
        self.file
            .write_all_at(data, offset.0)
            .map_err(|_| StorageError::Device(2))
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|_| StorageError::Device(3))
    }

    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        if length > self.length {
            self.file
                .set_len(length)
                .map_err(|_| StorageError::NoSpace)?;
            self.length = length;
        }
        Ok(())
    }
}

/// How much a volume under a growing qcow2 image grows at least: store
/// metadata is rewritten on every resize, so grow in steps, not clusters.
pub const GROWTH_STEP: u64 = 8 << 20;

/// A store volume as image storage: its bytes are the volume's bytes, and
/// `set_len` resizes the volume (to at least [`GROWTH_STEP`] more, so a
/// qcow2 image's growth costs few metadata updates; the qcow2 code finds
/// free clusters by refcount, so zeros past its last cluster are fine).
#[derive(Debug)]
pub struct VolumeStorage<'a, D> {
    store: &'a mut Store<D>,
    id: VolumeId,
}

impl<'a, D: BlockDevice> VolumeStorage<'a, D> {
    /// Volume `id` of `store`.
    pub fn new(store: &'a mut Store<D>, id: VolumeId) -> Self {
        Self { store, id }
    }
}

fn store_error(error: storage::store::StoreError) -> StorageError {
    match error {
        storage::store::StoreError::NoSpace { .. } | storage::store::StoreError::TooFragmented => {
            StorageError::NoSpace
        }
        storage::store::StoreError::OutOfBounds { offset, length, .. } => {
            StorageError::OutOfBounds { offset, length }
        }
        _ => StorageError::Device(4),
    }
}

impl<D: BlockDevice> Storage for VolumeStorage<'_, D> {
    fn len(&self) -> u64 {
        self.store.volume(self.id).map_or(0, |volume| volume.size)
    }

    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        self.store
            .read_at(self.id, offset.0, buffer)
            .map_err(store_error)
    }

    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        self.store
            .write_at(self.id, offset.0, data)
            .map_err(store_error)
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.store.flush().map_err(store_error)
    }

    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        let current = self.len();
        if length <= current {
            return Ok(());
        }
        let stepped = length
            .max(current.saturating_add(GROWTH_STEP))
            .next_multiple_of(SECTOR_SIZE as u64);
        self.store.resize(self.id, stepped).map_err(store_error)
    }
}
