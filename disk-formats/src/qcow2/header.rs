//! The qcow2 header, in two steps: [`HeaderView`] checks there are enough
//! bytes and the magic, [`Header::parse`] validates every field against the
//! file's length and this code's limits. Also header extensions, the backing
//! file name, and writing a header for new images.

use alloc::string::String;

use crate::{BackingFormat, MetadataKind, Qcow2Error};

/// The first four bytes of every qcow2 image.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Bytes of a version 2 header; version 3 adds fields up to 104 (112 with
/// the compression type and padding).
pub const V2_HEADER_LENGTH: usize = 72;
/// The shortest version 3 header.
pub const V3_MIN_HEADER_LENGTH: usize = 104;
/// The version 3 header this code writes (compression type and padding).
pub const V3_HEADER_LENGTH: usize = 112;

/// Smallest and largest cluster sizes, as QEMU allows (512 B to 2 MiB).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// See [`MIN_CLUSTER_BITS`].
pub const MAX_CLUSTER_BITS: u32 = 21;
/// QEMU's limit on the L1 table: 32 MiB.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// QEMU's limit on the refcount table: 8 MiB.
pub const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// QEMU's limit on internal snapshots.
pub const MAX_SNAPSHOTS: u32 = 65536;
/// Backing file names are at most this long (QEMU's limit).
pub const MAX_BACKING_NAME: usize = 1023;
/// The highest host offset plus one that an L2 entry can hold (bits 9-55).
pub const MAX_HOST_OFFSET: u64 = 1 << 56;

/// Incompatible feature bits.
pub mod incompatible {
    /// Refcounts may be stale (lazy refcounts, unclean shutdown).
    pub const DIRTY: u64 = 1 << 0;
    /// QEMU found corruption.
    pub const CORRUPT: u64 = 1 << 1;
    /// Data lives in an external file.
    pub const EXTERNAL_DATA_FILE: u64 = 1 << 2;
    /// The compression type field is not deflate.
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    /// L2 entries carry subcluster bitmaps.
    pub const EXTENDED_L2: u64 = 1 << 4;
    /// Every bit the specification defines.
    pub const KNOWN: u64 = DIRTY | CORRUPT | EXTERNAL_DATA_FILE | COMPRESSION_TYPE | EXTENDED_L2;
}

/// Compatible feature bits.
pub mod compatible {
    /// The dirty bit may be used instead of updating refcounts.
    pub const LAZY_REFCOUNTS: u64 = 1 << 0;
}

/// Header extension types.
mod extension {
    pub const END: u32 = 0;
    pub const BACKING_FORMAT: u32 = 0xe279_2aca;
}

/// The qcow2 version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Version 2 (QEMU's `compat=0.10`).
    V2,
    /// Version 3 (`compat=1.1`).
    V3,
}

/// Bounds-checked access to a header's bytes: enough bytes for the version's
/// fields, and the magic. Field values are not yet validated.
#[derive(Clone, Copy, Debug)]
pub struct HeaderView<'a> {
    bytes: &'a [u8],
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0u8; 4];
    if let Some(source) = bytes.get(at..at + 4) {
        field.copy_from_slice(source);
    }
    u32::from_be_bytes(field)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    if let Some(source) = bytes.get(at..at + 8) {
        field.copy_from_slice(source);
    }
    u64::from_be_bytes(field)
}

/// The cluster size field from the start of an image (at least 72 bytes),
/// to know how much to read for [`HeaderView::new_checked`].
pub fn peek_cluster_bits(start: &[u8]) -> Result<u32, Qcow2Error> {
    if start.len() < V2_HEADER_LENGTH {
        return Err(Qcow2Error::HeaderTruncated);
    }
    if start.get(..4) != Some(&MAGIC[..]) {
        return Err(Qcow2Error::BadMagic);
    }
    let bits = be_u32(start, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&bits) {
        return Err(Qcow2Error::ClusterBitsOutOfRange(bits));
    }
    Ok(bits)
}

impl<'a> HeaderView<'a> {
    /// Checks `bytes` (the start of the image) hold a whole header.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Qcow2Error> {
        if bytes.len() < V2_HEADER_LENGTH {
            return Err(Qcow2Error::HeaderTruncated);
        }
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(Qcow2Error::BadMagic);
        }
        let view = Self { bytes };
        if view.version() == 3 {
            let length = view.header_length();
            if (length as usize) < V3_MIN_HEADER_LENGTH {
                return Err(Qcow2Error::BadHeaderLength(length));
            }
            if bytes.len() < length as usize {
                return Err(Qcow2Error::HeaderTruncated);
            }
        }
        Ok(view)
    }

    fn u32_at(&self, at: usize) -> u32 {
        be_u32(self.bytes, at)
    }

    fn u64_at(&self, at: usize) -> u64 {
        be_u64(self.bytes, at)
    }

    /// The version field.
    pub fn version(&self) -> u32 {
        self.u32_at(4)
    }
    /// Offset of the backing file name (0: none).
    pub fn backing_file_offset(&self) -> u64 {
        self.u64_at(8)
    }
    /// Length of the backing file name.
    pub fn backing_file_size(&self) -> u32 {
        self.u32_at(16)
    }
    /// log2 of the cluster size.
    pub fn cluster_bits(&self) -> u32 {
        self.u32_at(20)
    }
    /// Virtual disk size in bytes.
    pub fn size(&self) -> u64 {
        self.u64_at(24)
    }
    /// Encryption method (0: none).
    pub fn crypt_method(&self) -> u32 {
        self.u32_at(32)
    }
    /// L1 table entries.
    pub fn l1_size(&self) -> u32 {
        self.u32_at(36)
    }
    /// L1 table offset.
    pub fn l1_table_offset(&self) -> u64 {
        self.u64_at(40)
    }
    /// Refcount table offset.
    pub fn refcount_table_offset(&self) -> u64 {
        self.u64_at(48)
    }
    /// Refcount table length in clusters.
    pub fn refcount_table_clusters(&self) -> u32 {
        self.u32_at(56)
    }
    /// Internal snapshot count.
    pub fn snapshot_count(&self) -> u32 {
        self.u32_at(60)
    }
    /// Snapshot table offset.
    pub fn snapshots_offset(&self) -> u64 {
        self.u64_at(64)
    }
    fn is_v3(&self) -> bool {
        self.version() == 3
    }
    /// Incompatible features (v3; 0 for v2).
    pub fn incompatible_features(&self) -> u64 {
        if self.is_v3() { self.u64_at(72) } else { 0 }
    }
    /// Compatible features (v3; 0 for v2).
    pub fn compatible_features(&self) -> u64 {
        if self.is_v3() { self.u64_at(80) } else { 0 }
    }
    /// Autoclear features (v3; 0 for v2).
    pub fn autoclear_features(&self) -> u64 {
        if self.is_v3() { self.u64_at(88) } else { 0 }
    }
    /// log2 of the refcount width in bits (v3; 4 for v2).
    pub fn refcount_order(&self) -> u32 {
        if self.is_v3() { self.u32_at(96) } else { 4 }
    }
    /// Header length (v3; 72 for v2).
    pub fn header_length(&self) -> u32 {
        if self.is_v3() {
            self.u32_at(100)
        } else {
            V2_HEADER_LENGTH as u32
        }
    }
    /// Compression type (v3 with a header of more than 104 bytes; else 0).
    pub fn compression_type(&self) -> u8 {
        if self.is_v3() && self.header_length() as usize > V3_MIN_HEADER_LENGTH {
            self.bytes.get(104).copied().unwrap_or(0)
        } else {
            0
        }
    }
}

/// A validated header. Every offset is cluster aligned and inside the file,
/// every size within limits, and no refused feature is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The version.
    pub version: Version,
    /// log2 of the cluster size, 9..=21.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// L1 table entries.
    pub l1_size: u32,
    /// L1 table offset (cluster aligned).
    pub l1_table_offset: u64,
    /// Refcount table offset (cluster aligned).
    pub refcount_table_offset: u64,
    /// Refcount table length in clusters.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub snapshot_count: u32,
    /// Snapshot table offset.
    pub snapshots_offset: u64,
    /// Incompatible feature bits (only accepted ones).
    pub incompatible_features: u64,
    /// Compatible feature bits.
    pub compatible_features: u64,
    /// Autoclear feature bits.
    pub autoclear_features: u64,
    /// log2 of the refcount width, 0..=6.
    pub refcount_order: u32,
    /// Header length in bytes.
    pub header_length: u32,
    /// Backing file name location, if any: (offset, length).
    pub backing_file: Option<(u64, u32)>,
}

fn ranges_overlap(first: (u64, u64), second: (u64, u64)) -> bool {
    first.0 < second.0.saturating_add(second.1) && second.0 < first.0.saturating_add(first.1)
}

/// L1 entries needed to address `size` bytes with `cluster_bits` clusters.
pub fn l1_entries_for(size: u64, cluster_bits: u32) -> u64 {
    // Each L1 entry covers an L2 table of cluster_size / 8 entries.
    let shift = cluster_bits + (cluster_bits - 3);
    size.div_ceil(1u64 << shift)
}

impl Header {
    /// Validates a header for an image file of `file_length` bytes.
    pub fn parse(view: &HeaderView<'_>, file_length: u64) -> Result<Self, Qcow2Error> {
        let version = match view.version() {
            2 => Version::V2,
            3 => Version::V3,
            other => return Err(Qcow2Error::UnsupportedVersion(other)),
        };
        let cluster_bits = view.cluster_bits();
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(Qcow2Error::ClusterBitsOutOfRange(cluster_bits));
        }
        let cluster_size = 1u64 << cluster_bits;
        let header_length = view.header_length();
        if u64::from(header_length) > cluster_size {
            return Err(Qcow2Error::BadHeaderLength(header_length));
        }
        if view.crypt_method() != 0 {
            return Err(Qcow2Error::Encrypted(view.crypt_method()));
        }

        let features = view.incompatible_features();
        if features & !incompatible::KNOWN != 0 {
            return Err(Qcow2Error::UnknownIncompatibleFeatures(
                features & !incompatible::KNOWN,
            ));
        }
        if features & incompatible::DIRTY != 0 {
            return Err(Qcow2Error::ImageDirty);
        }
        if features & incompatible::CORRUPT != 0 {
            return Err(Qcow2Error::ImageMarkedCorrupt);
        }
        if features & incompatible::EXTERNAL_DATA_FILE != 0 {
            return Err(Qcow2Error::ExternalDataFile);
        }
        if features & incompatible::EXTENDED_L2 != 0 {
            return Err(Qcow2Error::ExtendedL2);
        }
        // Deflate is type 0; the feature bit with type 0 says nothing new.
        if view.compression_type() != 0 {
            return Err(Qcow2Error::UnsupportedCompressionType(
                view.compression_type(),
            ));
        }

        let refcount_order = view.refcount_order();
        if refcount_order > 6 {
            return Err(Qcow2Error::RefcountOrderOutOfRange(refcount_order));
        }

        let size = view.size();
        let needed = l1_entries_for(size, cluster_bits);
        if needed.saturating_mul(8) > MAX_L1_BYTES {
            return Err(Qcow2Error::VirtualSizeTooLarge(size));
        }
        let l1_size = view.l1_size();
        if u64::from(l1_size) * 8 > MAX_L1_BYTES {
            return Err(Qcow2Error::L1TableTooLarge(l1_size));
        }
        if u64::from(l1_size) < needed {
            return Err(Qcow2Error::L1TableTooSmall {
                entries: l1_size,
                needed,
            });
        }
        let l1_table_offset = view.l1_table_offset();
        let l1_bytes = u64::from(l1_size) * 8;
        check_structure(
            MetadataKind::L1Table,
            l1_table_offset,
            l1_bytes,
            cluster_size,
            file_length,
        )?;

        let refcount_table_clusters = view.refcount_table_clusters();
        let refcount_table_bytes = u64::from(refcount_table_clusters) << cluster_bits;
        if refcount_table_clusters == 0 || refcount_table_bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(Qcow2Error::RefcountTableSizeInvalid(
                refcount_table_clusters,
            ));
        }
        let refcount_table_offset = view.refcount_table_offset();
        check_structure(
            MetadataKind::RefcountTable,
            refcount_table_offset,
            refcount_table_bytes,
            cluster_size,
            file_length,
        )?;

        let snapshot_count = view.snapshot_count();
        if snapshot_count > MAX_SNAPSHOTS {
            return Err(Qcow2Error::TooManySnapshots(snapshot_count));
        }
        let snapshots_offset = view.snapshots_offset();
        if snapshot_count > 0 && !snapshots_offset.is_multiple_of(cluster_size) {
            return Err(Qcow2Error::MetadataUnaligned(
                MetadataKind::SnapshotTable,
                snapshots_offset,
            ));
        }

        // The header cluster, the L1 table and the refcount table are
        // distinct: a write to one must never land in another.
        let header_range = (0, cluster_size);
        let l1_range = (l1_table_offset, l1_bytes);
        let refcount_range = (refcount_table_offset, refcount_table_bytes);
        if l1_bytes > 0
            && (ranges_overlap(l1_range, header_range) || ranges_overlap(l1_range, refcount_range))
        {
            return Err(Qcow2Error::MetadataOverlap(
                MetadataKind::L1Table,
                l1_table_offset,
            ));
        }
        if ranges_overlap(refcount_range, header_range) {
            return Err(Qcow2Error::MetadataOverlap(
                MetadataKind::RefcountTable,
                refcount_table_offset,
            ));
        }

        let backing_file = match (view.backing_file_offset(), view.backing_file_size()) {
            (0, _) => None,
            (offset, length) => {
                let end = offset.checked_add(u64::from(length));
                if length as usize > MAX_BACKING_NAME
                    || offset < u64::from(header_length)
                    || end.is_none_or(|end| end > cluster_size.min(file_length))
                {
                    return Err(Qcow2Error::BackingNameInvalid);
                }
                Some((offset, length))
            }
        };

        Ok(Self {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
            snapshot_count,
            snapshots_offset,
            incompatible_features: features,
            compatible_features: view.compatible_features(),
            autoclear_features: view.autoclear_features(),
            refcount_order,
            header_length,
            backing_file,
        })
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Writes the header fields into `out` (at least the header length);
    /// the rest of `out` is left alone.
    pub fn write_to(&self, out: &mut [u8]) {
        let mut put = |at: usize, field: &[u8]| {
            if let Some(target) = out.get_mut(at..at + field.len()) {
                target.copy_from_slice(field);
            }
        };
        put(0, &MAGIC);
        put(
            4,
            &match self.version {
                Version::V2 => 2u32,
                Version::V3 => 3u32,
            }
            .to_be_bytes(),
        );
        let (backing_offset, backing_length) = self.backing_file.unwrap_or((0, 0));
        put(8, &backing_offset.to_be_bytes());
        put(16, &backing_length.to_be_bytes());
        put(20, &self.cluster_bits.to_be_bytes());
        put(24, &self.size.to_be_bytes());
        put(32, &0u32.to_be_bytes());
        put(36, &self.l1_size.to_be_bytes());
        put(40, &self.l1_table_offset.to_be_bytes());
        put(48, &self.refcount_table_offset.to_be_bytes());
        put(56, &self.refcount_table_clusters.to_be_bytes());
        put(60, &self.snapshot_count.to_be_bytes());
        put(64, &self.snapshots_offset.to_be_bytes());
        if self.version == Version::V3 {
            put(72, &self.incompatible_features.to_be_bytes());
            put(80, &self.compatible_features.to_be_bytes());
            put(88, &self.autoclear_features.to_be_bytes());
            put(96, &self.refcount_order.to_be_bytes());
            put(100, &self.header_length.to_be_bytes());
            if self.header_length as usize >= V3_HEADER_LENGTH {
                // Compression type deflate, then padding to 8 bytes.
                put(104, &[0u8; 8]);
            }
        }
    }
}

/// Checks a metadata structure of `length` bytes at `offset` is cluster
/// aligned and inside the file.
fn check_structure(
    kind: MetadataKind,
    offset: u64,
    length: u64,
    cluster_size: u64,
    file_length: u64,
) -> Result<(), Qcow2Error> {
    if length == 0 {
        return Ok(());
    }
    if !offset.is_multiple_of(cluster_size) {
        return Err(Qcow2Error::MetadataUnaligned(kind, offset));
    }
    match offset.checked_add(length) {
        Some(end) if end <= file_length => Ok(()),
        _ => Err(Qcow2Error::MetadataOutsideFile(kind, offset)),
    }
}

/// What the header extensions and backing name say, from the header cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// The backing file's format, if recorded.
    pub backing_format: Option<BackingFormat>,
    /// The backing file's name, if any.
    pub backing_name: Option<String>,
}

/// Reads the header extensions and backing file name from the header
/// cluster `cluster` (or as much of it as the file holds).
pub fn parse_extensions(header: &Header, cluster: &[u8]) -> Result<Extensions, Qcow2Error> {
    let mut extensions = Extensions::default();
    // Extensions run from the header's end to the backing name (or the
    // cluster's end); each is type, length, data padded to 8 bytes.
    let end = match header.backing_file {
        Some((offset, _)) => offset as usize,
        None => cluster.len(),
    }
    .min(cluster.len());
    let mut at = header.header_length as usize;
    while at + 8 <= end {
        let kind = be_u32(cluster, at);
        let length = be_u32(cluster, at + 4) as usize;
        if kind == extension::END {
            break;
        }
        let data_start = at + 8;
        let data = cluster
            .get(data_start..data_start.saturating_add(length))
            .filter(|_| data_start + length <= end)
            .ok_or(Qcow2Error::HeaderExtensionTruncated)?;
        if kind == extension::BACKING_FORMAT {
            extensions.backing_format = Some(BackingFormat::from_name(data));
        }
        at = data_start + length.next_multiple_of(8);
    }
    if let Some((offset, length)) = header.backing_file {
        let start = offset as usize;
        let name = cluster
            .get(start..start + length as usize)
            .ok_or(Qcow2Error::BackingNameInvalid)?;
        let name = core::str::from_utf8(name).map_err(|_| Qcow2Error::BackingNameNotUtf8)?;
        extensions.backing_name = Some(String::from(name));
    }
    Ok(extensions)
}

/// Writes a backing format extension then the end marker at `at` in the
/// header cluster; returns where the extensions end.
pub fn write_extensions(out: &mut [u8], at: usize, backing_format: Option<BackingFormat>) -> usize {
    let mut at = at;
    let mut put = |at: usize, field: &[u8]| {
        if let Some(target) = out.get_mut(at..at + field.len()) {
            target.copy_from_slice(field);
        }
    };
    if let Some(name) = backing_format.and_then(BackingFormat::name) {
        put(at, &extension::BACKING_FORMAT.to_be_bytes());
        put(at + 4, &(name.len() as u32).to_be_bytes());
        put(at + 8, name.as_bytes());
        at += 8 + name.len().next_multiple_of(8);
    }
    put(at, &[0u8; 8]);
    at + 8
}
