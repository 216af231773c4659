//! Volume store tests: format and open, every operation, name and size
//! rules, byte I/O through extents, damaged and forged metadata, and crash
//! safety with the fake disk losing or tearing unflushed writes at every
//! point of every metadata update.

use super::*;
use crate::block::PartitionDevice;
use crate::fake::{FakeDisk, Faults, SectorFate, SplitMix64};
use alloc::string::ToString;

const BLOCK_SECTORS: u32 = 8; // 4 KiB blocks keep the fake disks small
const BLOCK_BYTES: u64 = BLOCK_SECTORS as u64 * 512;

fn name(text: &str) -> VolumeName {
    VolumeName::new(text).unwrap()
}

fn options() -> FormatOptions {
    FormatOptions {
        block_sectors: BLOCK_SECTORS,
        ..FormatOptions::new(Guid::from_random_bytes([9; 16]))
    }
}

/// A store with `blocks` data blocks.
fn store_with_blocks(blocks: u64) -> Store<FakeDisk> {
    let disk = FakeDisk::new(2 * u64::from(SLOT_SECTORS) + blocks * u64::from(BLOCK_SECTORS));
    let store = Store::format(disk, options()).unwrap();
    assert_eq!(store.geometry().block_count(), blocks);
    store
}

/// Pulls the plug (every unflushed write lost) and opens again.
fn power_cycle(store: Store<FakeDisk>) -> Store<FakeDisk> {
    let disk = store.into_device().crash_losing_everything();
    let (store, _) = Store::open(disk).unwrap();
    store.check().unwrap();
    store
}

fn pattern(seed: u8, length: usize) -> Vec<u8> {
    (0..length)
        .map(|index| seed.wrapping_add((index % 251) as u8))
        .collect()
}

fn read_all(store: &mut Store<FakeDisk>, id: VolumeId) -> Vec<u8> {
    let mut buffer = vec![0u8; store.volume(id).unwrap().size as usize];
    store.read_at(id, 0, &mut buffer).unwrap();
    buffer
}

#[test]
fn format_then_open_gives_an_empty_store() {
    let store = store_with_blocks(64);
    assert!(store.volumes().is_empty());
    assert_eq!(store.generation(), 1);
    assert_eq!(store.free_bytes(), 64 * BLOCK_BYTES);
    assert_eq!(store.capacity_bytes(), 64 * BLOCK_BYTES);
    let disk = store.into_device().crash_losing_everything();
    let (store, report) = Store::open(disk).unwrap();
    assert_eq!(report.generation, 1);
    assert_eq!(report.slot, 1);
    assert_eq!(report.other, Err(SlotFault::NoMagic));
    assert!(store.volumes().is_empty());
}

#[test]
fn a_blank_or_foreign_partition_is_refused_and_left_alone() {
    let mut blank = FakeDisk::new(4096);
    assert_eq!(Store::open(&mut blank).unwrap_err(), StoreError::NotAStore);
    let mut random = SplitMix64::new(1);
    let foreign: Vec<u8> = (0..4096 * 512).map(|_| random.next_u64() as u8).collect();
    let mut foreign = FakeDisk::from_image(&foreign);
    assert_eq!(
        Store::open(&mut foreign).unwrap_err(),
        StoreError::NotAStore
    );
    assert_eq!(
        Store::format(&mut foreign, options()).unwrap_err(),
        StoreError::NotBlank
    );
    assert_eq!(foreign.stats().sectors_written, 0);
    assert_eq!(blank.stats().sectors_written, 0);
    let tiny = FakeDisk::new(100);
    assert_eq!(Store::open(tiny).unwrap_err(), StoreError::NotAStore);
    assert!(
        StoreError::NotAStore
            .to_string()
            .contains("refusing to touch it")
    );
}

#[test]
fn format_refuses_an_existing_store_unless_told_to_overwrite() {
    let mut store = store_with_blocks(16);
    let id = store.create(&name("old"), VolumeKind::Config, 10).unwrap();
    // Push the old store to a high generation in both slots.
    for size in 1..6 {
        store.resize(id, size).unwrap();
    }
    let disk = store.into_device();
    assert_eq!(
        Store::format(disk.clone(), options()).unwrap_err(),
        StoreError::NotBlank
    );
    let overwrite = FormatOptions {
        overwrite: true,
        ..options()
    };
    let fresh = Store::format(disk, overwrite).unwrap();
    let reopened = power_cycle(fresh);
    assert!(reopened.volumes().is_empty(), "old generations do not win");
}

#[test]
fn format_rejects_bad_geometry() {
    let too_small = FakeDisk::new(2 * u64::from(SLOT_SECTORS) + 7);
    assert!(matches!(
        Store::format(too_small, options()),
        Err(StoreError::Geometry(GeometryFault::NoDataArea { .. }))
    ));
    let odd_block = FormatOptions {
        block_sectors: 12,
        ..options()
    };
    assert_eq!(
        Store::format(FakeDisk::new(4096), odd_block).unwrap_err(),
        StoreError::Geometry(GeometryFault::BadBlockSize(12))
    );
}

#[test]
fn volumes_are_created_listed_looked_up_and_survive_a_power_cycle() {
    let mut store = store_with_blocks(64);
    let disk = store
        .create(&name("debian.img"), VolumeKind::DiskImage, 8 * BLOCK_BYTES)
        .unwrap();
    let kernel = store
        .create(&name("vmlinuz-6.1"), VolumeKind::Kernel, 5000)
        .unwrap();
    let config = store
        .create(&name("web.cfg"), VolumeKind::Config, 0)
        .unwrap();
    assert_ne!(disk, kernel);
    assert_eq!(store.volume(config).unwrap().extents, vec![]);
    assert_eq!(store.lookup("vmlinuz-6.1").unwrap().id, kernel);
    assert_eq!(store.lookup("vmlinuz-6.1").unwrap().extents.len(), 1);
    assert_eq!(store.lookup("nope"), Err(StoreError::NoSuchVolume));
    assert_eq!(store.free_bytes(), (64 - 8 - 2) * BLOCK_BYTES);
    store.write_at(kernel, 0, &pattern(3, 5000)).unwrap();
    store.flush().unwrap();

    let before = store.volumes().to_vec();
    let mut store = power_cycle(store);
    assert_eq!(store.volumes(), &before[..]);
    assert_eq!(read_all(&mut store, kernel), pattern(3, 5000));
    let names: Vec<&str> = store
        .volumes()
        .iter()
        .map(|volume| volume.name.as_str())
        .collect();
    assert_eq!(names, ["debian.img", "vmlinuz-6.1", "web.cfg"]);
}

#[test]
fn names_kinds_and_sizes_are_checked() {
    assert_eq!(VolumeName::new(""), Err(NameError::Empty));
    assert_eq!(
        VolumeName::new(&"a".repeat(65)),
        Err(NameError::TooLong(65))
    );
    assert!(VolumeName::new(&"a".repeat(64)).is_ok());
    assert_eq!(VolumeName::new("a/b"), Err(NameError::BadCharacter(1)));
    assert_eq!(VolumeName::new("é"), Err(NameError::BadCharacter(0)));
    assert_eq!(VolumeName::new("a b"), Err(NameError::BadCharacter(1)));
    assert_eq!(
        VolumeName::new(".hidden"),
        Err(NameError::BadFirstCharacter)
    );
    assert_eq!(VolumeName::new("-x"), Err(NameError::BadFirstCharacter));
    assert!(VolumeName::new("Guest_1.initrd-v2").is_ok());

    let mut store = store_with_blocks(8);
    store.create(&name("a"), VolumeKind::Initrd, 1).unwrap();
    assert_eq!(
        store.create(&name("a"), VolumeKind::Kernel, 1),
        Err(StoreError::NameTaken)
    );
    // A qcow2 file in a disk volume need not be whole sectors.
    let odd = store
        .create(&name("disk"), VolumeKind::DiskImage, 1000)
        .unwrap();
    assert_eq!(store.volume(odd).unwrap().size, 1000);
    store.delete(odd).unwrap();
    assert_eq!(
        store.create(&name("big"), VolumeKind::Initrd, 8 * BLOCK_BYTES),
        Err(StoreError::NoSpace { needed: 8, free: 7 })
    );
    assert_eq!(
        store.create(&name("huge"), VolumeKind::Initrd, u64::MAX),
        Err(StoreError::NoSpace {
            needed: u64::MAX.div_ceil(BLOCK_BYTES),
            free: 7
        })
    );
    let failed_generation = store.generation();
    assert_eq!(store.volumes().len(), 1);
    assert_eq!(store.generation(), failed_generation, "nothing committed");
}

#[test]
fn the_volume_count_is_bounded() {
    let mut store = store_with_blocks(4);
    for index in 0..MAX_VOLUMES {
        store
            .create(&name(&format!("config{index}")), VolumeKind::Config, 0)
            .unwrap();
    }
    assert_eq!(
        store.create(&name("one-more"), VolumeKind::Config, 0),
        Err(StoreError::TooManyVolumes)
    );
    let store = power_cycle(store);
    assert_eq!(store.volumes().len(), MAX_VOLUMES);
}

#[test]
fn growing_extends_in_place_and_shrinking_frees_the_tail() {
    let mut store = store_with_blocks(64);
    let id = store
        .create(&name("a"), VolumeKind::DiskImage, 4 * BLOCK_BYTES)
        .unwrap();
    store.resize(id, 10 * BLOCK_BYTES).unwrap();
    assert_eq!(
        store.volume(id).unwrap().extents,
        vec![Extent {
            start: BlockIndex(0),
            blocks: 10
        }]
    );
    let other = store
        .create(&name("b"), VolumeKind::DiskImage, BLOCK_BYTES)
        .unwrap();
    assert_eq!(
        store.volume(other).unwrap().extents[0].start,
        BlockIndex(10)
    );
    // Blocked by "b": growth continues elsewhere, in one more extent.
    store.resize(id, 12 * BLOCK_BYTES).unwrap();
    assert_eq!(store.volume(id).unwrap().extents.len(), 2);
    store.resize(id, 3 * BLOCK_BYTES).unwrap();
    assert_eq!(
        store.volume(id).unwrap().extents,
        vec![Extent {
            start: BlockIndex(0),
            blocks: 3
        }]
    );
    assert_eq!(store.free_bytes(), (64 - 4) * BLOCK_BYTES);
    assert_eq!(
        store.free_runs(),
        &[
            Extent {
                start: BlockIndex(3),
                blocks: 7
            },
            Extent {
                start: BlockIndex(11),
                blocks: 53
            }
        ]
    );
    store.delete(other).unwrap();
    assert_eq!(
        store.free_runs(),
        &[Extent {
            start: BlockIndex(3),
            blocks: 61
        }]
    );
    assert_eq!(store.delete(other), Err(StoreError::NoSuchVolume));
    assert_eq!(store.resize(other, 0), Err(StoreError::NoSuchVolume));
    store.check().unwrap();
    let store = power_cycle(store);
    assert_eq!(store.volume(id).unwrap().size, 3 * BLOCK_BYTES);
}

#[test]
fn a_shrink_keeps_the_head_and_a_regrow_reads_zeros() {
    let mut store = store_with_blocks(16);
    let id = store
        .create(&name("k"), VolumeKind::Kernel, 3 * BLOCK_BYTES)
        .unwrap();
    store
        .write_at(id, 0, &pattern(1, 3 * BLOCK_BYTES as usize))
        .unwrap();
    store.resize(id, 1000).unwrap();
    assert_eq!(read_all(&mut store, id), pattern(1, 1000));
    store.resize(id, 2 * BLOCK_BYTES + 7).unwrap();
    let content = read_all(&mut store, id);
    assert_eq!(&content[..1000], &pattern(1, 1000)[..]);
    assert!(content[1000..].iter().all(|&byte| byte == 0));
}

#[test]
fn new_volumes_never_show_a_deleted_volumes_data() {
    let mut store = store_with_blocks(8);
    let old = store
        .create(&name("secret"), VolumeKind::DiskImage, 8 * BLOCK_BYTES)
        .unwrap();
    store
        .write_at(old, 0, &vec![0xAB; 8 * BLOCK_BYTES as usize])
        .unwrap();
    store.flush().unwrap();
    store.delete(old).unwrap();
    let new = store
        .create(&name("fresh"), VolumeKind::DiskImage, 8 * BLOCK_BYTES)
        .unwrap();
    assert!(read_all(&mut store, new).iter().all(|&byte| byte == 0));
    let mut store = power_cycle(store);
    assert!(read_all(&mut store, new).iter().all(|&byte| byte == 0));
}

#[test]
fn byte_io_maps_through_fragmented_extents() {
    let mut store = store_with_blocks(32);
    // Fragment the free space: allocate eight 2-block volumes and delete
    // every other one.
    let mut ids = Vec::new();
    for index in 0..8 {
        ids.push(
            store
                .create(
                    &name(&format!("f{index}")),
                    VolumeKind::Initrd,
                    2 * BLOCK_BYTES,
                )
                .unwrap(),
        );
    }
    for id in ids.iter().step_by(2) {
        store.delete(*id).unwrap();
    }
    // Free: four 2-block holes and the 16-block tail; a 24-block volume
    // takes the tail then the holes.
    let size = 24 * BLOCK_BYTES - 123;
    let id = store
        .create(&name("scattered"), VolumeKind::Initrd, size)
        .unwrap();
    assert_eq!(store.volume(id).unwrap().extents.len(), 5);
    let mut model = vec![0u8; size as usize];
    let mut random = SplitMix64::new(11);
    for round in 0..200 {
        let offset = random.below(size);
        let length = random.below((size - offset).min(3 * BLOCK_BYTES) + 1) as usize;
        let data = pattern(round as u8, length);
        store.write_at(id, offset, &data).unwrap();
        model[offset as usize..offset as usize + length].copy_from_slice(&data);
        let read_offset = random.below(size);
        let read_length = random.below(size - read_offset + 1) as usize;
        let mut buffer = vec![0u8; read_length];
        store.read_at(id, read_offset, &mut buffer).unwrap();
        assert_eq!(
            buffer,
            &model[read_offset as usize..read_offset as usize + read_length]
        );
    }
    // Other volumes untouched.
    for id in ids.iter().skip(1).step_by(2) {
        assert!(read_all(&mut store, *id).iter().all(|&byte| byte == 0));
    }
    store.flush().unwrap();
    let mut store = power_cycle(store);
    assert_eq!(read_all(&mut store, id), model);
    assert_eq!(
        store.read_at(id, size - 1, &mut [0u8; 2]),
        Err(StoreError::OutOfBounds {
            offset: size - 1,
            length: 2,
            size
        })
    );
    assert!(matches!(
        store.write_at(id, u64::MAX, &[1]),
        Err(StoreError::OutOfBounds { .. })
    ));
}

#[test]
fn too_many_extents_is_refused_not_written() {
    let mut store = store_with_blocks(2 * (MAX_EXTENTS_PER_VOLUME as u64 + 2));
    let mut ids = Vec::new();
    for index in 0..(MAX_EXTENTS_PER_VOLUME + 2) {
        ids.push(
            store
                .create(
                    &name(&format!("v{index}")),
                    VolumeKind::Config,
                    2 * BLOCK_BYTES,
                )
                .unwrap(),
        );
    }
    for id in &ids {
        store.resize(*id, BLOCK_BYTES).unwrap();
    }
    // 66 one-block holes: a 65-block volume would need 65 extents.
    let generation = store.generation();
    assert_eq!(
        store.create(&name("x"), VolumeKind::Initrd, 65 * BLOCK_BYTES),
        Err(StoreError::TooFragmented)
    );
    assert_eq!(store.generation(), generation);
    store.check().unwrap();
    assert!(
        store
            .create(&name("y"), VolumeKind::Initrd, 64 * BLOCK_BYTES)
            .is_ok()
    );
}

#[test]
fn a_volume_is_a_block_device() {
    let mut store = store_with_blocks(16);
    let id = store
        .create(&name("disk"), VolumeKind::DiskImage, 4096)
        .unwrap();
    let mut device = store.volume_device(id).unwrap();
    assert_eq!(device.sector_count(), 8);
    device.write(Sector(7), &[5u8; 512]).unwrap();
    device.flush().unwrap();
    let mut buffer = [0u8; 512];
    device.read(Sector(7), &mut buffer).unwrap();
    assert_eq!(buffer, [5u8; 512]);
    assert!(matches!(
        device.read(Sector(8), &mut buffer),
        Err(BlockError::OutOfRange { .. })
    ));
    assert_eq!(
        device.write(Sector(0), &[0u8; 3]),
        Err(BlockError::UnalignedLength { length: 3 })
    );
    let mut store = power_cycle(store);
    assert_eq!(&read_all(&mut store, id)[3584..], &[5u8; 512][..]);
}

#[test]
fn a_partition_device_hosts_the_store() {
    let disk = FakeDisk::new(10_000);
    let partition = PartitionDevice::new(disk, Sector(2048), 4096).unwrap();
    let mut store = Store::format(partition, options()).unwrap();
    let id = store.create(&name("c"), VolumeKind::Config, 3).unwrap();
    store.write_at(id, 0, b"abc").unwrap();
    store.flush().unwrap();
    let disk = store.into_device().into_inner();
    // Nothing outside the partition was touched.
    assert!(disk.bytes(0, 2048 * 512).iter().all(|&byte| byte == 0));
    assert!(
        disk.bytes(6144 * 512, 3856 * 512)
            .iter()
            .all(|&byte| byte == 0)
    );
    let partition = PartitionDevice::new(disk, Sector(2048), 4096).unwrap();
    let (mut store, _) = Store::open(partition).unwrap();
    let mut buffer = [0u8; 3];
    store.read_at(id, 0, &mut buffer).unwrap();
    assert_eq!(&buffer, b"abc");
    assert!(PartitionDevice::new(FakeDisk::new(10), Sector(5), 6).is_err());
}

#[test]
fn a_store_moved_to_a_different_size_partition_is_refused() {
    let store = store_with_blocks(16);
    let disk = store.into_device();
    let mut image = disk.to_image();
    image.extend_from_slice(&[0u8; 512 * 8]);
    assert_eq!(
        Store::open(FakeDisk::from_image(&image)).unwrap_err(),
        StoreError::WrongPartitionSize {
            recorded: 2048 + 128,
            actual: 2048 + 136
        }
    );
}

/// Generation `g` lives in slot `g % 2` at sector `(g % 2) * 1024`.
fn slot_offset(generation: u64) -> u64 {
    (generation % 2) * u64::from(SLOT_SECTORS) * 512
}

#[test]
fn a_damaged_newest_slot_falls_back_to_the_previous_generation() {
    let mut store = store_with_blocks(16);
    store.create(&name("one"), VolumeKind::Config, 1).unwrap();
    let previous = store.volumes().to_vec();
    store.create(&name("two"), VolumeKind::Config, 1).unwrap();
    let newest = store.generation();
    let mut disk = store.into_device();
    // A flipped bit inside the volume table.
    disk.edit(slot_offset(newest) + 100, 1, |byte| byte[0] ^= 4);
    let (store, report) = Store::open(disk).unwrap();
    assert_eq!(report.generation, newest - 1);
    assert!(matches!(report.other, Err(SlotFault::CrcMismatch { .. })));
    assert_eq!(store.volumes(), &previous[..]);
    // The next update rewrites the damaged slot.
    let mut store = store;
    store.create(&name("three"), VolumeKind::Config, 1).unwrap();
    let (_, report) = Store::open(store.into_device()).unwrap();
    assert_eq!(report.other, Ok(newest - 1));
}

#[test]
fn both_slots_damaged_is_explained_per_slot() {
    let mut store = store_with_blocks(16);
    store.create(&name("one"), VolumeKind::Config, 1).unwrap();
    let mut disk = store.into_device();
    disk.edit(8, 4, |version| version.copy_from_slice(&9u32.to_le_bytes()));
    disk.edit(u64::from(SLOT_SECTORS) * 512 + 70, 1, |byte| byte[0] ^= 1);
    let error = Store::open(disk).unwrap_err();
    assert!(matches!(
        error,
        StoreError::Corrupt {
            slot0: SlotFault::UnsupportedVersion(9),
            slot1: SlotFault::CrcMismatch { .. }
        }
    ));
    assert!(
        error
            .to_string()
            .contains("slot 0 unsupported format version 9")
    );
}

/// Rewrites the newest slot's table with `change`, fixing length and CRC,
/// as a forger (or a bug) would.
fn forge(disk: &mut FakeDisk, generation: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let offset = slot_offset(generation);
    let header = disk.bytes(offset, 512);
    let length = u32::from_le_bytes(header[24..28].try_into().unwrap()) as usize;
    let mut bytes = disk.bytes(offset, length);
    change(&mut bytes);
    let new_length = bytes.len() as u32;
    bytes[24..28].copy_from_slice(&new_length.to_le_bytes());
    let crc = format::metadata_crc(&bytes);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    disk.edit(offset, bytes.len(), |target| target.copy_from_slice(&bytes));
}

#[test]
fn forged_metadata_with_a_right_crc_is_still_refused() {
    let mut store = store_with_blocks(16);
    store
        .create(&name("aa"), VolumeKind::Config, BLOCK_BYTES)
        .unwrap();
    store
        .create(&name("bb"), VolumeKind::Config, BLOCK_BYTES)
        .unwrap();
    let generation = store.generation();
    let disk = store.into_device();
    // Table: next_id, count, then records of 20 bytes + name + extents.
    let first = 64 + 8;
    let second = first + 20 + 2 + 16;
    type Forgery = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Forgery, MetadataFault)> = vec![
        (
            Box::new(|bytes| bytes.truncate(bytes.len() - 1)),
            MetadataFault::Truncated,
        ),
        (
            Box::new(|bytes| bytes.push(0)),
            MetadataFault::TrailingBytes,
        ),
        (
            Box::new(|bytes| bytes[68..72].copy_from_slice(&1000u32.to_le_bytes())),
            MetadataFault::TooManyVolumes(1000),
        ),
        (
            Box::new(move |bytes| bytes[first + 4] = 9),
            MetadataFault::BadKind(9),
        ),
        (
            Box::new(move |bytes| bytes[first + 20] = b'/'),
            MetadataFault::BadName(NameError::BadCharacter(0)),
        ),
        (
            Box::new(move |bytes| bytes[second + 20..second + 22].copy_from_slice(b"aa")),
            MetadataFault::DuplicateName,
        ),
        (
            Box::new(move |bytes| bytes[second..second + 4].copy_from_slice(&0u32.to_le_bytes())),
            MetadataFault::BadId(VolumeId(0)),
        ),
        (
            Box::new(|bytes| bytes[64..68].copy_from_slice(&1u32.to_le_bytes())),
            MetadataFault::BadId(VolumeId(1)),
        ),
        (
            // Second volume's extent starts on the first's block.
            Box::new(move |bytes| {
                bytes[second + 22..second + 30].copy_from_slice(&0u64.to_le_bytes())
            }),
            MetadataFault::ExtentsOverlap,
        ),
        (
            Box::new(move |bytes| {
                bytes[second + 22..second + 30].copy_from_slice(&16u64.to_le_bytes())
            }),
            MetadataFault::BadExtent(VolumeId(1)),
        ),
        (
            Box::new(move |bytes| {
                bytes[second + 30..second + 38].copy_from_slice(&u64::MAX.to_le_bytes())
            }),
            MetadataFault::BadExtent(VolumeId(1)),
        ),
        (
            Box::new(move |bytes| {
                bytes[second + 8..second + 16].copy_from_slice(&(3 * BLOCK_BYTES).to_le_bytes())
            }),
            MetadataFault::SizeMismatch(VolumeId(1)),
        ),
        (
            Box::new(move |bytes| {
                bytes[second + 6..second + 8].copy_from_slice(&65u16.to_le_bytes())
            }),
            MetadataFault::TooManyExtents(VolumeId(1)),
        ),
    ];
    for (change, fault) in cases {
        let mut forged = disk.clone();
        forge(&mut forged, generation, change);
        // The other slot (one generation older) is used instead.
        let (_, report) = Store::open(forged.clone()).unwrap();
        assert_eq!(report.other, Err(SlotFault::Metadata(fault)));
        assert_eq!(report.generation, generation - 1);
        // With the older slot wiped too, the fault is the error.
        forged.edit(slot_offset(generation - 1), 8, |magic| magic.fill(0));
        assert_eq!(
            Store::open(forged).unwrap_err(),
            StoreError::Corrupt {
                slot0: SlotFault::NoMagic,
                slot1: SlotFault::Metadata(fault)
            }
        );
    }
}

#[test]
fn hostile_slot_headers_are_refused_without_big_allocations() {
    let store = store_with_blocks(16);
    let disk = store.into_device();
    let mut faults = Vec::new();
    for (offset, value) in [
        (24usize, u32::MAX), // length past the slot
        (24, 10),            // length shorter than a header
        (28, 0),             // says slot 0 while in slot 1
        (56, 7),             // slot size
        (60, 3),             // block size not a power of two
    ] {
        let mut bad = disk.clone();
        bad.edit(u64::from(SLOT_SECTORS) * 512 + offset as u64, 4, |field| {
            field.copy_from_slice(&value.to_le_bytes())
        });
        match Store::open(bad).unwrap_err() {
            StoreError::Corrupt { slot1, .. } => faults.push(slot1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        faults,
        [
            SlotFault::BadLength(u32::MAX),
            SlotFault::BadLength(10),
            SlotFault::WrongSlot,
            SlotFault::Geometry(GeometryFault::BadSlotSize(7)),
            SlotFault::Geometry(GeometryFault::BadBlockSize(3)),
        ]
    );
}

#[test]
fn read_errors_and_write_errors_surface_without_changing_state() {
    let mut store = store_with_blocks(16);
    let id = store.create(&name("a"), VolumeKind::Config, 10).unwrap();
    let before = store.volumes().to_vec();
    let generation = store.generation();
    store.device_mut().set_faults(Faults {
        failing_writes: Some((0, 2 * u64::from(SLOT_SECTORS))),
        ..Faults::default()
    });
    assert!(matches!(
        store.create(&name("b"), VolumeKind::Config, 10),
        Err(StoreError::Device(BlockError::WriteFailed(_)))
    ));
    assert_eq!(store.volumes(), &before[..]);
    assert_eq!(store.generation(), generation);
    store.device_mut().set_faults(Faults {
        failing_flush: true,
        ..Faults::default()
    });
    assert_eq!(
        store.delete(id),
        Err(StoreError::Device(BlockError::FlushFailed))
    );
    assert_eq!(store.volumes(), &before[..]);
    store.device_mut().set_faults(Faults::default());
    store.create(&name("c"), VolumeKind::Config, 10).unwrap();
    let store = power_cycle(store);
    assert_eq!(store.volumes().len(), 2);

    let mut disk = store.into_device();
    disk.set_faults(Faults {
        failing_reads: Some((0, 1)),
        ..Faults::default()
    });
    let (_, report) = Store::open(&mut disk).unwrap();
    assert_eq!(
        report.other,
        Err(SlotFault::Device(BlockError::ReadFailed(Sector(0))))
    );
}

/// The state a crash test compares: volumes, and the content of every
/// volume (which must be unchanged, or zero for a volume the update made).
struct Snapshot {
    volumes: Vec<Volume>,
}

/// Runs `operation` on a copy of `disk` with the power cut after every
/// possible number of sector writes, crashes it in many ways, and checks
/// each result opens consistent with the old or the new state, volumes
/// that existed before keep their data, and volumes made by the update
/// read as zeros.
fn check_crash_safety(
    disk: &FakeDisk,
    contents: &[(VolumeName, Vec<u8>)],
    operation: impl Fn(&mut Store<FakeDisk>) -> Result<(), StoreError>,
) {
    let (mut reference, _) = Store::open(disk.clone()).unwrap();
    let old = Snapshot {
        volumes: reference.volumes().to_vec(),
    };
    let writes_before = reference.device().stats().sectors_written;
    let flushes_before = reference.device().stats().flushes;
    operation(&mut reference).unwrap();
    let new = Snapshot {
        volumes: reference.volumes().to_vec(),
    };
    let total_writes = reference.device().stats().sectors_written - writes_before;
    let total_flushes = reference.device().stats().flushes - flushes_before;
    // Crash points: after each number of sector writes, and at each flush
    // (every write before it issued, none of it durable yet).
    let cuts = (0..=total_writes)
        .map(|writes| Faults {
            power_cut_after_sector_writes: Some(writes),
            ..Faults::default()
        })
        .chain((0..total_flushes).map(|flushes| Faults {
            power_cut_after_flushes: Some(flushes),
            ..Faults::default()
        }));
    assert_ne!(old.volumes, new.volumes);
    let mut outcomes = [0usize; 2];
    for (cut, faults) in cuts.enumerate() {
        let cut = cut as u64;
        let (mut store, _) = Store::open(disk.clone()).unwrap();
        store.device_mut().set_faults(faults);
        let finished = operation(&mut store).is_ok();
        assert_eq!(finished, cut == total_writes, "cut {cut}");
        let dead = store.into_device();
        let pending = dead.unflushed_sector_writes();
        let mut crashed = vec![
            dead.crash_losing_everything(),
            dead.crash(|_, _| SectorFate::Written),
            dead.crash(|index, _| {
                if index + 1 == pending {
                    SectorFate::Torn { bytes: 200 }
                } else {
                    SectorFate::Written
                }
            }),
        ];
        for seed in 0..6 {
            crashed.push(dead.crash_randomly(cut * 1000 + seed));
        }
        if pending <= 8 {
            for mask in 0..(1u32 << pending) {
                crashed.push(dead.crash(|index, _| {
                    if mask & (1 << index) != 0 {
                        SectorFate::Written
                    } else {
                        SectorFate::Lost
                    }
                }));
            }
        }
        for after in crashed {
            let (mut store, _) = Store::open(after)
                .unwrap_or_else(|error| panic!("cut {cut}: store does not open: {error}"));
            store.check().unwrap();
            let volumes = store.volumes().to_vec();
            let is_new = volumes == new.volumes;
            assert!(is_new || volumes == old.volumes, "cut {cut}: mixed state");
            if finished {
                assert!(is_new, "cut {cut}: acknowledged update lost");
            }
            outcomes[usize::from(is_new)] += 1;
            for volume in &volumes {
                let content = read_all(&mut store, volume.id);
                match contents.iter().find(|(name, _)| *name == volume.name) {
                    Some((_, expected)) => {
                        let length = expected.len().min(content.len());
                        assert_eq!(&content[..length], &expected[..length], "cut {cut}");
                        assert!(content[length..].iter().all(|&byte| byte == 0));
                    }
                    None => assert!(content.iter().all(|&byte| byte == 0), "cut {cut}"),
                }
            }
            // The recovered store takes further updates.
            store
                .create(&name("after-crash"), VolumeKind::Config, 1)
                .unwrap();
            power_cycle(store);
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// A store with data in two volumes and a deleted volume's blocks (full
/// of 0xEE) free, as the starting point of the crash tests.
fn crash_test_disk() -> (FakeDisk, Vec<(VolumeName, Vec<u8>)>) {
    let mut store = store_with_blocks(24);
    let kernel = store
        .create(&name("kernel"), VolumeKind::Kernel, 3 * BLOCK_BYTES - 5)
        .unwrap();
    // Big enough that creates and grows below must reuse its blocks.
    let doomed = store
        .create(&name("doomed"), VolumeKind::DiskImage, 14 * BLOCK_BYTES)
        .unwrap();
    let disk = store
        .create(&name("disk"), VolumeKind::DiskImage, 2 * BLOCK_BYTES)
        .unwrap();
    store
        .write_at(doomed, 0, &vec![0xEE; 14 * BLOCK_BYTES as usize])
        .unwrap();
    let kernel_bytes = pattern(7, 3 * BLOCK_BYTES as usize - 5);
    let disk_bytes = pattern(90, 2 * BLOCK_BYTES as usize);
    store.write_at(kernel, 0, &kernel_bytes).unwrap();
    store.write_at(disk, 0, &disk_bytes).unwrap();
    store.flush().unwrap();
    store.delete(doomed).unwrap();
    (
        store.into_device(),
        vec![(name("kernel"), kernel_bytes), (name("disk"), disk_bytes)],
    )
}

#[test]
fn crash_during_create_leaves_old_or_new_state() {
    let (disk, contents) = crash_test_disk();
    check_crash_safety(&disk, &contents, |store| {
        store
            .create(&name("initrd"), VolumeKind::Initrd, 6 * BLOCK_BYTES)
            .map(|_| ())
    });
}

#[test]
fn crash_during_grow_leaves_old_or_new_state() {
    let (disk, contents) = crash_test_disk();
    check_crash_safety(&disk, &contents, |store| {
        let id = store.lookup("disk")?.id;
        store.resize(id, 9 * BLOCK_BYTES)
    });
}

#[test]
fn crash_during_shrink_leaves_old_or_new_state() {
    let (disk, contents) = crash_test_disk();
    check_crash_safety(&disk, &contents, |store| {
        let id = store.lookup("kernel")?.id;
        store.resize(id, 1000)
    });
}

#[test]
fn crash_during_delete_leaves_old_or_new_state() {
    let (disk, contents) = crash_test_disk();
    check_crash_safety(&disk, &contents, |store| {
        let id = store.lookup("kernel")?.id;
        store.delete(id)
    });
}

#[test]
fn crash_during_a_large_metadata_update_leaves_old_or_new_state() {
    // Enough volumes that the table spans many sectors.
    let mut store = store_with_blocks(4);
    for index in 0..40 {
        store
            .create(
                &name(&format!("a-rather-long-volume-name-{index:04}")),
                VolumeKind::Config,
                0,
            )
            .unwrap();
    }
    let disk = store.into_device();
    check_crash_safety(&disk, &[], |store| {
        let id = store.lookup("a-rather-long-volume-name-0000")?.id;
        store.delete(id)
    });
}

#[test]
fn fsynced_guest_data_survives_a_power_cut() {
    let (disk, _) = crash_test_disk();
    let (mut store, _) = Store::open(disk).unwrap();
    let id = store.lookup("disk").unwrap().id;
    store.write_at(id, 512, &[0x42; 1024]).unwrap();
    store.flush().unwrap();
    store.write_at(id, 4096, &[0x43; 512]).unwrap(); // not flushed
    let after = store.into_device().crash_losing_everything();
    let (mut store, _) = Store::open(after).unwrap();
    let content = read_all(&mut store, id);
    assert_eq!(&content[512..1536], &[0x42; 1024][..]);
    assert_eq!(&content[4096..4608], &pattern(90, 8192)[4096..4608]);
}

#[test]
fn random_operations_with_random_crashes_stay_consistent() {
    let mut random = SplitMix64::new(2024);
    let mut store = store_with_blocks(48);
    for step in 0..150 {
        let count = store.volumes().len() as u64;
        let pick = |random: &mut SplitMix64, store: &Store<FakeDisk>| {
            store.volumes()[random.below(count) as usize].id
        };
        let before = store.volumes().to_vec();
        let result = match random.below(4) {
            0 => store
                .create(
                    &name(&format!("v{step}")),
                    VolumeKind::Initrd,
                    random.below(12 * BLOCK_BYTES),
                )
                .map(|_| ()),
            1 if count > 0 => {
                let id = pick(&mut random, &store);
                store.resize(id, random.below(12 * BLOCK_BYTES))
            }
            2 if count > 0 => {
                let id = pick(&mut random, &store);
                store.delete(id)
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) | Err(StoreError::NoSpace { .. }) | Err(StoreError::TooFragmented) => {}
            Err(error) => panic!("step {step}: {error}"),
        }
        store.check().unwrap();
        if random.below(5) == 0 {
            let after = store.volumes().to_vec();
            let disk = store.into_device().crash_randomly(step);
            let (reopened, _) = Store::open(disk).unwrap();
            reopened.check().unwrap();
            assert_eq!(reopened.volumes(), &after[..], "step {step}");
            assert!(before.len() + 1 >= after.len());
            store = reopened;
        }
    }
}

#[test]
fn device_ranges_name_the_bytes_read_and_write_at_move() {
    let mut store = store_with_blocks(16);
    // Fragment: a, b, grow a, so a's extents are not contiguous.
    let a = store
        .create(&name("a"), VolumeKind::DiskImage, 2 * BLOCK_BYTES)
        .unwrap();
    let b = store
        .create(&name("b"), VolumeKind::DiskImage, BLOCK_BYTES)
        .unwrap();
    store.resize(a, 4 * BLOCK_BYTES).unwrap();
    let data = pattern(7, 3 * BLOCK_BYTES as usize);
    let offset = BLOCK_BYTES / 2;
    store.write_at(a, offset, &data).unwrap();
    let ranges = store.device_ranges(a, offset, data.len()).unwrap();
    assert!(ranges.len() >= 2, "{ranges:?}");
    let mut seen = Vec::new();
    for range in &ranges {
        assert_eq!(
            range.byte % 512,
            0,
            "block-aligned volumes, sector-aligned offset"
        );
        let mut sectors = vec![0u8; range.length.next_multiple_of(512)];
        store
            .device_mut()
            .read(Sector(range.byte / 512), &mut sectors)
            .unwrap();
        seen.extend_from_slice(&sectors[..range.length]);
    }
    assert_eq!(seen, data);
    assert_eq!(
        store.device_ranges(b, BLOCK_BYTES - 1, 2),
        Err(StoreError::OutOfBounds {
            offset: BLOCK_BYTES - 1,
            length: 2,
            size: BLOCK_BYTES
        })
    );
}
