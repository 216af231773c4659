//! The FADT ("FACP"): where the PM1 control registers, the reset register
//! and the DSDT are.
//!
//! The FADT grew with each ACPI version; a field counts only if the table's
//! length covers all of it, so a short ACPI 1.0 FADT simply lacks the
//! 64-bit ("X_") fields.

use super::table::CheckedTable;
use super::{AcpiError, u32_at, u64_at};
use crate::memory::{HostPhysAddr, PhysicalMemory};

const DSDT: usize = 40;
const PM1A_CONTROL: usize = 64;
const PM1B_CONTROL: usize = 68;
const FLAGS: usize = 112;
const RESET_REGISTER: usize = 116;
const RESET_VALUE: usize = 128;
const EXTENDED_DSDT: usize = 140;
const EXTENDED_PM1A_CONTROL: usize = 172;
const EXTENDED_PM1B_CONTROL: usize = 184;
/// Bytes of the FADT read: through `X_PM1b_CNT_BLK`, the last field used.
const READ_LENGTH: usize = EXTENDED_PM1B_CONTROL + GenericAddress::LENGTH;

/// `RESET_REG_SUP`: the reset register is implemented.
const FLAG_RESET_REGISTER: u32 = 1 << 10;
/// `HW_REDUCED_ACPI`: no fixed hardware, PM1 blocks included.
const FLAG_HARDWARE_REDUCED: u32 = 1 << 20;

/// Address space ids of a Generic Address Structure.
mod space {
    pub const SYSTEM_MEMORY: u8 = 0;
    pub const SYSTEM_IO: u8 = 1;
    pub const PCI_CONFIG: u8 = 2;
}

/// What the FADT says, reduced to what power off and reset need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fadt {
    /// Where the FADT is.
    pub address: HostPhysAddr,
    /// The header's revision (1 for ACPI 1.0, 3+ for 2.0 and later).
    pub revision: u8,
    /// PM1a control I/O port: `X_PM1a_CNT_BLK` if it is a non-zero I/O
    /// address, else `PM1a_CNT_BLK` if non-zero.
    pub pm1a_control: Option<u16>,
    /// PM1b control I/O port, chosen as for PM1a.
    pub pm1b_control: Option<u16>,
    /// The reset register, if `RESET_REG_SUP` is set and the register is in
    /// a space this reader supports.
    pub reset: Option<ResetRegister>,
    /// The DSDT: `X_DSDT` if present and non-zero, else `DSDT` if non-zero.
    pub dsdt: Option<HostPhysAddr>,
    /// `HW_REDUCED_ACPI` is set.
    pub hardware_reduced: bool,
}

/// Writing `value` to this register resets the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetRegister {
    /// Where to write.
    pub space: ResetSpace,
    /// The byte to write (`RESET_VALUE`).
    pub value: u8,
}

/// Where the reset register is. The value is written as one byte, as the
/// ACPI specification requires the register to be 8 bits wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSpace {
    /// An I/O port (0xcf9 on most chipsets).
    IoPort(u16),
    /// A memory-mapped register.
    Memory(HostPhysAddr),
    /// A register in PCI configuration space of segment 0, bus 0.
    PciConfig {
        device: u8,
        function: u8,
        offset: u16,
    },
}

/// An ACPI Generic Address Structure (12 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GenericAddress {
    space: u8,
    address: u64,
}

impl GenericAddress {
    const LENGTH: usize = 12;
    const ADDRESS_OFFSET: usize = 4;

    /// The structure at `offset`, if `bytes` hold all of it.
    fn at(bytes: &[u8], offset: usize) -> Option<Self> {
        let field = bytes.get(offset..offset.checked_add(Self::LENGTH)?)?;
        Some(Self {
            space: *field.first()?,
            address: u64_at(field, Self::ADDRESS_OFFSET)?,
        })
    }

    /// The I/O port, if the structure names one.
    fn io_port(self) -> Option<u16> {
        if self.space != space::SYSTEM_IO || self.address == 0 {
            return None;
        }
        u16::try_from(self.address).ok()
    }
}

/// Reads the checked FADT `table`.
pub(super) fn read(memory: &impl PhysicalMemory, table: &CheckedTable) -> Result<Fadt, AcpiError> {
    let mut bytes = [0; READ_LENGTH];
    let length =
        usize::try_from(table.length).map_or(READ_LENGTH, |length| length.min(READ_LENGTH));
    let bytes = bytes.get_mut(..length).unwrap_or_default();
    memory.read(table.address, bytes)?;
    Ok(decode(table.address, bytes))
}

/// Decodes the first bytes of a FADT (as many as its length covers).
pub(super) fn decode(address: HostPhysAddr, bytes: &[u8]) -> Fadt {
    let flags = u32_at(bytes, FLAGS).unwrap_or_default();
    Fadt {
        address,
        revision: bytes.get(8).copied().unwrap_or_default(),
        pm1a_control: control_port(bytes, EXTENDED_PM1A_CONTROL, PM1A_CONTROL),
        pm1b_control: control_port(bytes, EXTENDED_PM1B_CONTROL, PM1B_CONTROL),
        reset: if flags & FLAG_RESET_REGISTER != 0 {
            reset_register(bytes)
        } else {
            None
        },
        dsdt: u64_at(bytes, EXTENDED_DSDT)
            .filter(|&address| address != 0)
            .or_else(|| u32_at(bytes, DSDT).map(u64::from))
            .filter(|&address| address != 0)
            .map(HostPhysAddr),
        hardware_reduced: flags & FLAG_HARDWARE_REDUCED != 0,
    }
}

/// The PM1 control port: the 64-bit field if it gives an I/O port (a
/// memory-space block cannot be driven with port I/O), else the 32-bit one.
fn control_port(bytes: &[u8], extended: usize, legacy: usize) -> Option<u16> {
    if let Some(port) = GenericAddress::at(bytes, extended).and_then(GenericAddress::io_port) {
        return Some(port);
    }
    let address = u32_at(bytes, legacy).filter(|&address| address != 0)?;
    let port = u16::try_from(address).ok();
    if port.is_none() {
        log::warn!("ACPI: FADT PM1 control block {address:#x} is not an I/O port");
    }
    port
}

fn reset_register(bytes: &[u8]) -> Option<ResetRegister> {
    let register = GenericAddress::at(bytes, RESET_REGISTER)?;
    let value = *bytes.get(RESET_VALUE)?;
    if register.address == 0 {
        return None;
    }
    let space = match register.space {
        space::SYSTEM_IO => ResetSpace::IoPort(register.io_port()?),
        space::SYSTEM_MEMORY => ResetSpace::Memory(HostPhysAddr(register.address)),
        space::PCI_CONFIG => pci_config(register.address)?,
        other => {
            log::warn!("ACPI: reset register in address space {other} is not supported");
            return None;
        }
    };
    Some(ResetRegister { space, value })
}

/// A PCI configuration address as the Generic Address Structure encodes
/// it: device in bits 32–47, function in 16–31, offset in 0–15, the rest
/// zero.
fn pci_config(address: u64) -> Option<ResetSpace> {
    let field = |shift: u32| u16::try_from((address >> shift) & 0xffff).ok();
    if address >> 48 != 0 {
        return None;
    }
    let device = u8::try_from(field(32)?)
        .ok()
        .filter(|&device| device < 32)?;
    let function = u8::try_from(field(16)?)
        .ok()
        .filter(|&function| function < 8)?;
    Some(ResetSpace::PciConfig {
        device,
        function,
        offset: field(0)?,
    })
}
