//! Fuzzes the PVH `hvm_start_info` parser: the input is loader memory at
//! 4 KiB, the start info at its start; its pointers are absolute addresses.
#![no_main]

use hypervisor::boot::pvh;
use hypervisor::memory::HostPhysAddr;
use libfuzzer_sys::fuzz_target;

mod fake_memory;
use fake_memory::FakeMemory;

/// Where the input sits; the seeds' table and string pointers assume it.
const BASE: u64 = 0x1000;

fuzz_target!(|data: &[u8]| {
    let memory = FakeMemory {
        base: BASE,
        bytes: data,
    };
    if let Ok(info) = pvh::parse(&memory, HostPhysAddr(BASE)) {
        assert!(!info.memory.is_empty());
        assert!(
            info.memory
                .windows(2)
                .all(|pair| pair[0].range.end <= pair[1].range.start)
        );
        assert!(info.memory.iter().all(|region| !region.range.is_empty()));
    }
});
