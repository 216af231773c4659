//! Fuzzes the control-interface decoder: Dom0's 144-byte request.
#![no_main]

use hypervisor::control::{Command, decode};
use libfuzzer_sys::fuzz_target;
use xenolith_abi::control::{REQUEST_SIZE, VERSION, WRITE_MAX};

fuzz_target!(|data: &[u8]| {
    let mut request = [0u8; REQUEST_SIZE];
    let length = data.len().min(REQUEST_SIZE);
    request[..length].copy_from_slice(&data[..length]);
    // Most inputs should reach the commands, not stop at the version.
    if data.first().is_some_and(|byte| byte & 1 == 0) {
        request[4..8].copy_from_slice(&VERSION.to_le_bytes());
    }
    match decode(&request) {
        Ok(Command::WriteMemory { length, .. }) => assert!(length <= WRITE_MAX),
        Ok(Command::Create {
            vcpus,
            memory_pages,
            ..
        }) => assert!(vcpus > 0 && memory_pages > 0),
        Ok(Command::MapFrames { count, .. } | Command::UnmapFrames { count, .. }) => assert!(count > 0),
        _ => {}
    }
});
