//! The Xenolith volume store: named volumes made of extents inside one
//! partition, with crash-safe metadata, free-space management and
//! byte-offset I/O through a volume's extents.
//!
//! # Layout (all inside the store's partition, 512-byte sectors)
//!
//! | sectors | contents |
//! |---|---|
//! | 0 .. 1024 | metadata slot 0 (even generations) |
//! | 1024 .. 2048 | metadata slot 1 (odd generations) |
//! | 2048 (rounded up to a block) .. end | data area: allocation blocks |
//!
//! A slot holds a 64-byte header (magic `XENOVOLS`, version, CRC32,
//! generation, length, slot number, store GUID, partition size, slot and
//! block size) followed by the volume table; see [`format`] and
//! `storage/README.md` for every field.
//!
//! # Why metadata updates are crash-safe
//!
//! Metadata is never updated in place. Generation `g` always lives in slot
//! `g % 2`. An update builds the new table in memory, writes it as
//! generation `g + 1` into the *other* slot, and flushes. The slot holding
//! `g` is not written until `g + 2`, and `g + 1` is flushed before the
//! update returns, so at every instant the disk holds at least one
//! complete, flushed copy of the latest acknowledged state. Opening reads
//! both slots and takes the highest generation whose CRC32 (over header
//! and table) is right. A crash during the write leaves the other slot
//! torn, partly written or untouched: torn or partial fails the CRC (up
//! to the 2^-32 chance of a CRC collision) and the old generation wins;
//! fully written means the update happened. Either way the result is the
//! old or the new state, never a mix. The next update after such a crash
//! writes the same slot again, overwriting the torn copy.
//!
//! Free space is not stored: it is the complement of the volumes'
//! extents, so it cannot disagree with them. Blocks a volume gains are
//! zeroed and flushed *before* the metadata naming them is written, so a
//! new volume never shows an old volume's data, even after a crash.
//! Blocks a volume loses (shrink, delete) become free only once the
//! metadata without them is flushed.
//!
//! Volume data is written in place (volumes are fully allocated), so a
//! guest's write never changes metadata; [`Store::flush`] makes data
//! durable.
//!
//! If an update returns an error, the store in memory keeps the old state
//! but the disk may hold either; the next successful update settles it.
//!
//! Bounds: at most [`MAX_VOLUMES`] volumes of at most
//! [`MAX_EXTENTS_PER_VOLUME`] extents, names of at most
//! [`MAX_NAME_BYTES`]; a slot is read only as far as its recorded length,
//! which is at most a slot. A disk without the store's magic is refused as
//! [`StoreError::NotAStore`]; one with damaged metadata as
//! [`StoreError::Corrupt`], naming what is wrong with each slot. Nothing
//! is written unless asked: [`Store::format`] refuses a partition whose
//! slot headers are not blank unless told to overwrite.

pub mod allocator;
pub mod format;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{
    BlockDevice, BlockError, SECTOR_BYTES, SECTOR_SIZE, Sector, check_range, sectors_in,
};
use crate::guid::Guid;
use allocator::{FreeSpace, merge_adjacent};
pub use format::{
    BlockIndex, Extent, Geometry, GeometryFault, MAX_EXTENTS_PER_VOLUME, MAX_NAME_BYTES,
    MAX_VOLUMES, Metadata, MetadataFault, NameError, SLOT_SECTORS, SlotFault, Volume, VolumeId,
    VolumeKind, VolumeName,
};
use format::{SlotHeader, SlotHeaderView, parse_slot};

/// Default allocation block: 1 MiB.
pub const DEFAULT_BLOCK_SECTORS: u32 = 2048;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The device failed.
    Device(BlockError),
    /// Neither slot has the store's magic: a blank or foreign partition.
    /// Nothing was written; format it only on purpose.
    NotAStore,
    /// The partition has store metadata but no valid copy of it.
    Corrupt {
        /// What is wrong with slot 0.
        slot0: SlotFault,
        /// What is wrong with slot 1.
        slot1: SlotFault,
    },
    /// The store was formatted on a partition of a different size.
    WrongPartitionSize {
        /// Sectors recorded in the metadata.
        recorded: u64,
        /// Sectors in the partition now.
        actual: u64,
    },
    /// Format refused: the slot headers are not blank (an existing store or
    /// foreign data). Pass `overwrite` to format anyway.
    NotBlank,
    /// The partition or block size cannot make a store.
    Geometry(GeometryFault),
    /// The volume name is invalid.
    InvalidName(NameError),
    /// A volume of this name exists.
    NameTaken,
    /// No volume with this name or id.
    NoSuchVolume,
    /// The store already has [`MAX_VOLUMES`] volumes.
    TooManyVolumes,
    /// Not enough free blocks.
    NoSpace {
        /// Blocks needed.
        needed: u64,
        /// Blocks free.
        free: u64,
    },
    /// The free space is so fragmented that the volume would need more
    /// than [`MAX_EXTENTS_PER_VOLUME`] extents.
    TooFragmented,
    /// An access outside the volume.
    OutOfBounds {
        /// Byte offset asked for.
        offset: u64,
        /// Bytes asked for.
        length: u64,
        /// The volume's size.
        size: u64,
    },
    /// The generation counter or volume ids ran out (2^64 updates or 2^32
    /// volumes).
    CounterExhausted,
}

impl fmt::Display for StoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Device(error) => write!(formatter, "{error}"),
            StoreError::NotAStore => formatter
                .write_str("not a Xenolith volume store (no metadata magic); refusing to touch it"),
            StoreError::Corrupt { slot0, slot1 } => write!(
                formatter,
                "store metadata is damaged: slot 0 {slot0}; slot 1 {slot1}"
            ),
            StoreError::WrongPartitionSize { recorded, actual } => write!(
                formatter,
                "store was made for {recorded} sectors but the partition has {actual}"
            ),
            StoreError::NotBlank => {
                formatter.write_str("partition is not blank; refusing to format over it")
            }
            StoreError::Geometry(fault) => write!(formatter, "{fault}"),
            StoreError::InvalidName(error) => write!(formatter, "{error}"),
            StoreError::NameTaken => formatter.write_str("a volume of that name exists"),
            StoreError::NoSuchVolume => formatter.write_str("no such volume"),
            StoreError::TooManyVolumes => {
                write!(formatter, "the store already has {MAX_VOLUMES} volumes")
            }
            StoreError::NoSpace { needed, free } => {
                write!(formatter, "{needed} blocks needed but {free} free")
            }
            StoreError::TooFragmented => formatter
                .write_str("free space too fragmented: the volume would exceed its extent limit"),
            StoreError::OutOfBounds {
                offset,
                length,
                size,
            } => write!(
                formatter,
                "{length} bytes at {offset} reach past the volume's {size} bytes"
            ),
            StoreError::CounterExhausted => formatter.write_str("store counters exhausted"),
        }
    }
}

impl From<BlockError> for StoreError {
    fn from(error: BlockError) -> Self {
        StoreError::Device(error)
    }
}

/// What [`Store::format`] is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct FormatOptions {
    /// The new store's GUID (the host tool's or Dom0's entropy).
    pub store_guid: Guid,
    /// Sectors per allocation block: a power of two; 2048 (1 MiB) unless
    /// the partition is tiny.
    pub block_sectors: u32,
    /// Format even if the slot headers are not blank.
    pub overwrite: bool,
}

impl FormatOptions {
    /// 1 MiB blocks, refusing to overwrite.
    pub fn new(store_guid: Guid) -> Self {
        FormatOptions {
            store_guid,
            block_sectors: DEFAULT_BLOCK_SECTORS,
            overwrite: false,
        }
    }
}

/// What [`Store::open`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The generation in use.
    pub generation: u64,
    /// The slot it came from.
    pub slot: u32,
    /// The other slot: its generation if valid, else what is wrong with it
    /// (after a crash during an update it is torn; that is expected).
    pub other: Result<u64, SlotFault>,
}

/// A volume store open on a device (normally a [`crate::PartitionDevice`]).
#[derive(Debug)]
pub struct Store<D> {
    device: D,
    geometry: Geometry,
    generation: u64,
    metadata: Metadata,
    free: FreeSpace,
}

impl<D: BlockDevice> Store<D> {
    /// Creates an empty store on `device`. Refuses a device whose slot
    /// headers are not all zero unless `options.overwrite`.
    pub fn format(mut device: D, options: FormatOptions) -> Result<Self, StoreError> {
        let geometry = Geometry {
            store_guid: options.store_guid,
            sector_count: device.sector_count(),
            slot_sectors: SLOT_SECTORS,
            block_sectors: options.block_sectors,
        };
        geometry.check().map_err(StoreError::Geometry)?;
        if !options.overwrite {
            let mut sector = [0u8; SECTOR_SIZE];
            for slot in 0..2 {
                device.read(Sector(geometry.slot_start(slot)), &mut sector)?;
                if sector.iter().any(|&byte| byte != 0) {
                    return Err(StoreError::NotBlank);
                }
            }
        }
        // Invalidate any old store's slots (and flush) before the first
        // generation is written, so an old higher generation cannot win.
        device.write_zeroes(Sector(geometry.slot_start(0)), 1)?;
        device.write_zeroes(Sector(geometry.slot_start(1)), 1)?;
        device.flush()?;
        let mut store = Store {
            device,
            geometry,
            generation: 0,
            metadata: Metadata::default(),
            free: FreeSpace::from_used(geometry.block_count(), Vec::new()),
        };
        let (metadata, free) = (store.metadata.clone(), store.free.clone());
        store.commit(metadata, free)?;
        Ok(store)
    }

    /// Opens the store on `device`: the newest valid metadata copy wins.
    pub fn open(mut device: D) -> Result<(Self, OpenReport), StoreError> {
        let actual = device.sector_count();
        if actual < 2 * u64::from(SLOT_SECTORS) {
            return Err(StoreError::NotAStore);
        }
        let slot0 = read_slot(&mut device, 0);
        let slot1 = read_slot(&mut device, 1);
        let generation_of = |slot: &Result<(SlotHeader, Metadata), SlotFault>| {
            slot.as_ref()
                .map(|(header, _)| header.generation)
                .map_err(|fault| *fault)
        };
        let (generation0, generation1) = (generation_of(&slot0), generation_of(&slot1));
        let (chosen, slot, other) = match (slot0, slot1) {
            (Ok(zero), Ok(one)) if one.0.generation > zero.0.generation => (one, 1, generation0),
            (Ok(zero), _) => (zero, 0, generation1),
            (Err(_), Ok(one)) => (one, 1, generation0),
            (Err(SlotFault::NoMagic), Err(SlotFault::NoMagic)) => {
                return Err(StoreError::NotAStore);
            }
            (Err(slot0), Err(slot1)) => return Err(StoreError::Corrupt { slot0, slot1 }),
        };
        let (header, metadata) = chosen;
        if header.geometry.sector_count != actual {
            return Err(StoreError::WrongPartitionSize {
                recorded: header.geometry.sector_count,
                actual,
            });
        }
        let free = FreeSpace::from_used(header.geometry.block_count(), metadata.used_extents());
        let report = OpenReport {
            generation: header.generation,
            slot,
            other,
        };
        Ok((
            Store {
                device,
                geometry: header.geometry,
                generation: header.generation,
                metadata,
                free,
            },
            report,
        ))
    }

    /// The store's shape.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The metadata generation on disk.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every volume, in creation order.
    pub fn volumes(&self) -> &[Volume] {
        &self.metadata.volumes
    }

    /// The volume called `name`.
    pub fn lookup(&self, name: &str) -> Result<&Volume, StoreError> {
        self.metadata
            .volumes
            .iter()
            .find(|volume| volume.name.as_str() == name)
            .ok_or(StoreError::NoSuchVolume)
    }

    /// The volume with `id`.
    pub fn volume(&self, id: VolumeId) -> Result<&Volume, StoreError> {
        self.position(id).map(|index| &self.metadata.volumes[index])
    }

    /// Free bytes in the data area.
    pub fn free_bytes(&self) -> u64 {
        self.free.free_blocks() * self.geometry.block_bytes()
    }

    /// Bytes in the data area.
    pub fn capacity_bytes(&self) -> u64 {
        self.geometry.block_count() * self.geometry.block_bytes()
    }

    /// The free runs of blocks, by address.
    pub fn free_runs(&self) -> &[Extent] {
        self.free.runs()
    }

    /// The device (for tests and for serving a whole partition beside).
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (tests crash it through this).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Closes the store, giving the device back.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Checks the in-memory state: the table obeys every rule and free
    /// space is exactly the complement of the volumes' extents.
    pub fn check(&self) -> Result<(), MetadataFault> {
        self.metadata.check(&self.geometry)?;
        let derived =
            FreeSpace::from_used(self.geometry.block_count(), self.metadata.used_extents());
        if derived != self.free {
            return Err(MetadataFault::ExtentsOverlap);
        }
        Ok(())
    }

    /// Creates a volume of `size` bytes, reading as zeros.
    pub fn create(
        &mut self,
        name: &VolumeName,
        kind: VolumeKind,
        size: u64,
    ) -> Result<VolumeId, StoreError> {
        if self.lookup(name.as_str()).is_ok() {
            return Err(StoreError::NameTaken);
        }
        if self.metadata.volumes.len() >= MAX_VOLUMES {
            return Err(StoreError::TooManyVolumes);
        }
        let id = VolumeId(self.metadata.next_id);
        let next_id = id.0.checked_add(1).ok_or(StoreError::CounterExhausted)?;
        let mut free = self.free.clone();
        let extents = self.allocate(&mut free, self.geometry.blocks_for(size), None)?;
        if extents.len() > MAX_EXTENTS_PER_VOLUME {
            return Err(StoreError::TooFragmented);
        }
        self.zero_blocks(&extents)?;
        let mut metadata = self.metadata.clone();
        metadata.next_id = next_id;
        metadata.volumes.push(Volume {
            id,
            name: name.clone(),
            kind,
            size,
            extents,
        });
        self.commit(metadata, free)?;
        Ok(id)
    }

    /// Grows or shrinks a volume to `size` bytes. Bytes past the old size
    /// read as zeros; a shrink drops the tail.
    pub fn resize(&mut self, id: VolumeId, size: u64) -> Result<(), StoreError> {
        let index = self.position(id)?;
        let mut volume = self.metadata.volumes[index].clone();
        let old_size = volume.size;
        let old_blocks = volume.allocated_blocks();
        let new_blocks = self.geometry.blocks_for(size);
        let mut free = self.free.clone();
        if new_blocks > old_blocks {
            let after = volume.extents.last().map(|last| BlockIndex(last.end()));
            let added = self.allocate(&mut free, new_blocks - old_blocks, after)?;
            let mut extents = volume.extents.clone();
            extents.extend_from_slice(&added);
            let extents = merge_adjacent(extents);
            if extents.len() > MAX_EXTENTS_PER_VOLUME {
                return Err(StoreError::TooFragmented);
            }
            self.zero_blocks(&added)?;
            volume.extents = extents;
        } else if new_blocks < old_blocks {
            let mut keep = new_blocks;
            let mut kept = Vec::new();
            for extent in &volume.extents {
                let blocks = extent.blocks.min(keep);
                if blocks > 0 {
                    kept.push(Extent {
                        start: extent.start,
                        blocks,
                    });
                }
                free.release(Extent {
                    start: BlockIndex(extent.start.0 + blocks),
                    blocks: extent.blocks - blocks,
                });
                keep -= blocks;
            }
            volume.extents = kept;
        }
        if size > old_size {
            // The old last block may hold bytes from before a shrink.
            let stale_end = size.min(old_blocks * self.geometry.block_bytes());
            if stale_end > old_size {
                self.zero_bytes(&volume.extents, old_size, stale_end - old_size)?;
                self.device.flush()?;
            }
        }
        volume.size = size;
        let mut metadata = self.metadata.clone();
        metadata.volumes[index] = volume;
        self.commit(metadata, free)
    }

    /// Deletes a volume; its blocks become free once this returns.
    pub fn delete(&mut self, id: VolumeId) -> Result<(), StoreError> {
        let index = self.position(id)?;
        let mut metadata = self.metadata.clone();
        let volume = metadata.volumes.remove(index);
        let mut free = self.free.clone();
        for extent in volume.extents {
            free.release(extent);
        }
        self.commit(metadata, free)
    }

    /// Reads `buffer.len()` bytes of volume `id` from byte `offset`.
    pub fn read_at(
        &mut self,
        id: VolumeId,
        offset: u64,
        buffer: &mut [u8],
    ) -> Result<(), StoreError> {
        let segments = self.segments(id, offset, buffer.len())?;
        for segment in segments {
            let target = &mut buffer[segment.buffer_start..segment.buffer_start + segment.length];
            read_bytes(&mut self.device, segment.device_byte, target)?;
        }
        Ok(())
    }

    /// Writes `data` to volume `id` at byte `offset`. Durable after
    /// [`Store::flush`].
    pub fn write_at(&mut self, id: VolumeId, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let segments = self.segments(id, offset, data.len())?;
        for segment in segments {
            let source = &data[segment.buffer_start..segment.buffer_start + segment.length];
            write_bytes(&mut self.device, segment.device_byte, source)?;
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        Ok(self.device.flush()?)
    }

    /// Where `length` bytes of volume `id` at byte `offset` are on the
    /// device: byte ranges in order (one per extent crossed), for a caller
    /// that moves the data itself. Valid until the volume shrinks or is
    /// deleted (growing only appends extents).
    pub fn device_ranges(
        &self,
        id: VolumeId,
        offset: u64,
        length: usize,
    ) -> Result<Vec<DeviceRange>, StoreError> {
        Ok(self
            .segments(id, offset, length)?
            .into_iter()
            .map(|segment| DeviceRange {
                byte: segment.device_byte,
                length: segment.length,
            })
            .collect())
    }

    /// Volume `id` as a sector-addressed block device (its size rounded
    /// down to whole sectors), for blkback and the image formats.
    pub fn volume_device(&mut self, id: VolumeId) -> Result<VolumeDevice<'_, D>, StoreError> {
        let size = self.volume(id)?.size;
        Ok(VolumeDevice {
            store: self,
            id,
            sector_count: size / SECTOR_BYTES,
        })
    }

    fn position(&self, id: VolumeId) -> Result<usize, StoreError> {
        self.metadata
            .volumes
            .iter()
            .position(|volume| volume.id == id)
            .ok_or(StoreError::NoSuchVolume)
    }

    fn allocate(
        &self,
        free: &mut FreeSpace,
        blocks: u64,
        after: Option<BlockIndex>,
    ) -> Result<Vec<Extent>, StoreError> {
        let available = free.free_blocks();
        free.allocate(blocks, after).ok_or(StoreError::NoSpace {
            needed: blocks,
            free: available,
        })
    }

    /// Zeroes whole blocks, then flushes, so metadata naming them can
    /// follow.
    fn zero_blocks(&mut self, extents: &[Extent]) -> Result<(), StoreError> {
        if extents.is_empty() {
            return Ok(());
        }
        let block_sectors = u64::from(self.geometry.block_sectors);
        for extent in extents {
            let sector = self.geometry.data_start() + extent.start.0 * block_sectors;
            self.device
                .write_zeroes(Sector(sector), extent.blocks * block_sectors)?;
        }
        self.device.flush()?;
        Ok(())
    }

    /// Zeroes `length` bytes at `offset` of a volume laid out as `extents`.
    fn zero_bytes(
        &mut self,
        extents: &[Extent],
        offset: u64,
        length: u64,
    ) -> Result<(), StoreError> {
        const CHUNK: usize = 64 * SECTOR_SIZE;
        let zeroes = vec![0u8; CHUNK];
        let mut done = 0u64;
        while done < length {
            let chunk = (length - done).min(CHUNK as u64) as usize;
            for segment in map_segments(&self.geometry, extents, offset + done, chunk) {
                write_bytes(
                    &mut self.device,
                    segment.device_byte,
                    &zeroes[..segment.length],
                )?;
            }
            done += chunk as u64;
        }
        Ok(())
    }

    fn segments(
        &self,
        id: VolumeId,
        offset: u64,
        length: usize,
    ) -> Result<Vec<Segment>, StoreError> {
        let volume = self.volume(id)?;
        let in_bounds = offset
            .checked_add(length as u64)
            .is_some_and(|end| end <= volume.size);
        if !in_bounds {
            return Err(StoreError::OutOfBounds {
                offset,
                length: length as u64,
                size: volume.size,
            });
        }
        Ok(map_segments(
            &self.geometry,
            &volume.extents,
            offset,
            length,
        ))
    }

    /// Writes `metadata` as the next generation into its slot and flushes;
    /// only then does the store in memory change.
    fn commit(&mut self, metadata: Metadata, free: FreeSpace) -> Result<(), StoreError> {
        let generation = self
            .generation
            .checked_add(1)
            .ok_or(StoreError::CounterExhausted)?;
        let image = metadata.encode(&self.geometry, generation);
        let slot = (generation % 2) as u32;
        self.device
            .write(Sector(self.geometry.slot_start(slot)), &image)?;
        self.device.flush()?;
        self.generation = generation;
        self.metadata = metadata;
        self.free = free;
        Ok(())
    }
}

/// Reads one slot: its header sector, then as many sectors as its length.
fn read_slot<D: BlockDevice>(
    device: &mut D,
    slot: u32,
) -> Result<(SlotHeader, Metadata), SlotFault> {
    let start = u64::from(slot) * u64::from(SLOT_SECTORS);
    let mut first = [0u8; SECTOR_SIZE];
    device
        .read(Sector(start), &mut first)
        .map_err(SlotFault::Device)?;
    let view = SlotHeaderView::new_checked(&first).ok_or(SlotFault::BadLength(0))?;
    let header = SlotHeader::parse(view, slot)?;
    // Bounded by the slot size, checked in parse().
    let mut bytes = vec![0u8; (header.length as usize).next_multiple_of(SECTOR_SIZE)];
    device
        .read(Sector(start), &mut bytes)
        .map_err(SlotFault::Device)?;
    let metadata = parse_slot(&header, &bytes)?;
    Ok((header, metadata))
}

/// Bytes of the store's device (see [`Store::device_ranges`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRange {
    /// The first byte, from the start of the store's device.
    pub byte: u64,
    /// How many bytes.
    pub length: usize,
}

/// A piece of a byte range that lies in one extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    device_byte: u64,
    buffer_start: usize,
    length: usize,
}

/// Splits `length` bytes at volume `offset` into device byte ranges.
fn map_segments(
    geometry: &Geometry,
    extents: &[Extent],
    offset: u64,
    length: usize,
) -> Vec<Segment> {
    let block_bytes = geometry.block_bytes();
    let data_start = geometry.data_start() * SECTOR_BYTES;
    let end = offset + length as u64;
    let mut segments = Vec::new();
    let mut logical = 0u64;
    for extent in extents {
        let extent_end = logical + extent.blocks * block_bytes;
        let from = offset.max(logical);
        let to = end.min(extent_end);
        if from < to {
            segments.push(Segment {
                device_byte: data_start + extent.start.0 * block_bytes + (from - logical),
                buffer_start: (from - offset) as usize,
                length: (to - from) as usize,
            });
        }
        logical = extent_end;
        if logical >= end {
            break;
        }
    }
    segments
}

/// Reads bytes at any device byte offset (partial sectors through a bounce
/// buffer).
fn read_bytes<D: BlockDevice>(
    device: &mut D,
    byte: u64,
    buffer: &mut [u8],
) -> Result<(), StoreError> {
    let mut done = 0usize;
    while done < buffer.len() {
        let at = byte + done as u64;
        let sector = Sector(at / SECTOR_BYTES);
        let within = (at % SECTOR_BYTES) as usize;
        let left = buffer.len() - done;
        if within == 0 && left >= SECTOR_SIZE {
            let whole = left - left % SECTOR_SIZE;
            device.read(sector, &mut buffer[done..done + whole])?;
            done += whole;
        } else {
            let mut bounce = [0u8; SECTOR_SIZE];
            device.read(sector, &mut bounce)?;
            let count = (SECTOR_SIZE - within).min(left);
            buffer[done..done + count].copy_from_slice(&bounce[within..within + count]);
            done += count;
        }
    }
    Ok(())
}

/// Writes bytes at any device byte offset (partial sectors read, patched
/// and written back).
fn write_bytes<D: BlockDevice>(device: &mut D, byte: u64, data: &[u8]) -> Result<(), StoreError> {
    let mut done = 0usize;
    while done < data.len() {
        let at = byte + done as u64;
        let sector = Sector(at / SECTOR_BYTES);
        let within = (at % SECTOR_BYTES) as usize;
        let left = data.len() - done;
        if within == 0 && left >= SECTOR_SIZE {
            let whole = left - left % SECTOR_SIZE;
            device.write(sector, &data[done..done + whole])?;
            done += whole;
        } else {
            let mut bounce = [0u8; SECTOR_SIZE];
            device.read(sector, &mut bounce)?;
            let count = (SECTOR_SIZE - within).min(left);
            bounce[within..within + count].copy_from_slice(&data[done..done + count]);
            device.write(sector, &bounce)?;
            done += count;
        }
    }
    Ok(())
}

/// One volume seen as a block device (borrowing the store).
#[derive(Debug)]
pub struct VolumeDevice<'a, D> {
    store: &'a mut Store<D>,
    id: VolumeId,
    sector_count: u64,
}

impl<D: BlockDevice> VolumeDevice<'_, D> {
    fn checked(&self, sector: Sector, length: usize) -> Result<u64, BlockError> {
        let count = sectors_in(length)?;
        check_range(sector, count, self.sector_count)?;
        Ok(sector.0 * SECTOR_BYTES)
    }

    fn to_block_error(error: StoreError, sector: Sector, write: bool) -> BlockError {
        match error {
            StoreError::Device(error) => error,
            _ if write => BlockError::WriteFailed(sector),
            _ => BlockError::ReadFailed(sector),
        }
    }
}

impl<D: BlockDevice> BlockDevice for VolumeDevice<'_, D> {
    fn sector_count(&self) -> u64 {
        self.sector_count
    }

    fn read(&mut self, sector: Sector, buffer: &mut [u8]) -> Result<(), BlockError> {
        let offset = self.checked(sector, buffer.len())?;
        self.store
            .read_at(self.id, offset, buffer)
            .map_err(|error| Self::to_block_error(error, sector, false))
    }

    fn write(&mut self, sector: Sector, data: &[u8]) -> Result<(), BlockError> {
        let offset = self.checked(sector, data.len())?;
        self.store
            .write_at(self.id, offset, data)
            .map_err(|error| Self::to_block_error(error, sector, true))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.store.device.flush()
    }
}

#[cfg(test)]
mod tests;
