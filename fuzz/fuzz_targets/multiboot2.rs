//! Fuzzes the multiboot2 parser: the input is loader memory at 1 MiB, the
//! information structure at its start.
#![no_main]

use hypervisor::boot::multiboot2;
use hypervisor::memory::HostPhysAddr;
use libfuzzer_sys::fuzz_target;

mod fake_memory;
use fake_memory::FakeMemory;

/// Where the input sits; the seeds' module and RSDP addresses assume it.
const BASE: u64 = 0x10_0000;

fuzz_target!(|data: &[u8]| {
    let memory = FakeMemory {
        base: BASE,
        bytes: data,
    };
    if let Ok(info) = multiboot2::parse(&memory, HostPhysAddr(BASE)) {
        assert!(!info.memory.is_empty());
        assert!(
            info.memory
                .windows(2)
                .all(|pair| pair[0].range.end <= pair[1].range.start)
        );
        assert!(info.memory.iter().all(|region| !region.range.is_empty()));
        if let Some(rsdp) = info.rsdp {
            assert!(info.info_range.contains(rsdp));
        }
    }
});
