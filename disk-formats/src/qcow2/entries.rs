//! L1, L2 and refcount table entries: decoding with reserved-bit and
//! alignment checks, and refcount packing for every refcount width.

use crate::{MetadataKind, Qcow2Error};

use super::header::MAX_HOST_OFFSET;

/// The entry's cluster has refcount one: it may be written in place.
pub const COPIED: u64 = 1 << 63;
/// An L2 entry describing a compressed cluster.
pub const COMPRESSED: u64 = 1 << 62;
/// An L2 entry whose cluster reads as zeros (v3).
pub const ZERO: u64 = 1;
/// Host offset bits of L1 and standard L2 entries (bits 9-55).
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L1_RESERVED: u64 = !(OFFSET_MASK | COPIED);
const L2_STANDARD_RESERVED: u64 = !(OFFSET_MASK | COPIED | COMPRESSED | ZERO);
const REFCOUNT_TABLE_RESERVED: u64 = 0x1ff;

/// An L1 entry, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Entry {
    /// No L2 table: the whole range is unallocated.
    Unallocated,
    /// An L2 table at this host offset.
    Table {
        /// Host offset of the L2 table (cluster aligned).
        offset: u64,
        /// Whether the table's refcount is one.
        copied: bool,
    },
}

impl L1Entry {
    /// Decodes `raw`, checking reserved bits and alignment.
    pub fn decode(raw: u64, cluster_size: u64) -> Result<Self, Qcow2Error> {
        if raw & L1_RESERVED != 0 {
            return Err(Qcow2Error::ReservedBitsSet(MetadataKind::L1Table, raw));
        }
        let offset = raw & OFFSET_MASK;
        if offset == 0 {
            return Ok(Self::Unallocated);
        }
        if !offset.is_multiple_of(cluster_size) {
            return Err(Qcow2Error::MetadataUnaligned(MetadataKind::L2Table, offset));
        }
        Ok(Self::Table {
            offset,
            copied: raw & COPIED != 0,
        })
    }
}

/// Where a guest cluster's data is, from its L2 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Entry {
    /// Not allocated here: read from the backing image, or zeros.
    Unallocated,
    /// Reads as zeros; `preallocated` is a host cluster kept for it.
    Zero {
        /// The host cluster reserved for the guest cluster, if any.
        preallocated: Option<u64>,
        /// Whether that cluster's refcount is one.
        copied: bool,
    },
    /// Data in a host cluster.
    Data {
        /// Host offset of the data cluster (cluster aligned).
        offset: u64,
        /// Whether the cluster's refcount is one.
        copied: bool,
    },
    /// Deflate-compressed data at a byte offset.
    Compressed {
        /// Host byte offset of the compressed stream.
        offset: u64,
        /// Bytes from `offset` the stream may occupy.
        length: u64,
    },
}

impl L2Entry {
    /// Decodes `raw` for an image with `cluster_bits`. Like QEMU, the zero
    /// flag is honoured in version 2 images too.
    pub fn decode(raw: u64, cluster_bits: u32) -> Result<Self, Qcow2Error> {
        let cluster_size = 1u64 << cluster_bits;
        if raw & COMPRESSED != 0 {
            // Bits 0..x-1 are the byte offset, x..61 the extra 512-byte
            // sectors, with x = 62 - (cluster_bits - 8).
            let shift = 62 - (cluster_bits - 8);
            let offset = raw & ((1u64 << shift) - 1);
            let sector_mask = (1u64 << (cluster_bits - 8)) - 1;
            let sectors = ((raw >> shift) & sector_mask) + 1;
            if offset >= MAX_HOST_OFFSET {
                return Err(Qcow2Error::ReservedBitsSet(MetadataKind::L2Table, raw));
            }
            let length = sectors * 512 - (offset & 511);
            return Ok(Self::Compressed { offset, length });
        }
        if raw & L2_STANDARD_RESERVED != 0 {
            return Err(Qcow2Error::ReservedBitsSet(MetadataKind::L2Table, raw));
        }
        let offset = raw & OFFSET_MASK;
        let copied = raw & COPIED != 0;
        if !offset.is_multiple_of(cluster_size) {
            return Err(Qcow2Error::MetadataUnaligned(
                MetadataKind::DataCluster,
                offset,
            ));
        }
        if raw & ZERO != 0 {
            return Ok(Self::Zero {
                preallocated: (offset != 0).then_some(offset),
                copied,
            });
        }
        if offset == 0 {
            return Ok(Self::Unallocated);
        }
        Ok(Self::Data { offset, copied })
    }
}

/// Decodes a refcount table entry: the refcount block's offset, or `None`.
pub fn decode_refcount_table_entry(raw: u64, cluster_size: u64) -> Result<Option<u64>, Qcow2Error> {
    if raw & REFCOUNT_TABLE_RESERVED != 0 {
        return Err(Qcow2Error::ReservedBitsSet(
            MetadataKind::RefcountTable,
            raw,
        ));
    }
    if raw == 0 {
        return Ok(None);
    }
    if !raw.is_multiple_of(cluster_size) {
        return Err(Qcow2Error::MetadataUnaligned(
            MetadataKind::RefcountBlock,
            raw,
        ));
    }
    if raw >= MAX_HOST_OFFSET {
        return Err(Qcow2Error::MetadataOutsideFile(
            MetadataKind::RefcountBlock,
            raw,
        ));
    }
    Ok(Some(raw))
}

/// The byte range within a refcount block holding entry `index` for
/// `order` (refcounts of `1 << order` bits; sub-byte widths share a byte).
pub fn refcount_byte_range(index: u64, order: u32) -> core::ops::Range<usize> {
    let bits = 1u64 << order;
    let start = (index * bits / 8) as usize;
    let length = (bits / 8).max(1) as usize;
    start..start + length
}

/// Reads refcount `index` from a refcount block, or `None` past its end.
pub fn get_refcount(block: &[u8], index: u64, order: u32) -> Option<u64> {
    let bytes = block.get(refcount_byte_range(index, order))?;
    Some(match order {
        // Sub-byte refcounts fill each byte from its least significant bit,
        // as QEMU packs them.
        0..=2 => {
            let bits = 1u32 << order;
            let shift = (index % u64::from(8 / bits)) as u32 * bits;
            u64::from((bytes.first()? >> shift) & ((1u16 << bits) - 1) as u8)
        }
        _ => bytes
            .iter()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)),
    })
}

/// Writes refcount `index` in a refcount block; `false` past its end.
pub fn set_refcount(block: &mut [u8], index: u64, order: u32, value: u64) -> bool {
    let Some(bytes) = block.get_mut(refcount_byte_range(index, order)) else {
        return false;
    };
    match order {
        0..=2 => {
            let bits = 1u32 << order;
            let shift = (index % u64::from(8 / bits)) as u32 * bits;
            let mask = (((1u16 << bits) - 1) as u8) << shift;
            if let Some(byte) = bytes.first_mut() {
                *byte = (*byte & !mask) | (((value as u8) << shift) & mask);
            }
        }
        _ => {
            let mut value = value;
            for byte in bytes.iter_mut().rev() {
                *byte = value as u8;
                value >>= 8;
            }
        }
    }
    true
}

/// The largest refcount `order` can hold.
pub fn max_refcount(order: u32) -> u64 {
    if order >= 6 {
        u64::MAX
    } else {
        (1u64 << (1u32 << order)) - 1
    }
}
