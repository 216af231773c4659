//! Unit tests: images made here or by hand, round trips against a mirror,
//! a refcount checker (the same rules as `qemu-img check`), crash states,
//! and hostile headers and entries.

use std::collections::HashMap;
use std::vec::Vec;

use super::entries::{self, COMPRESSED, COPIED, L1Entry, L2Entry, ZERO};
use super::*;
use crate::fake::{MemoryStorage, Operation, replay};
use crate::{NoBacking, Raw};

const MIB: u64 = 1 << 20;

/// A small deterministic generator (xorshift) for test patterns.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit
    }
    fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte = self.next() as u8;
        }
    }
}

fn created(size: u64, cluster_bits: u32, refcount_order: u32) -> MemoryStorage {
    let options = CreateOptions {
        virtual_size: size,
        cluster_bits,
        refcount_order,
        backing: None,
    };
    Qcow2::create(MemoryStorage::new(1 << 40), &options).unwrap()
}

fn open(storage: MemoryStorage) -> Qcow2<MemoryStorage> {
    Qcow2::open(storage, OpenOptions::default(), &mut NoBacking).unwrap()
}

fn open_error(bytes: Vec<u8>) -> ImageError {
    match Qcow2::open(
        MemoryStorage::from_bytes(bytes, 1 << 30),
        OpenOptions::default(),
        &mut NoBacking,
    ) {
        Ok(_) => panic!("opened"),
        Err(error) => error,
    }
}

/// What a consistency check found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Check {
    /// Clusters referenced more often than their refcount says (corruption).
    corruptions: Vec<u64>,
    /// Clusters whose refcount exceeds their references (leaks).
    leaks: Vec<u64>,
    /// Entries whose copied flag disagrees with a refcount of one.
    copied_mismatches: Vec<u64>,
}

fn be64(bytes: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Counts references as `qemu-img check` does and compares refcounts.
fn check(bytes: &[u8]) -> Check {
    let header =
        Header::parse(&HeaderView::new_checked(bytes).unwrap(), bytes.len() as u64).unwrap();
    let cluster_size = header.cluster_size();
    let per_block = (cluster_size * 8) >> header.refcount_order;
    let mut references: HashMap<u64, u64> = HashMap::new();
    let count = |offset: u64, length: u64, references: &mut HashMap<u64, u64>| {
        for cluster in offset / cluster_size..(offset + length).div_ceil(cluster_size) {
            *references.entry(cluster).or_default() += 1;
        }
    };
    count(0, cluster_size, &mut references);
    count(
        header.l1_table_offset,
        u64::from(header.l1_size) * 8,
        &mut references,
    );
    let table_length = u64::from(header.refcount_table_clusters) * cluster_size;
    count(header.refcount_table_offset, table_length, &mut references);
    let table: Vec<u64> = (0..table_length / 8)
        .map(|index| be64(bytes, header.refcount_table_offset + index * 8))
        .collect();
    for block in table.iter().filter(|block| **block != 0) {
        count(*block, cluster_size, &mut references);
    }
    let mut copied_entries = Vec::new();
    for index in 0..u64::from(header.l1_size) {
        let raw = be64(bytes, header.l1_table_offset + index * 8);
        let L1Entry::Table { offset, copied } = L1Entry::decode(raw, cluster_size).unwrap() else {
            continue;
        };
        count(offset, cluster_size, &mut references);
        copied_entries.push((offset, copied));
        for entry in 0..cluster_size / 8 {
            match L2Entry::decode(be64(bytes, offset + entry * 8), header.cluster_bits).unwrap() {
                L2Entry::Data { offset, copied }
                | L2Entry::Zero {
                    preallocated: Some(offset),
                    copied,
                } => {
                    count(offset, cluster_size, &mut references);
                    copied_entries.push((offset, copied));
                }
                L2Entry::Compressed { offset, length } => {
                    let aligned = offset & !511;
                    count(aligned, offset + length - aligned, &mut references);
                }
                L2Entry::Unallocated | L2Entry::Zero { .. } => {}
            }
        }
    }
    let stored = |cluster: u64| -> u64 {
        let block = table
            .get((cluster / per_block) as usize)
            .copied()
            .unwrap_or(0);
        if block == 0 {
            return 0;
        }
        let block = &bytes[block as usize..(block + cluster_size) as usize];
        entries::get_refcount(block, cluster % per_block, header.refcount_order).unwrap()
    };
    let mut result = Check::default();
    let file_clusters = (bytes.len() as u64).div_ceil(cluster_size);
    let last = references
        .keys()
        .copied()
        .max()
        .unwrap_or(0)
        .max(file_clusters);
    for cluster in 0..=last {
        let expected = references.get(&cluster).copied().unwrap_or(0);
        let actual = stored(cluster);
        if actual < expected {
            result.corruptions.push(cluster);
        } else if actual > expected {
            result.leaks.push(cluster);
        }
    }
    for (offset, copied) in copied_entries {
        if copied != (stored(offset / cluster_size) == 1) {
            result.copied_mismatches.push(offset);
        }
    }
    result
}

fn assert_clean(bytes: &[u8]) {
    assert_eq!(check(bytes), Check::default());
    let report = library_check(bytes);
    assert_eq!((report.corruptions, report.leaks), (0, 0), "{report:?}");
}

/// [`Qcow2::check`] on an image's bytes, opened read-only.
fn library_check(bytes: &[u8]) -> CheckReport {
    let options = OpenOptions {
        read_only: true,
        depth: 0,
    };
    let storage = MemoryStorage::from_bytes(bytes.to_vec(), 1 << 40);
    let mut image = Qcow2::open(storage, options, &mut NoBacking).unwrap();
    image.check().unwrap()
}

/// The library's check and the test's own agree on a state.
fn assert_checks_agree(bytes: &[u8], context: &str) {
    let expected = check(bytes);
    let report = library_check(bytes);
    assert_eq!(
        (report.corruptions, report.leaks),
        (
            (expected.corruptions.len() + expected.copied_mismatches.len()) as u64,
            expected.leaks.len() as u64
        ),
        "{context}: library {report:?}, test {expected:?}"
    );
}

/// Random writes of random lengths, mirrored, then read back whole.
fn exercise(
    image: &mut Qcow2<MemoryStorage>,
    mirror: &mut [u8],
    random: &mut Random,
    writes: usize,
) {
    let size = mirror.len() as u64;
    for _ in 0..writes {
        let offset = random.below(size);
        let length = random.below((size - offset).min(3 * image.cluster_size)) + 1;
        let mut data = vec![0u8; length as usize];
        random.fill(&mut data);
        image.write(DiskOffset(offset), &data).unwrap();
        mirror[offset as usize..(offset + length) as usize].copy_from_slice(&data);
    }
    let mut read = vec![0u8; mirror.len()];
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read == mirror, "read back differs");
}

#[test]
fn a_new_image_reads_zeros_and_is_consistent() {
    let storage = created(10 * MIB, 16, 4);
    assert_clean(storage.bytes());
    let mut image = open(storage);
    assert_eq!(image.virtual_size(), 10 * MIB);
    assert_eq!(image.header().version, Version::V3);
    let mut buffer = vec![0xffu8; 100_000];
    image.read(DiskOffset(12345), &mut buffer).unwrap();
    assert!(buffer.iter().all(|byte| *byte == 0));
}

#[test]
fn writes_read_back_and_survive_reopening() {
    for (cluster_bits, refcount_order) in [
        (16, 4),
        (9, 4),
        (12, 0),
        (12, 1),
        (10, 2),
        (12, 3),
        (9, 5),
        (12, 6),
    ] {
        let size = 3 * MIB + 777;
        let mut image = open(created(size, cluster_bits, refcount_order));
        let mut mirror = vec![0u8; size as usize];
        let mut random = Random(0x5eed + u64::from(cluster_bits) * 10 + u64::from(refcount_order));
        exercise(&mut image, &mut mirror, &mut random, 60);
        let storage = image.into_storage();
        assert_clean(storage.bytes());
        let mut image = open(storage);
        exercise(&mut image, &mut mirror, &mut random, 20);
        assert_clean(image.into_storage().bytes());
    }
}

#[test]
fn small_clusters_grow_the_refcount_table() {
    // 512-byte clusters, 64-bit refcounts: a block counts 64 clusters and a
    // table cluster names 64 blocks, so 2 MiB of data outgrows it.
    let size = 4 * MIB;
    let mut image = open(created(size, 9, 6));
    let first_table = image.header().refcount_table_offset;
    let mut mirror = vec![0u8; size as usize];
    let mut data = vec![0u8; size as usize];
    Random(7).fill(&mut data);
    for chunk in 0..(size / 65536) {
        let range = (chunk * 65536) as usize..((chunk + 1) * 65536) as usize;
        image
            .write(DiskOffset(range.start as u64), &data[range.clone()])
            .unwrap();
        mirror[range.clone()].copy_from_slice(&data[range]);
    }
    assert_ne!(image.header().refcount_table_offset, first_table);
    let mut read = vec![0u8; size as usize];
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read == mirror);
    let storage = image.into_storage();
    assert_clean(storage.bytes());
    let mut image = open(storage);
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read == mirror);
}

#[test]
fn refcounts_pack_like_qemu() {
    let mut block = [0u8; 16];
    assert!(entries::set_refcount(&mut block, 3, 0, 1));
    assert_eq!(block[0], 0b0000_1000);
    assert!(entries::set_refcount(&mut block, 5, 1, 2));
    assert_eq!(block[1], 0b0000_1000);
    assert!(entries::set_refcount(&mut block, 3, 2, 0xa));
    assert_eq!(block[1], 0xa8);
    assert!(entries::set_refcount(&mut block, 1, 4, 0x1234));
    assert_eq!(&block[2..4], &[0x12, 0x34]);
    for order in 0..=6 {
        let mut block = [0u8; 64];
        let entries_in_block = (64 * 8) >> order;
        for index in 0..entries_in_block {
            let value = index.min(entries::max_refcount(order));
            entries::set_refcount(&mut block, index, order, value);
        }
        for index in 0..entries_in_block {
            let value = entries::get_refcount(&block, index, order).unwrap();
            assert_eq!(value, index.min(entries::max_refcount(order)));
        }
        assert_eq!(entries::get_refcount(&block, entries_in_block, order), None);
    }
}

#[test]
fn compressed_clusters_read_and_are_replaced_on_write() {
    let cluster = 1u64 << 16;
    let mut image = open(created(4 * cluster, 16, 4));
    // Two guest clusters compressed into one host cluster, as `qemu-img
    // convert -c` packs them: the second stream starts mid-sector.
    let mut first = vec![0u8; cluster as usize];
    Random(3).fill(&mut first[..1000]);
    let second: Vec<u8> = (0..cluster).map(|index| (index / 100) as u8).collect();
    let host = image.allocate_cluster().unwrap();
    let compressed_first = miniz_oxide::deflate::compress_to_vec(&first, 6);
    let compressed_second = miniz_oxide::deflate::compress_to_vec(&second, 6);
    let second_at = host + compressed_first.len() as u64;
    assert!(second_at + compressed_second.len() as u64 <= host + cluster);
    image
        .storage
        .write_at(StorageOffset(host), &compressed_first)
        .unwrap();
    image
        .storage
        .write_at(StorageOffset(second_at), &compressed_second)
        .unwrap();
    image.set_refcount(host / cluster, 2).unwrap();
    let descriptor = |offset: u64, length: u64| {
        let sectors = (offset + length).div_ceil(512) - offset / 512;
        COMPRESSED | ((sectors - 1) << (62 - 8)) | offset
    };
    let l2 = image.l2_table_for_write(0).unwrap();
    image
        .set_l2_raw(l2, 1, descriptor(host, compressed_first.len() as u64))
        .unwrap();
    image
        .set_l2_raw(l2, 2, descriptor(second_at, compressed_second.len() as u64))
        .unwrap();
    assert_clean(image.storage.bytes());

    let mut read = vec![0u8; cluster as usize];
    image.read(DiskOffset(cluster), &mut read).unwrap();
    assert!(read == first);
    image.read(DiskOffset(2 * cluster), &mut read).unwrap();
    assert!(read == second);

    // A write into a compressed cluster copies it to a new cluster and
    // drops one reference to the shared host cluster.
    image.write(DiskOffset(cluster + 10), b"fresh").unwrap();
    first[10..15].copy_from_slice(b"fresh");
    image.read(DiskOffset(cluster), &mut read).unwrap();
    assert!(read == first);
    assert_eq!(image.refcount(host / cluster).unwrap(), 1);
    image.read(DiskOffset(2 * cluster), &mut read).unwrap();
    assert!(read == second);
    image.write(DiskOffset(2 * cluster), &[1u8; 512]).unwrap();
    assert_eq!(image.refcount(host / cluster).unwrap(), 0);
    assert_clean(image.into_storage().bytes());
}

#[test]
fn a_corrupt_compressed_cluster_is_an_error() {
    let cluster = 1u64 << 16;
    let mut image = open(created(2 * cluster, 16, 4));
    let host = image.allocate_cluster().unwrap();
    image
        .storage
        .write_at(StorageOffset(host), &[0xff; 64])
        .unwrap();
    let l2 = image.l2_table_for_write(0).unwrap();
    image.set_l2_raw(l2, 0, COMPRESSED | host).unwrap();
    let mut read = vec![0u8; 512];
    assert_eq!(
        image.read(DiskOffset(0), &mut read),
        Err(ImageError::Qcow2(Qcow2Error::DecompressionFailed(host)))
    );
}

#[test]
fn zero_clusters_read_zeros_over_a_backing_image() {
    let cluster = 1u64 << 16;
    let size = 4 * cluster;
    let backing_bytes = vec![0xbbu8; size as usize];
    let options = CreateOptions {
        backing: Some(("base-volume", BackingFormat::Raw)),
        ..CreateOptions::new(size)
    };
    let storage = Qcow2::create(MemoryStorage::new(1 << 30), &options).unwrap();
    let mut asked = Vec::new();
    let mut resolver =
        |reference: &BackingReference<'_>| -> Result<Box<dyn DiskImage>, ImageError> {
            asked.push((
                reference.name.to_string(),
                reference.format,
                reference.depth,
            ));
            Ok(Box::new(Raw::new(
                MemoryStorage::from_bytes(backing_bytes.clone(), 0),
                true,
            )))
        };
    let mut image = Qcow2::open(storage, OpenOptions::default(), &mut resolver).unwrap();
    assert_eq!(image.backing_name(), Some("base-volume"));
    assert_eq!(image.backing_format(), Some(BackingFormat::Raw));
    let mut read = vec![0u8; size as usize];
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read.iter().all(|byte| *byte == 0xbb));

    // A partial write copies the rest of the cluster from the backing image.
    image.write(DiskOffset(cluster + 100), &[1, 2, 3]).unwrap();
    image
        .read(DiskOffset(cluster), &mut read[..cluster as usize])
        .unwrap();
    assert_eq!(&read[100..103], &[1, 2, 3]);
    assert!(
        read[..100]
            .iter()
            .chain(&read[103..cluster as usize])
            .all(|byte| *byte == 0xbb)
    );

    // Discard marks clusters zero (v3) instead of exposing the backing image.
    image.discard(DiskOffset(0), 2 * cluster).unwrap();
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read[..2 * cluster as usize].iter().all(|byte| *byte == 0));
    assert!(
        read[2 * cluster as usize..]
            .iter()
            .all(|byte| *byte == 0xbb)
    );
    let l2 = image.l2_table(0).unwrap().unwrap().0;
    assert_eq!(image.l2_raw(l2, 1).unwrap(), ZERO);
    drop(image);
    assert_eq!(
        asked,
        vec![("base-volume".to_string(), Some(BackingFormat::Raw), 1)]
    );
}

#[test]
fn a_preallocated_zero_cluster_is_written_in_place() {
    let cluster = 1u64 << 12;
    let mut image = open(created(4 * cluster, 12, 4));
    image
        .write(DiskOffset(0), &vec![9u8; cluster as usize])
        .unwrap();
    let l2 = image.l2_table(0).unwrap().unwrap().0;
    let data = image.l2_raw(l2, 0).unwrap() & entries::OFFSET_MASK;
    image.set_l2_raw(l2, 0, data | COPIED | ZERO).unwrap();
    let mut read = vec![1u8; cluster as usize];
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read.iter().all(|byte| *byte == 0));
    image.write(DiskOffset(5), &[7]).unwrap();
    assert_eq!(image.l2_raw(l2, 0).unwrap(), data | COPIED);
    image.read(DiskOffset(0), &mut read).unwrap();
    assert_eq!(read[5], 7);
    assert_eq!(read.iter().filter(|byte| **byte != 0).count(), 1);
    assert_clean(image.into_storage().bytes());
}

#[test]
fn discard_frees_clusters_for_reuse() {
    let cluster = 1u64 << 16;
    let mut image = open(created(8 * cluster, 16, 4));
    assert_eq!(image.discard_granularity(), Some(cluster));
    image
        .write(DiskOffset(0), &vec![5u8; 8 * cluster as usize])
        .unwrap();
    let full = image.storage.len();
    image.discard(DiskOffset(cluster / 2), 4 * cluster).unwrap();
    let mut read = vec![0u8; 8 * cluster as usize];
    image.read(DiskOffset(0), &mut read).unwrap();
    // Only whole clusters 1..=3 are discarded.
    assert!(read[..cluster as usize].iter().all(|byte| *byte == 5));
    assert!(
        read[cluster as usize..4 * cluster as usize]
            .iter()
            .all(|byte| *byte == 0)
    );
    assert!(read[4 * cluster as usize..].iter().all(|byte| *byte == 5));
    assert_clean(image.storage.bytes());
    image
        .write(DiskOffset(cluster), &vec![6u8; 3 * cluster as usize])
        .unwrap();
    assert_eq!(image.storage.len(), full, "freed clusters are reused");
    assert_clean(image.into_storage().bytes());
}

#[test]
fn large_discards_commit_in_batches_and_skip_empty_tables() {
    // 512-byte clusters: 64 entries per L2 table, so 3 MiB of data is
    // 6144 clusters (more than one batch) under 96 tables.
    let cluster = 512u64;
    let size = 8u64 << 20;
    let mut image = open(created(size, 9, 4));
    let data = vec![9u8; 3 << 20];
    image.write(DiskOffset(1 << 20), &data).unwrap();
    image.write(DiskOffset(6 << 20), &[4u8; 512]).unwrap();
    let full = image.storage.len();
    // The whole disk but its last cluster: leading tables are unallocated.
    image.storage.start_log();
    image.discard(DiskOffset(0), size - cluster).unwrap();
    // One write per L2 table and refcount block touched in each batch,
    // not two per cluster: 6145 clusters went.
    let writes = image
        .storage
        .log()
        .iter()
        .filter(|operation| matches!(operation, crate::fake::Operation::Write { .. }))
        .count();
    assert!(writes < 400, "{writes} writes to discard 6145 clusters");
    let mut read = vec![1u8; size as usize];
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read.iter().all(|byte| *byte == 0));
    assert_clean(image.storage.bytes());
    // Writing the same amount again reuses the freed clusters.
    image.write(DiskOffset(1 << 20), &data).unwrap();
    assert_eq!(image.storage.len(), full, "freed clusters are reused");
    assert_clean(image.into_storage().bytes());
}

#[test]
fn read_only_images_refuse_writes() {
    let mut image = Qcow2::open(
        created(MIB, 16, 4),
        OpenOptions {
            read_only: true,
            depth: 0,
        },
        &mut NoBacking,
    )
    .unwrap();
    assert_eq!(image.write(DiskOffset(0), &[1]), Err(ImageError::ReadOnly));
    assert_eq!(
        image.discard(DiskOffset(0), 4096),
        Err(ImageError::ReadOnly)
    );
    assert_eq!(image.discard_granularity(), None);
}

#[test]
fn requests_past_the_end_are_refused() {
    let mut image = open(created(MIB, 16, 4));
    let mut buffer = [0u8; 2];
    assert!(matches!(
        image.read(DiskOffset(MIB - 1), &mut buffer),
        Err(ImageError::OutOfRange { .. })
    ));
    assert!(matches!(
        image.write(DiskOffset(u64::MAX), &buffer),
        Err(ImageError::OutOfRange { .. })
    ));
    assert!(matches!(
        image.read_sectors(crate::Sector(0), &mut [0u8; 100]),
        Err(ImageError::UnalignedSectorRequest { length: 100 })
    ));
    image
        .write_sectors(crate::Sector(2047), &[4u8; 512])
        .unwrap();
}

/// Checks crash states of `log` applied to `before`: each prefix, and each
/// write jumping ahead of the unflushed writes before it. `interesting`
/// picks the operations to check (all of them is slow for big logs).
fn check_crash_states(
    before: &[u8],
    log: &[Operation],
    interesting: impl Fn(usize) -> bool,
) -> usize {
    let mut last_flush = 0;
    let mut states = 0;
    for (index, operation) in log.iter().enumerate() {
        if *operation == Operation::Flush {
            last_flush = index;
        }
        if !interesting(index) {
            continue;
        }
        let mut prefix = before.to_vec();
        replay(&mut prefix, &log[..=index]);
        let result = check(&prefix);
        assert!(
            result.corruptions.is_empty(),
            "after operation {index}: {result:?}"
        );
        assert_checks_agree(&prefix, &format!("after operation {index}"));
        if let Operation::Write { .. } = operation {
            let mut reordered = before.to_vec();
            replay(&mut reordered, &log[..last_flush]);
            // Lengths are set before the writes they serve; keep them.
            let lengths: Vec<Operation> = log[last_flush..index]
                .iter()
                .filter(|operation| matches!(operation, Operation::SetLength(_)))
                .cloned()
                .collect();
            replay(&mut reordered, &lengths);
            replay(&mut reordered, &log[index..=index]);
            let result = check(&reordered);
            assert!(
                result.corruptions.is_empty(),
                "operation {index} ahead: {result:?}"
            );
            assert_checks_agree(&reordered, &format!("operation {index} ahead"));
        }
        states += 1;
    }
    states
}

#[test]
fn crash_states_never_reference_unreferenced_clusters() {
    // Any prefix of the writes, or one write overtaking the unflushed ones
    // before it, must leave leaks at most: never a reference to a cluster
    // whose refcount does not count it.
    let size = 256 << 10;
    let mut image = open(created(size, 9, 4));
    image.write(DiskOffset(0), &[1u8; 4096]).unwrap();
    let cluster = 1u64 << 9;
    let host = image.allocate_cluster().unwrap();
    let compressed = miniz_oxide::deflate::compress_to_vec(&[4u8; 512], 6);
    image
        .storage
        .write_at(StorageOffset(host), &compressed)
        .unwrap();
    let l2 = image.l2_table_for_write(0).unwrap();
    image.set_l2_raw(l2, 20, COMPRESSED | host).unwrap();
    assert_clean(image.storage.bytes());
    let before = image.storage.bytes().to_vec();
    image.storage.start_log();
    let mut random = Random(99);
    for _ in 0..12 {
        let offset = random.below(size - 20_000);
        let mut data = vec![0u8; random.below(20_000) as usize + 1];
        random.fill(&mut data);
        image.write(DiskOffset(offset), &data).unwrap();
    }
    image
        .write(DiskOffset(20 * cluster + 3), &[5u8; 7])
        .unwrap();
    image.discard(DiskOffset(0), 64 << 10).unwrap();
    let log = image.storage.log().to_vec();
    let states = check_crash_states(&before, &log, |_| true);
    assert!(states > 100);
    assert_clean(image.into_storage().bytes());
}

#[test]
fn crash_states_around_refcount_table_growth() {
    let size = 4 * MIB;
    let mut image = open(created(size, 9, 6));
    let before = image.storage.bytes().to_vec();
    image.storage.start_log();
    image
        .write(DiskOffset(0), &vec![3u8; (5 * MIB / 2) as usize])
        .unwrap();
    let log = image.storage.log().to_vec();
    let switch = log
        .iter()
        .position(|operation| matches!(operation, Operation::Write { offset: 48, data } if data.len() == 12))
        .expect("the refcount table grew");
    let states = check_crash_states(&before, &log, |index| {
        index + 60 >= switch && index <= switch + 60
    });
    assert!(states > 100);
    assert_clean(image.into_storage().bytes());
}

#[test]
fn a_failing_medium_fails_requests_and_leaks_at_most() {
    for allowed in 0..40 {
        let mut storage = created(MIB, 12, 4);
        storage.fail_writes_after(allowed);
        let mut image = open(storage);
        let result = image.write(DiskOffset(5000), &[8u8; 20_000]);
        let bytes = image.into_storage().into_bytes();
        assert!(check(&bytes).corruptions.is_empty());
        if result.is_ok() {
            let mut image = open(MemoryStorage::from_bytes(bytes, 1 << 30));
            let mut read = vec![0u8; 20_000];
            image.read(DiskOffset(5000), &mut read).unwrap();
            assert!(read.iter().all(|byte| *byte == 8));
        }
    }
}

fn header_bytes() -> Vec<u8> {
    created(MIB, 16, 4).into_bytes()
}

fn patched(at: usize, field: &[u8]) -> Vec<u8> {
    let mut bytes = header_bytes();
    bytes[at..at + field.len()].copy_from_slice(field);
    bytes
}

fn qcow2_error(error: ImageError) -> Qcow2Error {
    match error {
        ImageError::Qcow2(error) => error,
        other => panic!("not a qcow2 error: {other:?}"),
    }
}

#[test]
fn hostile_headers_are_refused_by_name() {
    let refused = |bytes: Vec<u8>| qcow2_error(open_error(bytes));
    assert_eq!(refused(b"QFI".to_vec()), Qcow2Error::HeaderTruncated);
    assert_eq!(refused(patched(0, b"QFI\xfa")), Qcow2Error::BadMagic);
    assert_eq!(
        refused(patched(4, &4u32.to_be_bytes())),
        Qcow2Error::UnsupportedVersion(4)
    );
    assert_eq!(
        refused(patched(20, &30u32.to_be_bytes())),
        Qcow2Error::ClusterBitsOutOfRange(30)
    );
    assert_eq!(
        refused(patched(20, &8u32.to_be_bytes())),
        Qcow2Error::ClusterBitsOutOfRange(8)
    );
    assert_eq!(
        refused(patched(32, &1u32.to_be_bytes())),
        Qcow2Error::Encrypted(1)
    );
    assert_eq!(
        refused(patched(72, &1u64.to_be_bytes())),
        Qcow2Error::ImageDirty
    );
    assert_eq!(
        refused(patched(72, &2u64.to_be_bytes())),
        Qcow2Error::ImageMarkedCorrupt
    );
    assert_eq!(
        refused(patched(72, &4u64.to_be_bytes())),
        Qcow2Error::ExternalDataFile
    );
    assert_eq!(
        refused(patched(72, &16u64.to_be_bytes())),
        Qcow2Error::ExtendedL2
    );
    assert_eq!(
        refused(patched(72, &(1u64 << 40).to_be_bytes())),
        Qcow2Error::UnknownIncompatibleFeatures(1 << 40)
    );
    let mut zstd = patched(72, &8u64.to_be_bytes());
    zstd[104] = 1;
    assert_eq!(refused(zstd), Qcow2Error::UnsupportedCompressionType(1));
    assert_eq!(
        refused(patched(96, &7u32.to_be_bytes())),
        Qcow2Error::RefcountOrderOutOfRange(7)
    );
    assert_eq!(
        refused(patched(100, &100u32.to_be_bytes())),
        Qcow2Error::BadHeaderLength(100)
    );
    assert_eq!(
        refused(patched(24, &(1u64 << 62).to_be_bytes())),
        Qcow2Error::VirtualSizeTooLarge(1 << 62)
    );
    assert_eq!(
        refused(patched(24, &(1u64 << 40).to_be_bytes())),
        Qcow2Error::L1TableTooSmall {
            entries: 1,
            needed: 2048
        }
    );
    assert_eq!(
        refused(patched(36, &u32::MAX.to_be_bytes())),
        Qcow2Error::L1TableTooLarge(u32::MAX)
    );
    assert_eq!(
        refused(patched(40, &(1u64 << 50).to_be_bytes())),
        Qcow2Error::MetadataOutsideFile(MetadataKind::L1Table, 1 << 50)
    );
    assert_eq!(
        refused(patched(40, &100u64.to_be_bytes())),
        Qcow2Error::MetadataUnaligned(MetadataKind::L1Table, 100)
    );
    assert_eq!(
        refused(patched(40, &0u64.to_be_bytes())),
        Qcow2Error::MetadataOverlap(MetadataKind::L1Table, 0)
    );
    let l1_on_refcount_table = patched(40, &65536u64.to_be_bytes());
    assert_eq!(
        refused(l1_on_refcount_table),
        Qcow2Error::MetadataOverlap(MetadataKind::L1Table, 65536)
    );
    assert_eq!(
        refused(patched(56, &0u32.to_be_bytes())),
        Qcow2Error::RefcountTableSizeInvalid(0)
    );
    assert_eq!(
        refused(patched(56, &1000u32.to_be_bytes())),
        Qcow2Error::RefcountTableSizeInvalid(1000)
    );
    assert_eq!(
        refused(patched(60, &70000u32.to_be_bytes())),
        Qcow2Error::TooManySnapshots(70000)
    );
    let mut backing = patched(8, &200u64.to_be_bytes());
    backing[16..20].copy_from_slice(&2000u32.to_be_bytes());
    assert_eq!(refused(backing), Qcow2Error::BackingNameInvalid);
    let mut backing = patched(8, &(65530u64).to_be_bytes());
    backing[16..20].copy_from_slice(&10u32.to_be_bytes());
    assert_eq!(refused(backing), Qcow2Error::BackingNameInvalid);
    let mut not_utf8 = patched(8, &200u64.to_be_bytes());
    not_utf8[16..20].copy_from_slice(&2u32.to_be_bytes());
    not_utf8[200..202].copy_from_slice(&[0xff, 0xfe]);
    assert_eq!(refused(not_utf8), Qcow2Error::BackingNameNotUtf8);
    let mut extension = header_bytes();
    extension[112..116].copy_from_slice(&0x1234u32.to_be_bytes());
    extension[116..120].copy_from_slice(&100_000u32.to_be_bytes());
    assert_eq!(refused(extension), Qcow2Error::HeaderExtensionTruncated);
}

#[test]
fn snapshots_allow_reading_only() {
    let bytes = patched(60, &1u32.to_be_bytes());
    assert_eq!(
        qcow2_error(open_error(bytes.clone())),
        Qcow2Error::SnapshotsPresent
    );
    let options = OpenOptions {
        read_only: true,
        depth: 0,
    };
    assert!(Qcow2::open(MemoryStorage::from_bytes(bytes, 0), options, &mut NoBacking).is_ok());
}

#[test]
fn autoclear_bits_are_cleared_on_writable_open() {
    let bytes = patched(88, &1u64.to_be_bytes());
    let image = open(MemoryStorage::from_bytes(bytes, 1 << 30));
    assert_eq!(image.header().autoclear_features, 0);
    assert_eq!(be64(image.into_storage().bytes(), 88), 0);
}

#[test]
fn backing_chains_are_bounded() {
    let options = CreateOptions {
        backing: Some(("myself", BackingFormat::Qcow2)),
        ..CreateOptions::new(MIB)
    };
    let looping = Qcow2::create(MemoryStorage::new(1 << 30), &options)
        .unwrap()
        .into_bytes();
    // A resolver that always opens the same image: a loop.
    fn resolve(
        bytes: &[u8],
        reference: &BackingReference<'_>,
    ) -> Result<Box<dyn DiskImage>, ImageError> {
        let options = OpenOptions {
            read_only: true,
            depth: reference.depth,
        };
        let storage = MemoryStorage::from_bytes(bytes.to_vec(), 0);
        let mut inner = |reference: &BackingReference<'_>| resolve(bytes, reference);
        Ok(Box::new(Qcow2::open(storage, options, &mut inner)?))
    }
    let mut resolver = |reference: &BackingReference<'_>| resolve(&looping, reference);
    let result = Qcow2::open(
        MemoryStorage::from_bytes(looping.clone(), 0),
        OpenOptions::default(),
        &mut resolver,
    );
    assert_eq!(result.err(), Some(ImageError::BackingChainTooDeep));
    assert_eq!(
        Qcow2::open(
            MemoryStorage::from_bytes(looping, 0),
            OpenOptions::default(),
            &mut NoBacking
        )
        .err(),
        Some(ImageError::BackingUnavailable)
    );
}

#[test]
fn hostile_tables_give_errors() {
    let cluster = 1u64 << 16;
    let base = {
        let mut image = open(created(4 * cluster, 16, 4));
        image.write(DiskOffset(0), &[1u8; 4096]).unwrap();
        image.into_storage().into_bytes()
    };
    let l1_offset = be64(&base, 40);
    let l2_offset = be64(&base, l1_offset) & entries::OFFSET_MASK;
    let read_error = |bytes: Vec<u8>| {
        let mut image = open(MemoryStorage::from_bytes(bytes, 1 << 30));
        let mut buffer = [0u8; 16];
        qcow2_error(image.read(DiskOffset(0), &mut buffer).unwrap_err())
    };
    let with = |at: u64, value: u64| {
        let mut bytes = base.clone();
        bytes[at as usize..at as usize + 8].copy_from_slice(&value.to_be_bytes());
        bytes
    };
    assert_eq!(
        read_error(with(l1_offset, 0x1000 | COPIED)),
        Qcow2Error::MetadataUnaligned(MetadataKind::L2Table, 0x1000)
    );
    assert_eq!(
        read_error(with(l1_offset, (1 << 40) | COPIED)),
        Qcow2Error::MetadataOutsideFile(MetadataKind::L2Table, 1 << 40)
    );
    assert_eq!(
        read_error(with(l1_offset, l1_offset | COPIED)),
        Qcow2Error::MetadataOverlap(MetadataKind::L2Table, l1_offset)
    );
    assert_eq!(
        read_error(with(l1_offset, 0x3 | l2_offset)),
        Qcow2Error::ReservedBitsSet(MetadataKind::L1Table, 0x3 | l2_offset)
    );
    assert_eq!(
        read_error(with(l2_offset, 0x1001 << 1)),
        Qcow2Error::ReservedBitsSet(MetadataKind::L2Table, 0x2002)
    );
    assert_eq!(
        read_error(with(l2_offset, 0x1200)),
        Qcow2Error::MetadataUnaligned(MetadataKind::DataCluster, 0x1200)
    );
    assert_eq!(
        read_error(with(l2_offset, COMPRESSED | (1 << 48))),
        Qcow2Error::MetadataOutsideFile(MetadataKind::CompressedCluster, 1 << 48)
    );
    // A data cluster past the end of the file reads as zeros, as in QEMU,
    // but is not written to.
    let mut image = open(MemoryStorage::from_bytes(
        with(l2_offset, (1 << 40) | COPIED),
        1 << 30,
    ));
    let mut buffer = [1u8; 16];
    image.read(DiskOffset(0), &mut buffer).unwrap();
    assert_eq!(buffer, [0u8; 16]);
    assert_eq!(
        qcow2_error(image.write(DiskOffset(0), &[1]).unwrap_err()),
        Qcow2Error::MetadataOutsideFile(MetadataKind::DataCluster, 1 << 40)
    );
    // An L2 entry pointing at its own table: written in place, the data
    // would rewrite the mapping.
    let mut image = open(MemoryStorage::from_bytes(
        with(l2_offset, l2_offset | COPIED),
        1 << 30,
    ));
    assert_eq!(
        qcow2_error(image.write(DiskOffset(0), &[1]).unwrap_err()),
        Qcow2Error::MetadataOverlap(MetadataKind::DataCluster, l2_offset)
    );
    // A refcount past the end of the file: the cluster may be in use.
    let block = be64(&base, be64(&base, 48));
    let end_cluster = base.len() as u64 / cluster;
    let mut bytes = base.clone();
    bytes[(block + end_cluster * 2) as usize + 1] = 1;
    let mut image = open(MemoryStorage::from_bytes(bytes, 1 << 30));
    assert_eq!(
        qcow2_error(image.write(DiskOffset(cluster), &[1]).unwrap_err()),
        Qcow2Error::RefcountBeyondFile(end_cluster * cluster)
    );
    // A refcount table naming the header as a refcount block.
    let table = be64(&base, 48);
    let mut image = open(MemoryStorage::from_bytes(with(table, 0), 1 << 30));
    assert!(image.write(DiskOffset(cluster), &[1]).is_err());
}

#[test]
fn mutated_images_never_panic() {
    let cluster_bits = 9;
    let pristine = {
        let mut image = open(created(64 * 1024, cluster_bits, 4));
        let mut data = vec![0u8; 20_000];
        Random(5).fill(&mut data);
        image.write(DiskOffset(3000), &data).unwrap();
        image.into_storage().into_bytes()
    };
    let mut random = Random(0xfeed);
    for _ in 0..3000 {
        let mut bytes = pristine.clone();
        for _ in 0..random.below(8) + 1 {
            let at = random.below(bytes.len() as u64) as usize;
            bytes[at] = random.next() as u8;
        }
        let Ok(mut image) = Qcow2::open(
            MemoryStorage::from_bytes(bytes, 1 << 22),
            OpenOptions::default(),
            &mut NoBacking,
        ) else {
            continue;
        };
        let size = image.virtual_size().min(1 << 20);
        for _ in 0..4 {
            let offset = random.below(size.max(1));
            let length = random.below(4000).min(size - offset) as usize;
            let mut buffer = vec![0u8; length];
            let _ = image.read(DiskOffset(offset), &mut buffer);
            let _ = image.write(DiskOffset(offset), &buffer);
            let _ = image.discard(DiskOffset(offset), length as u64);
        }
    }
}

#[test]
fn the_check_finds_leaks_corruptions_and_references_past_the_file() {
    let mut image = open(created(2 * MIB, 16, 4));
    image.write(DiskOffset(0), &[7u8; 4096]).unwrap();
    image.write(DiskOffset(MIB), &[9u8; 4096]).unwrap();
    let data = match image.lookup(0).unwrap() {
        L2Entry::Data { offset, .. } => offset,
        other => panic!("not data: {other:?}"),
    };
    let bytes = image.into_storage().into_bytes();
    assert_eq!(
        library_check(&bytes),
        CheckReport {
            referenced_clusters: library_check(&bytes).referenced_clusters,
            ..CheckReport::default()
        }
    );

    // A refcount of two on a cluster referenced once: a leak.
    let mut image = open(MemoryStorage::from_bytes(bytes.clone(), 1 << 30));
    image.set_refcount(data / (1 << 16), 2).unwrap();
    let leaked = image.into_storage().into_bytes();
    let report = library_check(&leaked);
    // The copied flag no longer matches a refcount of one either.
    assert_eq!((report.leaks, report.corruptions), (1, 1), "{report:?}");
    assert!(!report.is_consistent());
    assert_checks_agree(&leaked, "refcount two");

    // A refcount of zero on a referenced cluster: corruption.
    let mut image = open(MemoryStorage::from_bytes(bytes.clone(), 1 << 30));
    image.set_refcount(data / (1 << 16), 0).unwrap();
    let corrupt = image.into_storage().into_bytes();
    let report = library_check(&corrupt);
    assert!(report.corruptions >= 1 && report.leaks == 0, "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|line| line.contains("refcount 0 but 1 references"))
    );
    assert_checks_agree(&corrupt, "refcount zero");

    // An L2 entry pointing past the end of the file.
    let mut image = open(MemoryStorage::from_bytes(bytes, 1 << 30));
    let l2 = image.l2_table(0).unwrap().unwrap().0;
    let past = (image.file_length() + (4 << 16)) & !0xffff;
    image.set_l2_raw(l2, 3, COPIED | past).unwrap();
    let report = library_check(&image.into_storage().into_bytes());
    assert!(
        report
            .problems
            .iter()
            .any(|line| line.contains("past the end of the file")),
        "{report:?}"
    );
    assert!(!report.is_consistent());
}

/// Reads `length` bytes at `offset` through `place`'s pieces, straight
/// from the storage; `None` when the range is not placed.
fn read_placed(image: &mut Qcow2<MemoryStorage>, offset: u64, length: u64) -> Option<Vec<u8>> {
    let pieces = image.place(DiskOffset(offset), length, false).unwrap()?;
    let mut bytes = Vec::new();
    for piece in pieces {
        match piece {
            crate::Placement::Stored { offset, length } => {
                let mut part = vec![0u8; length as usize];
                image.storage.read_at(offset, &mut part).unwrap();
                bytes.extend_from_slice(&part);
            }
            crate::Placement::Zeros { length } => bytes.resize(bytes.len() + length as usize, 0),
        }
    }
    Some(bytes)
}

#[test]
fn placed_requests_match_reads_and_writes_through_the_image() {
    let size = 2 * MIB;
    let mut image = open(created(size, 12, 4));
    let mut mirror = vec![0u8; size as usize];
    let mut random = Random(0x91ace);
    // Nothing allocated: reads place as zeros, writes do not place.
    assert_eq!(
        image.place(DiskOffset(4096), 8192, false).unwrap(),
        Some(vec![crate::Placement::Zeros { length: 8192 }])
    );
    assert_eq!(image.place(DiskOffset(4096), 8192, true).unwrap(), None);
    exercise(&mut image, &mut mirror, &mut random, 40);
    let (mut placed_reads, mut placed_writes) = (0, 0);
    for _ in 0..300 {
        let offset = random.below(size / 512) * 512;
        let length = (random.below(24) + 1) * 512;
        let length = length.min(size - offset);
        if let Some(bytes) = read_placed(&mut image, offset, length) {
            placed_reads += 1;
            assert!(bytes == mirror[offset as usize..(offset + length) as usize]);
        }
        if let Some(pieces) = image.place(DiskOffset(offset), length, true).unwrap() {
            placed_writes += 1;
            let mut data = vec![0u8; length as usize];
            random.fill(&mut data);
            let mut done = 0usize;
            for piece in pieces {
                let crate::Placement::Stored { offset, length } = piece else {
                    panic!("a write placed as zeros");
                };
                image
                    .storage
                    .write_at(offset, &data[done..done + length as usize])
                    .unwrap();
                done += length as usize;
            }
            assert_eq!(done, data.len());
            mirror[offset as usize..(offset + length) as usize].copy_from_slice(&data);
        }
    }
    assert!(
        placed_reads > 100 && placed_writes > 10,
        "{placed_reads} {placed_writes}"
    );
    let mut read = vec![0u8; size as usize];
    image.read(DiskOffset(0), &mut read).unwrap();
    assert!(read == mirror, "writes through placements differ");
    assert_clean(image.into_storage().bytes());
    // Read-only images place no writes; out-of-range requests are errors.
    let mut raw = Raw::new(MemoryStorage::from_bytes(vec![0; 4096], 0), true);
    assert_eq!(raw.place(DiskOffset(0), 512, true).unwrap(), None);
    assert!(raw.place(DiskOffset(0), 4096, false).unwrap().is_some());
    assert!(raw.place(DiskOffset(512), 4096, false).is_err());
}
