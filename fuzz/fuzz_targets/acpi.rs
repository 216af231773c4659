//! Fuzzes the ACPI reader: the input's first 36 bytes are an RSDP at
//! 0xe0000 (the BIOS area), the rest is memory from 0x7fe0000, where
//! SeaBIOS puts the tables of a 128 MiB guest; table pointers are absolute.
#![no_main]

use hypervisor::acpi::{self, ResetSpace};
use hypervisor::memory::{HostPhysAddr, OutOfBounds, PhysicalMemory};
use libfuzzer_sys::fuzz_target;

mod fake_memory;
use fake_memory::FakeMemory;

/// Where the input sits; the seeds' pointers assume it.
const RSDP: u64 = 0xe_0000;
const RSDP_LENGTH: usize = 36;
const TABLES: u64 = 0x7fe_0000;

/// Two separate pieces of memory; a read must fall inside one.
struct Machine<'a> {
    rsdp: FakeMemory<'a>,
    tables: FakeMemory<'a>,
}

impl PhysicalMemory for Machine<'_> {
    fn read(&self, address: HostPhysAddr, buffer: &mut [u8]) -> Result<(), OutOfBounds> {
        self.rsdp
            .read(address, buffer)
            .or_else(|_| self.tables.read(address, buffer))
    }
}

fuzz_target!(|data: &[u8]| {
    let (rsdp, tables) = data.split_at(data.len().min(RSDP_LENGTH));
    let machine = Machine {
        rsdp: FakeMemory {
            base: RSDP,
            bytes: rsdp,
        },
        tables: FakeMemory {
            base: TABLES,
            bytes: tables,
        },
    };
    let hinted = acpi::power_control(&machine, Some(HostPhysAddr(RSDP)));
    if let Ok(control) = hinted {
        assert_ne!(control.pm1a_control, 0);
        assert_ne!(control.pm1b_control, Some(0));
        if let Some(reset) = control.reset {
            match reset.space {
                ResetSpace::IoPort(port) => assert_ne!(port, 0),
                ResetSpace::Memory(address) => assert_ne!(address.raw(), 0),
                ResetSpace::PciConfig {
                    device, function, ..
                } => assert!(device < 32 && function < 8),
            }
        }
        // The scan finds the same RSDP at the start of the BIOS area.
        assert_eq!(acpi::power_control(&machine, None), hinted);
    }
    if let Err(error) = hinted {
        let _ = error.to_string();
    }
});
