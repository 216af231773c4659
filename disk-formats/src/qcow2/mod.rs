//! qcow2 images, versions 2 and 3: reads through L1/L2 tables (data, zero,
//! compressed and unallocated clusters, the latter from a backing image),
//! writes that allocate clusters with refcounts kept exact, discard, and
//! creation of new version 3 images.
//!
//! Crash safety follows QEMU's order: a new cluster's refcount is written
//! before anything points at it, data before the L2 entry naming it, a new
//! L2 table before the L1 entry naming it, and a reference is removed before
//! the cluster's refcount drops; a flush separates each step. A crash can
//! leak clusters (`qemu-img check` reports leaks, `-r leaks` reclaims them)
//! but never leaves a reference to a cluster whose refcount is zero.

pub(crate) mod cache;
mod check;
mod create;
mod entries;
pub mod header;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::{
    BackingFormat, BackingReference, BackingResolver, DiskImage, DiskOffset, ImageError,
    MAX_BACKING_DEPTH, MetadataKind, Placement, Qcow2Error, Storage, StorageOffset, check_range,
};

use cache::ClusterCache;
pub use check::CheckReport;
pub use create::CreateOptions;
use entries::{COPIED, L1Entry, L2Entry, ZERO};
pub use header::{Header, HeaderView, MAGIC, Version};
use header::{MAX_HOST_OFFSET, MAX_REFCOUNT_TABLE_BYTES};

/// Bytes of L2 tables kept in memory.
const L2_CACHE_BYTES: u64 = 1 << 20;
/// Bytes of refcount blocks kept in memory.
const REFCOUNT_CACHE_BYTES: u64 = 256 << 10;

/// How to open an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Refuse writes (backing images are always opened read-only).
    pub read_only: bool,
    /// How deep in a backing chain this image is: 0 for the image blkback
    /// serves; a resolver passes on [`BackingReference::depth`].
    pub depth: u32,
}

/// A qcow2 image on a storage.
pub struct Qcow2<S: Storage> {
    storage: S,
    header: Header,
    cluster_size: u64,
    l2_entries: u64,
    refcount_entries_per_block: u64,
    l1: Vec<u64>,
    refcount_table: Vec<u64>,
    l2_cache: ClusterCache,
    refcount_cache: ClusterCache,
    /// The last compressed cluster inflated: its host offset and contents.
    inflated: Option<(u64, Vec<u8>)>,
    decompressor: Box<DecompressorOxide>,
    backing: Option<Box<dyn DiskImage>>,
    backing_name: Option<String>,
    backing_format: Option<BackingFormat>,
    read_only: bool,
    free_cluster_hint: u64,
}

/// A write that allocated a new cluster, waiting for its L2 entry.
struct PendingReference {
    l2_offset: u64,
    index: u64,
    entry: u64,
    replaced: L2Entry,
}

fn be_u64_at(bytes: &[u8], index: u64) -> Option<u64> {
    let start = usize::try_from(index.checked_mul(8)?).ok()?;
    let field: [u8; 8] = bytes.get(start..start.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(field))
}

fn table_from_bytes(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut field = [0u8; 8];
            field.copy_from_slice(chunk);
            u64::from_be_bytes(field)
        })
        .collect()
}

impl<S: Storage> Qcow2<S> {
    /// Opens the qcow2 image on `storage`. A backing image is opened through
    /// `resolver`, read-only.
    pub fn open(
        mut storage: S,
        options: OpenOptions,
        resolver: &mut dyn BackingResolver,
    ) -> Result<Self, ImageError> {
        let file_length = storage.len();
        // The header cluster: first enough for the cluster size, then all of
        // it (extensions and the backing name live there).
        let mut start = vec![0u8; file_length.min(header::V2_HEADER_LENGTH as u64) as usize];
        storage.read_at(StorageOffset(0), &mut start)?;
        let cluster_bits = header::peek_cluster_bits(&start)?;
        let mut first_cluster = vec![0u8; file_length.min(1 << cluster_bits) as usize];
        storage.read_at(StorageOffset(0), &mut first_cluster)?;
        let header = Header::parse(&HeaderView::new_checked(&first_cluster)?, file_length)?;
        let extensions = header::parse_extensions(&header, &first_cluster)?;

        let read_only = options.read_only;
        if !read_only && header.snapshot_count > 0 {
            return Err(Qcow2Error::SnapshotsPresent.into());
        }

        let cluster_size = header.cluster_size();
        let mut l1_bytes = vec![0u8; header.l1_size as usize * 8];
        storage.read_at(StorageOffset(header.l1_table_offset), &mut l1_bytes)?;
        let mut refcount_bytes =
            vec![0u8; (u64::from(header.refcount_table_clusters) * cluster_size) as usize];
        storage.read_at(
            StorageOffset(header.refcount_table_offset),
            &mut refcount_bytes,
        )?;

        let backing = match &extensions.backing_name {
            None => None,
            Some(name) => {
                let depth = options.depth + 1;
                if depth > MAX_BACKING_DEPTH {
                    return Err(ImageError::BackingChainTooDeep);
                }
                Some(resolver.open_backing(&BackingReference {
                    name,
                    format: extensions.backing_format,
                    depth,
                })?)
            }
        };

        let mut image = Self {
            storage,
            cluster_size,
            l2_entries: cluster_size / 8,
            refcount_entries_per_block: (cluster_size * 8) >> header.refcount_order,
            l1: table_from_bytes(&l1_bytes),
            refcount_table: table_from_bytes(&refcount_bytes),
            l2_cache: ClusterCache::new((L2_CACHE_BYTES / cluster_size) as usize),
            refcount_cache: ClusterCache::new((REFCOUNT_CACHE_BYTES / cluster_size) as usize),
            inflated: None,
            decompressor: Box::default(),
            backing,
            backing_name: extensions.backing_name,
            backing_format: extensions.backing_format,
            read_only,
            free_cluster_hint: 0,
            header,
        };
        if !read_only && image.header.autoclear_features != 0 {
            // Autoclear bits vouch for structures (bitmaps) this code does
            // not keep up to date: clearing them tells QEMU so.
            image.header.autoclear_features = 0;
            image
                .storage
                .write_at(StorageOffset(88), &0u64.to_be_bytes())?;
            image.storage.flush()?;
        }
        Ok(image)
    }

    /// Writes a new, empty version 3 image to `storage` and gives the
    /// storage back, ready for [`Qcow2::open`].
    pub fn create(storage: S, options: &CreateOptions<'_>) -> Result<S, ImageError> {
        create::create(storage, options)
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The backing image's name, if the image has one.
    pub fn backing_name(&self) -> Option<&str> {
        self.backing_name.as_deref()
    }

    /// The backing image's recorded format.
    pub fn backing_format(&self) -> Option<BackingFormat> {
        self.backing_format
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    fn file_length(&self) -> u64 {
        self.storage.len()
    }

    /// Checks a metadata cluster (L2 table, refcount block) lies inside the
    /// file and off the header, the L1 table and the refcount table.
    fn check_metadata_cluster(&self, kind: MetadataKind, offset: u64) -> Result<(), Qcow2Error> {
        if offset
            .checked_add(self.cluster_size)
            .is_none_or(|end| end > self.file_length())
        {
            return Err(Qcow2Error::MetadataOutsideFile(kind, offset));
        }
        if self.overlaps_fixed_metadata(offset) {
            return Err(Qcow2Error::MetadataOverlap(kind, offset));
        }
        Ok(())
    }

    /// Whether the cluster at `offset` holds the header, or part of the L1
    /// table or the refcount table.
    fn overlaps_fixed_metadata(&self, offset: u64) -> bool {
        let inside = |start: u64, length: u64| {
            offset < start.saturating_add(length)
                && start < offset.saturating_add(self.cluster_size)
        };
        offset < self.cluster_size
            || inside(
                self.header.l1_table_offset,
                u64::from(self.header.l1_size) * 8,
            )
            || inside(
                self.header.refcount_table_offset,
                u64::from(self.header.refcount_table_clusters) * self.cluster_size,
            )
    }

    fn l1_index(&self, guest: u64) -> u64 {
        guest / (self.cluster_size * self.l2_entries)
    }

    fn l2_index(&self, guest: u64) -> u64 {
        (guest / self.cluster_size) % self.l2_entries
    }

    /// The L2 table covering `guest`, if one is allocated.
    fn l2_table(&self, guest: u64) -> Result<Option<(u64, bool)>, Qcow2Error> {
        let Some(raw) = usize::try_from(self.l1_index(guest))
            .ok()
            .and_then(|index| self.l1.get(index))
        else {
            return Ok(None);
        };
        match L1Entry::decode(*raw, self.cluster_size)? {
            L1Entry::Unallocated => Ok(None),
            L1Entry::Table { offset, copied } => {
                self.check_metadata_cluster(MetadataKind::L2Table, offset)?;
                Ok(Some((offset, copied)))
            }
        }
    }

    fn l2_raw(&mut self, l2_offset: u64, index: u64) -> Result<u64, ImageError> {
        let table = self
            .l2_cache
            .get(&mut self.storage, l2_offset, self.cluster_size as usize)?;
        be_u64_at(table, index)
            .ok_or_else(|| Qcow2Error::MetadataOutsideFile(MetadataKind::L2Table, l2_offset).into())
    }

    /// One L2 entry, written at once (tests build hostile images with it).
    #[cfg(test)]
    fn set_l2_raw(&mut self, l2_offset: u64, index: u64, entry: u64) -> Result<(), ImageError> {
        let table = self
            .l2_cache
            .get(&mut self.storage, l2_offset, self.cluster_size as usize)?;
        let start = (index * 8) as usize;
        let Some(field) = table.get_mut(start..start + 8) else {
            return Err(Qcow2Error::MetadataOutsideFile(MetadataKind::L2Table, l2_offset).into());
        };
        field.copy_from_slice(&entry.to_be_bytes());
        self.storage.write_at(
            StorageOffset(l2_offset + start as u64),
            &entry.to_be_bytes(),
        )?;
        Ok(())
    }

    /// How the guest cluster holding `guest` is stored.
    fn lookup(&mut self, guest: u64) -> Result<L2Entry, ImageError> {
        let Some((l2_offset, _)) = self.l2_table(guest)? else {
            return Ok(L2Entry::Unallocated);
        };
        let raw = self.l2_raw(l2_offset, self.l2_index(guest))?;
        Ok(L2Entry::decode(raw, self.header.cluster_bits)?)
    }

    /// Reads host bytes; bytes past the end of the file read as zeros, as
    /// QEMU reads them.
    fn read_host(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), ImageError> {
        let inside = self
            .file_length()
            .saturating_sub(offset)
            .min(buffer.len() as u64) as usize;
        let (present, past_end) = buffer.split_at_mut(inside);
        if !present.is_empty() {
            self.storage.read_at(StorageOffset(offset), present)?;
        }
        past_end.fill(0);
        Ok(())
    }

    fn read_backing(&mut self, guest: u64, buffer: &mut [u8]) -> Result<(), ImageError> {
        let Some(backing) = self.backing.as_mut() else {
            buffer.fill(0);
            return Ok(());
        };
        let inside = backing
            .virtual_size()
            .saturating_sub(guest)
            .min(buffer.len() as u64) as usize;
        let (present, past_end) = buffer.split_at_mut(inside);
        if !present.is_empty() {
            backing.read(DiskOffset(guest), present)?;
        }
        past_end.fill(0);
        Ok(())
    }

    /// Inflates the compressed cluster at `offset` into `self.inflated`.
    fn inflate(&mut self, offset: u64, length: u64) -> Result<&[u8], ImageError> {
        if self
            .inflated
            .as_ref()
            .is_none_or(|(cached, _)| *cached != offset)
        {
            self.inflated = None;
            let file_length = self.file_length();
            if offset >= file_length {
                return Err(Qcow2Error::MetadataOutsideFile(
                    MetadataKind::CompressedCluster,
                    offset,
                )
                .into());
            }
            // The last compressed cluster may end before its last sector.
            let length = length.min(file_length - offset) as usize;
            let mut compressed = vec![0u8; length];
            self.storage
                .read_at(StorageOffset(offset), &mut compressed)?;
            let mut cluster = vec![0u8; self.cluster_size as usize];
            self.decompressor.init();
            // Whatever the status, a full cluster is success: input may go
            // on into the next compressed cluster, as QEMU allows.
            let (_, _, written) = decompress(
                &mut self.decompressor,
                &compressed,
                &mut cluster,
                0,
                inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
            );
            if written != cluster.len() {
                return Err(Qcow2Error::DecompressionFailed(offset).into());
            }
            self.inflated = Some((offset, cluster));
        }
        Ok(self
            .inflated
            .as_ref()
            .map_or(&[][..], |(_, bytes)| &bytes[..]))
    }

    /// Reads within one guest cluster.
    fn read_in_cluster(&mut self, guest: u64, buffer: &mut [u8]) -> Result<(), ImageError> {
        let within = guest % self.cluster_size;
        match self.lookup(guest)? {
            L2Entry::Unallocated => self.read_backing(guest, buffer),
            L2Entry::Zero { .. } => {
                buffer.fill(0);
                Ok(())
            }
            L2Entry::Data { offset, .. } => self.read_host(offset + within, buffer),
            L2Entry::Compressed { offset, length } => {
                let cluster = self.inflate(offset, length)?;
                let start = within as usize;
                let source = cluster
                    .get(start..start + buffer.len())
                    .ok_or(Qcow2Error::DecompressionFailed(offset))?;
                buffer.copy_from_slice(source);
                Ok(())
            }
        }
    }

    /// Splits `[guest, guest + length)` at cluster boundaries.
    fn chunks(
        &self,
        guest: u64,
        length: usize,
    ) -> impl Iterator<Item = (u64, usize, usize)> + use<S> {
        let cluster_size = self.cluster_size;
        let mut done = 0usize;
        core::iter::from_fn(move || {
            if done >= length {
                return None;
            }
            let at = guest + done as u64;
            let room = (cluster_size - at % cluster_size) as usize;
            let size = room.min(length - done);
            let chunk = (at, done, size);
            done += size;
            Some(chunk)
        })
    }

    // Refcounts.

    fn refcount_block_for(&self, cluster: u64) -> Result<Option<u64>, Qcow2Error> {
        let table_index = cluster / self.refcount_entries_per_block;
        let Some(raw) = usize::try_from(table_index)
            .ok()
            .and_then(|index| self.refcount_table.get(index))
        else {
            return Ok(None);
        };
        let Some(block) = entries::decode_refcount_table_entry(*raw, self.cluster_size)? else {
            return Ok(None);
        };
        self.check_metadata_cluster(MetadataKind::RefcountBlock, block)?;
        Ok(Some(block))
    }

    /// The refcount of host cluster number `cluster`.
    fn refcount(&mut self, cluster: u64) -> Result<u64, ImageError> {
        let Some(block_offset) = self.refcount_block_for(cluster)? else {
            return Ok(0);
        };
        let index = cluster % self.refcount_entries_per_block;
        let order = self.header.refcount_order;
        let block =
            self.refcount_cache
                .get(&mut self.storage, block_offset, self.cluster_size as usize)?;
        entries::get_refcount(block, index, order).ok_or_else(|| {
            Qcow2Error::MetadataOutsideFile(MetadataKind::RefcountBlock, block_offset).into()
        })
    }

    /// Sets the refcount of `cluster`, whose refcount block exists.
    fn set_refcount(&mut self, cluster: u64, value: u64) -> Result<(), ImageError> {
        let order = self.header.refcount_order;
        if value > entries::max_refcount(order) {
            return Err(Qcow2Error::RefcountOverflow(cluster * self.cluster_size).into());
        }
        let Some(block_offset) = self.refcount_block_for(cluster)? else {
            return Err(Qcow2Error::RefcountTableFull.into());
        };
        let index = cluster % self.refcount_entries_per_block;
        let block =
            self.refcount_cache
                .get(&mut self.storage, block_offset, self.cluster_size as usize)?;
        if !entries::set_refcount(block, index, order, value) {
            return Err(
                Qcow2Error::MetadataOutsideFile(MetadataKind::RefcountBlock, block_offset).into(),
            );
        }
        let range = entries::refcount_byte_range(index, order);
        let bytes = block.get(range.clone()).unwrap_or(&[]);
        self.storage
            .write_at(StorageOffset(block_offset + range.start as u64), bytes)?;
        Ok(())
    }

    /// Drops one reference to `cluster`.
    fn release_cluster(&mut self, cluster: u64) -> Result<(), ImageError> {
        let value = self.refcount(cluster)?;
        if value == 0 {
            return Err(Qcow2Error::RefcountUnderflow(cluster * self.cluster_size).into());
        }
        self.set_refcount(cluster, value - 1)?;
        if value == 1 {
            self.forget_freed(cluster);
        }
        Ok(())
    }

    /// Drops what the caches hold of a cluster whose refcount reached zero
    /// and lets the allocator find it again.
    fn forget_freed(&mut self, cluster: u64) {
        let offset = cluster * self.cluster_size;
        self.free_cluster_hint = self.free_cluster_hint.min(cluster);
        self.l2_cache.forget(offset);
        self.refcount_cache.forget(offset);
        if self
            .inflated
            .as_ref()
            .is_some_and(|(start, _)| start / self.cluster_size == cluster)
        {
            self.inflated = None;
        }
    }

    fn ensure_length(&mut self, length: u64) -> Result<(), ImageError> {
        if self.file_length() < length {
            self.storage.set_len(length)?;
        }
        Ok(())
    }

    /// The first host cluster at or after the hint whose refcount is zero.
    fn find_free_cluster(&mut self) -> Result<u64, ImageError> {
        let end = self.file_length().div_ceil(self.cluster_size);
        let mut cluster = self.free_cluster_hint;
        while cluster < end {
            if self.refcount_block_for(cluster)?.is_none() || self.refcount(cluster)? == 0 {
                return Ok(cluster);
            }
            cluster += 1;
        }
        // Past the end of the file every refcount must be zero.
        if self.refcount(cluster)? != 0 {
            return Err(Qcow2Error::RefcountBeyondFile(cluster * self.cluster_size).into());
        }
        Ok(cluster)
    }

    /// Refuses to hand out a cluster that metadata is known to occupy.
    fn check_allocation(&self, offset: u64) -> Result<(), Qcow2Error> {
        let in_use = self.overlaps_fixed_metadata(offset)
            || self
                .refcount_table
                .iter()
                .any(|entry| entry & !0x1ff == offset)
            || self
                .l1
                .iter()
                .any(|entry| entry & entries::OFFSET_MASK == offset);
        if in_use {
            return Err(Qcow2Error::AllocationOverlapsMetadata(offset));
        }
        Ok(())
    }

    /// Checks a data cluster is safe to write in place: inside the file and
    /// not metadata, which a hostile L2 entry could point at (QEMU refuses
    /// such writes the same way).
    fn check_data_cluster(&self, offset: u64) -> Result<(), Qcow2Error> {
        if offset
            .checked_add(self.cluster_size)
            .is_none_or(|end| end > self.file_length())
        {
            return Err(Qcow2Error::MetadataOutsideFile(
                MetadataKind::DataCluster,
                offset,
            ));
        }
        self.check_allocation(offset)
            .map_err(|_| Qcow2Error::MetadataOverlap(MetadataKind::DataCluster, offset))
    }

    /// Allocates one host cluster with refcount one and returns its offset.
    /// The refcount is written (not yet flushed); the caller flushes before
    /// anything points at the cluster.
    fn allocate_cluster(&mut self) -> Result<u64, ImageError> {
        // Each round either allocates or adds a refcount block or grows the
        // refcount table; a few rounds always suffice.
        for _ in 0..8 {
            let cluster = self.find_free_cluster()?;
            let offset = cluster
                .checked_mul(self.cluster_size)
                .filter(|offset| offset + self.cluster_size <= MAX_HOST_OFFSET)
                .ok_or(Qcow2Error::ImageTooLarge)?;
            let table_index = cluster / self.refcount_entries_per_block;
            if table_index >= self.refcount_table.len() as u64 {
                self.grow_refcount_table(table_index)?;
                continue;
            }
            self.check_allocation(offset)?;
            if self.refcount_block_for(cluster)?.is_none() {
                self.add_refcount_block(table_index, cluster)?;
                continue;
            }
            self.ensure_length(offset + self.cluster_size)?;
            self.set_refcount(cluster, 1)?;
            self.free_cluster_hint = cluster + 1;
            return Ok(offset);
        }
        Err(Qcow2Error::RefcountTableFull.into())
    }

    /// Puts a new refcount block for table entry `table_index` at host
    /// cluster `cluster`, which it covers and counts.
    fn add_refcount_block(&mut self, table_index: u64, cluster: u64) -> Result<(), ImageError> {
        let offset = cluster * self.cluster_size;
        self.ensure_length(offset + self.cluster_size)?;
        let mut block = vec![0u8; self.cluster_size as usize];
        entries::set_refcount(
            &mut block,
            cluster % self.refcount_entries_per_block,
            self.header.refcount_order,
            1,
        );
        self.storage.write_at(StorageOffset(offset), &block)?;
        self.refcount_cache.insert(offset, block);
        self.storage.flush()?;
        if let Some(entry) = self.refcount_table.get_mut(table_index as usize) {
            *entry = offset;
        }
        self.storage.write_at(
            StorageOffset(self.header.refcount_table_offset + table_index * 8),
            &offset.to_be_bytes(),
        )?;
        self.free_cluster_hint = cluster + 1;
        Ok(())
    }

    /// Replaces the refcount table with a larger one at the end of the
    /// file, reaching at least entry `table_index`; the new table and the
    /// new refcount blocks it needs count themselves.
    fn grow_refcount_table(&mut self, table_index: u64) -> Result<(), ImageError> {
        let cluster_size = self.cluster_size;
        let per_block = self.refcount_entries_per_block;
        let entries_per_cluster = cluster_size / 8;
        let old_entries = self.refcount_table.len() as u64;
        let missing =
            |table: &[u64], index: u64| table.get(index as usize).is_none_or(|entry| *entry == 0);
        let start = self.file_length().div_ceil(cluster_size);
        let mut entries = (table_index + 1).max(old_entries * 2);
        let mut layout = None;
        for _ in 0..16 {
            let table_clusters = entries.div_ceil(entries_per_cluster);
            if table_clusters * cluster_size > MAX_REFCOUNT_TABLE_BYTES {
                return Err(Qcow2Error::RefcountTableFull.into());
            }
            let mut blocks = 0u64;
            for _ in 0..16 {
                let end = start + table_clusters + blocks;
                let needed = (start / per_block..=(end - 1) / per_block)
                    .filter(|index| missing(&self.refcount_table, *index))
                    .count() as u64;
                if needed == blocks {
                    break;
                }
                blocks = needed;
            }
            let end = start + table_clusters + blocks;
            if (end - 1) / per_block < entries {
                layout = Some((table_clusters, end));
                break;
            }
            entries = (end - 1) / per_block + 1;
        }
        let (table_clusters, end) = layout.ok_or(Qcow2Error::RefcountTableFull)?;
        if end.saturating_mul(cluster_size) > MAX_HOST_OFFSET {
            return Err(Qcow2Error::ImageTooLarge.into());
        }

        let mut table = self.refcount_table.clone();
        table.resize((table_clusters * entries_per_cluster) as usize, 0);
        let mut new_blocks: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let mut next = start + table_clusters;
        for index in start / per_block..=(end - 1) / per_block {
            if missing(&self.refcount_table, index) {
                let offset = next * cluster_size;
                next += 1;
                if let Some(entry) = table.get_mut(index as usize) {
                    *entry = offset;
                }
                new_blocks.push((index, offset, vec![0u8; cluster_size as usize]));
            }
        }
        self.ensure_length(end * cluster_size)?;
        let order = self.header.refcount_order;
        for cluster in start..end {
            let index = cluster / per_block;
            match new_blocks
                .iter_mut()
                .find(|(block_index, _, _)| *block_index == index)
            {
                Some((_, _, block)) => {
                    entries::set_refcount(block, cluster % per_block, order, 1);
                }
                None => self.set_refcount(cluster, 1)?,
            }
        }
        for (_, offset, block) in new_blocks {
            self.storage.write_at(StorageOffset(offset), &block)?;
            self.refcount_cache.insert(offset, block);
        }
        let table_offset = start * cluster_size;
        let table_bytes: Vec<u8> = table.iter().flat_map(|entry| entry.to_be_bytes()).collect();
        self.storage
            .write_at(StorageOffset(table_offset), &table_bytes)?;
        self.storage.flush()?;

        // One write switches tables: offset and cluster count are adjacent.
        let mut switch = [0u8; 12];
        switch[..8].copy_from_slice(&table_offset.to_be_bytes());
        switch[8..].copy_from_slice(&(table_clusters as u32).to_be_bytes());
        self.storage.write_at(StorageOffset(48), &switch)?;
        self.storage.flush()?;

        let old_offset = self.header.refcount_table_offset;
        let old_clusters = u64::from(self.header.refcount_table_clusters);
        self.header.refcount_table_offset = table_offset;
        self.header.refcount_table_clusters = table_clusters as u32;
        self.refcount_table = table;
        for cluster in 0..old_clusters {
            self.release_cluster(old_offset / cluster_size + cluster)?;
        }
        Ok(())
    }

    // Writes.

    /// The L2 table for `guest`, allocating it if needed.
    fn l2_table_for_write(&mut self, guest: u64) -> Result<u64, ImageError> {
        match self.l2_table(guest)? {
            Some((offset, true)) => Ok(offset),
            Some((offset, false)) => Err(Qcow2Error::SharedCluster(offset).into()),
            None => {
                let l1_index = self.l1_index(guest);
                if l1_index >= self.l1.len() as u64 {
                    return Err(Qcow2Error::L1TableTooSmall {
                        entries: self.header.l1_size,
                        needed: l1_index + 1,
                    }
                    .into());
                }
                let offset = self.allocate_cluster()?;
                let table = vec![0u8; self.cluster_size as usize];
                self.storage.write_at(StorageOffset(offset), &table)?;
                self.l2_cache.insert(offset, table);
                self.storage.flush()?;
                let entry = offset | COPIED;
                if let Some(slot) = self.l1.get_mut(l1_index as usize) {
                    *slot = entry;
                }
                self.storage.write_at(
                    StorageOffset(self.header.l1_table_offset + l1_index * 8),
                    &entry.to_be_bytes(),
                )?;
                Ok(offset)
            }
        }
    }

    /// Writes within one guest cluster; returns the L2 update still to do
    /// when the data went to a newly allocated cluster.
    fn write_in_cluster(
        &mut self,
        guest: u64,
        data: &[u8],
    ) -> Result<Option<PendingReference>, ImageError> {
        let within = guest % self.cluster_size;
        let l2_offset = self.l2_table_for_write(guest)?;
        let index = self.l2_index(guest);
        let entry = L2Entry::decode(self.l2_raw(l2_offset, index)?, self.header.cluster_bits)?;
        match entry {
            L2Entry::Data {
                offset,
                copied: true,
            } => {
                self.check_data_cluster(offset)?;
                self.storage
                    .write_at(StorageOffset(offset + within), data)?;
                Ok(None)
            }
            L2Entry::Data {
                offset,
                copied: false,
            }
            | L2Entry::Zero {
                preallocated: Some(offset),
                copied: false,
            } => Err(Qcow2Error::SharedCluster(offset).into()),
            L2Entry::Zero {
                preallocated: Some(offset),
                copied: true,
            } => {
                self.check_data_cluster(offset)?;
                let mut cluster = vec![0u8; self.cluster_size as usize];
                let start = within as usize;
                if let Some(target) = cluster.get_mut(start..start + data.len()) {
                    target.copy_from_slice(data);
                }
                self.storage.write_at(StorageOffset(offset), &cluster)?;
                Ok(Some(PendingReference {
                    l2_offset,
                    index,
                    entry: offset | COPIED,
                    replaced: L2Entry::Unallocated,
                }))
            }
            L2Entry::Unallocated | L2Entry::Zero { .. } | L2Entry::Compressed { .. } => {
                // Copy on write: the rest of the cluster keeps what it read.
                let mut cluster = vec![0u8; self.cluster_size as usize];
                if data.len() as u64 != self.cluster_size {
                    self.read_in_cluster(guest - within, &mut cluster)?;
                }
                let start = within as usize;
                if let Some(target) = cluster.get_mut(start..start + data.len()) {
                    target.copy_from_slice(data);
                }
                let offset = self.allocate_cluster()?;
                self.storage.write_at(StorageOffset(offset), &cluster)?;
                Ok(Some(PendingReference {
                    l2_offset,
                    index,
                    entry: offset | COPIED,
                    replaced: entry,
                }))
            }
        }
    }

    /// Points L2 entries at clusters whose data and refcounts are written,
    /// then drops the references the old entries held.
    fn commit(&mut self, pending: Vec<PendingReference>) -> Result<(), ImageError> {
        if pending.is_empty() {
            return Ok(());
        }
        self.storage.flush()?;
        self.set_l2_entries(&pending)?;
        let releases: Vec<L2Entry> = pending
            .into_iter()
            .map(|reference| reference.replaced)
            .filter(|entry| {
                !matches!(
                    entry,
                    L2Entry::Unallocated
                        | L2Entry::Zero {
                            preallocated: None,
                            ..
                        }
                )
            })
            .collect();
        if !releases.is_empty() {
            self.storage.flush()?;
            let mut clusters = Vec::new();
            for entry in releases {
                match entry {
                    L2Entry::Data { offset, .. }
                    | L2Entry::Zero {
                        preallocated: Some(offset),
                        ..
                    } => clusters.push(offset / self.cluster_size),
                    L2Entry::Compressed { offset, length } => {
                        let first = offset / self.cluster_size;
                        let last = (offset + length - 1) / self.cluster_size;
                        clusters.extend(first..=last);
                    }
                    L2Entry::Unallocated | L2Entry::Zero { .. } => {}
                }
            }
            self.release_clusters(&clusters)?;
        }
        Ok(())
    }

    /// Writes new L2 entries: each run of entries in one table goes to the
    /// storage as one write of the span they cover (the entries between
    /// them are rewritten as they are). Every entry is 8 aligned bytes, so
    /// a torn write leaves each one old or new.
    fn set_l2_entries(&mut self, pending: &[PendingReference]) -> Result<(), ImageError> {
        let cluster_size = self.cluster_size as usize;
        let mut rest = pending;
        while let Some(first) = rest.first() {
            let l2_offset = first.l2_offset;
            let run = rest
                .iter()
                .take_while(|reference| reference.l2_offset == l2_offset)
                .count();
            let (this, after) = rest.split_at(run);
            rest = after;
            let table = self
                .l2_cache
                .get(&mut self.storage, l2_offset, cluster_size)?;
            let outside = || Qcow2Error::MetadataOutsideFile(MetadataKind::L2Table, l2_offset);
            let (mut low, mut high) = (usize::MAX, 0);
            for reference in this {
                let start = usize::try_from(reference.index * 8).map_err(|_| outside())?;
                let field = table.get_mut(start..start + 8).ok_or_else(outside)?;
                field.copy_from_slice(&reference.entry.to_be_bytes());
                low = low.min(start);
                high = high.max(start + 8);
            }
            let span = table.get(low..high).ok_or_else(outside)?;
            self.storage
                .write_at(StorageOffset(l2_offset + low as u64), span)?;
        }
        Ok(())
    }

    /// Drops one reference to each of `clusters`, writing each refcount
    /// block's changed span once per run of clusters it counts.
    fn release_clusters(&mut self, clusters: &[u64]) -> Result<(), ImageError> {
        let mut dirty: Option<(u64, usize, usize)> = None;
        let mut freed = Vec::new();
        let result = self.decrement_refcounts(clusters, &mut dirty, &mut freed);
        // What was changed in the cache reaches the storage even when a
        // later cluster failed, so the two never disagree.
        let written = self.write_refcount_span(dirty);
        for cluster in freed {
            self.forget_freed(cluster);
        }
        result.and(written)
    }

    fn decrement_refcounts(
        &mut self,
        clusters: &[u64],
        dirty: &mut Option<(u64, usize, usize)>,
        freed: &mut Vec<u64>,
    ) -> Result<(), ImageError> {
        let order = self.header.refcount_order;
        for &cluster in clusters {
            let Some(block_offset) = self.refcount_block_for(cluster)? else {
                return Err(Qcow2Error::RefcountUnderflow(cluster * self.cluster_size).into());
            };
            if dirty.is_some_and(|(offset, _, _)| offset != block_offset) {
                self.write_refcount_span(dirty.take())?;
            }
            let index = cluster % self.refcount_entries_per_block;
            let block = self.refcount_cache.get(
                &mut self.storage,
                block_offset,
                self.cluster_size as usize,
            )?;
            let outside =
                || Qcow2Error::MetadataOutsideFile(MetadataKind::RefcountBlock, block_offset);
            let value = entries::get_refcount(block, index, order).ok_or_else(outside)?;
            if value == 0 {
                return Err(Qcow2Error::RefcountUnderflow(cluster * self.cluster_size).into());
            }
            if !entries::set_refcount(block, index, order, value - 1) {
                return Err(outside().into());
            }
            let range = entries::refcount_byte_range(index, order);
            let (low, high) = match *dirty {
                Some((_, low, high)) => (low.min(range.start), high.max(range.end)),
                None => (range.start, range.end),
            };
            *dirty = Some((block_offset, low, high));
            if value == 1 {
                freed.push(cluster);
            }
        }
        Ok(())
    }

    /// Writes a refcount block's changed span from the cache.
    fn write_refcount_span(
        &mut self,
        dirty: Option<(u64, usize, usize)>,
    ) -> Result<(), ImageError> {
        let Some((block_offset, low, high)) = dirty else {
            return Ok(());
        };
        let block =
            self.refcount_cache
                .get(&mut self.storage, block_offset, self.cluster_size as usize)?;
        let span = block.get(low..high).ok_or(Qcow2Error::MetadataOutsideFile(
            MetadataKind::RefcountBlock,
            block_offset,
        ))?;
        self.storage
            .write_at(StorageOffset(block_offset + low as u64), span)?;
        Ok(())
    }
}

/// Clusters a discard releases per commit (two flushes each).
const DISCARD_BATCH: usize = 4096;

impl<S: Storage> DiskImage for Qcow2<S> {
    fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, offset: DiskOffset, buffer: &mut [u8]) -> Result<(), ImageError> {
        check_range(self.header.size, offset, buffer.len() as u64)?;
        for (guest, start, size) in self.chunks(offset.0, buffer.len()) {
            let target = buffer
                .get_mut(start..start + size)
                .ok_or(ImageError::OutOfRange {
                    offset: guest,
                    length: size as u64,
                    size: self.header.size,
                })?;
            self.read_in_cluster(guest, target)?;
        }
        Ok(())
    }

    fn place(
        &mut self,
        offset: DiskOffset,
        length: u64,
        write: bool,
    ) -> Result<Option<Vec<Placement>>, ImageError> {
        check_range(self.header.size, offset, length)?;
        if write && self.read_only {
            return Ok(None);
        }
        let Ok(length) = usize::try_from(length) else {
            return Ok(None);
        };
        let mut pieces = Vec::new();
        for (guest, _, size) in self.chunks(offset.0, length) {
            let within = guest % self.cluster_size;
            let piece = match self.lookup(guest)? {
                // Read where it is; written in place only when the cluster
                // is this image's alone (copied), and then only once it is
                // known to be no metadata cluster.
                L2Entry::Data { offset, copied } if copied || !write => {
                    if copied {
                        self.check_data_cluster(offset)?;
                    }
                    let start = offset + within;
                    // Past the file's end reads zeros through `read`.
                    if start + size as u64 > self.file_length() {
                        return Ok(None);
                    }
                    Placement::Stored {
                        offset: StorageOffset(start),
                        length: size as u64,
                    }
                }
                L2Entry::Zero { .. } if !write => Placement::Zeros {
                    length: size as u64,
                },
                L2Entry::Unallocated if !write && self.backing.is_none() => Placement::Zeros {
                    length: size as u64,
                },
                _ => return Ok(None),
            };
            crate::push_placement(&mut pieces, piece);
        }
        Ok(Some(pieces))
    }

    fn write(&mut self, offset: DiskOffset, data: &[u8]) -> Result<(), ImageError> {
        check_range(self.header.size, offset, data.len() as u64)?;
        if self.read_only {
            return Err(ImageError::ReadOnly);
        }
        let mut pending = Vec::new();
        let mut result = Ok(());
        for (guest, start, size) in self.chunks(offset.0, data.len()) {
            let Some(source) = data.get(start..start + size) else {
                break;
            };
            match self.write_in_cluster(guest, source) {
                Ok(Some(reference)) => pending.push(reference),
                Ok(None) => {}
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        // Clusters already filled are linked even if a later one failed;
        // the request still fails.
        self.commit(pending)?;
        result
    }

    fn flush(&mut self) -> Result<(), ImageError> {
        Ok(self.storage.flush()?)
    }

    fn discard_granularity(&self) -> Option<u64> {
        // A version 2 image over a backing image cannot drop a cluster
        // without showing the backing image's (see `discard`).
        let shows_backing = self.header.version == Version::V2 && self.backing.is_some();
        let releases = !self.read_only && !shows_backing;
        releases.then_some(self.cluster_size)
    }

    fn discard(&mut self, offset: DiskOffset, length: u64) -> Result<(), ImageError> {
        check_range(self.header.size, offset, length)?;
        if self.read_only {
            return Err(ImageError::ReadOnly);
        }
        // Whole clusters only; version 3 marks them zero, version 2 can only
        // unallocate, which would expose the backing image, so it discards
        // nothing when there is one.
        let replacement = match (self.header.version, &self.backing) {
            (Version::V3, _) => ZERO,
            (Version::V2, None) => 0,
            (Version::V2, Some(_)) => return Ok(()),
        };
        let first = offset.0.div_ceil(self.cluster_size);
        let end = (offset.0 + length) / self.cluster_size;
        let mut pending = Vec::new();
        let mut cluster = first;
        while cluster < end {
            let guest = cluster * self.cluster_size;
            let Some((l2_offset, true)) = self.l2_table(guest)? else {
                // Nothing of this image under the whole table: skip it (a
                // discard of a large, mostly empty disk stays quick).
                cluster = (cluster / self.l2_entries + 1) * self.l2_entries;
                continue;
            };
            cluster += 1;
            if pending.len() >= DISCARD_BATCH {
                // Bounded memory however large the range.
                self.commit(core::mem::take(&mut pending))?;
            }
            let index = self.l2_index(guest);
            let raw = self.l2_raw(l2_offset, index)?;
            let entry = L2Entry::decode(raw, self.header.cluster_bits)?;
            let releasable = match entry {
                L2Entry::Data { copied, .. } | L2Entry::Zero { copied, .. } => copied,
                L2Entry::Compressed { .. } => true,
                // Reads zeros already: nothing to write (QEMU skips it too).
                L2Entry::Unallocated => self.backing.is_some(),
            };
            if releasable && raw != replacement {
                pending.push(PendingReference {
                    l2_offset,
                    index,
                    entry: replacement,
                    replaced: entry,
                });
            }
        }
        self.commit(pending)
    }
}
