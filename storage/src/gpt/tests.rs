//! GPT round trips, every kind of damage to either copy, backup fallback,
//! repair and crash safety of a table update.

use super::*;
use crate::fake::{FakeDisk, Faults, SplitMix64};
use crate::guid::EFI_SYSTEM_TYPE;

const DISK_SECTORS: u64 = 16384; // 8 MiB
const LAST: usize = DISK_SECTORS as usize - 1;

fn disk_guid() -> Guid {
    Guid::from_random_bytes([1; 16])
}

fn partition_guid() -> Guid {
    Guid::from_random_bytes([2; 16])
}

fn fresh_disk() -> (FakeDisk, Gpt) {
    let mut disk = FakeDisk::new(DISK_SECTORS);
    let gpt = Gpt::with_xenolith_partition(DISK_SECTORS, disk_guid(), partition_guid()).unwrap();
    gpt.write_new(&mut disk).unwrap();
    (disk, gpt)
}

fn sector(disk: &FakeDisk, lba: usize) -> Vec<u8> {
    disk.bytes((lba * SECTOR_SIZE) as u64, SECTOR_SIZE)
}

/// Changes one byte of the disk.
fn poke(disk: &mut FakeDisk, offset: usize, change: impl FnOnce(&mut u8)) {
    disk.edit(offset as u64, 1, |bytes| change(&mut bytes[0]));
}

/// Changes a header's bytes, then makes its CRC right again, so a test can
/// reach the checks after the CRC.
fn rewrite_header(disk: &mut FakeDisk, lba: usize, change: impl FnOnce(&mut [u8])) {
    disk.edit((lba * SECTOR_SIZE) as u64, SECTOR_SIZE, |header| {
        change(header);
        let size = (read_u32(header, 12) as usize).clamp(HEADER_SIZE as usize, SECTOR_SIZE);
        write_u32(header, 16, 0);
        let crc = crc32fast::hash(&header[..size]);
        write_u32(header, 16, crc);
    });
}

/// Changes the primary entry array, then fixes its CRC and the header's.
fn rewrite_primary_entries(disk: &mut FakeDisk, change: impl FnOnce(&mut [u8])) {
    let mut crc = 0;
    disk.edit(2 * SECTOR_SIZE as u64, 32 * SECTOR_SIZE, |array| {
        change(array);
        crc = crc32fast::hash(array);
    });
    rewrite_header(disk, 1, |header| write_u32(header, 88, crc));
}

fn read_after_primary_damage(disk: &FakeDisk) -> (Gpt, GptReport) {
    let mut disk = disk.clone();
    let (gpt, report) = Gpt::read(&mut disk).unwrap();
    assert_eq!(report.used, GptCopy::Backup, "{report:?}");
    assert_eq!(report.backup, Ok(()));
    (gpt, report)
}

#[test]
fn a_new_table_reads_back_the_same_from_both_copies() {
    let (mut disk, gpt) = fresh_disk();
    let (read, report) = Gpt::read(&mut disk).unwrap();
    assert_eq!(read, gpt);
    assert_eq!(report.used, GptCopy::Primary);
    assert!(report.is_healthy(), "{report:?}");
    assert_eq!(classify_mbr(&sector(&disk, 0)), MbrKind::Protective);

    let store = read.find_xenolith_store().unwrap();
    assert_eq!(store.first_sector(), Sector(2048));
    assert_eq!(store.entry.last, Sector(14335));
    assert_eq!(store.sector_count(), 12288);
    assert_eq!(store.entry.name(), "xenolith");
    assert_eq!(store.entry.unique_guid, partition_guid());
    assert_eq!(read.first_usable(), Sector(34));
    assert_eq!(read.last_usable(), Sector(DISK_SECTORS - 34));

    // Wipe the primary entirely: the backup alone gives the same table.
    disk.edit(SECTOR_SIZE as u64, 33 * SECTOR_SIZE, |bytes| bytes.fill(0));
    let (from_backup, report) = Gpt::read(&mut disk).unwrap();
    assert_eq!(from_backup, gpt);
    assert_eq!(report.used, GptCopy::Backup);
    assert_eq!(report.primary, Err(CopyFault::BadSignature));
}

#[test]
fn headers_follow_the_uefi_layout() {
    let (disk, _) = fresh_disk();
    let primary = &sector(&disk, 1);
    assert_eq!(&primary[..8], b"EFI PART");
    assert_eq!(read_u32(primary, 8), 0x0001_0000);
    assert_eq!(read_u32(primary, 12), 92);
    assert_eq!(read_u64(primary, 24), 1);
    assert_eq!(read_u64(primary, 32), LAST as u64);
    assert_eq!(read_u64(primary, 72), 2);
    assert_eq!(read_u32(primary, 80), 128);
    assert_eq!(read_u32(primary, 84), 128);
    let backup = &sector(&disk, LAST);
    assert_eq!(read_u64(backup, 24), LAST as u64);
    assert_eq!(read_u64(backup, 32), 1);
    assert_eq!(read_u64(backup, 72), LAST as u64 - 32);
    // The Xenolith type GUID in the first entry, mixed-endian.
    assert_eq!(&sector(&disk, 2)[..16], &XENOLITH_STORE_TYPE.0);
    let mbr = &sector(&disk, 0);
    assert_eq!(mbr[446 + 4], 0xEE);
    assert_eq!(read_u32(mbr, 446 + 8), 1);
    assert_eq!(read_u32(mbr, 446 + 12), DISK_SECTORS as u32 - 1);
}

#[test]
fn write_new_refuses_a_disk_that_is_not_blank() {
    let gpt = Gpt::with_xenolith_partition(DISK_SECTORS, disk_guid(), partition_guid()).unwrap();
    for (offset, bytes) in [
        (510, &b"\x55\xAA"[..]),
        (SECTOR_SIZE, &b"EFI PART"[..]),
        (LAST * SECTOR_SIZE, &b"EFI PART"[..]),
    ] {
        let mut disk = FakeDisk::new(DISK_SECTORS);
        disk.edit(offset as u64, bytes.len(), |target| {
            target.copy_from_slice(bytes)
        });
        assert_eq!(gpt.write_new(&mut disk), Err(GptError::DiskNotBlank));
        assert_eq!(disk.stats().sectors_written, 0, "nothing written");
    }
}

#[test]
fn a_blank_or_foreign_disk_is_explained() {
    let mut blank = FakeDisk::new(DISK_SECTORS);
    assert_eq!(
        Gpt::read(&mut blank),
        Err(GptError::NoValidCopy {
            primary: CopyFault::BadSignature,
            backup: CopyFault::BadSignature
        })
    );
    let mut tiny = FakeDisk::new(2);
    assert_eq!(
        Gpt::read(&mut tiny),
        Err(GptError::DiskTooSmall { sector_count: 2 })
    );
    assert_eq!(
        Gpt::new(40, disk_guid()),
        Err(GptError::DiskTooSmall { sector_count: 40 })
    );
    // Room for the tables but not for an aligned MiB.
    assert_eq!(
        Gpt::with_xenolith_partition(2100, disk_guid(), partition_guid()),
        Err(GptError::DiskTooSmall { sector_count: 2100 })
    );
}

#[test]
fn a_flipped_bit_in_either_primary_structure_falls_back_to_the_backup() {
    let (disk, gpt) = fresh_disk();
    // Header field bytes (CRC checked), and the entry array's first entry.
    for offset in (SECTOR_SIZE..SECTOR_SIZE + 92).chain(2 * SECTOR_SIZE..2 * SECTOR_SIZE + 128) {
        let mut damaged = disk.clone();
        poke(&mut damaged, offset, |byte| *byte ^= 0x10);
        let (read, report) = read_after_primary_damage(&damaged);
        assert_eq!(read, gpt);
        assert!(report.primary.is_err());
    }
}

#[test]
fn each_primary_fault_is_named() {
    let (disk, _) = fresh_disk();
    type Damage = Box<dyn Fn(&mut FakeDisk)>;
    let cases: Vec<(Damage, CopyFault)> = vec![
        (
            Box::new(|disk| poke(disk, SECTOR_SIZE, |byte| *byte = b'X')),
            CopyFault::BadSignature,
        ),
        (
            Box::new(|disk| poke(disk, SECTOR_SIZE + 60, |byte| *byte ^= 1)),
            CopyFault::HeaderCrcMismatch {
                stored: read_u32(&sector(&disk, 1), 16),
                computed: {
                    let mut header = sector(&disk, 1)[..92].to_vec();
                    header[60] ^= 1;
                    header[16..20].fill(0);
                    crc32fast::hash(&header)
                },
            },
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 8, 0x0002_0000))),
            CopyFault::UnsupportedRevision(0x0002_0000),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 12, 91))),
            CopyFault::BadHeaderSize(91),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 12, 513))),
            CopyFault::BadHeaderSize(513),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 20, 1))),
            CopyFault::ReservedNotZero,
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 24, 7))),
            CopyFault::WrongLocation {
                expected: Sector(1),
                found: Sector(7),
            },
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 32, DISK_SECTORS))),
            CopyFault::BadAlternateLocation(Sector(DISK_SECTORS)),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 40, 1))),
            CopyFault::BadUsableRange {
                first: Sector(1),
                last: Sector(DISK_SECTORS - 34),
            },
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 48, DISK_SECTORS))),
            CopyFault::BadUsableRange {
                first: Sector(34),
                last: Sector(DISK_SECTORS),
            },
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 84, 100))),
            CopyFault::BadEntrySize(100),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 84, 8192))),
            CopyFault::BadEntrySize(8192),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u32(header, 80, u32::MAX))),
            CopyFault::EntryArrayTooLarge {
                count: u32::MAX,
                size: 128,
            },
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 72, 40))),
            CopyFault::EntryArrayMisplaced(Sector(40)),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 72, u64::MAX))),
            CopyFault::EntryArrayMisplaced(Sector(u64::MAX)),
        ),
        (
            Box::new(|disk| rewrite_header(disk, 1, |header| write_u64(header, 72, 1))),
            CopyFault::EntryArrayMisplaced(Sector(1)),
        ),
        (
            Box::new(|disk| poke(disk, 2 * SECTOR_SIZE + 200, |byte| *byte = 0x77)),
            CopyFault::EntryArrayCrcMismatch {
                stored: read_u32(&sector(&disk, 1), 88),
                computed: {
                    let mut array = disk.bytes(2 * SECTOR_SIZE as u64, 32 * SECTOR_SIZE);
                    array[200] = 0x77;
                    crc32fast::hash(&array)
                },
            },
        ),
        (
            Box::new(|disk| {
                rewrite_primary_entries(disk, |array| {
                    write_u64(array, 32, 5000);
                    write_u64(array, 40, 4000);
                })
            }),
            CopyFault::PartitionReversed { index: 0 },
        ),
        (
            Box::new(|disk| rewrite_primary_entries(disk, |array| write_u64(array, 32, 33))),
            CopyFault::PartitionOutsideUsable { index: 0 },
        ),
        (
            Box::new(|disk| {
                rewrite_primary_entries(disk, |array| write_u64(array, 40, DISK_SECTORS - 2))
            }),
            CopyFault::PartitionOutsideUsable { index: 0 },
        ),
        (
            Box::new(|disk| {
                rewrite_primary_entries(disk, |array| {
                    // Entry 5: an EFI partition inside the Xenolith one.
                    let entry = &mut array[5 * 128..6 * 128];
                    entry[..16].copy_from_slice(&EFI_SYSTEM_TYPE.0);
                    write_u64(entry, 32, 14335);
                    write_u64(entry, 40, 14400);
                })
            }),
            CopyFault::PartitionsOverlap {
                first: 0,
                second: 5,
            },
        ),
    ];
    for (damage, fault) in cases {
        let mut damaged = disk.clone();
        damage(&mut damaged);
        let report = Gpt::read(&mut damaged).unwrap().1;
        assert_eq!(report.primary, Err(fault));
        let (_, report) = read_after_primary_damage(&damaged);
        assert_eq!(report.primary, Err(fault));
    }
}

#[test]
fn an_unreadable_primary_falls_back_too() {
    let (mut disk, gpt) = fresh_disk();
    disk.set_faults(Faults {
        failing_reads: Some((1, 2)),
        ..Faults::default()
    });
    let (read, report) = Gpt::read(&mut disk).unwrap();
    assert_eq!(read, gpt);
    assert_eq!(
        report.primary,
        Err(CopyFault::Device(BlockError::ReadFailed(Sector(1))))
    );
}

#[test]
fn a_damaged_backup_is_reported_but_the_primary_is_used() {
    let (mut disk, gpt) = fresh_disk();
    poke(&mut disk, LAST * SECTOR_SIZE + 40, |byte| *byte ^= 0xFF);
    let (read, report) = Gpt::read(&mut disk).unwrap();
    assert_eq!(read, gpt);
    assert_eq!(report.used, GptCopy::Primary);
    assert!(matches!(
        report.backup,
        Err(CopyFault::HeaderCrcMismatch { .. })
    ));
    assert!(!report.is_healthy());
}

#[test]
fn both_copies_damaged_is_an_error_naming_both() {
    let (mut disk, _) = fresh_disk();
    poke(&mut disk, SECTOR_SIZE + 30, |byte| *byte ^= 1);
    poke(&mut disk, (LAST - 32) * SECTOR_SIZE, |byte| *byte ^= 1);
    let error = Gpt::read(&mut disk).unwrap_err();
    assert!(matches!(
        error,
        GptError::NoValidCopy {
            primary: CopyFault::HeaderCrcMismatch { .. },
            backup: CopyFault::EntryArrayCrcMismatch { .. },
        }
    ));
    assert!(format!("{error}").contains("backup entry array CRC32"));
}

#[test]
fn writing_the_table_read_from_the_backup_repairs_the_primary() {
    let (mut disk, gpt) = fresh_disk();
    disk.edit(SECTOR_SIZE as u64, 2 * SECTOR_SIZE, |bytes| {
        bytes.fill(0xEE)
    });
    let (read, report) = Gpt::read(&mut disk).unwrap();
    assert_eq!(report.used, GptCopy::Backup);
    read.write(&mut disk).unwrap();
    let (repaired, report) = Gpt::read(&mut disk).unwrap();
    assert!(report.is_healthy());
    assert_eq!(repaired, gpt);
}

#[test]
fn partitions_can_be_added_but_not_overlapping_or_outside() {
    let mut gpt = Gpt::new(DISK_SECTORS, disk_guid()).unwrap();
    let partition = |first, last, name| NewPartition {
        type_guid: EFI_SYSTEM_TYPE,
        unique_guid: partition_guid(),
        first: Sector(first),
        last: Sector(last),
        name,
    };
    assert_eq!(gpt.add_partition(partition(2048, 4095, "efi")), Ok(0));
    assert_eq!(
        gpt.add_partition(partition(4000, 5000, "x")),
        Err(GptError::PartitionOverlaps)
    );
    assert_eq!(
        gpt.add_partition(partition(33, 100, "x")),
        Err(GptError::PartitionOutsideUsable)
    );
    assert_eq!(
        gpt.add_partition(partition(6000, 5000, "x")),
        Err(GptError::PartitionOutsideUsable)
    );
    assert_eq!(
        gpt.add_partition(partition(
            4096,
            5000,
            "a name that is far too long for a gpt entry"
        )),
        Err(GptError::NameTooLong)
    );
    let mut zero = partition(4096, 5000, "x");
    zero.type_guid = Guid::ZERO;
    assert_eq!(gpt.add_partition(zero), Err(GptError::ZeroTypeGuid));
    assert_eq!(gpt.find_xenolith_store(), Err(FindError::NotFound));

    let mut store = partition(4096, 8191, "ünïcode ok");
    store.type_guid = XENOLITH_STORE_TYPE;
    assert_eq!(gpt.add_partition(store), Ok(1));
    let mut second = partition(8192, 9000, "second");
    second.type_guid = XENOLITH_STORE_TYPE;
    assert_eq!(gpt.add_partition(second), Ok(2));
    assert_eq!(
        gpt.find_xenolith_store(),
        Err(FindError::Ambiguous {
            first: 1,
            second: 2
        })
    );

    let mut disk = FakeDisk::new(DISK_SECTORS);
    gpt.write_new(&mut disk).unwrap();
    let (read, _) = Gpt::read(&mut disk).unwrap();
    assert_eq!(read, gpt);
    assert_eq!(read.partitions().count(), 3);
    assert_eq!(read.entries()[1].name(), "ünïcode ok");
}

#[test]
fn mbr_kinds_are_told_apart() {
    let mut mbr = protective_mbr(100);
    assert_eq!(classify_mbr(&mbr), MbrKind::Protective);
    mbr[446 + 16 + 4] = 0x83;
    assert_eq!(classify_mbr(&mbr), MbrKind::Hybrid);
    mbr[446 + 4] = 0x07;
    assert_eq!(classify_mbr(&mbr), MbrKind::Missing);
    assert_eq!(classify_mbr(&[0u8; 512]), MbrKind::Missing);
    assert_eq!(classify_mbr(&[]), MbrKind::Missing);
    // A huge disk caps the protective entry's size at 2^32 - 1.
    assert_eq!(read_u32(&protective_mbr(1 << 40), 446 + 12), u32::MAX);
}

#[test]
fn a_crash_while_rewriting_the_table_leaves_the_old_or_the_new_table() {
    let (disk, old) = fresh_disk();
    let mut new = old.clone();
    new.add_partition(NewPartition {
        type_guid: EFI_SYSTEM_TYPE,
        unique_guid: disk_guid(),
        first: Sector(14336),
        last: Sector(16000),
        name: "efi",
    })
    .unwrap();
    // Cut the power after every possible number of sector writes, then
    // let the unflushed ones land at random.
    for cut in 0..80 {
        for seed in 0..4 {
            let mut writing = disk.clone();
            writing.set_faults(Faults {
                power_cut_after_sector_writes: Some(cut),
                ..Faults::default()
            });
            let finished = new.write(&mut writing).is_ok();
            let mut after = writing.crash_randomly(cut * 100 + seed);
            let (read, _) = Gpt::read(&mut after).unwrap();
            if finished {
                assert_eq!(read, new);
            } else {
                assert!(read == old || read == new, "cut {cut} seed {seed}");
            }
        }
    }
}

#[test]
fn random_damage_never_panics_and_what_parses_is_sane() {
    let (disk, _) = fresh_disk();
    let mut random = SplitMix64::new(7);
    for _ in 0..300 {
        let mut damaged = disk.clone();
        let flips = 1 + random.below(8);
        for _ in 0..flips {
            // Aim at the structures: the first 34 and last 33 sectors.
            let region = random.below(67) as usize;
            let lba = if region < 34 {
                region
            } else {
                LAST - (region - 34)
            };
            let offset = lba * SECTOR_SIZE + random.below(SECTOR_SIZE as u64) as usize;
            let value = random.next_u64() as u8;
            poke(&mut damaged, offset, |byte| *byte = value);
        }
        if let Ok((gpt, _)) = Gpt::read(&mut damaged) {
            for partition in gpt.partitions() {
                assert!(partition.entry.first >= gpt.first_usable());
                assert!(partition.entry.last <= gpt.last_usable());
                assert!(partition.entry.last.0 < DISK_SECTORS);
            }
        }
    }
}
