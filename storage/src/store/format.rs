//! The volume store's on-disk metadata: the slot header, the volume table,
//! and their two-step parsing ([`SlotHeaderView`] checks lengths,
//! [`SlotHeader::parse`] and [`Metadata::parse`] validate everything).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{BlockError, SECTOR_BYTES, SECTOR_SIZE};
use crate::bytes::{Reader, read_array, read_u32, read_u64};
use crate::guid::Guid;

/// `"XENOVOLS"`: the first bytes of a metadata slot.
pub const SLOT_MAGIC: [u8; 8] = *b"XENOVOLS";
/// The metadata format this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the slot header before the volume table.
pub const SLOT_HEADER_BYTES: usize = 64;
/// Most volumes in a store.
pub const MAX_VOLUMES: usize = 256;
/// Most extents in one volume.
pub const MAX_EXTENTS_PER_VOLUME: usize = 64;
/// Longest volume name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Bytes of a volume record before its name and extents.
const VOLUME_RECORD_FIXED_BYTES: usize = 20;
/// Bytes of one extent record.
const EXTENT_RECORD_BYTES: usize = 16;
/// The largest metadata a valid store can have.
pub const MAX_METADATA_BYTES: usize = SLOT_HEADER_BYTES
    + 8
    + MAX_VOLUMES
        * (VOLUME_RECORD_FIXED_BYTES
            + MAX_NAME_BYTES
            + MAX_EXTENTS_PER_VOLUME * EXTENT_RECORD_BYTES);
/// Sectors a slot needs to hold [`MAX_METADATA_BYTES`].
pub const MIN_SLOT_SECTORS: u32 = MAX_METADATA_BYTES.div_ceil(SECTOR_SIZE) as u32;
/// Sectors in each metadata slot (512 KiB), fixed for format version 1 so
/// slot 1 can be found when slot 0 is unreadable.
pub const SLOT_SECTORS: u32 = 1024;
const _: () = assert!(MIN_SLOT_SECTORS <= SLOT_SECTORS);
/// Largest allocation block: 64 MiB.
pub const MAX_BLOCK_SECTORS: u32 = 1 << 17;

/// An allocation block's index in the data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockIndex(pub u64);

/// A run of allocation blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    /// First block.
    pub start: BlockIndex,
    /// Blocks in the run (at least one).
    pub blocks: u64,
}

impl Extent {
    /// The block after the last one (saturating; valid extents never
    /// saturate).
    pub fn end(&self) -> u64 {
        self.start.0.saturating_add(self.blocks)
    }
}

/// A volume's stable identifier (never reused within a store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeId(pub u32);

impl fmt::Display for VolumeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "volume #{}", self.0)
    }
}

/// What a volume holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    /// A guest disk (raw, qcow2 or vmdk). Any byte size: a qcow2 file need not be
    /// whole sectors; a raw disk served to a guest is its whole sectors.
    DiskImage,
    /// A guest kernel (ELF or bzImage).
    Kernel,
    /// A guest initial ramdisk.
    Initrd,
    /// A guest or appliance config (xl.cfg text).
    Config,
}

impl VolumeKind {
    /// The byte stored on disk.
    pub fn code(self) -> u8 {
        match self {
            VolumeKind::DiskImage => 1,
            VolumeKind::Kernel => 2,
            VolumeKind::Initrd => 3,
            VolumeKind::Config => 4,
        }
    }

    /// The kind stored as `code`, if any.
    pub fn from_code(code: u8) -> Option<VolumeKind> {
        match code {
            1 => Some(VolumeKind::DiskImage),
            2 => Some(VolumeKind::Kernel),
            3 => Some(VolumeKind::Initrd),
            4 => Some(VolumeKind::Config),
            _ => None,
        }
    }
}

/// Why a volume name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    TooLong(usize),
    /// A byte outside `A-Z a-z 0-9 . _ -`, at this position.
    BadCharacter(usize),
    /// The name starts with `.` or `-`.
    BadFirstCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => formatter.write_str("volume name is empty"),
            NameError::TooLong(length) => write!(
                formatter,
                "volume name of {length} bytes is longer than {MAX_NAME_BYTES}"
            ),
            NameError::BadCharacter(position) => write!(
                formatter,
                "volume name has a character other than A-Z a-z 0-9 . _ - at {position}"
            ),
            NameError::BadFirstCharacter => {
                formatter.write_str("volume name starts with '.' or '-'")
            }
        }
    }
}

/// A valid volume name: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`, not starting
/// with `.` or `-` (so it is a safe file name and xl.cfg word).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeName(String);

impl VolumeName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<VolumeName, NameError> {
        Self::from_bytes(name.as_bytes())
    }

    /// Validates raw bytes (as read from disk).
    pub fn from_bytes(bytes: &[u8]) -> Result<VolumeName, NameError> {
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong(bytes.len()));
        }
        if let Some(position) = bytes
            .iter()
            .position(|&byte| !(byte.is_ascii_alphanumeric() || b"._-".contains(&byte)))
        {
            return Err(NameError::BadCharacter(position));
        }
        if bytes[0] == b'.' || bytes[0] == b'-' {
            return Err(NameError::BadFirstCharacter);
        }
        // Every byte is ASCII, so this is valid UTF-8.
        Ok(VolumeName(bytes.iter().map(|&byte| byte as char).collect()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// One volume as recorded in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Stable identifier.
    pub id: VolumeId,
    /// Unique name.
    pub name: VolumeName,
    /// What it holds.
    pub kind: VolumeKind,
    /// Length in bytes.
    pub size: u64,
    /// Where its bytes are, in order: byte 0 is at the first extent's
    /// first block.
    pub extents: Vec<Extent>,
}

impl Volume {
    /// Blocks allocated to the volume.
    pub fn allocated_blocks(&self) -> u64 {
        self.extents
            .iter()
            .fold(0u64, |sum, extent| sum.saturating_add(extent.blocks))
    }
}

/// The store's fixed shape, recorded in every slot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Identifies this store (set at format time).
    pub store_guid: Guid,
    /// Sectors in the partition the store was formatted on.
    pub sector_count: u64,
    /// Sectors in each of the two metadata slots.
    pub slot_sectors: u32,
    /// Sectors in an allocation block (a power of two).
    pub block_sectors: u32,
}

impl Geometry {
    /// First sector of slot `slot` (0 or 1).
    pub fn slot_start(&self, slot: u32) -> u64 {
        u64::from(slot.min(1)) * u64::from(self.slot_sectors)
    }

    /// First sector of the data area: after both slots, block-aligned.
    pub fn data_start(&self) -> u64 {
        (2 * u64::from(self.slot_sectors)).next_multiple_of(u64::from(self.block_sectors.max(1)))
    }

    /// Bytes in an allocation block.
    pub fn block_bytes(&self) -> u64 {
        u64::from(self.block_sectors) * SECTOR_BYTES
    }

    /// Allocation blocks in the data area.
    pub fn block_count(&self) -> u64 {
        self.sector_count.saturating_sub(self.data_start()) / u64::from(self.block_sectors.max(1))
    }

    /// Blocks needed to hold `size` bytes.
    pub fn blocks_for(&self, size: u64) -> u64 {
        size.div_ceil(self.block_bytes().max(1))
    }

    /// Checks the shape is one this code can use.
    pub fn check(&self) -> Result<(), GeometryFault> {
        let block = self.block_sectors;
        if !block.is_power_of_two() || block > MAX_BLOCK_SECTORS {
            return Err(GeometryFault::BadBlockSize(block));
        }
        if self.slot_sectors != SLOT_SECTORS {
            return Err(GeometryFault::BadSlotSize(self.slot_sectors));
        }
        if self.sector_count > u64::MAX / SECTOR_BYTES {
            return Err(GeometryFault::PartitionTooLarge(self.sector_count));
        }
        if self.block_count() == 0 {
            return Err(GeometryFault::NoDataArea {
                sector_count: self.sector_count,
            });
        }
        Ok(())
    }
}

/// What is wrong with a store's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryFault {
    /// The block size is not a power of two up to [`MAX_BLOCK_SECTORS`].
    BadBlockSize(u32),
    /// The slot size is not [`SLOT_SECTORS`].
    BadSlotSize(u32),
    /// The partition's byte size does not fit 64 bits.
    PartitionTooLarge(u64),
    /// The partition has no room for one allocation block after the slots.
    NoDataArea {
        /// Sectors in the partition.
        sector_count: u64,
    },
}

impl fmt::Display for GeometryFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometryFault::BadBlockSize(sectors) => {
                write!(
                    formatter,
                    "allocation block of {sectors} sectors is invalid"
                )
            }
            GeometryFault::BadSlotSize(sectors) => {
                write!(formatter, "metadata slot of {sectors} sectors is invalid")
            }
            GeometryFault::PartitionTooLarge(sectors) => {
                write!(formatter, "partition of {sectors} sectors is too large")
            }
            GeometryFault::NoDataArea { sector_count } => write!(
                formatter,
                "{sector_count} sectors leave no room for data after the metadata"
            ),
        }
    }
}

/// What is wrong with one metadata slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotFault {
    /// The slot could not be read.
    Device(BlockError),
    /// No `"XENOVOLS"` magic: never written, wiped, or not a store.
    NoMagic,
    /// A format version this code does not know.
    UnsupportedVersion(u32),
    /// The recorded length is shorter than a header or longer than the slot.
    BadLength(u32),
    /// The CRC32 does not match: a torn or corrupted write.
    CrcMismatch {
        /// CRC32 recorded.
        stored: u32,
        /// CRC32 of the bytes read.
        computed: u32,
    },
    /// The slot says it is the other slot, or its generation's parity
    /// does not match its place.
    WrongSlot,
    /// The recorded geometry is unusable.
    Geometry(GeometryFault),
    /// The volume table is invalid.
    Metadata(MetadataFault),
}

impl fmt::Display for SlotFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotFault::Device(error) => write!(formatter, "unreadable: {error}"),
            SlotFault::NoMagic => formatter.write_str("no store magic"),
            SlotFault::UnsupportedVersion(version) => {
                write!(formatter, "unsupported format version {version}")
            }
            SlotFault::BadLength(length) => write!(formatter, "bad metadata length {length}"),
            SlotFault::CrcMismatch { stored, computed } => write!(
                formatter,
                "CRC32 {stored:#010x} but bytes give {computed:#010x} (torn or corrupted)"
            ),
            SlotFault::WrongSlot => formatter.write_str("metadata is in the wrong slot"),
            SlotFault::Geometry(fault) => write!(formatter, "{fault}"),
            SlotFault::Metadata(fault) => write!(formatter, "{fault}"),
        }
    }
}

/// What is wrong with a volume table whose CRC was right (a bug or a
/// forged disk, never a torn write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataFault {
    /// The table ends in the middle of a record.
    Truncated,
    /// Bytes follow the last record.
    TrailingBytes,
    /// More than [`MAX_VOLUMES`] volumes.
    TooManyVolumes(u32),
    /// A volume name is invalid.
    BadName(NameError),
    /// Two volumes share a name.
    DuplicateName,
    /// Two volumes share an id, or an id is not below the next id.
    BadId(VolumeId),
    /// An unknown volume kind code.
    BadKind(u8),
    /// A volume has more than [`MAX_EXTENTS_PER_VOLUME`] extents.
    TooManyExtents(VolumeId),
    /// An extent is empty or reaches past the data area.
    BadExtent(VolumeId),
    /// Two extents share blocks.
    ExtentsOverlap,
    /// A volume's blocks do not match its size.
    SizeMismatch(VolumeId),
}

impl fmt::Display for MetadataFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataFault::Truncated => formatter.write_str("volume table is truncated"),
            MetadataFault::TrailingBytes => formatter.write_str("volume table has trailing bytes"),
            MetadataFault::TooManyVolumes(count) => {
                write!(formatter, "{count} volumes is more than {MAX_VOLUMES}")
            }
            MetadataFault::BadName(error) => write!(formatter, "{error}"),
            MetadataFault::DuplicateName => formatter.write_str("two volumes share a name"),
            MetadataFault::BadId(id) => write!(formatter, "{id} is duplicated or out of range"),
            MetadataFault::BadKind(code) => write!(formatter, "unknown volume kind {code}"),
            MetadataFault::TooManyExtents(id) => write!(formatter, "{id} has too many extents"),
            MetadataFault::BadExtent(id) => {
                write!(formatter, "{id} has an empty or out-of-range extent")
            }
            MetadataFault::ExtentsOverlap => formatter.write_str("two extents share blocks"),
            MetadataFault::SizeMismatch(id) => {
                write!(formatter, "{id}'s blocks do not match its size")
            }
        }
    }
}

/// A checked view of a slot's first sector: at least
/// [`SLOT_HEADER_BYTES`] long.
#[derive(Clone, Copy, Debug)]
pub struct SlotHeaderView<'a> {
    bytes: &'a [u8],
}

impl<'a> SlotHeaderView<'a> {
    /// Views `bytes` if they hold a whole header.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() >= SLOT_HEADER_BYTES).then_some(SlotHeaderView { bytes })
    }
    /// Bytes 0..8.
    pub fn magic(&self) -> [u8; 8] {
        read_array(self.bytes, 0)
    }
    /// Bytes 8..12.
    pub fn version(&self) -> u32 {
        read_u32(self.bytes, 8)
    }
    /// Bytes 12..16: CRC32 of the first `length` bytes, this field as zero.
    pub fn crc(&self) -> u32 {
        read_u32(self.bytes, 12)
    }
    /// Bytes 16..24.
    pub fn generation(&self) -> u64 {
        read_u64(self.bytes, 16)
    }
    /// Bytes 24..28: header plus volume table, in bytes.
    pub fn length(&self) -> u32 {
        read_u32(self.bytes, 24)
    }
    /// Bytes 28..32.
    pub fn slot(&self) -> u32 {
        read_u32(self.bytes, 28)
    }
    /// Bytes 32..64.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            store_guid: Guid(read_array(self.bytes, 32)),
            sector_count: read_u64(self.bytes, 48),
            slot_sectors: read_u32(self.bytes, 56),
            block_sectors: read_u32(self.bytes, 60),
        }
    }
}

/// A validated slot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    /// Bumped on every metadata update; the larger valid one wins.
    pub generation: u64,
    /// Bytes of header plus volume table.
    pub length: u32,
    /// The store's shape.
    pub geometry: Geometry,
}

impl SlotHeader {
    /// Validates the header of slot `slot` whose first sector is `view`.
    /// The CRC covering the whole metadata is checked by [`parse_slot`].
    pub fn parse(view: SlotHeaderView<'_>, slot: u32) -> Result<SlotHeader, SlotFault> {
        if view.magic() != SLOT_MAGIC {
            return Err(SlotFault::NoMagic);
        }
        if view.version() != FORMAT_VERSION {
            return Err(SlotFault::UnsupportedVersion(view.version()));
        }
        let geometry = view.geometry();
        geometry.check().map_err(SlotFault::Geometry)?;
        let length = view.length();
        let slot_bytes = u64::from(geometry.slot_sectors) * SECTOR_BYTES;
        if (length as usize) < SLOT_HEADER_BYTES + 8 || u64::from(length) > slot_bytes {
            return Err(SlotFault::BadLength(length));
        }
        if view.slot() != slot || view.generation() % 2 != u64::from(slot) {
            return Err(SlotFault::WrongSlot);
        }
        Ok(SlotHeader {
            generation: view.generation(),
            length,
            geometry,
        })
    }
}

/// CRC32 of metadata bytes with the CRC field (bytes 12..16) as zero.
pub fn metadata_crc(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes.get(..12).unwrap_or_default());
    hasher.update(&[0; 4]);
    hasher.update(bytes.get(16..).unwrap_or_default());
    hasher.finalize()
}

/// Checks the CRC of a whole slot image (header and table, `length`
/// bytes) and parses the volume table.
pub fn parse_slot(header: &SlotHeader, bytes: &[u8]) -> Result<Metadata, SlotFault> {
    let Some(metadata) = bytes.get(..header.length as usize) else {
        return Err(SlotFault::BadLength(header.length));
    };
    let stored = read_u32(metadata, 12);
    let computed = metadata_crc(metadata);
    if stored != computed {
        return Err(SlotFault::CrcMismatch { stored, computed });
    }
    let table = metadata.get(SLOT_HEADER_BYTES..).unwrap_or_default();
    Metadata::parse(table, &header.geometry).map_err(SlotFault::Metadata)
}

/// The volume table: every volume and the next id to hand out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The id the next created volume gets.
    pub next_id: u32,
    /// The volumes, in creation order.
    pub volumes: Vec<Volume>,
}

impl Metadata {
    /// Parses and validates a volume table for a store of `geometry`.
    pub fn parse(bytes: &[u8], geometry: &Geometry) -> Result<Metadata, MetadataFault> {
        let mut reader = Reader::new(bytes);
        let next_id = reader.u32().ok_or(MetadataFault::Truncated)?;
        let count = reader.u32().ok_or(MetadataFault::Truncated)?;
        if count as usize > MAX_VOLUMES {
            return Err(MetadataFault::TooManyVolumes(count));
        }
        let mut volumes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            volumes.push(parse_volume(&mut reader, geometry)?);
        }
        if reader.remaining() != 0 {
            return Err(MetadataFault::TrailingBytes);
        }
        let metadata = Metadata { next_id, volumes };
        metadata.check(geometry)?;
        Ok(metadata)
    }

    /// Cross-volume rules: unique names and ids, ids below `next_id`, no
    /// two extents sharing a block.
    pub fn check(&self, geometry: &Geometry) -> Result<(), MetadataFault> {
        let mut names: Vec<&VolumeName> = self.volumes.iter().map(|volume| &volume.name).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(MetadataFault::DuplicateName);
        }
        let mut ids: Vec<VolumeId> = self.volumes.iter().map(|volume| volume.id).collect();
        ids.sort_unstable();
        for pair in ids.windows(2) {
            if pair[0] == pair[1] {
                return Err(MetadataFault::BadId(pair[0]));
            }
        }
        if let Some(&id) = ids.iter().find(|id| id.0 >= self.next_id) {
            return Err(MetadataFault::BadId(id));
        }
        let mut extents = self.used_extents();
        extents.sort_unstable();
        if extents
            .windows(2)
            .any(|pair| pair[0].end() > pair[1].start.0)
        {
            return Err(MetadataFault::ExtentsOverlap);
        }
        for volume in &self.volumes {
            check_volume(volume, geometry)?;
        }
        Ok(())
    }

    /// Every extent of every volume.
    pub fn used_extents(&self) -> Vec<Extent> {
        self.volumes
            .iter()
            .flat_map(|volume| volume.extents.iter().copied())
            .collect()
    }

    /// The slot image for `generation` in its slot: header and table,
    /// CRC filled in, padded with zeros to whole sectors.
    pub fn encode(&self, geometry: &Geometry, generation: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SLOT_HEADER_BYTES + 64);
        bytes.extend_from_slice(&SLOT_MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&generation.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]); // length, filled below
        bytes.extend_from_slice(&((generation % 2) as u32).to_le_bytes());
        bytes.extend_from_slice(&geometry.store_guid.0);
        bytes.extend_from_slice(&geometry.sector_count.to_le_bytes());
        bytes.extend_from_slice(&geometry.slot_sectors.to_le_bytes());
        bytes.extend_from_slice(&geometry.block_sectors.to_le_bytes());
        bytes.extend_from_slice(&self.next_id.to_le_bytes());
        bytes.extend_from_slice(&(self.volumes.len() as u32).to_le_bytes());
        for volume in &self.volumes {
            bytes.extend_from_slice(&volume.id.0.to_le_bytes());
            bytes.push(volume.kind.code());
            bytes.push(volume.name.as_str().len() as u8);
            bytes.extend_from_slice(&(volume.extents.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&volume.size.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]); // reserved
            bytes.extend_from_slice(volume.name.as_str().as_bytes());
            for extent in &volume.extents {
                bytes.extend_from_slice(&extent.start.0.to_le_bytes());
                bytes.extend_from_slice(&extent.blocks.to_le_bytes());
            }
        }
        let length = bytes.len() as u32;
        bytes[24..28].copy_from_slice(&length.to_le_bytes());
        let crc = metadata_crc(&bytes);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        bytes.resize(bytes.len().next_multiple_of(SECTOR_SIZE), 0);
        bytes
    }
}

fn parse_volume(reader: &mut Reader<'_>, geometry: &Geometry) -> Result<Volume, MetadataFault> {
    let id = VolumeId(reader.u32().ok_or(MetadataFault::Truncated)?);
    let kind_code = reader.u8().ok_or(MetadataFault::Truncated)?;
    let kind = VolumeKind::from_code(kind_code).ok_or(MetadataFault::BadKind(kind_code))?;
    let name_length = reader.u8().ok_or(MetadataFault::Truncated)?;
    let extent_count = reader.u16().ok_or(MetadataFault::Truncated)?;
    let size = reader.u64().ok_or(MetadataFault::Truncated)?;
    let _reserved = reader.u32().ok_or(MetadataFault::Truncated)?;
    let name = reader
        .take(usize::from(name_length))
        .ok_or(MetadataFault::Truncated)?;
    let name = VolumeName::from_bytes(name).map_err(MetadataFault::BadName)?;
    if usize::from(extent_count) > MAX_EXTENTS_PER_VOLUME {
        return Err(MetadataFault::TooManyExtents(id));
    }
    let mut extents = Vec::with_capacity(usize::from(extent_count));
    for _ in 0..extent_count {
        let start = reader.u64().ok_or(MetadataFault::Truncated)?;
        let blocks = reader.u64().ok_or(MetadataFault::Truncated)?;
        extents.push(Extent {
            start: BlockIndex(start),
            blocks,
        });
    }
    let volume = Volume {
        id,
        name,
        kind,
        size,
        extents,
    };
    check_volume(&volume, geometry)?;
    Ok(volume)
}

/// One volume's own rules: extents in range, blocks matching size.
pub fn check_volume(volume: &Volume, geometry: &Geometry) -> Result<(), MetadataFault> {
    if volume.extents.len() > MAX_EXTENTS_PER_VOLUME {
        return Err(MetadataFault::TooManyExtents(volume.id));
    }
    for extent in &volume.extents {
        let in_range = extent
            .start
            .0
            .checked_add(extent.blocks)
            .is_some_and(|end| end <= geometry.block_count());
        if extent.blocks == 0 || !in_range {
            return Err(MetadataFault::BadExtent(volume.id));
        }
    }
    if volume.allocated_blocks() != geometry.blocks_for(volume.size) {
        return Err(MetadataFault::SizeMismatch(volume.id));
    }
    Ok(())
}
