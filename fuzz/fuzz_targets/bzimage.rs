//! Fuzzes bzImage unpacking (`pvh::bzimage`): the input is a whole kernel
//! image file, a bzImage or an ELF. Unpacking must answer without panicking,
//! within the limit, and a payload that decodes must match its size trailer.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Small, so that inputs declaring huge kernels are refused cheaply.
const LIMIT: usize = 16 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    match pvh::bzimage::payload(data) {
        Ok(payload) => {
            if let Ok(vmlinux) = payload.decompress(LIMIT) {
                assert!(vmlinux.len() <= LIMIT);
                assert_eq!(vmlinux.len(), payload.uncompressed_size as usize);
                let _ = pvh::image::parse(&vmlinux);
            }
        }
        Err(_) => {
            if let Ok(vmlinux) = pvh::bzimage::vmlinux(data, LIMIT) {
                // Only a plain ELF comes back without a payload.
                assert!(vmlinux.starts_with(b"\x7fELF"));
                let _ = pvh::image::parse(&vmlinux);
            }
        }
    }
});
