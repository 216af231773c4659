//! GUID Partition Table: reading with CRC checks and fallback to the backup
//! copy, writing a new table (the host tool's job), and finding the Xenolith
//! volume store partition.
//!
//! Layout on a disk of `N` 512-byte sectors (UEFI 2.10, chapter 5):
//!
//! | sectors | contents |
//! |---|---|
//! | 0 | protective MBR: one entry of type `0xEE` from LBA 1, `55 AA` |
//! | 1 | primary header (92 bytes used) |
//! | 2 .. 2+A | primary entry array (`A` = 32 for 128 entries of 128 bytes) |
//! | first usable .. last usable | partitions |
//! | N-1-A .. N-1 | backup entry array |
//! | N-1 | backup header |
//!
//! Parsing is two steps: [`HeaderView`] checks a sector's length and gives
//! fields; [`GptHeader::parse`] validates signature, revision, size, CRC32,
//! own location and ranges. The entry array's CRC32 is checked before any
//! entry is looked at; then every used entry must lie in the usable range
//! and no two may overlap. A copy that fails any check is not used: the
//! primary is preferred, the backup (at the last sector) is the fallback,
//! and [`GptReport`] says which was used and what was wrong with the other.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{BlockDevice, BlockError, SECTOR_BYTES, SECTOR_SIZE, Sector};
use crate::bytes::{read_array, read_u32, read_u64, write_bytes, write_u32, write_u64};
use crate::guid::{Guid, XENOLITH_STORE_TYPE};

/// `"EFI PART"`: the first eight bytes of a GPT header.
pub const HEADER_SIGNATURE: [u8; 8] = *b"EFI PART";
/// Revision 1.0, the only one defined.
pub const REVISION_1_0: u32 = 0x0001_0000;
/// Bytes of a header that carry fields (and the header size Xenolith writes).
pub const HEADER_SIZE: u32 = 92;
/// The entry size Xenolith writes; readers accept `128 << n` up to 4096.
pub const ENTRY_SIZE: u32 = 128;
/// Entries Xenolith writes: 128, the UEFI minimum for a 16 KiB array.
pub const DEFAULT_ENTRY_COUNT: u32 = 128;
/// Largest entry array a reader accepts (bounds memory on a hostile disk).
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;
/// Partitions Xenolith creates start on a 1 MiB boundary.
pub const PARTITION_ALIGNMENT_SECTORS: u64 = 2048;
/// UTF-16 code units in a partition name.
pub const NAME_UNITS: usize = 36;

/// Smallest disk with room for both tables and one usable sector.
const MIN_DISK_SECTORS: u64 =
    3 + 2 * (DEFAULT_ENTRY_COUNT as u64 * ENTRY_SIZE as u64 / SECTOR_BYTES);

/// Which copy of the GPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GptCopy {
    /// Header at LBA 1.
    Primary,
    /// Header at the last LBA.
    Backup,
}

/// What is wrong with one copy of the GPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFault {
    /// The header or entry array could not be read.
    Device(BlockError),
    /// The header does not start with `"EFI PART"` (no GPT, or wiped).
    BadSignature,
    /// The header's major revision is not 1.
    UnsupportedRevision(u32),
    /// The header size is below 92 or above a sector.
    BadHeaderSize(u32),
    /// The header's CRC32 does not match its bytes.
    HeaderCrcMismatch {
        /// CRC32 stored in the header.
        stored: u32,
        /// CRC32 of the bytes read.
        computed: u32,
    },
    /// The header's reserved field is not zero.
    ReservedNotZero,
    /// The header says it lives somewhere other than where it was read.
    WrongLocation {
        /// Where it was read.
        expected: Sector,
        /// Its `MyLBA` field.
        found: Sector,
    },
    /// The alternate header's location is off the disk or is this header.
    BadAlternateLocation(Sector),
    /// The usable range is empty, off the disk, or covers a header.
    BadUsableRange {
        /// First usable LBA.
        first: Sector,
        /// Last usable LBA.
        last: Sector,
    },
    /// The entry size is not 128 times a power of two (up to 4096).
    BadEntrySize(u32),
    /// The entry array is larger than [`MAX_ENTRY_ARRAY_BYTES`].
    EntryArrayTooLarge {
        /// Entries claimed.
        count: u32,
        /// Bytes per entry claimed.
        size: u32,
    },
    /// The entry array is off the disk, overlaps the usable range or a header.
    EntryArrayMisplaced(Sector),
    /// The entry array's CRC32 does not match.
    EntryArrayCrcMismatch {
        /// CRC32 stored in the header.
        stored: u32,
        /// CRC32 of the array read.
        computed: u32,
    },
    /// A partition ends before it starts.
    PartitionReversed {
        /// Entry index.
        index: u32,
    },
    /// A partition lies (partly) outside the usable range.
    PartitionOutsideUsable {
        /// Entry index.
        index: u32,
    },
    /// Two partitions share sectors.
    PartitionsOverlap {
        /// Entry index of one.
        first: u32,
        /// Entry index of the other.
        second: u32,
    },
}

impl fmt::Display for CopyFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyFault::Device(error) => write!(formatter, "unreadable: {error}"),
            CopyFault::BadSignature => formatter.write_str("no \"EFI PART\" signature"),
            CopyFault::UnsupportedRevision(revision) => {
                write!(formatter, "unsupported revision {revision:#010x}")
            }
            CopyFault::BadHeaderSize(size) => write!(formatter, "bad header size {size}"),
            CopyFault::HeaderCrcMismatch { stored, computed } => write!(
                formatter,
                "header CRC32 {stored:#010x} but bytes give {computed:#010x}"
            ),
            CopyFault::ReservedNotZero => formatter.write_str("reserved header field not zero"),
            CopyFault::WrongLocation { expected, found } => {
                write!(formatter, "header read at {expected} says it is at {found}")
            }
            CopyFault::BadAlternateLocation(sector) => {
                write!(formatter, "alternate header location {sector} is invalid")
            }
            CopyFault::BadUsableRange { first, last } => {
                write!(formatter, "usable range {first}..={last} is invalid")
            }
            CopyFault::BadEntrySize(size) => write!(formatter, "bad entry size {size}"),
            CopyFault::EntryArrayTooLarge { count, size } => {
                write!(
                    formatter,
                    "entry array of {count} x {size} bytes is too large"
                )
            }
            CopyFault::EntryArrayMisplaced(sector) => {
                write!(
                    formatter,
                    "entry array at {sector} overlaps or leaves the disk"
                )
            }
            CopyFault::EntryArrayCrcMismatch { stored, computed } => write!(
                formatter,
                "entry array CRC32 {stored:#010x} but bytes give {computed:#010x}"
            ),
            CopyFault::PartitionReversed { index } => {
                write!(formatter, "partition entry {index} ends before it starts")
            }
            CopyFault::PartitionOutsideUsable { index } => {
                write!(
                    formatter,
                    "partition entry {index} is outside the usable range"
                )
            }
            CopyFault::PartitionsOverlap { first, second } => {
                write!(formatter, "partition entries {first} and {second} overlap")
            }
        }
    }
}

/// Why a GPT could not be read, built or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GptError {
    /// The disk is too small for a GPT (or has no sectors at all).
    DiskTooSmall {
        /// Sectors on the disk.
        sector_count: u64,
    },
    /// Neither copy is valid: the disk is not GPT, or both copies are damaged.
    NoValidCopy {
        /// What is wrong with the primary.
        primary: CopyFault,
        /// What is wrong with the backup.
        backup: CopyFault,
    },
    /// The disk already holds a partition table or GPT; a new one would
    /// overwrite it.
    DiskNotBlank,
    /// An I/O error while writing.
    Device(BlockError),
    /// A partition to add has no type GUID (zero marks unused entries).
    ZeroTypeGuid,
    /// A partition to add does not fit in the usable range.
    PartitionOutsideUsable,
    /// A partition to add overlaps an existing one.
    PartitionOverlaps,
    /// Every entry is in use.
    NoFreeEntry,
    /// A partition name longer than 36 UTF-16 units.
    NameTooLong,
}

impl fmt::Display for GptError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::DiskTooSmall { sector_count } => {
                write!(
                    formatter,
                    "disk of {sector_count} sectors is too small for GPT"
                )
            }
            GptError::NoValidCopy { primary, backup } => write!(
                formatter,
                "no valid GPT: primary {primary}; backup {backup}"
            ),
            GptError::DiskNotBlank => {
                formatter.write_str("disk already has a partition table; not overwriting it")
            }
            GptError::Device(error) => write!(formatter, "{error}"),
            GptError::ZeroTypeGuid => formatter.write_str("partition type GUID is zero"),
            GptError::PartitionOutsideUsable => {
                formatter.write_str("partition is outside the usable range")
            }
            GptError::PartitionOverlaps => formatter.write_str("partition overlaps another"),
            GptError::NoFreeEntry => formatter.write_str("no free partition entry"),
            GptError::NameTooLong => formatter.write_str("partition name over 36 UTF-16 units"),
        }
    }
}

impl From<BlockError> for GptError {
    fn from(error: BlockError) -> Self {
        GptError::Device(error)
    }
}

/// A checked view of a header sector: at least [`HEADER_SIZE`] bytes.
#[derive(Clone, Copy, Debug)]
pub struct HeaderView<'a> {
    bytes: &'a [u8],
}

impl<'a> HeaderView<'a> {
    /// Views `bytes` if they are long enough to hold every header field.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() >= HEADER_SIZE as usize).then_some(HeaderView { bytes })
    }

    /// Bytes 0..8.
    pub fn signature(&self) -> [u8; 8] {
        read_array(self.bytes, 0)
    }
    /// Bytes 8..12.
    pub fn revision(&self) -> u32 {
        read_u32(self.bytes, 8)
    }
    /// Bytes 12..16.
    pub fn header_size(&self) -> u32 {
        read_u32(self.bytes, 12)
    }
    /// Bytes 16..20.
    pub fn header_crc(&self) -> u32 {
        read_u32(self.bytes, 16)
    }
    /// Bytes 20..24.
    pub fn reserved(&self) -> u32 {
        read_u32(self.bytes, 20)
    }
    /// Bytes 24..32.
    pub fn my_lba(&self) -> Sector {
        Sector(read_u64(self.bytes, 24))
    }
    /// Bytes 32..40.
    pub fn alternate_lba(&self) -> Sector {
        Sector(read_u64(self.bytes, 32))
    }
    /// Bytes 40..48.
    pub fn first_usable(&self) -> Sector {
        Sector(read_u64(self.bytes, 40))
    }
    /// Bytes 48..56.
    pub fn last_usable(&self) -> Sector {
        Sector(read_u64(self.bytes, 48))
    }
    /// Bytes 56..72.
    pub fn disk_guid(&self) -> Guid {
        Guid(read_array(self.bytes, 56))
    }
    /// Bytes 72..80.
    pub fn entries_lba(&self) -> Sector {
        Sector(read_u64(self.bytes, 72))
    }
    /// Bytes 80..84.
    pub fn entry_count(&self) -> u32 {
        read_u32(self.bytes, 80)
    }
    /// Bytes 84..88.
    pub fn entry_size(&self) -> u32 {
        read_u32(self.bytes, 84)
    }
    /// Bytes 88..92.
    pub fn entries_crc(&self) -> u32 {
        read_u32(self.bytes, 88)
    }

    /// CRC32 of the first `size` bytes with the CRC field taken as zero.
    fn computed_crc(&self, size: usize) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(self.bytes.get(..16).unwrap_or_default());
        hasher.update(&[0; 4]);
        hasher.update(self.bytes.get(20..size).unwrap_or_default());
        hasher.finalize()
    }
}

/// A validated GPT header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptHeader {
    /// Where this header lives.
    pub my_lba: Sector,
    /// Where the other copy's header lives.
    pub alternate_lba: Sector,
    /// First sector partitions may use.
    pub first_usable: Sector,
    /// Last sector partitions may use (inclusive).
    pub last_usable: Sector,
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// First sector of this copy's entry array.
    pub entries_lba: Sector,
    /// Entries in the array.
    pub entry_count: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// CRC32 of the entry array.
    pub entries_crc: u32,
}

impl GptHeader {
    /// Validates a header read from sector `expected` of a disk of
    /// `sector_count` sectors. The entry array is checked separately.
    pub fn parse(
        view: HeaderView<'_>,
        expected: Sector,
        sector_count: u64,
    ) -> Result<GptHeader, CopyFault> {
        if view.signature() != HEADER_SIGNATURE {
            return Err(CopyFault::BadSignature);
        }
        if view.revision() >> 16 != 1 {
            return Err(CopyFault::UnsupportedRevision(view.revision()));
        }
        let size = view.header_size();
        if size < HEADER_SIZE || size as usize > SECTOR_SIZE || size as usize > view.bytes.len() {
            return Err(CopyFault::BadHeaderSize(size));
        }
        let computed = view.computed_crc(size as usize);
        if computed != view.header_crc() {
            return Err(CopyFault::HeaderCrcMismatch {
                stored: view.header_crc(),
                computed,
            });
        }
        if view.reserved() != 0 {
            return Err(CopyFault::ReservedNotZero);
        }
        if view.my_lba() != expected {
            return Err(CopyFault::WrongLocation {
                expected,
                found: view.my_lba(),
            });
        }
        let alternate = view.alternate_lba();
        if alternate.0 == 0 || alternate.0 >= sector_count || alternate == expected {
            return Err(CopyFault::BadAlternateLocation(alternate));
        }
        let header = GptHeader {
            my_lba: view.my_lba(),
            alternate_lba: alternate,
            first_usable: view.first_usable(),
            last_usable: view.last_usable(),
            disk_guid: view.disk_guid(),
            entries_lba: view.entries_lba(),
            entry_count: view.entry_count(),
            entry_size: view.entry_size(),
            entries_crc: view.entries_crc(),
        };
        header.check_geometry(sector_count)?;
        Ok(header)
    }

    fn check_geometry(&self, sector_count: u64) -> Result<(), CopyFault> {
        let (first, last) = (self.first_usable, self.last_usable);
        let headers = [self.my_lba.0, self.alternate_lba.0];
        let usable_ok = first.0 >= 1
            && first <= last
            && last.0 < sector_count
            && headers.iter().all(|&lba| lba < first.0 || lba > last.0);
        if !usable_ok {
            return Err(CopyFault::BadUsableRange { first, last });
        }
        let size = self.entry_size;
        if !(ENTRY_SIZE..=4096).contains(&size) || !size.is_power_of_two() {
            return Err(CopyFault::BadEntrySize(size));
        }
        let array_bytes = u64::from(self.entry_count) * u64::from(size);
        if array_bytes > MAX_ENTRY_ARRAY_BYTES {
            return Err(CopyFault::EntryArrayTooLarge {
                count: self.entry_count,
                size,
            });
        }
        let start = self.entries_lba.0;
        let end = start.saturating_add(self.array_sectors());
        let misplaced = start == 0
            || end > sector_count
            || (start <= last.0 && first.0 < end)
            || headers.iter().any(|&lba| start <= lba && lba < end);
        if misplaced {
            return Err(CopyFault::EntryArrayMisplaced(self.entries_lba));
        }
        Ok(())
    }

    /// Sectors the entry array occupies.
    pub fn array_sectors(&self) -> u64 {
        (u64::from(self.entry_count) * u64::from(self.entry_size)).div_ceil(SECTOR_BYTES)
    }

    /// The header as a sector, its CRC32 computed.
    pub fn encode(&self) -> [u8; SECTOR_SIZE] {
        let mut sector = [0u8; SECTOR_SIZE];
        write_bytes(&mut sector, 0, &HEADER_SIGNATURE);
        write_u32(&mut sector, 8, REVISION_1_0);
        write_u32(&mut sector, 12, HEADER_SIZE);
        write_u64(&mut sector, 24, self.my_lba.0);
        write_u64(&mut sector, 32, self.alternate_lba.0);
        write_u64(&mut sector, 40, self.first_usable.0);
        write_u64(&mut sector, 48, self.last_usable.0);
        write_bytes(&mut sector, 56, &self.disk_guid.0);
        write_u64(&mut sector, 72, self.entries_lba.0);
        write_u32(&mut sector, 80, self.entry_count);
        write_u32(&mut sector, 84, self.entry_size);
        write_u32(&mut sector, 88, self.entries_crc);
        let crc = crc32fast::hash(&sector[..HEADER_SIZE as usize]);
        write_u32(&mut sector, 16, crc);
        sector
    }
}

/// One partition entry (128 bytes on disk; larger entries' extra bytes are
/// ignored on read and zero on write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionEntry {
    /// What the partition holds; zero means the entry is unused.
    pub type_guid: Guid,
    /// This partition's own GUID.
    pub unique_guid: Guid,
    /// First sector.
    pub first: Sector,
    /// Last sector (inclusive).
    pub last: Sector,
    /// Attribute bits.
    pub attributes: u64,
    /// UTF-16LE name, NUL-padded.
    pub name: [u16; NAME_UNITS],
}

impl PartitionEntry {
    /// An unused entry.
    pub const UNUSED: PartitionEntry = PartitionEntry {
        type_guid: Guid::ZERO,
        unique_guid: Guid::ZERO,
        first: Sector(0),
        last: Sector(0),
        attributes: 0,
        name: [0; NAME_UNITS],
    };

    /// Reads an entry from at least 128 bytes (zero-filled if shorter).
    pub fn parse(bytes: &[u8]) -> PartitionEntry {
        let mut name = [0u16; NAME_UNITS];
        for (index, unit) in name.iter_mut().enumerate() {
            *unit = u16::from_le_bytes(read_array(bytes, 56 + 2 * index));
        }
        PartitionEntry {
            type_guid: Guid(read_array(bytes, 0)),
            unique_guid: Guid(read_array(bytes, 16)),
            first: Sector(read_u64(bytes, 32)),
            last: Sector(read_u64(bytes, 40)),
            attributes: read_u64(bytes, 48),
            name,
        }
    }

    /// Writes the entry into the first 128 bytes of `bytes`.
    pub fn encode(&self, bytes: &mut [u8]) {
        write_bytes(bytes, 0, &self.type_guid.0);
        write_bytes(bytes, 16, &self.unique_guid.0);
        write_u64(bytes, 32, self.first.0);
        write_u64(bytes, 40, self.last.0);
        write_u64(bytes, 48, self.attributes);
        for (index, unit) in self.name.iter().enumerate() {
            write_bytes(bytes, 56 + 2 * index, &unit.to_le_bytes());
        }
    }

    /// Whether the entry describes a partition.
    pub fn is_used(&self) -> bool {
        !self.type_guid.is_zero()
    }

    /// Sectors in the partition (`last - first + 1`; 0 if reversed).
    pub fn sector_count(&self) -> u64 {
        if self.last < self.first {
            0
        } else {
            (self.last.0 - self.first.0).saturating_add(1)
        }
    }

    /// The name up to the first NUL, invalid UTF-16 replaced.
    pub fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&unit| unit == 0)
            .unwrap_or(NAME_UNITS);
        char::decode_utf16(self.name.iter().take(end).copied())
            .map(|decoded| decoded.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }

    /// Encodes `name` as the entry's name.
    pub fn set_name(&mut self, name: &str) -> Result<(), GptError> {
        let mut units = [0u16; NAME_UNITS];
        for (index, unit) in name.encode_utf16().enumerate() {
            *units.get_mut(index).ok_or(GptError::NameTooLong)? = unit;
        }
        self.name = units;
        Ok(())
    }
}

/// What sector 0 holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MbrKind {
    /// A protective MBR: only an `0xEE` entry.
    Protective,
    /// An `0xEE` entry beside other entries (a hybrid MBR).
    Hybrid,
    /// No MBR signature or no `0xEE` entry (GPT readers may still accept
    /// the disk; Xenolith reports it).
    Missing,
}

/// Classifies sector 0.
pub fn classify_mbr(sector: &[u8]) -> MbrKind {
    if read_array::<2>(sector, 510) != [0x55, 0xAA] {
        return MbrKind::Missing;
    }
    let types: [u8; 4] =
        core::array::from_fn(|index| read_array::<1>(sector, 446 + 16 * index + 4)[0]);
    let protective = types.contains(&0xEE);
    let others = types.iter().any(|&kind| kind != 0 && kind != 0xEE);
    match (protective, others) {
        (true, false) => MbrKind::Protective,
        (true, true) => MbrKind::Hybrid,
        (false, _) => MbrKind::Missing,
    }
}

/// A protective MBR for a disk of `sector_count` sectors.
pub fn protective_mbr(sector_count: u64) -> [u8; SECTOR_SIZE] {
    let mut sector = [0u8; SECTOR_SIZE];
    let size = u32::try_from(sector_count.saturating_sub(1)).unwrap_or(u32::MAX);
    // Status, CHS start (0/0/2), type 0xEE, CHS end (maxed out), LBA 1, size.
    write_bytes(
        &mut sector,
        446,
        &[0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF],
    );
    write_u32(&mut sector, 446 + 8, 1);
    write_u32(&mut sector, 446 + 12, size);
    write_bytes(&mut sector, 510, &[0x55, 0xAA]);
    sector
}

/// A partition table: one validated header's geometry plus its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    sector_count: u64,
    disk_guid: Guid,
    first_usable: Sector,
    last_usable: Sector,
    entries: Vec<PartitionEntry>,
}

/// How a read went: which copy was used and the health of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptReport {
    /// The copy the table came from.
    pub used: GptCopy,
    /// `Ok` if the primary is valid, else what is wrong with it.
    pub primary: Result<(), CopyFault>,
    /// `Ok` if the backup is valid, else what is wrong with it.
    pub backup: Result<(), CopyFault>,
    /// What sector 0 holds.
    pub mbr: MbrKind,
}

impl GptReport {
    /// Whether both copies are valid (if not, [`Gpt::write`] repairs).
    pub fn is_healthy(&self) -> bool {
        self.primary.is_ok() && self.backup.is_ok() && self.mbr == MbrKind::Protective
    }
}

/// A partition in use, with its entry index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Index in the entry array.
    pub index: u32,
    /// The entry.
    pub entry: PartitionEntry,
}

impl Partition {
    /// First sector on the disk.
    pub fn first_sector(&self) -> Sector {
        self.entry.first
    }

    /// Sectors in the partition.
    pub fn sector_count(&self) -> u64 {
        self.entry.sector_count()
    }
}

/// Why the Xenolith store partition could not be picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindError {
    /// No partition has [`XENOLITH_STORE_TYPE`].
    NotFound,
    /// More than one does; Xenolith will not guess.
    Ambiguous {
        /// Entry index of the first.
        first: u32,
        /// Entry index of the second.
        second: u32,
    },
}

impl fmt::Display for FindError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindError::NotFound => formatter.write_str("no Xenolith volume store partition"),
            FindError::Ambiguous { first, second } => write!(
                formatter,
                "partition entries {first} and {second} are both Xenolith stores"
            ),
        }
    }
}

/// A new partition for [`Gpt::add_partition`].
#[derive(Clone, Copy, Debug)]
pub struct NewPartition<'a> {
    /// Its type.
    pub type_guid: Guid,
    /// Its own GUID.
    pub unique_guid: Guid,
    /// First sector.
    pub first: Sector,
    /// Last sector (inclusive).
    pub last: Sector,
    /// Its name (at most 36 UTF-16 units).
    pub name: &'a str,
}

impl Gpt {
    /// An empty table for a disk of `sector_count` sectors with the
    /// standard layout: 128 entries of 128 bytes after LBA 1 and before
    /// the last LBA.
    pub fn new(sector_count: u64, disk_guid: Guid) -> Result<Gpt, GptError> {
        if sector_count < MIN_DISK_SECTORS {
            return Err(GptError::DiskTooSmall { sector_count });
        }
        let array_sectors = u64::from(DEFAULT_ENTRY_COUNT * ENTRY_SIZE) / SECTOR_BYTES;
        Ok(Gpt {
            sector_count,
            disk_guid,
            first_usable: Sector(2 + array_sectors),
            last_usable: Sector(sector_count - 2 - array_sectors),
            entries: vec![PartitionEntry::UNUSED; DEFAULT_ENTRY_COUNT as usize],
        })
    }

    /// A table with one Xenolith store partition, named `"xenolith"`,
    /// from the first 1 MiB boundary to the last whole MiB of the usable
    /// range.
    pub fn with_xenolith_partition(
        sector_count: u64,
        disk_guid: Guid,
        partition_guid: Guid,
    ) -> Result<Gpt, GptError> {
        let mut gpt = Gpt::new(sector_count, disk_guid)?;
        let first = gpt
            .first_usable
            .0
            .next_multiple_of(PARTITION_ALIGNMENT_SECTORS);
        let end =
            (gpt.last_usable.0 + 1) / PARTITION_ALIGNMENT_SECTORS * PARTITION_ALIGNMENT_SECTORS;
        if end <= first {
            return Err(GptError::DiskTooSmall { sector_count });
        }
        gpt.add_partition(NewPartition {
            type_guid: XENOLITH_STORE_TYPE,
            unique_guid: partition_guid,
            first: Sector(first),
            last: Sector(end - 1),
            name: "xenolith",
        })?;
        Ok(gpt)
    }

    /// Adds a partition in the first free entry; returns its index.
    pub fn add_partition(&mut self, new: NewPartition<'_>) -> Result<u32, GptError> {
        if new.type_guid.is_zero() {
            return Err(GptError::ZeroTypeGuid);
        }
        if new.first > new.last || new.first < self.first_usable || new.last > self.last_usable {
            return Err(GptError::PartitionOutsideUsable);
        }
        if self
            .partitions()
            .any(|old| old.entry.first <= new.last && new.first <= old.entry.last)
        {
            return Err(GptError::PartitionOverlaps);
        }
        let mut entry = PartitionEntry {
            type_guid: new.type_guid,
            unique_guid: new.unique_guid,
            first: new.first,
            last: new.last,
            attributes: 0,
            name: [0; NAME_UNITS],
        };
        entry.set_name(new.name)?;
        let (index, slot) = self
            .entries
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| !slot.is_used())
            .ok_or(GptError::NoFreeEntry)?;
        *slot = entry;
        Ok(index as u32)
    }

    /// Sectors on the disk the table was made for or read from.
    pub fn sector_count(&self) -> u64 {
        self.sector_count
    }

    /// The disk's GUID.
    pub fn disk_guid(&self) -> Guid {
        self.disk_guid
    }

    /// First usable sector.
    pub fn first_usable(&self) -> Sector {
        self.first_usable
    }

    /// Last usable sector (inclusive).
    pub fn last_usable(&self) -> Sector {
        self.last_usable
    }

    /// Every entry, used or not.
    pub fn entries(&self) -> &[PartitionEntry] {
        &self.entries
    }

    /// The partitions in use, in entry order.
    pub fn partitions(&self) -> impl Iterator<Item = Partition> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.is_used())
            .map(|(index, entry)| Partition {
                index: index as u32,
                entry: *entry,
            })
    }

    /// The one partition of type [`XENOLITH_STORE_TYPE`].
    pub fn find_xenolith_store(&self) -> Result<Partition, FindError> {
        let mut found = self
            .partitions()
            .filter(|partition| partition.entry.type_guid == XENOLITH_STORE_TYPE);
        let first = found.next().ok_or(FindError::NotFound)?;
        match found.next() {
            None => Ok(first),
            Some(second) => Err(FindError::Ambiguous {
                first: first.index,
                second: second.index,
            }),
        }
    }

    /// Reads the table, preferring the primary copy and falling back to the
    /// backup at the last sector.
    pub fn read<D: BlockDevice>(device: &mut D) -> Result<(Gpt, GptReport), GptError> {
        let sector_count = device.sector_count();
        if sector_count < 3 {
            return Err(GptError::DiskTooSmall { sector_count });
        }
        let mut mbr = [0u8; SECTOR_SIZE];
        let mbr_kind = match device.read(Sector(0), &mut mbr) {
            Ok(()) => classify_mbr(&mbr),
            Err(_) => MbrKind::Missing,
        };
        let primary = read_copy(device, Sector(1), sector_count);
        let backup = read_copy(device, Sector(sector_count - 1), sector_count);
        let health =
            |copy: &Result<Gpt, CopyFault>| copy.as_ref().map(|_| ()).map_err(|fault| *fault);
        let (primary_health, backup_health) = (health(&primary), health(&backup));
        let (gpt, used) = match (primary, backup) {
            (Ok(gpt), _) => (gpt, GptCopy::Primary),
            (Err(_), Ok(gpt)) => (gpt, GptCopy::Backup),
            (Err(primary), Err(backup)) => return Err(GptError::NoValidCopy { primary, backup }),
        };
        Ok((
            gpt,
            GptReport {
                used,
                primary: primary_health,
                backup: backup_health,
                mbr: mbr_kind,
            },
        ))
    }

    /// Writes protective MBR, backup and primary copies, then flushes.
    /// The backup goes first and is flushed before the primary is touched,
    /// so a crash leaves at least one valid copy (old or new). Also repairs
    /// a damaged copy after [`Gpt::read`].
    pub fn write<D: BlockDevice>(&self, device: &mut D) -> Result<(), GptError> {
        let sector_count = device.sector_count();
        if sector_count != self.sector_count {
            return Err(GptError::DiskTooSmall { sector_count });
        }
        let mut array = vec![0u8; self.entries.len() * ENTRY_SIZE as usize];
        for (entry, bytes) in self
            .entries
            .iter()
            .zip(array.chunks_exact_mut(ENTRY_SIZE as usize))
        {
            entry.encode(bytes);
        }
        let padded = (array.len() as u64).div_ceil(SECTOR_BYTES) as usize * SECTOR_SIZE;
        let entries_crc = crc32fast::hash(&array);
        array.resize(padded, 0);
        let array_sectors = (padded / SECTOR_SIZE) as u64;
        let last = Sector(sector_count - 1);
        let primary = GptHeader {
            my_lba: Sector(1),
            alternate_lba: last,
            first_usable: self.first_usable,
            last_usable: self.last_usable,
            disk_guid: self.disk_guid,
            entries_lba: Sector(2),
            entry_count: self.entries.len() as u32,
            entry_size: ENTRY_SIZE,
            entries_crc,
        };
        let backup = GptHeader {
            my_lba: last,
            alternate_lba: Sector(1),
            entries_lba: Sector(last.0 - array_sectors),
            ..primary
        };
        device.write(backup.entries_lba, &array)?;
        device.write(last, &backup.encode())?;
        device.flush()?;
        device.write(Sector(2), &array)?;
        device.write(Sector(1), &primary.encode())?;
        device.write(Sector(0), &protective_mbr(sector_count))?;
        device.flush()?;
        Ok(())
    }

    /// Writes a new table on a blank disk: refuses (without writing) if
    /// sector 0 has an MBR signature or either GPT header location holds
    /// `"EFI PART"`.
    pub fn write_new<D: BlockDevice>(&self, device: &mut D) -> Result<(), GptError> {
        let sector_count = device.sector_count();
        if sector_count < MIN_DISK_SECTORS {
            return Err(GptError::DiskTooSmall { sector_count });
        }
        let mut sector = [0u8; SECTOR_SIZE];
        device.read(Sector(0), &mut sector)?;
        if read_array::<2>(&sector, 510) == [0x55, 0xAA] {
            return Err(GptError::DiskNotBlank);
        }
        for lba in [1, sector_count - 1] {
            device.read(Sector(lba), &mut sector)?;
            if read_array::<8>(&sector, 0) == HEADER_SIGNATURE {
                return Err(GptError::DiskNotBlank);
            }
        }
        self.write(device)
    }
}

#[cfg(test)]
mod tests;

/// Reads and validates one copy: header, entry array CRC, partitions.
fn read_copy<D: BlockDevice>(
    device: &mut D,
    lba: Sector,
    sector_count: u64,
) -> Result<Gpt, CopyFault> {
    let mut sector = [0u8; SECTOR_SIZE];
    device.read(lba, &mut sector).map_err(CopyFault::Device)?;
    let view = HeaderView::new_checked(&sector).ok_or(CopyFault::BadHeaderSize(0))?;
    let header = GptHeader::parse(view, lba, sector_count)?;
    // Bounded by MAX_ENTRY_ARRAY_BYTES, checked in parse().
    let array_bytes = (u64::from(header.entry_count) * u64::from(header.entry_size)) as usize;
    let mut array = vec![0u8; header.array_sectors() as usize * SECTOR_SIZE];
    device
        .read(header.entries_lba, &mut array)
        .map_err(CopyFault::Device)?;
    let array = array.get(..array_bytes).unwrap_or_default();
    let computed = crc32fast::hash(array);
    if computed != header.entries_crc {
        return Err(CopyFault::EntryArrayCrcMismatch {
            stored: header.entries_crc,
            computed,
        });
    }
    let entries: Vec<PartitionEntry> = array
        .chunks_exact(header.entry_size as usize)
        .map(PartitionEntry::parse)
        .collect();
    check_partitions(&entries, &header)?;
    Ok(Gpt {
        sector_count,
        disk_guid: header.disk_guid,
        first_usable: header.first_usable,
        last_usable: header.last_usable,
        entries,
    })
}

/// Every used entry in the usable range, none reversed, none overlapping.
fn check_partitions(entries: &[PartitionEntry], header: &GptHeader) -> Result<(), CopyFault> {
    let mut used: Vec<(Sector, Sector, u32)> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if !entry.is_used() {
            continue;
        }
        let index = index as u32;
        if entry.first > entry.last {
            return Err(CopyFault::PartitionReversed { index });
        }
        if entry.first < header.first_usable || entry.last > header.last_usable {
            return Err(CopyFault::PartitionOutsideUsable { index });
        }
        used.push((entry.first, entry.last, index));
    }
    used.sort_unstable();
    for pair in used.windows(2) {
        if let [(_, last, first_index), (next_first, _, second_index)] = pair
            && next_first <= last
        {
            return Err(CopyFault::PartitionsOverlap {
                first: (*first_index).min(*second_index),
                second: (*first_index).max(*second_index),
            });
        }
    }
    Ok(())
}
