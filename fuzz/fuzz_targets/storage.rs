//! Fuzzes the appliance disk: any bytes become a disk image (or patches on
//! a valid GPT + volume store disk, with or without CRCs fixed up) that the
//! GPT reader and the volume store open, check and operate on; see
//! `storage::fuzzing` for the promises kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = storage::fuzzing::disk_image(data) {
        panic!("broken promise: {broken}");
    }
});
