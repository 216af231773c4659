//! Errors: what went wrong serving an image, and which part of a qcow2
//! image is malformed or unsupported (VMDK's own are in `vmdk`).

use core::fmt;

use crate::StorageError;
use crate::vmdk::VmdkError;

/// Why an image request or an image open failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The storage under the image failed.
    Storage(StorageError),
    /// The qcow2 image is malformed, or uses a feature this code refuses.
    Qcow2(Qcow2Error),
    /// The VMDK image is malformed, or uses a feature this code refuses.
    Vmdk(VmdkError),
    /// A request reached past the end of the virtual disk.
    OutOfRange {
        /// First byte of the request.
        offset: u64,
        /// Bytes requested.
        length: u64,
        /// The virtual disk's size.
        size: u64,
    },
    /// A sector request whose buffer is not a whole number of sectors.
    UnalignedSectorRequest {
        /// The buffer's length in bytes.
        length: usize,
    },
    /// A write or discard to an image opened read-only.
    ReadOnly,
    /// The image has a backing image and the resolver could not open it.
    BackingUnavailable,
    /// The backing chain is deeper than [`crate::MAX_BACKING_DEPTH`] (or loops).
    BackingChainTooDeep,
    /// The backing chain names an image already in it.
    BackingLoop,
    /// The image names its backing image without recording a format
    /// `raw` or `qcow2` (formats are never guessed from backing content).
    BackingFormatUnknown,
}

impl From<StorageError> for ImageError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

impl From<Qcow2Error> for ImageError {
    fn from(error: Qcow2Error) -> Self {
        Self::Qcow2(error)
    }
}

impl From<VmdkError> for ImageError {
    fn from(error: VmdkError) -> Self {
        Self::Vmdk(error)
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(error) => write!(formatter, "storage: {error}"),
            Self::Qcow2(error) => write!(formatter, "qcow2: {error}"),
            Self::Vmdk(error) => write!(formatter, "vmdk: {error}"),
            Self::OutOfRange {
                offset,
                length,
                size,
            } => write!(
                formatter,
                "{length} bytes at {offset:#x} are past the virtual disk's end ({size} bytes)"
            ),
            Self::UnalignedSectorRequest { length } => {
                write!(formatter, "a {length}-byte buffer is not whole sectors")
            }
            Self::ReadOnly => formatter.write_str("the image is read-only"),
            Self::BackingUnavailable => formatter.write_str("the backing image cannot be opened"),
            Self::BackingChainTooDeep => formatter.write_str("the backing chain is too deep"),
            Self::BackingLoop => formatter.write_str("the backing chain loops"),
            Self::BackingFormatUnknown => {
                formatter.write_str("the backing image's format is not recorded as raw or qcow2")
            }
        }
    }
}

/// What is wrong with a qcow2 image, or which of its features is refused.
/// Every variant names the fault in the image's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qcow2Error {
    /// The storage is shorter than a qcow2 header.
    HeaderTruncated,
    /// The first four bytes are not `QFI\xfb`.
    BadMagic,
    /// Neither version 2 nor 3.
    UnsupportedVersion(u32),
    /// A v3 header length below 104 bytes or beyond the first cluster.
    BadHeaderLength(u32),
    /// Cluster bits outside 9..=21 (512 bytes to 2 MiB).
    ClusterBitsOutOfRange(u32),
    /// The image is encrypted (the legacy AES or LUKS methods).
    Encrypted(u32),
    /// The dirty bit: refcounts may be stale after a crash with lazy
    /// refcounts. Repair with `qemu-img check -r all` first.
    ImageDirty,
    /// The corrupt bit: QEMU found the metadata inconsistent.
    ImageMarkedCorrupt,
    /// Guest data lives in an external data file.
    ExternalDataFile,
    /// A compression type other than deflate (zstd is type 1).
    UnsupportedCompressionType(u8),
    /// Extended L2 entries (subclusters).
    ExtendedL2,
    /// Incompatible feature bits this code does not know.
    UnknownIncompatibleFeatures(u64),
    /// A refcount order above 6 (64-bit refcounts).
    RefcountOrderOutOfRange(u32),
    /// A virtual size the L1 table limit cannot address.
    VirtualSizeTooLarge(u64),
    /// An L1 table of more entries than the limit (4 Mi entries, 32 MiB).
    L1TableTooLarge(u32),
    /// An L1 table too small to address the whole virtual size.
    L1TableTooSmall {
        /// Entries the header declares.
        entries: u32,
        /// Entries the virtual size needs.
        needed: u64,
    },
    /// A refcount table of zero clusters, or beyond the limit (8 MiB).
    RefcountTableSizeInvalid(u32),
    /// More internal snapshots than QEMU allows (65536).
    TooManySnapshots(u32),
    /// A metadata structure that does not start on a cluster boundary.
    MetadataUnaligned(MetadataKind, u64),
    /// A metadata structure reaching past the end of the file.
    MetadataOutsideFile(MetadataKind, u64),
    /// A metadata structure overlapping the header or another structure.
    MetadataOverlap(MetadataKind, u64),
    /// A table entry with reserved bits set.
    ReservedBitsSet(MetadataKind, u64),
    /// A header extension running past the header cluster.
    HeaderExtensionTruncated,
    /// A backing file name longer than 1023 bytes or outside the first cluster.
    BackingNameInvalid,
    /// A backing file name that is not UTF-8.
    BackingNameNotUtf8,
    /// A compressed cluster that does not inflate to exactly one cluster.
    DecompressionFailed(u64),
    /// A refcount would exceed the refcount width.
    RefcountOverflow(u64),
    /// A cluster freed whose refcount is already zero.
    RefcountUnderflow(u64),
    /// A data cluster or L2 table without the copied flag: shared with a
    /// snapshot, so it cannot be written in place.
    SharedCluster(u64),
    /// Writing to an image with internal snapshots is not supported.
    SnapshotsPresent,
    /// The refcount table cannot grow further.
    RefcountTableFull,
    /// A new cluster would land on existing metadata (refcounts are wrong).
    AllocationOverlapsMetadata(u64),
    /// A cluster past the end of the file has a refcount: the refcounts
    /// are wrong, and allocating there could hand out a cluster in use.
    RefcountBeyondFile(u64),
    /// The image would grow beyond the largest file offset qcow2 addresses.
    ImageTooLarge,
    /// Creation options out of range (cluster bits, refcount order, size,
    /// or a backing name that does not fit the header cluster).
    BadCreateOptions,
}

/// The metadata structure a [`Qcow2Error`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataKind {
    /// The L1 table.
    L1Table,
    /// An L2 table (named by an L1 entry).
    L2Table,
    /// A data cluster (named by an L2 entry).
    DataCluster,
    /// A compressed cluster's bytes.
    CompressedCluster,
    /// The refcount table.
    RefcountTable,
    /// A refcount block (named by a refcount table entry).
    RefcountBlock,
    /// The snapshot table.
    SnapshotTable,
}

impl fmt::Display for MetadataKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::L1Table => "L1 table",
            Self::L2Table => "L2 table",
            Self::DataCluster => "data cluster",
            Self::CompressedCluster => "compressed cluster",
            Self::RefcountTable => "refcount table",
            Self::RefcountBlock => "refcount block",
            Self::SnapshotTable => "snapshot table",
        })
    }
}

impl fmt::Display for Qcow2Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderTruncated => formatter.write_str("file shorter than a qcow2 header"),
            Self::BadMagic => formatter.write_str("not a qcow2 image (bad magic)"),
            Self::UnsupportedVersion(version) => write!(formatter, "unsupported version {version}"),
            Self::BadHeaderLength(length) => write!(formatter, "bad header length {length}"),
            Self::ClusterBitsOutOfRange(bits) => {
                write!(formatter, "cluster bits {bits} not in 9..=21")
            }
            Self::Encrypted(method) => {
                write!(formatter, "encrypted (method {method}): not supported")
            }
            Self::ImageDirty => formatter.write_str(
                "dirty bit set (lazy refcounts not replayed): run `qemu-img check -r all` first",
            ),
            Self::ImageMarkedCorrupt => {
                formatter.write_str("corrupt bit set: repair with `qemu-img check -r all`")
            }
            Self::ExternalDataFile => formatter.write_str("external data files are not supported"),
            Self::UnsupportedCompressionType(kind) => {
                write!(
                    formatter,
                    "compression type {kind} not supported (deflate only)"
                )
            }
            Self::ExtendedL2 => formatter.write_str("extended L2 entries are not supported"),
            Self::UnknownIncompatibleFeatures(bits) => {
                write!(formatter, "unknown incompatible features {bits:#x}")
            }
            Self::RefcountOrderOutOfRange(order) => {
                write!(formatter, "refcount order {order} above 6")
            }
            Self::VirtualSizeTooLarge(size) => write!(formatter, "virtual size {size} too large"),
            Self::L1TableTooLarge(entries) => {
                write!(formatter, "L1 table of {entries} entries too large")
            }
            Self::L1TableTooSmall { entries, needed } => write!(
                formatter,
                "L1 table of {entries} entries cannot address the virtual size ({needed} needed)"
            ),
            Self::RefcountTableSizeInvalid(clusters) => {
                write!(formatter, "refcount table of {clusters} clusters")
            }
            Self::TooManySnapshots(count) => write!(formatter, "{count} snapshots: too many"),
            Self::MetadataUnaligned(kind, offset) => {
                write!(formatter, "{kind} at {offset:#x} not cluster aligned")
            }
            Self::MetadataOutsideFile(kind, offset) => {
                write!(formatter, "{kind} at {offset:#x} past the end of the file")
            }
            Self::MetadataOverlap(kind, offset) => {
                write!(formatter, "{kind} at {offset:#x} overlaps other metadata")
            }
            Self::ReservedBitsSet(kind, entry) => {
                write!(formatter, "{kind} entry {entry:#x} has reserved bits set")
            }
            Self::HeaderExtensionTruncated => formatter.write_str("header extension truncated"),
            Self::BackingNameInvalid => formatter.write_str("backing file name out of bounds"),
            Self::BackingNameNotUtf8 => formatter.write_str("backing file name not UTF-8"),
            Self::DecompressionFailed(offset) => {
                write!(
                    formatter,
                    "compressed cluster at {offset:#x} does not inflate"
                )
            }
            Self::RefcountOverflow(offset) => write!(formatter, "refcount overflow at {offset:#x}"),
            Self::RefcountUnderflow(offset) => {
                write!(
                    formatter,
                    "freeing cluster {offset:#x} whose refcount is zero"
                )
            }
            Self::SharedCluster(offset) => {
                write!(formatter, "cluster {offset:#x} is shared (no copied flag)")
            }
            Self::SnapshotsPresent => {
                formatter.write_str("writing images with internal snapshots is not supported")
            }
            Self::RefcountTableFull => formatter.write_str("refcount table cannot grow"),
            Self::AllocationOverlapsMetadata(offset) => {
                write!(
                    formatter,
                    "free cluster {offset:#x} overlaps metadata: refcounts wrong"
                )
            }
            Self::RefcountBeyondFile(offset) => {
                write!(
                    formatter,
                    "cluster {offset:#x} past the file's end has a refcount"
                )
            }
            Self::ImageTooLarge => formatter.write_str("image would grow too large"),
            Self::BadCreateOptions => formatter.write_str("creation options out of range"),
        }
    }
}
