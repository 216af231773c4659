//! Fuzzes the read-only VMDK (monolithicSparse) reader. Arbitrary image
//! bytes are opened and, when they open, driven with reads and refused
//! writes: nothing may panic, read outside the file or allocate without
//! bound, and a write must be refused.
//!
//! Input: 64 bytes of operations (eight records of `[kind][offset: 4 bytes
//! LE][length: 2 bytes LE][unused]`; kind % 4: read ×3, write), then the
//! image. Seeds: `disk-formats/fuzz-seeds/vmdk/` (made by qemu-img):
//!   cargo +nightly fuzz run vmdk corpus/vmdk ../disk-formats/fuzz-seeds/vmdk
#![no_main]

use disk_formats::fake::MemoryStorage;
use disk_formats::{DiskImage, DiskOffset, ImageError, Vmdk};
use libfuzzer_sys::fuzz_target;

const SCRIPT: usize = 64;

fuzz_target!(|data: &[u8]| {
    if data.len() < SCRIPT {
        return;
    }
    let (script, bytes) = data.split_at(SCRIPT);
    // No growth allowed: the reader must never write or extend.
    let storage = MemoryStorage::from_bytes(bytes.to_vec(), bytes.len() as u64);
    let Ok(mut image) = Vmdk::open(storage) else {
        return;
    };
    assert!(image.is_read_only());
    let size = image.virtual_size();
    let mut buffer = vec![0u8; 1 << 16];
    for record in script.chunks_exact(8) {
        let offset = u64::from(u32::from_le_bytes([
            record[1], record[2], record[3], record[4],
        ]));
        // Reads near the end of a huge disk as well as near the start.
        let offset = if size == 0 {
            0
        } else if record[7] & 1 == 1 {
            size - 1 - offset % size
        } else {
            offset % size
        };
        let length = usize::from(u16::from_le_bytes([record[5], record[6]]));
        let length = length.min((size - offset) as usize);
        if record[0] % 4 == 3 {
            assert_eq!(
                image.write(DiskOffset(offset), &buffer[..length]),
                Err(ImageError::ReadOnly)
            );
        } else {
            let _ = image.read(DiskOffset(offset), &mut buffer[..length]);
        }
    }
});
