//! VMware VMDK images of the one shape QEMU and VMware export as a single
//! file, monolithicSparse, read-only: the 512-byte sparse extent header, the
//! embedded text descriptor (one SPARSE extent), then grain directory →
//! grain tables → grains. Unallocated grains read as zeros.
//!
//! Everything else is refused with a [`VmdkError`] naming why:
//! streamOptimized and compressed grains, descriptor-only (multi-file)
//! images, unknown versions and flags. Only one grain table is cached at a
//! time per slot of a small cache; the grain directory is read an entry at
//! a time, so nothing allocated depends on the image's claims beyond fixed
//! limits.

use alloc::vec;
use core::fmt;

use crate::qcow2::cache::ClusterCache;
use crate::{DiskImage, DiskOffset, ImageError, Storage, StorageOffset, check_range};

/// The first four bytes of a sparse extent: "KDMV".
pub const MAGIC: [u8; 4] = *b"KDMV";

/// Bytes in the sparse extent header.
pub const HEADER_LENGTH: usize = 512;

const SECTOR: u64 = 512;
/// Grain table entries per table; every known writer uses 512.
const GRAIN_TABLE_ENTRIES: u64 = 512;
const GRAIN_TABLE_BYTES: u64 = GRAIN_TABLE_ENTRIES * 4;
/// Largest grain accepted, in sectors (128 MiB, QEMU's limit; 64 KiB is
/// the default). Grains are never buffered whole, so this only bounds
/// arithmetic.
const MAX_GRAIN_SECTORS: u64 = 1 << 18;
/// Largest embedded descriptor read, in sectors (it is read whole).
const MAX_DESCRIPTOR_SECTORS: u64 = 2048;
/// Grain tables kept in memory (2 KiB each).
const GRAIN_TABLE_CACHE: usize = 64;

/// Flag: the header's newline-detection bytes are valid.
const FLAG_VALID_NEWLINE_TEST: u32 = 1 << 0;
/// Flag: a redundant grain directory exists.
const FLAG_REDUNDANT_GRAIN_TABLE: u32 = 1 << 1;
/// Flag: grain table entry 1 means a zeroed grain.
const FLAG_ZEROED_GRAIN_ENTRIES: u32 = 1 << 2;
/// Flag: grains are compressed (streamOptimized).
const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: grains carry markers (streamOptimized).
const FLAG_MARKERS: u32 = 1 << 17;
const KNOWN_FLAGS: u32 = FLAG_VALID_NEWLINE_TEST
    | FLAG_REDUNDANT_GRAIN_TABLE
    | FLAG_ZEROED_GRAIN_ENTRIES
    | FLAG_COMPRESSED
    | FLAG_MARKERS;
/// A grain directory offset meaning "in the footer" (streamOptimized).
const GRAIN_DIRECTORY_AT_END: u64 = u64::MAX;

/// What is wrong with a VMDK image, or which of its features is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmdkError {
    /// The storage is shorter than the 512-byte header.
    HeaderTruncated,
    /// The first four bytes are not `KDMV`.
    BadMagic,
    /// A version other than 1, 2 or 3.
    UnsupportedVersion(u32),
    /// Flag bits this code does not know.
    UnknownFlags(u32),
    /// Compressed grains or grain markers (streamOptimized images): convert
    /// with `qemu-img convert -O vmdk -o subformat=monolithicSparse` first.
    Compressed,
    /// A compression algorithm other than none.
    UnsupportedCompression(u16),
    /// A grain size that is not a power of two of at most 2^18 sectors.
    BadGrainSize(u64),
    /// Grain tables of other than 512 entries.
    BadGrainTableEntries(u32),
    /// A capacity whose byte size does not fit in 64 bits.
    CapacityTooLarge(u64),
    /// No embedded descriptor, or one outside the file or above 1 MiB.
    DescriptorInvalid,
    /// The descriptor's createType is not "monolithicSparse".
    UnsupportedCreateType,
    /// The descriptor does not list exactly one SPARSE extent covering the
    /// header's capacity.
    BadExtents,
    /// The grain directory (or its redundant copy) reaches past the file.
    GrainDirectoryOutsideFile(u64),
    /// A grain table reaches past the file.
    GrainTableOutsideFile(u64),
    /// A grain reaches past the file.
    GrainOutsideFile(u64),
    /// Opened for writing: VMDK images are served read-only.
    WritableOpen,
}

impl fmt::Display for VmdkError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderTruncated => formatter.write_str("file shorter than a VMDK sparse header"),
            Self::BadMagic => formatter.write_str("not a VMDK sparse extent (bad magic)"),
            Self::UnsupportedVersion(version) => {
                write!(formatter, "unsupported version {version} (1 to 3 only)")
            }
            Self::UnknownFlags(flags) => write!(formatter, "unknown flags {flags:#x}"),
            Self::Compressed => formatter.write_str(
                "compressed grains (streamOptimized) are not supported: convert with \
                 `qemu-img convert -O vmdk -o subformat=monolithicSparse` or `-O raw` first",
            ),
            Self::UnsupportedCompression(algorithm) => {
                write!(formatter, "compression algorithm {algorithm} not supported")
            }
            Self::BadGrainSize(sectors) => write!(formatter, "bad grain size {sectors} sectors"),
            Self::BadGrainTableEntries(entries) => {
                write!(formatter, "grain tables of {entries} entries (512 only)")
            }
            Self::CapacityTooLarge(sectors) => {
                write!(formatter, "capacity of {sectors} sectors too large")
            }
            Self::DescriptorInvalid => formatter
                .write_str("no valid embedded descriptor (only monolithicSparse is served)"),
            Self::UnsupportedCreateType => formatter.write_str(
                "createType is not monolithicSparse (only single-file sparse images are served)",
            ),
            Self::BadExtents => formatter.write_str(
                "the descriptor does not list exactly one SPARSE extent of the capacity",
            ),
            Self::GrainDirectoryOutsideFile(offset) => {
                write!(
                    formatter,
                    "grain directory at {offset:#x} past the end of the file"
                )
            }
            Self::GrainTableOutsideFile(offset) => {
                write!(
                    formatter,
                    "grain table at {offset:#x} past the end of the file"
                )
            }
            Self::GrainOutsideFile(offset) => {
                write!(formatter, "grain at {offset:#x} past the end of the file")
            }
            Self::WritableOpen => formatter.write_str(
                "VMDK images are served read-only: attach with access=ro, or import with \
                 `xenolith-img import --convert raw`",
            ),
        }
    }
}

/// The validated sparse extent header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1, 2 or 3.
    pub version: u32,
    /// Flag bits (all known, none for compression).
    pub flags: u32,
    /// The virtual disk's size in sectors.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_sectors: u64,
    /// The embedded descriptor's first sector.
    pub descriptor_sector: u64,
    /// The embedded descriptor's length in sectors.
    pub descriptor_sectors: u64,
    /// The redundant grain directory's first sector (0 when none).
    pub redundant_directory_sector: u64,
    /// The grain directory's first sector.
    pub directory_sector: u64,
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0u8; 4];
    if let Some(source) = bytes.get(at..at + 4) {
        field.copy_from_slice(source);
    }
    u32::from_le_bytes(field)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    if let Some(source) = bytes.get(at..at + 8) {
        field.copy_from_slice(source);
    }
    u64::from_le_bytes(field)
}

/// Whether `length` bytes from `sector` (in 512-byte sectors) lie inside a
/// file of `file_length` bytes; the byte offset when they do.
fn inside(sector: u64, length: u64, file_length: u64) -> Option<u64> {
    let start = sector.checked_mul(SECTOR)?;
    (start.checked_add(length)? <= file_length).then_some(start)
}

impl Header {
    /// Parses and validates the 512-byte header of a file `file_length`
    /// bytes long.
    pub fn parse(bytes: &[u8; HEADER_LENGTH], file_length: u64) -> Result<Self, VmdkError> {
        if bytes[..4] != MAGIC {
            return Err(VmdkError::BadMagic);
        }
        let version = le_u32(bytes, 4);
        if !(1..=3).contains(&version) {
            return Err(VmdkError::UnsupportedVersion(version));
        }
        let flags = le_u32(bytes, 8);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(VmdkError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        if flags & (FLAG_COMPRESSED | FLAG_MARKERS) != 0 {
            return Err(VmdkError::Compressed);
        }
        let compression = u16::from_le_bytes([bytes[77], bytes[78]]);
        if compression != 0 {
            return Err(VmdkError::UnsupportedCompression(compression));
        }
        let capacity = le_u64(bytes, 12);
        if capacity.checked_mul(SECTOR).is_none() {
            return Err(VmdkError::CapacityTooLarge(capacity));
        }
        let grain_sectors = le_u64(bytes, 20);
        if !grain_sectors.is_power_of_two() || grain_sectors > MAX_GRAIN_SECTORS {
            return Err(VmdkError::BadGrainSize(grain_sectors));
        }
        let table_entries = le_u32(bytes, 44);
        if u64::from(table_entries) != GRAIN_TABLE_ENTRIES {
            return Err(VmdkError::BadGrainTableEntries(table_entries));
        }
        let directory_sector = le_u64(bytes, 56);
        if directory_sector == GRAIN_DIRECTORY_AT_END {
            return Err(VmdkError::Compressed);
        }
        let descriptor_sector = le_u64(bytes, 28);
        let descriptor_sectors = le_u64(bytes, 36);
        if descriptor_sector == 0
            || descriptor_sectors == 0
            || descriptor_sectors > MAX_DESCRIPTOR_SECTORS
            || inside(descriptor_sector, descriptor_sectors * SECTOR, file_length).is_none()
        {
            return Err(VmdkError::DescriptorInvalid);
        }
        let header = Self {
            version,
            flags,
            capacity,
            grain_sectors,
            descriptor_sector,
            descriptor_sectors,
            redundant_directory_sector: le_u64(bytes, 48),
            directory_sector,
        };
        let directory_bytes = header.directory_entries().saturating_mul(4);
        if inside(directory_sector, directory_bytes, file_length).is_none() {
            return Err(VmdkError::GrainDirectoryOutsideFile(
                directory_sector.saturating_mul(SECTOR),
            ));
        }
        if flags & FLAG_REDUNDANT_GRAIN_TABLE != 0
            && inside(
                header.redundant_directory_sector,
                directory_bytes,
                file_length,
            )
            .is_none()
        {
            return Err(VmdkError::GrainDirectoryOutsideFile(
                header.redundant_directory_sector.saturating_mul(SECTOR),
            ));
        }
        Ok(header)
    }

    /// Bytes in a grain.
    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    /// Grain directory entries needed to cover the capacity.
    pub fn directory_entries(&self) -> u64 {
        self.capacity
            .div_ceil(self.grain_sectors)
            .div_ceil(GRAIN_TABLE_ENTRIES)
    }
}

/// Checks the embedded descriptor: createType monolithicSparse and exactly
/// one SPARSE extent of `capacity` sectors. Text ends at the first NUL.
pub fn check_descriptor(text: &[u8], capacity: u64) -> Result<(), VmdkError> {
    let end = text
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(text.len());
    let text = text.get(..end).unwrap_or_default();
    let mut create_type_ok = false;
    let mut create_types = 0u32;
    let mut extents = 0u32;
    let mut extent_ok = false;
    for line in text.split(|&byte| byte == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if let Some(value) = line.strip_prefix(b"createType") {
            let value = value.trim_ascii();
            let Some(value) = value.strip_prefix(b"=") else {
                continue;
            };
            create_types += 1;
            let value = value.trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|inner| inner.strip_suffix(b"\""))
                .unwrap_or(value);
            create_type_ok = value.eq_ignore_ascii_case(b"monolithicSparse");
            continue;
        }
        let mut words = line
            .split(|byte| byte.is_ascii_whitespace())
            .filter(|word| !word.is_empty());
        let access = words.next().unwrap_or_default();
        if access == b"RW" || access == b"RDONLY" || access == b"NOACCESS" {
            extents += 1;
            let size = words
                .next()
                .and_then(|word| core::str::from_utf8(word).ok())
                .and_then(|word| word.parse::<u64>().ok());
            let kind = words.next().unwrap_or_default();
            extent_ok = size == Some(capacity) && kind == b"SPARSE";
        }
    }
    if create_types != 1 || !create_type_ok {
        return Err(VmdkError::UnsupportedCreateType);
    }
    if extents != 1 || !extent_ok {
        return Err(VmdkError::BadExtents);
    }
    Ok(())
}

/// A monolithicSparse VMDK image on a storage, read-only.
pub struct Vmdk<S: Storage> {
    storage: S,
    header: Header,
    grain_tables: ClusterCache,
}

impl<S: Storage> Vmdk<S> {
    /// Opens the VMDK image on `storage`. Always read-only.
    pub fn open(mut storage: S) -> Result<Self, ImageError> {
        let file_length = storage.len();
        if file_length < HEADER_LENGTH as u64 {
            return Err(VmdkError::HeaderTruncated.into());
        }
        let mut bytes = [0u8; HEADER_LENGTH];
        storage.read_at(StorageOffset(0), &mut bytes)?;
        let header = Header::parse(&bytes, file_length)?;
        // Bounded by MAX_DESCRIPTOR_SECTORS, checked inside the file.
        let mut descriptor = vec![0u8; (header.descriptor_sectors * SECTOR) as usize];
        storage.read_at(
            StorageOffset(header.descriptor_sector * SECTOR),
            &mut descriptor,
        )?;
        check_descriptor(&descriptor, header.capacity)?;
        Ok(Self {
            storage,
            header,
            grain_tables: ClusterCache::new(GRAIN_TABLE_CACHE),
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where grain `grain` lives in the file: `None` when it reads as zeros.
    fn grain_offset(&mut self, grain: u64) -> Result<Option<u64>, ImageError> {
        let file_length = self.storage.len();
        let directory_index = grain / GRAIN_TABLE_ENTRIES;
        // Inside the file: Header::parse checked the whole directory.
        let mut entry = [0u8; 4];
        self.storage.read_at(
            StorageOffset(self.header.directory_sector * SECTOR + directory_index * 4),
            &mut entry,
        )?;
        let table_sector = u64::from(u32::from_le_bytes(entry));
        if table_sector == 0 {
            return Ok(None);
        }
        let table_offset = inside(table_sector, GRAIN_TABLE_BYTES, file_length)
            .ok_or(VmdkError::GrainTableOutsideFile(table_sector * SECTOR))?;
        let table =
            self.grain_tables
                .get(&mut self.storage, table_offset, GRAIN_TABLE_BYTES as usize)?;
        let index = (grain % GRAIN_TABLE_ENTRIES) as usize * 4;
        let grain_sector = u64::from(le_u32(table, index));
        if grain_sector == 0
            || (grain_sector == 1 && self.header.flags & FLAG_ZEROED_GRAIN_ENTRIES != 0)
        {
            return Ok(None);
        }
        let grain_offset = inside(grain_sector, self.header.grain_bytes(), file_length)
            .ok_or(VmdkError::GrainOutsideFile(grain_sector * SECTOR))?;
        Ok(Some(grain_offset))
    }
}

impl<S: Storage> DiskImage for Vmdk<S> {
    fn virtual_size(&self) -> u64 {
        self.header.capacity * SECTOR
    }

    fn is_read_only(&self) -> bool {
        true
    }

    fn read(&mut self, offset: DiskOffset, buffer: &mut [u8]) -> Result<(), ImageError> {
        check_range(self.virtual_size(), offset, buffer.len() as u64)?;
        let grain_bytes = self.header.grain_bytes();
        let mut position = offset.0;
        let mut rest = buffer;
        while !rest.is_empty() {
            let within = position % grain_bytes;
            let length = (grain_bytes - within).min(rest.len() as u64) as usize;
            let (piece, tail) = rest.split_at_mut(length);
            match self.grain_offset(position / grain_bytes)? {
                None => piece.fill(0),
                Some(grain) => self.storage.read_at(StorageOffset(grain + within), piece)?,
            }
            position += length as u64;
            rest = tail;
        }
        Ok(())
    }

    fn write(&mut self, offset: DiskOffset, data: &[u8]) -> Result<(), ImageError> {
        check_range(self.virtual_size(), offset, data.len() as u64)?;
        Err(ImageError::ReadOnly)
    }

    fn flush(&mut self) -> Result<(), ImageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
