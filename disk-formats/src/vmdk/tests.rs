//! Hand-built images: reads through the grain directory and tables, and
//! every hostile header or table the reader must refuse.
// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::fake::MemoryStorage;
use alloc::vec::Vec;

const GRAIN: u64 = 8; // sectors
const CAPACITY: u64 = GRAIN * GRAIN_TABLE_ENTRIES * 2; // two grain tables
const DIRECTORY_SECTOR: u64 = 4;
const TABLE_SECTORS: [u64; 2] = [8, 12];
const FIRST_GRAIN_SECTOR: u64 = 16;

fn descriptor(create_type: &str, extents: &str) -> Vec<u8> {
    alloc::format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"{create_type}\"\n\n# Extent description\n{extents}\n\n\
         ddb.virtualHWVersion = \"4\"\n"
    )
    .into_bytes()
}

/// An image with grains 0, 5 and 1000 allocated (filled with 1, 2, 3),
/// grain 7 marked zeroed, the rest unallocated.
fn image_with(header_edit: impl FnOnce(&mut [u8]), text: &[u8]) -> Vec<u8> {
    let grain_bytes = (GRAIN * SECTOR) as usize;
    let mut bytes = vec![0u8; (FIRST_GRAIN_SECTOR * SECTOR) as usize + 3 * grain_bytes];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let flags = FLAG_VALID_NEWLINE_TEST | FLAG_ZEROED_GRAIN_ENTRIES;
    bytes[8..12].copy_from_slice(&flags.to_le_bytes());
    bytes[12..20].copy_from_slice(&CAPACITY.to_le_bytes());
    bytes[20..28].copy_from_slice(&GRAIN.to_le_bytes());
    bytes[28..36].copy_from_slice(&1u64.to_le_bytes());
    bytes[36..44].copy_from_slice(&3u64.to_le_bytes());
    bytes[44..48].copy_from_slice(&512u32.to_le_bytes());
    bytes[56..64].copy_from_slice(&DIRECTORY_SECTOR.to_le_bytes());
    bytes[64..72].copy_from_slice(&FIRST_GRAIN_SECTOR.to_le_bytes());
    bytes[73..77].copy_from_slice(b"\n \r\n");
    bytes[512..512 + text.len()].copy_from_slice(text);
    for (index, table) in TABLE_SECTORS.iter().enumerate() {
        let at = (DIRECTORY_SECTOR * SECTOR) as usize + index * 4;
        bytes[at..at + 4].copy_from_slice(&(*table as u32).to_le_bytes());
    }
    let mut set_entry = |grain: u64, value: u32| {
        let table = TABLE_SECTORS[(grain / GRAIN_TABLE_ENTRIES) as usize];
        let at = (table * SECTOR + (grain % GRAIN_TABLE_ENTRIES) * 4) as usize;
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    };
    for (slot, grain) in [0u64, 5, 1000].into_iter().enumerate() {
        set_entry(grain, (FIRST_GRAIN_SECTOR + slot as u64 * GRAIN) as u32);
    }
    set_entry(7, 1);
    for slot in 0..3 {
        let start = (FIRST_GRAIN_SECTOR * SECTOR) as usize + slot * grain_bytes;
        bytes[start..start + grain_bytes].fill(slot as u8 + 1);
    }
    header_edit(&mut bytes);
    bytes
}

fn good_text() -> Vec<u8> {
    descriptor(
        "monolithicSparse",
        &alloc::format!("RW {CAPACITY} SPARSE \"disk.vmdk\""),
    )
}

fn image() -> Vec<u8> {
    image_with(|_| {}, &good_text())
}

fn open(bytes: Vec<u8>) -> Result<Vmdk<MemoryStorage>, ImageError> {
    Vmdk::open(MemoryStorage::from_bytes(bytes, 0))
}

fn open_error(bytes: Vec<u8>) -> ImageError {
    match open(bytes) {
        Ok(_) => panic!("hostile image opened"),
        Err(error) => error,
    }
}

#[test]
fn reads_allocated_zeroed_and_unallocated_grains() {
    let mut image = open(image()).unwrap();
    assert_eq!(image.virtual_size(), CAPACITY * SECTOR);
    assert!(image.is_read_only());
    let grain_bytes = (GRAIN * SECTOR) as usize;
    let mut expected = vec![0u8; (CAPACITY * SECTOR) as usize];
    for (slot, grain) in [0usize, 5, 1000].into_iter().enumerate() {
        expected[grain * grain_bytes..(grain + 1) * grain_bytes].fill(slot as u8 + 1);
    }
    let mut whole = vec![0xeeu8; expected.len()];
    image.read(DiskOffset(0), &mut whole).unwrap();
    assert!(whole == expected);
    // Requests straddling grains and tables, at odd offsets.
    for (offset, length) in [
        (4000usize, 300usize),
        (5 * 4096 - 7, 4096 + 14),
        (511 * 4096 + 100, 8192),
    ] {
        let mut piece = vec![0xeeu8; length];
        image.read(DiskOffset(offset as u64), &mut piece).unwrap();
        assert!(
            piece[..] == expected[offset..offset + length],
            "at {offset}"
        );
    }
}

#[test]
fn writes_and_reads_past_the_end_are_refused() {
    let mut image = open(image()).unwrap();
    assert_eq!(
        image.write(DiskOffset(0), &[1u8; 512]),
        Err(ImageError::ReadOnly)
    );
    assert_eq!(
        image.discard(DiskOffset(0), 4096),
        Err(ImageError::ReadOnly)
    );
    let mut buffer = [0u8; 2];
    assert!(matches!(
        image.read(DiskOffset(CAPACITY * SECTOR - 1), &mut buffer),
        Err(ImageError::OutOfRange { .. })
    ));
}

fn header_error(edit: impl FnOnce(&mut [u8])) -> ImageError {
    open_error(image_with(edit, &good_text()))
}

#[test]
fn hostile_headers_are_refused() {
    assert_eq!(
        header_error(|bytes| bytes[0] = b'Q'),
        ImageError::Vmdk(VmdkError::BadMagic)
    );
    assert_eq!(
        header_error(|bytes| bytes[4] = 4),
        ImageError::Vmdk(VmdkError::UnsupportedVersion(4))
    );
    assert_eq!(
        header_error(|bytes| bytes[10] = 1),
        ImageError::Vmdk(VmdkError::Compressed)
    );
    assert_eq!(
        header_error(|bytes| bytes[11] = 0x80),
        ImageError::Vmdk(VmdkError::UnknownFlags(0x8000_0000))
    );
    assert_eq!(
        header_error(|bytes| bytes[77] = 1),
        ImageError::Vmdk(VmdkError::UnsupportedCompression(1))
    );
    assert_eq!(
        header_error(|bytes| bytes[12..20].copy_from_slice(&u64::MAX.to_le_bytes())),
        ImageError::Vmdk(VmdkError::CapacityTooLarge(u64::MAX))
    );
    // A capacity that fits in bytes but whose directory is past the file.
    assert!(matches!(
        header_error(|bytes| bytes[12..20].copy_from_slice(&(1u64 << 50).to_le_bytes())),
        ImageError::Vmdk(VmdkError::GrainDirectoryOutsideFile(_))
    ));
    assert_eq!(
        header_error(|bytes| bytes[20..28].copy_from_slice(&7u64.to_le_bytes())),
        ImageError::Vmdk(VmdkError::BadGrainSize(7))
    );
    assert_eq!(
        header_error(|bytes| bytes[20..28].copy_from_slice(&0u64.to_le_bytes())),
        ImageError::Vmdk(VmdkError::BadGrainSize(0))
    );
    assert_eq!(
        header_error(|bytes| bytes[44..48].copy_from_slice(&4096u32.to_le_bytes())),
        ImageError::Vmdk(VmdkError::BadGrainTableEntries(4096))
    );
    assert_eq!(
        header_error(|bytes| bytes[56..64].copy_from_slice(&u64::MAX.to_le_bytes())),
        ImageError::Vmdk(VmdkError::Compressed)
    );
    assert!(matches!(
        header_error(|bytes| bytes[56..64].copy_from_slice(&(u64::MAX / 2).to_le_bytes())),
        ImageError::Vmdk(VmdkError::GrainDirectoryOutsideFile(_))
    ));
    // Descriptor absent, huge, or past the end of the file.
    for (offset, sectors) in [
        (0u64, 3u64),
        (1, 0),
        (1, 1 << 40),
        (u64::MAX / 256, 3),
        (100_000, 3),
    ] {
        assert_eq!(
            header_error(|bytes| {
                bytes[28..36].copy_from_slice(&offset.to_le_bytes());
                bytes[36..44].copy_from_slice(&sectors.to_le_bytes());
            }),
            ImageError::Vmdk(VmdkError::DescriptorInvalid),
            "descriptor {offset} {sectors}"
        );
    }
    assert_eq!(
        open_error(image()[..300].to_vec()),
        ImageError::Vmdk(VmdkError::HeaderTruncated)
    );
}

#[test]
fn other_descriptors_are_refused() {
    let extent = alloc::format!("RW {CAPACITY} SPARSE \"disk.vmdk\"");
    let cases = [
        (
            descriptor("streamOptimized", &extent),
            VmdkError::UnsupportedCreateType,
        ),
        (
            descriptor("twoGbMaxExtentSparse", &extent),
            VmdkError::UnsupportedCreateType,
        ),
        (descriptor("monolithicSparse", ""), VmdkError::BadExtents),
        (
            descriptor("monolithicSparse", &alloc::format!("{extent}\n{extent}")),
            VmdkError::BadExtents,
        ),
        (
            descriptor(
                "monolithicSparse",
                &alloc::format!("RW {CAPACITY} FLAT \"disk.vmdk\" 0"),
            ),
            VmdkError::BadExtents,
        ),
        (
            descriptor(
                "monolithicSparse",
                &alloc::format!("RW {} SPARSE \"disk.vmdk\"", CAPACITY + 1),
            ),
            VmdkError::BadExtents,
        ),
        (
            b"no descriptor here".to_vec(),
            VmdkError::UnsupportedCreateType,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            open_error(image_with(|_| {}, &text)),
            ImageError::Vmdk(expected),
            "{}",
            core::str::from_utf8(&text).unwrap()
        );
    }
}

#[test]
fn tables_and_grains_past_the_end_are_errors_on_read() {
    let length = image().len() as u64;
    let past = (length / SECTOR + 1) as u32;
    // Grain directory entry 1 (the second table) past the end.
    let mut image = open(image_with(
        |bytes| {
            let at = (DIRECTORY_SECTOR * SECTOR) as usize + 4;
            bytes[at..at + 4].copy_from_slice(&past.to_le_bytes());
        },
        &good_text(),
    ))
    .unwrap();
    let mut buffer = vec![0u8; 512];
    image.read(DiskOffset(0), &mut buffer).unwrap();
    assert!(matches!(
        image.read(DiskOffset(GRAIN * SECTOR * 600), &mut buffer),
        Err(ImageError::Vmdk(VmdkError::GrainTableOutsideFile(_)))
    ));
    // Grain 3's entry past the end, and one whose grain straddles the end.
    for sector in [past, u32::MAX, (length / SECTOR - 1) as u32] {
        let mut image = open(image_with(
            |bytes| {
                let at = (TABLE_SECTORS[0] * SECTOR) as usize + 3 * 4;
                bytes[at..at + 4].copy_from_slice(&sector.to_le_bytes());
            },
            &good_text(),
        ))
        .unwrap();
        assert!(matches!(
            image.read(DiskOffset(GRAIN * SECTOR * 3), &mut buffer),
            Err(ImageError::Vmdk(VmdkError::GrainOutsideFile(_)))
        ));
    }
}

#[test]
fn the_magic_is_probed_and_a_writable_open_is_refused() {
    let mut storage = MemoryStorage::from_bytes(image(), 0);
    assert_eq!(
        crate::probe_format(&mut storage),
        Ok(crate::ImageFormat::Vmdk)
    );
    let open = |read_only| {
        crate::open_image(
            MemoryStorage::from_bytes(image(), 0),
            crate::ImageFormat::Vmdk,
            crate::OpenOptions {
                read_only,
                depth: 0,
            },
            &mut crate::NoBacking,
        )
    };
    assert_eq!(
        open(false).err(),
        Some(ImageError::Vmdk(VmdkError::WritableOpen))
    );
    let image = open(true).unwrap();
    assert!(image.is_read_only());
    assert_eq!(image.virtual_size(), CAPACITY * SECTOR);
}
