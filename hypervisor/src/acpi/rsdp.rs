//! Finding the RSDP: the loader's pointer, else the two BIOS areas ACPI
//! says it lives in (the EBDA's first KiB, then `0xE0000..0x100000`).

use super::{AcpiError, Table, checksum, u16_at, u32_at, u64_at};
use crate::memory::{HostPhysAddr, PhysicalMemory};

const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Bytes covered by the ACPI 1.0 checksum.
const V1_LENGTH: usize = 20;
/// Bytes covered by the ACPI 2.0+ extended checksum. Only these are summed
/// whatever the length field says, as ACPICA does.
const V2_LENGTH: usize = 36;
/// First revision with the XSDT address and the extended checksum.
const V2_REVISION: u8 = 2;
const REVISION_OFFSET: usize = 15;
const RSDT_OFFSET: usize = 16;
const LENGTH_OFFSET: usize = 20;
const XSDT_OFFSET: usize = 24;

/// The BIOS data area word holding the EBDA's real-mode segment.
const EBDA_SEGMENT: HostPhysAddr = HostPhysAddr(0x40e);
/// Bytes of the EBDA searched.
const EBDA_SEARCH: u64 = 1024;
/// An EBDA below this would overlap the interrupt vectors: none is there.
const EBDA_LOWEST: u64 = 0x400;
/// The BIOS read-only area searched after the EBDA.
const BIOS_AREA_START: u64 = 0xe_0000;
const BIOS_AREA_END: u64 = 0x10_0000;
/// The RSDP sits on a 16-byte boundary.
const SEARCH_STEP: usize = 16;

/// A checked RSDP: where the root tables are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// Where it was found.
    pub address: HostPhysAddr,
    /// 0 for ACPI 1.0, 2 for ACPI 2.0 and later.
    pub revision: u8,
    /// The RSDT, if the address is not zero.
    pub rsdt: Option<HostPhysAddr>,
    /// The XSDT (revision 2 and later), if the address is not zero.
    pub xsdt: Option<HostPhysAddr>,
}

pub(super) fn find(
    memory: &impl PhysicalMemory,
    hint: Option<HostPhysAddr>,
) -> Result<Rsdp, AcpiError> {
    let hint_error = match hint {
        None => None,
        Some(address) => match read(memory, address) {
            Ok(rsdp) => return Ok(rsdp),
            Err(error) => {
                log::warn!("{error}; searching the BIOS areas for the RSDP");
                Some(error)
            }
        },
    };
    scan(memory).ok_or(hint_error.unwrap_or(AcpiError::NoRsdp))
}

/// Reads and checks the RSDP at `address`.
pub(super) fn read(memory: &impl PhysicalMemory, address: HostPhysAddr) -> Result<Rsdp, AcpiError> {
    let mut bytes = [0; V2_LENGTH];
    let (first, extension) = bytes.split_at_mut(V1_LENGTH);
    memory.read(address, first)?;
    if !first.starts_with(SIGNATURE) {
        return Err(AcpiError::BadSignature {
            table: Table::Rsdp,
            address,
        });
    }
    if checksum(first) != 0 {
        return Err(AcpiError::BadChecksum {
            table: Table::Rsdp,
            address,
        });
    }
    let revision = first.get(REVISION_OFFSET).copied().unwrap_or_default();
    let rsdt = u32_at(first, RSDT_OFFSET).unwrap_or_default();
    let mut xsdt = 0;
    if revision >= V2_REVISION {
        let wraps = AcpiError::TableWraps {
            table: Table::Rsdp,
            address,
        };
        memory.read(
            address.checked_add(V1_LENGTH as u64).ok_or(wraps)?,
            extension,
        )?;
        let length = u32_at(&bytes, LENGTH_OFFSET).unwrap_or_default();
        if length < V2_LENGTH as u32 {
            return Err(AcpiError::TableTooShort {
                table: Table::Rsdp,
                address,
                length,
            });
        }
        if checksum(&bytes) != 0 {
            return Err(AcpiError::BadChecksum {
                table: Table::Rsdp,
                address,
            });
        }
        xsdt = u64_at(&bytes, XSDT_OFFSET).unwrap_or_default();
    }
    Ok(Rsdp {
        address,
        revision,
        rsdt: (rsdt != 0).then_some(HostPhysAddr(u64::from(rsdt))),
        xsdt: (xsdt != 0).then_some(HostPhysAddr(xsdt)),
    })
}

/// The first valid RSDP in the EBDA's first KiB, else in the BIOS area.
fn scan(memory: &impl PhysicalMemory) -> Option<Rsdp> {
    if let Some(ebda) = ebda(memory)
        && let Some(rsdp) = scan_range(memory, ebda, ebda.saturating_add(EBDA_SEARCH))
    {
        return Some(rsdp);
    }
    scan_range(memory, BIOS_AREA_START, BIOS_AREA_END)
}

/// The EBDA's address, from the BIOS data area, if it has a plausible one.
fn ebda(memory: &impl PhysicalMemory) -> Option<u64> {
    let mut segment = [0; 2];
    memory.read(EBDA_SEGMENT, &mut segment).ok()?;
    let address = u64::from(u16_at(&segment, 0)?) << 4;
    (address >= EBDA_LOWEST).then_some(address)
}

/// The first valid RSDP on a 16-byte boundary in `[start, end)`; candidates
/// with a bad checksum or unreadable bytes are passed over.
fn scan_range(memory: &impl PhysicalMemory, start: u64, end: u64) -> Option<Rsdp> {
    (start..end)
        .step_by(SEARCH_STEP)
        .find_map(|address| read(memory, HostPhysAddr(address)).ok())
}
