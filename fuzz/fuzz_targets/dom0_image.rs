//! Fuzzes the Dom0 ELF reader and the choice of Dom0's RAM: the input is
//! a boot module's bytes.
#![no_main]

use hypervisor::boot::{MemoryKind, MemoryRegion};
use hypervisor::dom0;
use hypervisor::memory::{HostPhysAddr, HostRange};
use libfuzzer_sys::fuzz_target;

const MIB: u64 = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = dom0::parse_image(data) else {
        return;
    };
    let span = HostRange {
        start: HostPhysAddr(image.start),
        end: HostPhysAddr(image.end),
    };
    for segment in &image.segments {
        assert!(segment.file_size <= segment.memory_size);
        assert!(segment.file_offset + segment.file_size <= data.len() as u64);
        assert!(span.contains_range(&dom0::segment_range(segment)));
    }
    let memory = [MemoryRegion {
        range: HostRange {
            start: HostPhysAddr(MIB),
            end: HostPhysAddr(1024 * MIB),
        },
        kind: MemoryKind::Usable,
    }];
    let hypervisor = HostRange {
        start: HostPhysAddr(MIB),
        end: HostPhysAddr(2 * MIB),
    };
    if let Ok(ram) = dom0::choose_ram(&image, None, &memory, hypervisor) {
        assert!(ram.contains_range(&span));
        assert!(!ram.overlaps(&hypervisor));
    }
});
