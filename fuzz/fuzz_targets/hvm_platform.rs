//! Fuzzes an HVM guest's emulated platform (`hypervisor::hvm_platform`):
//! the input is a stream of port accesses, 8 bytes each (port u16, size
//! byte, write flag byte, value u32). Any sequence must be answered without
//! panicking; the platform magic never changes; BARs stay aligned to their
//! size and keep their type bits; answers fit the access size; the
//! keyboard controller's input buffer always reads empty, and only a
//! write to its ports can reset the domain.
#![no_main]

use hypervisor::hvm_platform::{
    CONFIG_ADDRESS, CONFIG_DATA, HvmPlatform, PortWrite, XEN_IOPORT_MAGIC,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut platform = HvmPlatform::new();
    for access in data.chunks_exact(8) {
        let port = u16::from_le_bytes([access[0], access[1]]);
        let size = [1u8, 2, 4][usize::from(access[2] % 3)];
        let value = u32::from_le_bytes([access[4], access[5], access[6], access[7]]);
        if access[3] & 1 == 1 {
            if platform.write(port, size, value) == PortWrite::Reset {
                assert!(matches!((port, size), (0x60 | 0x64, 1)));
            }
        } else if let Some(answer) = platform.read(port, size) {
            if size < 4 {
                assert!(answer < 1 << (8 * u32::from(size)));
            }
        }
    }
    assert_eq!(platform.read(0x10, 2), Some(u32::from(XEN_IOPORT_MAGIC)));
    let status = platform.read(0x64, 1).unwrap_or(u32::MAX);
    assert_eq!(status & 0b10, 0, "input buffer full: {status:#x}");
    // The platform device's BARs: I/O at a 256-port boundary, memory at a
    // 16 MiB one, type bits intact.
    for (register, alignment, kind) in [(0x10u32, 0x100u32, 1u32), (0x14, 0x100_0000, 8)] {
        let selected = platform.write(CONFIG_ADDRESS, 4, 0x8000_1000 | register);
        assert_eq!(selected, PortWrite::Taken);
        let bar = platform.read(CONFIG_DATA, 4).unwrap_or(0);
        assert_eq!(bar & (alignment - 1), kind, "BAR {register:#x} is {bar:#x}");
    }
});
