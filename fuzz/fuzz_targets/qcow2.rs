//! Fuzzes the qcow2 reader and writer. Arbitrary image bytes are opened
//! writable over a raw backing image and driven with reads, writes,
//! discards and flushes: nothing may panic or allocate without bound, and
//! the image must reopen (or be refused) afterwards, and `Qcow2::check`
//! must give a report or an error, not a panic, on the hostile image (as
//! must `DiskImage::place`, tried before every read). When the first byte's
//! top bit is set the image bytes are ignored and the same operations run
//! on a freshly created image against a mirror, which every read must match.
//!
//! Input: 64 bytes of operations (eight records of `[kind][offset: 4 bytes
//! LE][length: 2 bytes LE][fill]`; kind % 4: read, write, discard, flush),
//! then the image. Seeds: `disk-formats/fuzz-seeds/qcow2/` (small images
//! made by qemu-img behind an operation script):
//!   cargo +nightly fuzz run qcow2 corpus/qcow2 ../disk-formats/fuzz-seeds/qcow2
#![no_main]

use disk_formats::fake::MemoryStorage;
use disk_formats::{
    BackingReference, CreateOptions, DiskImage, DiskOffset, ImageError, OpenOptions, Qcow2, Raw,
};
use libfuzzer_sys::fuzz_target;

const SCRIPT: usize = 64;
/// How much the image may grow: allocation must stay bounded.
const GROWTH: u64 = 4 << 20;
const BACKING: u8 = 0xbb;

fn backing(_: &BackingReference<'_>) -> Result<Box<dyn DiskImage>, ImageError> {
    let storage = MemoryStorage::from_bytes(vec![BACKING; 100_000], 0);
    Ok(Box::new(Raw::new(storage, true)))
}

fn run(image: &mut Qcow2<MemoryStorage>, script: &[u8], mut mirror: Option<&mut Vec<u8>>) {
    let size = image.virtual_size();
    let mut buffer = vec![0u8; 1 << 16];
    for record in script.chunks_exact(8) {
        let offset = u64::from(u32::from_le_bytes([
            record[1], record[2], record[3], record[4],
        ]));
        let offset = if size == 0 { 0 } else { offset % size };
        let length = usize::from(u16::from_le_bytes([record[5], record[6]]));
        let length = length.min((size - offset) as usize);
        let range = offset as usize..offset as usize + length;
        match record[0] % 4 {
            0 => {
                // Placement reads only metadata; it must agree with the
                // read on a consistent image.
                let placed = image.place(DiskOffset(offset), length as u64, record[7] & 1 == 1);
                if mirror.is_some() {
                    placed.expect("placement on a consistent image");
                }
                let result = image.read(DiskOffset(offset), &mut buffer[..length]);
                if let Some(mirror) = mirror.as_deref_mut() {
                    result.expect("read of a consistent image");
                    assert!(
                        buffer[..length] == mirror[range],
                        "read differs from mirror"
                    );
                }
            }
            1 => {
                buffer[..length].fill(record[7]);
                let result = image.write(DiskOffset(offset), &buffer[..length]);
                if let Some(mirror) = mirror.as_deref_mut() {
                    result.expect("write to a consistent image");
                    mirror[range].fill(record[7]);
                }
            }
            2 => {
                let result = image.discard(DiskOffset(offset), length as u64);
                if let Some(mirror) = mirror.as_deref_mut() {
                    result.expect("discard on a consistent image");
                    // Whole clusters read as zeros after a discard.
                    let cluster = image.header().cluster_size();
                    let start = offset.div_ceil(cluster) * cluster;
                    let end = (offset + length as u64) / cluster * cluster;
                    if start < end {
                        mirror[start as usize..end as usize].fill(0);
                    }
                }
            }
            _ => {
                let _ = image.flush();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < SCRIPT {
        return;
    }
    let (script, bytes) = data.split_at(SCRIPT);
    if script[0] & 0x80 != 0 {
        // A consistent image: cluster size and refcount width from the input.
        let cluster_bits = 9 + u32::from(bytes.first().copied().unwrap_or(0) % 8);
        let refcount_order = u32::from(bytes.get(1).copied().unwrap_or(4) % 7);
        let size = 300_000;
        let options = CreateOptions {
            cluster_bits,
            refcount_order,
            ..CreateOptions::new(size)
        };
        let storage = Qcow2::create(MemoryStorage::new(64 << 20), &options).expect("create");
        let mut image = Qcow2::open(storage, OpenOptions::default(), &mut backing).expect("open");
        let mut mirror = vec![0u8; size as usize];
        run(&mut image, script, Some(&mut mirror));
        let storage = image.into_storage();
        let mut image = Qcow2::open(storage, OpenOptions::default(), &mut backing).expect("reopen");
        let report = image.check().expect("check of a consistent image");
        assert!(
            report.corruptions == 0 && report.leaks == 0,
            "the image written here is inconsistent: {report:?}"
        );
        let mut read = vec![0u8; size as usize];
        image.read(DiskOffset(0), &mut read).expect("read back");
        assert!(read == mirror, "reopened image differs from mirror");
        return;
    }
    let storage = MemoryStorage::from_bytes(bytes.to_vec(), bytes.len() as u64 + GROWTH);
    let Ok(mut image) = Qcow2::open(storage, OpenOptions::default(), &mut backing) else {
        return;
    };
    let _ = image.check();
    run(&mut image, script, None);
    let storage = image.into_storage();
    let _ = Qcow2::open(storage, OpenOptions::default(), &mut backing);
});
