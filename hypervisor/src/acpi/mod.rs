//! ACPI tables, read only as far as powering the machine off and resetting
//! it needs: RSDP, then RSDT or XSDT, then the FADT (PM1 control ports,
//! reset register), then the DSDT (the `\_S5` sleep type).
//!
//! Every byte here is firmware data, trusted no further than its checksum:
//! lengths are capped at [`MAX_TABLE_LENGTH`], addresses are computed with
//! checked arithmetic, every loop is bounded by a table length, and tables
//! are copied out in small pieces through [`PhysicalMemory`].
//!
//! Read the tables at boot and keep the [`PowerControl`]: a multiboot2 RSDP
//! is a copy in loader memory that may be reused later.

mod aml;
mod fadt;
mod rsdp;
mod table;
#[cfg(test)]
mod tests;

use core::fmt;

use crate::memory::{HostPhysAddr, OutOfBounds, PhysicalMemory};

pub use fadt::{Fadt, ResetRegister, ResetSpace};
pub use rsdp::Rsdp;
pub use table::MAX_TABLE_LENGTH;

/// `SLP_EN` in PM1 control: starts the sleep `SLP_TYP` names.
const SLEEP_ENABLE: u16 = 1 << 13;
/// Where `SLP_TYP` (3 bits) sits in PM1 control.
const SLEEP_TYPE_SHIFT: u16 = 10;
const SLEEP_TYPE_MASK: u8 = 0b111;

/// How to power the machine off, and to reset it when the firmware says how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerControl {
    /// I/O port of the PM1a control register.
    pub pm1a_control: u16,
    /// I/O port of the PM1b control register, on chipsets that have one.
    pub pm1b_control: Option<u16>,
    /// `SLP_TYPa` of `\_S5` (soft off), for PM1a.
    pub sleep_type_a: u8,
    /// `SLP_TYPb` of `\_S5`, for PM1b.
    pub sleep_type_b: u8,
    /// The FADT's reset register, when it claims one it supports.
    pub reset: Option<ResetRegister>,
}

/// The two sleep-type values of a `\_Sx` package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepType {
    /// For PM1a control.
    pub a: u8,
    /// For PM1b control.
    pub b: u8,
}

/// Which table a fault was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Root System Description Pointer ("RSD PTR ").
    Rsdp,
    /// Root System Description Table, 32-bit entries.
    Rsdt,
    /// Extended System Description Table, 64-bit entries.
    Xsdt,
    /// Fixed ACPI Description Table (signature "FACP").
    Fadt,
    /// Differentiated System Description Table: the AML.
    Dsdt,
}

impl Table {
    /// The 4-byte signature that starts the table (the RSDP's first half).
    pub const fn signature(self) -> &'static [u8; 4] {
        match self {
            Self::Rsdp => b"RSD ",
            Self::Rsdt => b"RSDT",
            Self::Xsdt => b"XSDT",
            Self::Fadt => b"FACP",
            Self::Dsdt => b"DSDT",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rsdp => "RSDP",
            Self::Rsdt => "RSDT",
            Self::Xsdt => "XSDT",
            Self::Fadt => "FADT",
            Self::Dsdt => "DSDT",
        })
    }
}

/// Why the firmware's tables do not say how to power off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// Neither the loader's pointer nor the BIOS areas hold a valid RSDP.
    NoRsdp,
    /// A pointer leads to bytes that do not start with the table's signature.
    BadSignature { table: Table, address: HostPhysAddr },
    /// A table's bytes do not sum to zero: corrupt, or not a table at all.
    BadChecksum { table: Table, address: HostPhysAddr },
    /// A table's length does not cover its own header.
    TableTooShort {
        table: Table,
        address: HostPhysAddr,
        length: u32,
    },
    /// A table's length is over [`MAX_TABLE_LENGTH`].
    TableTooLong {
        table: Table,
        address: HostPhysAddr,
        length: u32,
    },
    /// A table would run past the end of the address space.
    TableWraps { table: Table, address: HostPhysAddr },
    /// The RSDP gives neither an XSDT nor an RSDT address.
    NoRootTable,
    /// The root table lists no FADT.
    NoFadt,
    /// The FADT gives no PM1a control block in I/O space.
    NoPm1aControl,
    /// Hardware-reduced ACPI: no PM1 blocks; power off would need the sleep
    /// control register, which is not supported.
    HardwareReduced,
    /// The FADT gives no DSDT address.
    NoDsdt,
    /// The DSDT has no `Name (_S5, Package …)`.
    NoS5,
    /// The DSDT names `_S5`, but not as a package of integers this reader
    /// understands.
    BadS5 { reason: &'static str },
    /// A table lies (partly) outside readable memory.
    Unreadable(OutOfBounds),
}

impl From<OutOfBounds> for AcpiError {
    fn from(error: OutOfBounds) -> Self {
        Self::Unreadable(error)
    }
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => write!(
                f,
                "ACPI: no valid RSDP from the loader or in the BIOS areas"
            ),
            Self::BadSignature { table, address } => {
                write!(f, "ACPI: no {table} signature at {address}")
            }
            Self::BadChecksum { table, address } => {
                write!(f, "ACPI: {table} at {address} has a bad checksum")
            }
            Self::TableTooShort {
                table,
                address,
                length,
            } => write!(
                f,
                "ACPI: {table} at {address} is too short ({length} bytes)"
            ),
            Self::TableTooLong {
                table,
                address,
                length,
            } => write!(
                f,
                "ACPI: {table} at {address} is too long ({length} bytes, limit {MAX_TABLE_LENGTH})"
            ),
            Self::TableWraps { table, address } => {
                write!(f, "ACPI: {table} at {address} wraps the address space")
            }
            Self::NoRootTable => write!(f, "ACPI: the RSDP points at neither an XSDT nor an RSDT"),
            Self::NoFadt => write!(f, "ACPI: the root table lists no valid FADT"),
            Self::NoPm1aControl => {
                write!(f, "ACPI: the FADT gives no PM1a control port in I/O space")
            }
            Self::HardwareReduced => write!(
                f,
                "ACPI: hardware-reduced platform (no PM1 control), power off unsupported"
            ),
            Self::NoDsdt => write!(f, "ACPI: the FADT gives no DSDT"),
            Self::NoS5 => write!(f, "ACPI: the DSDT defines no \\_S5 package"),
            Self::BadS5 { reason } => write!(f, "ACPI: the DSDT's \\_S5 is unusable: {reason}"),
            Self::Unreadable(error) => write!(f, "ACPI: table unreadable: {error}"),
        }
    }
}

/// Finds the RSDP: at `hint` (the loader's pointer) if that is valid, else
/// by scanning the first KiB of the EBDA and then `0xE0000..0x100000` on
/// 16-byte boundaries. When the hint is invalid and the scan finds nothing,
/// the hint's fault is returned.
pub fn find_rsdp(
    memory: &impl PhysicalMemory,
    hint: Option<HostPhysAddr>,
) -> Result<Rsdp, AcpiError> {
    rsdp::find(memory, hint)
}

/// Reads the FADT the RSDP's root table lists: the XSDT when the RSDP has
/// one, falling back to the RSDT if the XSDT is unusable.
pub fn read_fadt(memory: &impl PhysicalMemory, rsdp: &Rsdp) -> Result<Fadt, AcpiError> {
    let table = table::find_fadt(memory, rsdp)?;
    fadt::read(memory, &table)
}

/// Reads `\_S5`'s sleep types from the DSDT at `dsdt`.
pub fn s5_sleep_type(
    memory: &impl PhysicalMemory,
    dsdt: HostPhysAddr,
) -> Result<SleepType, AcpiError> {
    let table = table::check(memory, dsdt, Table::Dsdt)?;
    aml::find_s5(memory, &table)
}

/// Everything needed to power the machine off (and reset it), from the
/// tables the RSDP at `rsdp_hint` (or found by scanning) leads to.
///
/// To reset without powering off, when the DSDT may lack `\_S5`, use
/// [`find_rsdp`] and [`read_fadt`]: [`Fadt::reset`].
pub fn power_control(
    memory: &impl PhysicalMemory,
    rsdp_hint: Option<HostPhysAddr>,
) -> Result<PowerControl, AcpiError> {
    let rsdp = find_rsdp(memory, rsdp_hint)?;
    let fadt = read_fadt(memory, &rsdp)?;
    let pm1a_control = match fadt.pm1a_control {
        Some(port) => port,
        None if fadt.hardware_reduced => return Err(AcpiError::HardwareReduced),
        None => return Err(AcpiError::NoPm1aControl),
    };
    let dsdt = fadt.dsdt.ok_or(AcpiError::NoDsdt)?;
    let sleep_type = s5_sleep_type(memory, dsdt)?;
    Ok(PowerControl {
        pm1a_control,
        pm1b_control: fadt.pm1b_control,
        sleep_type_a: sleep_type.a,
        sleep_type_b: sleep_type.b,
        reset: fadt.reset,
    })
}

/// The PM1 control value that enters the sleep state `sleep_type`: its
/// 3 bits in `SLP_TYP` (bits 10–12) and `SLP_EN` (bit 13). Write it with
/// `sleep_type_a` to PM1a, then with `sleep_type_b` to PM1b if present.
/// Bits of `sleep_type` above the third are dropped, as the register has
/// no room for them.
pub const fn poweroff_value(sleep_type: u8) -> u16 {
    ((sleep_type & SLEEP_TYPE_MASK) as u16) << SLEEP_TYPE_SHIFT | SLEEP_ENABLE
}

/// Sum of `bytes` modulo 256: zero for a valid ACPI table.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |sum, byte| sum.wrapping_add(*byte))
}

/// The little-endian `u16` at `offset`, if wholly inside `bytes`.
fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(array_at(bytes, offset)?))
}

/// The little-endian `u32` at `offset`, if wholly inside `bytes`.
fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(array_at(bytes, offset)?))
}

/// The little-endian `u64` at `offset`, if wholly inside `bytes`.
fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(array_at(bytes, offset)?))
}

fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}
