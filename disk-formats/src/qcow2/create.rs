//! Creating a new, empty version 3 qcow2 image, laid out as `qemu-img
//! create` does: header, refcount table, refcount blocks, L1 table.

use alloc::vec;
use alloc::vec::Vec;

use crate::{BackingFormat, ImageError, Qcow2Error, Storage, StorageOffset};

use super::entries;
use super::header::{
    self, Header, MAX_BACKING_NAME, MAX_CLUSTER_BITS, MAX_L1_BYTES, MIN_CLUSTER_BITS,
    V3_HEADER_LENGTH, Version,
};

/// What a new image looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions<'a> {
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// log2 of the cluster size, 9..=21 (16, 64 KiB, by default).
    pub cluster_bits: u32,
    /// log2 of the refcount width in bits, 0..=6 (4, 16 bits, by default).
    pub refcount_order: u32,
    /// A backing image: its name and format.
    pub backing: Option<(&'a str, BackingFormat)>,
}

impl CreateOptions<'_> {
    /// A `virtual_size`-byte image with QEMU's defaults and no backing image.
    pub fn new(virtual_size: u64) -> Self {
        Self {
            virtual_size,
            cluster_bits: 16,
            refcount_order: 4,
            backing: None,
        }
    }
}

/// Writes a new empty image to `storage` (which grows as needed) and gives
/// the storage back; open it with [`super::Qcow2::open`].
pub fn create<S: Storage>(mut storage: S, options: &CreateOptions<'_>) -> Result<S, ImageError> {
    let bad = || ImageError::from(Qcow2Error::BadCreateOptions);
    let cluster_bits = options.cluster_bits;
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) || options.refcount_order > 6
    {
        return Err(bad());
    }
    let cluster_size = 1u64 << cluster_bits;
    let l1_entries = header::l1_entries_for(options.virtual_size, cluster_bits).max(1);
    if l1_entries * 8 > MAX_L1_BYTES {
        return Err(bad());
    }
    let l1_clusters = (l1_entries * 8).div_ceil(cluster_size);
    let per_block = (cluster_size * 8) >> options.refcount_order;

    // Refcount blocks must count every cluster including themselves and
    // the table naming them.
    let (mut table_clusters, mut blocks) = (1u64, 1u64);
    loop {
        let total = 1 + table_clusters + blocks + l1_clusters;
        let needed_blocks = total.div_ceil(per_block);
        let needed_table = (needed_blocks * 8).div_ceil(cluster_size);
        if needed_blocks <= blocks && needed_table <= table_clusters {
            break;
        }
        blocks = blocks.max(needed_blocks);
        table_clusters = table_clusters.max(needed_table);
    }
    let total = 1 + table_clusters + blocks + l1_clusters;
    let table_offset = cluster_size;
    let blocks_offset = table_offset + table_clusters * cluster_size;
    let l1_offset = blocks_offset + blocks * cluster_size;

    let mut header_cluster = vec![0u8; cluster_size as usize];
    let extensions_end = header::write_extensions(
        &mut header_cluster,
        V3_HEADER_LENGTH,
        options.backing.map(|(_, format)| format),
    );
    let backing_file = match options.backing {
        None => None,
        Some((name, _)) => {
            let end = extensions_end + name.len();
            if name.is_empty() || name.len() > MAX_BACKING_NAME || end as u64 > cluster_size {
                return Err(bad());
            }
            if let Some(target) = header_cluster.get_mut(extensions_end..end) {
                target.copy_from_slice(name.as_bytes());
            }
            Some((extensions_end as u64, name.len() as u32))
        }
    };
    let header = Header {
        version: Version::V3,
        cluster_bits,
        size: options.virtual_size,
        l1_size: l1_entries as u32,
        l1_table_offset: l1_offset,
        refcount_table_offset: table_offset,
        refcount_table_clusters: table_clusters as u32,
        snapshot_count: 0,
        snapshots_offset: 0,
        incompatible_features: 0,
        compatible_features: 0,
        autoclear_features: 0,
        refcount_order: options.refcount_order,
        header_length: V3_HEADER_LENGTH as u32,
        backing_file,
    };
    header.write_to(&mut header_cluster);

    let mut table: Vec<u8> = vec![0u8; (table_clusters * cluster_size) as usize];
    for (block, entry) in table.chunks_exact_mut(8).take(blocks as usize).enumerate() {
        entry.copy_from_slice(&(blocks_offset + block as u64 * cluster_size).to_be_bytes());
    }
    let mut refcounts = vec![0u8; (blocks * cluster_size) as usize];
    for cluster in 0..total {
        let block = (cluster / per_block) as usize;
        let start = block * cluster_size as usize;
        if let Some(bytes) = refcounts.get_mut(start..start + cluster_size as usize) {
            entries::set_refcount(bytes, cluster % per_block, options.refcount_order, 1);
        }
    }

    if storage.len() < total * cluster_size {
        storage.set_len(total * cluster_size)?;
    }
    storage.write_at(StorageOffset(table_offset), &table)?;
    storage.write_at(StorageOffset(blocks_offset), &refcounts)?;
    storage.write_at(
        StorageOffset(l1_offset),
        &vec![0u8; (l1_clusters * cluster_size) as usize],
    )?;
    storage.flush()?;
    // The header last: until it lands the storage is not a qcow2 image.
    storage.write_at(StorageOffset(0), &header_cluster)?;
    storage.flush()?;
    Ok(storage)
}
