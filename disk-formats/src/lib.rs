//! Guest disk image formats served by blkback and the host tool: raw, qcow2
//! and (read-only) monolithicSparse VMDK.
//!
//! Formats sit on a byte-addressed [`Storage`] (a Dom0 volume, a host file,
//! or the in-memory fake) and present a [`DiskImage`]: the virtual disk a
//! guest sees. Nothing here does I/O except through those traits, so the
//! same code runs in Dom0 (`no_std`), in the host tool and under the fuzzer.
//!
//! Image bytes are untrusted: a hostile image yields an [`ImageError`], never
//! a panic, an out-of-bounds access or an allocation it chose the size of
//! beyond fixed limits.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod backing;
mod error;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
pub mod qcow2;
mod raw;
mod storage;
pub mod vmdk;

pub use backing::{
    BackingFormat, BackingReference, BackingResolver, MAX_BACKING_DEPTH, NamedBacking, NoBacking,
};
pub use error::{ImageError, MetadataKind, Qcow2Error};
pub use qcow2::{CreateOptions, OpenOptions, Qcow2};
pub use raw::Raw;
pub use storage::{Storage, StorageError, StorageOffset};
pub use vmdk::{Vmdk, VmdkError};

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Bytes in a sector, the unit blkif requests address.
pub const SECTOR_SIZE: u64 = 512;

/// A byte offset in the virtual disk a guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskOffset(pub u64);

/// A 512-byte sector number in the virtual disk a guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sector(pub u64);

impl Sector {
    /// The sector's first byte, or `None` when that does not fit in 64 bits.
    pub fn byte_offset(self) -> Option<DiskOffset> {
        self.0.checked_mul(SECTOR_SIZE).map(DiskOffset)
    }
}

/// A virtual disk as blkback serves it: byte-addressed reads and writes
/// inside `virtual_size`, flush, and optionally discard.
pub trait DiskImage {
    /// The size of the virtual disk in bytes.
    fn virtual_size(&self) -> u64;

    /// Whether writes and discards are refused.
    fn is_read_only(&self) -> bool;

    /// Fills `buffer` from the virtual disk at `offset`.
    fn read(&mut self, offset: DiskOffset, buffer: &mut [u8]) -> Result<(), ImageError>;

    /// Writes `data` to the virtual disk at `offset`.
    fn write(&mut self, offset: DiskOffset, data: &[u8]) -> Result<(), ImageError>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), ImageError>;

    /// Where `length` bytes at `offset` live in the storage, when a read
    /// (or, with `write`, a write) of them changes no metadata: the pieces
    /// in order, so the caller may move the data itself, many requests at
    /// once. `None` when the request must go through [`DiskImage::read`]
    /// or [`DiskImage::write`] (allocation, compression, a backing image,
    /// a read-only image, anything out of the ordinary). A placement stays
    /// right until a discard or a write through this trait reallocates the
    /// clusters named (which no write to a placed range does).
    fn place(
        &mut self,
        offset: DiskOffset,
        length: u64,
        write: bool,
    ) -> Result<Option<Vec<Placement>>, ImageError> {
        let _ = (offset, length, write);
        Ok(None)
    }

    /// The unit in which [`DiskImage::discard`] releases space (whole,
    /// aligned units only), or `None` when it never does.
    fn discard_granularity(&self) -> Option<u64> {
        None
    }

    /// Says the guest no longer needs `length` bytes at `offset`; what they
    /// read afterwards is unspecified (zeros or the old data). The default
    /// does nothing, which is always correct.
    fn discard(&mut self, offset: DiskOffset, length: u64) -> Result<(), ImageError> {
        check_range(self.virtual_size(), offset, length)?;
        if self.is_read_only() {
            return Err(ImageError::ReadOnly);
        }
        Ok(())
    }

    /// Reads whole sectors starting at `first`; `buffer` must be a multiple
    /// of [`SECTOR_SIZE`] long.
    fn read_sectors(&mut self, first: Sector, buffer: &mut [u8]) -> Result<(), ImageError> {
        let offset = sector_request(first, buffer.len())?;
        self.read(offset, buffer)
    }

    /// Writes whole sectors starting at `first`; `data` must be a multiple of
    /// [`SECTOR_SIZE`] long.
    fn write_sectors(&mut self, first: Sector, data: &[u8]) -> Result<(), ImageError> {
        let offset = sector_request(first, data.len())?;
        self.write(offset, data)
    }
}

impl<T: DiskImage + ?Sized> DiskImage for Box<T> {
    fn virtual_size(&self) -> u64 {
        (**self).virtual_size()
    }
    fn is_read_only(&self) -> bool {
        (**self).is_read_only()
    }
    fn read(&mut self, offset: DiskOffset, buffer: &mut [u8]) -> Result<(), ImageError> {
        (**self).read(offset, buffer)
    }
    fn write(&mut self, offset: DiskOffset, data: &[u8]) -> Result<(), ImageError> {
        (**self).write(offset, data)
    }
    fn flush(&mut self) -> Result<(), ImageError> {
        (**self).flush()
    }
    fn discard_granularity(&self) -> Option<u64> {
        (**self).discard_granularity()
    }
    fn discard(&mut self, offset: DiskOffset, length: u64) -> Result<(), ImageError> {
        (**self).discard(offset, length)
    }
    fn place(
        &mut self,
        offset: DiskOffset,
        length: u64,
        write: bool,
    ) -> Result<Option<Vec<Placement>>, ImageError> {
        (**self).place(offset, length, write)
    }
}

/// A piece of a placed request (see [`DiskImage::place`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `length` bytes at `offset` of the storage.
    Stored {
        /// Where in the storage.
        offset: StorageOffset,
        /// How many bytes.
        length: u64,
    },
    /// `length` bytes that read as zeros (never given for a write).
    Zeros {
        /// How many bytes.
        length: u64,
    },
}

/// Appends a piece, merging it with the last when they are contiguous.
pub(crate) fn push_placement(pieces: &mut Vec<Placement>, piece: Placement) {
    match (pieces.last_mut(), piece) {
        (
            Some(Placement::Stored { offset, length }),
            Placement::Stored {
                offset: next,
                length: more,
            },
        ) if offset.0 + *length == next.0 => *length += more,
        (Some(Placement::Zeros { length }), Placement::Zeros { length: more }) => *length += more,
        _ => pieces.push(piece),
    }
}

/// The image formats this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// The virtual disk byte for byte.
    Raw,
    /// QEMU copy-on-write, version 2 or 3.
    Qcow2,
    /// VMware monolithicSparse, read-only.
    Vmdk,
}

/// Guesses a format from the first bytes of an image: the qcow2 magic, the
/// VMDK sparse extent magic, or raw. Only for images whose format is not
/// recorded elsewhere: a guest can write either magic into a raw image's
/// first sector.
pub fn probe_format<S: Storage>(storage: &mut S) -> Result<ImageFormat, ImageError> {
    let mut magic = [0u8; 4];
    if storage.len() < magic.len() as u64 {
        return Ok(ImageFormat::Raw);
    }
    storage.read_at(StorageOffset(0), &mut magic)?;
    if magic == qcow2::MAGIC {
        Ok(ImageFormat::Qcow2)
    } else if magic == vmdk::MAGIC {
        Ok(ImageFormat::Vmdk)
    } else {
        Ok(ImageFormat::Raw)
    }
}

/// Opens `storage` as an image of `format`, boxed for blkback. A VMDK
/// image opened writable is refused ([`VmdkError::WritableOpen`]).
pub fn open_image<S: Storage + 'static>(
    storage: S,
    format: ImageFormat,
    options: OpenOptions,
    resolver: &mut dyn BackingResolver,
) -> Result<Box<dyn DiskImage>, ImageError> {
    Ok(match format {
        ImageFormat::Raw => Box::new(Raw::new(storage, options.read_only)),
        ImageFormat::Qcow2 => Box::new(Qcow2::open(storage, options, resolver)?),
        ImageFormat::Vmdk if !options.read_only => return Err(VmdkError::WritableOpen.into()),
        ImageFormat::Vmdk => Box::new(Vmdk::open(storage)?),
    })
}

/// Checks that `length` bytes at `offset` lie inside a disk of `size` bytes.
pub(crate) fn check_range(size: u64, offset: DiskOffset, length: u64) -> Result<(), ImageError> {
    match offset.0.checked_add(length) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ImageError::OutOfRange {
            offset: offset.0,
            length,
            size,
        }),
    }
}

fn sector_request(first: Sector, length: usize) -> Result<DiskOffset, ImageError> {
    if !(length as u64).is_multiple_of(SECTOR_SIZE) {
        return Err(ImageError::UnalignedSectorRequest { length });
    }
    first.byte_offset().ok_or(ImageError::OutOfRange {
        offset: u64::MAX,
        length: length as u64,
        size: 0,
    })
}
