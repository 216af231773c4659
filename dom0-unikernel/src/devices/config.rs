//! PCI configuration space for virtio-drivers: ECAM when the ACPI MCFG
//! table gives a window Dom0's page tables cover, else the legacy
//! 0xCF8/0xCFC ports (all QEMU's `pc` machine has). The hypervisor passes
//! both through to Dom0 (its nested tables map every non-RAM hole, and its
//! I/O map intercepts neither port).

use dom0::pci::{EcamWindow, Function};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};
use x86_64::instructions::port::Port;

/// Where Dom0's own page tables end (its entry code maps the first 4 GiB).
pub const MAPPED_LIMIT: u64 = 1 << 32;
const ADDRESS_PORT: u16 = 0xcf8;
const DATA_PORT: u16 = 0xcfc;

/// How configuration space is reached.
#[derive(Clone, Copy, Debug)]
pub enum ConfigSpace {
    Ports,
    Ecam(EcamWindow),
}

impl ConfigSpace {
    /// ECAM if `window` lies wholly in Dom0's mapped memory, else ports.
    pub fn choose(window: Option<EcamWindow>) -> Self {
        match window {
            Some(window)
                if window.end_bus >= window.start_bus
                    && window
                        .address(
                            Function {
                                bus: window.end_bus,
                                device: 31,
                                function: 7,
                            },
                            0xffc,
                        )
                        .is_some_and(|last| last + 4 <= MAPPED_LIMIT) =>
            {
                Self::Ecam(window)
            }
            _ => Self::Ports,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Ports => "ports 0xcf8/0xcfc",
            Self::Ecam(_) => "ECAM",
        }
    }

    fn ecam_address(window: &EcamWindow, function: DeviceFunction, offset: u8) -> Option<u64> {
        let function = Function::new(function.bus, function.device, function.function)?;
        if function.bus < window.start_bus {
            return None;
        }
        window.address(function, u16::from(offset))
    }
}

impl ConfigurationAccess for ConfigSpace {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        match self {
            Self::Ports => {
                let Some(function) =
                    Function::new(function.bus, function.device, function.function)
                else {
                    return u32::MAX;
                };
                // SAFETY: the PCI configuration ports, which only Dom0 uses
                // (one vCPU, no interrupt handler touches them).
                unsafe {
                    Port::<u32>::new(ADDRESS_PORT).write(function.port_address(offset));
                    Port::<u32>::new(DATA_PORT).read()
                }
            }
            Self::Ecam(window) => match Self::ecam_address(window, function, offset) {
                // SAFETY: inside the ECAM window, which `choose` checked
                // lies below 4 GiB (identity-mapped by Dom0 and mapped by
                // the hypervisor's nested tables as device memory).
                Some(address) => unsafe { core::ptr::read_volatile(address as *const u32) },
                None => u32::MAX,
            },
        }
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        match self {
            Self::Ports => {
                let Some(function) =
                    Function::new(function.bus, function.device, function.function)
                else {
                    return;
                };
                // SAFETY: as in `read_word`.
                unsafe {
                    Port::<u32>::new(ADDRESS_PORT).write(function.port_address(offset));
                    Port::<u32>::new(DATA_PORT).write(data);
                }
            }
            Self::Ecam(window) => {
                if let Some(address) = Self::ecam_address(window, function, offset) {
                    // SAFETY: as in `read_word`.
                    unsafe { core::ptr::write_volatile(address as *mut u32, data) };
                }
            }
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}
