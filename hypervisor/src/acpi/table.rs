//! The 36-byte header every ACPI table but the RSDP starts with, checked
//! before a table is used (signature, length, checksum), and the walk of
//! the root table's entries.

use super::{AcpiError, Rsdp, Table, checksum, u32_at, u64_at};
use crate::memory::{HostPhysAddr, OutOfBounds, PhysicalMemory};

/// Longest table accepted. Real DSDTs reach a few hundred KiB.
pub const MAX_TABLE_LENGTH: u32 = 1024 * 1024;
/// Bytes of the common header; the root tables' entries follow it.
pub(super) const HEADER_LENGTH: u32 = 36;
const LENGTH_OFFSET: usize = 4;
/// Bytes summed per read.
const CHUNK: usize = 256;

/// A table whose header and checksum were checked: `length` bytes (at
/// least a header, at most [`MAX_TABLE_LENGTH`]) at `address` were readable
/// and summed to zero, and the range does not wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CheckedTable {
    pub address: HostPhysAddr,
    pub length: u32,
}

impl CheckedTable {
    /// The address `offset` bytes in, or `None` past the table's end.
    pub fn at(&self, offset: u64) -> Option<HostPhysAddr> {
        if offset > u64::from(self.length) {
            return None;
        }
        self.address.checked_add(offset)
    }
}

/// Checks the table `table` at `address`.
pub(super) fn check(
    memory: &impl PhysicalMemory,
    address: HostPhysAddr,
    table: Table,
) -> Result<CheckedTable, AcpiError> {
    let mut header = [0; HEADER_LENGTH as usize];
    memory.read(address, &mut header)?;
    if !header.starts_with(table.signature()) {
        return Err(AcpiError::BadSignature { table, address });
    }
    let length = u32_at(&header, LENGTH_OFFSET).unwrap_or_default();
    if length < HEADER_LENGTH {
        return Err(AcpiError::TableTooShort {
            table,
            address,
            length,
        });
    }
    if length > MAX_TABLE_LENGTH {
        return Err(AcpiError::TableTooLong {
            table,
            address,
            length,
        });
    }
    if address.checked_add(u64::from(length)).is_none() {
        return Err(AcpiError::TableWraps { table, address });
    }
    if sum(memory, address, length)? != 0 {
        return Err(AcpiError::BadChecksum { table, address });
    }
    Ok(CheckedTable { address, length })
}

/// Sum of the `length` bytes at `address`, read a chunk at a time.
fn sum(
    memory: &impl PhysicalMemory,
    address: HostPhysAddr,
    length: u32,
) -> Result<u8, OutOfBounds> {
    let mut buffer = [0; CHUNK];
    let mut total = 0u8;
    let mut done = 0u64;
    let length = u64::from(length);
    while done < length {
        let size = usize::try_from(length - done).map_or(CHUNK, |left| left.min(CHUNK));
        let chunk = buffer.get_mut(..size).unwrap_or_default();
        let at = address
            .checked_add(done)
            .ok_or(OutOfBounds { address, len: size })?;
        memory.read(at, chunk)?;
        total = total.wrapping_add(checksum(chunk));
        done += size as u64;
    }
    Ok(total)
}

/// Finds and checks the FADT the RSDP's root table lists.
///
/// Entries that are zero, unreadable or not "FACP" are passed over; when
/// no listed FADT checks out, the first one's fault is returned.
pub(super) fn find_fadt(
    memory: &impl PhysicalMemory,
    rsdp: &Rsdp,
) -> Result<CheckedTable, AcpiError> {
    let (root, entry_size) = root_table(memory, rsdp)?;
    let count = (root.length - HEADER_LENGTH) / entry_size;
    let mut first_error = None;
    for index in 0..count {
        let Some(entry) = index
            .checked_mul(entry_size)
            .and_then(|offset| offset.checked_add(HEADER_LENGTH))
            .and_then(|offset| root.at(u64::from(offset)))
        else {
            break;
        };
        let mut bytes = [0; 8];
        let Some(field) = bytes.get_mut(..entry_size as usize) else {
            break;
        };
        memory.read(entry, field)?;
        let address = match entry_size {
            4 => u32_at(&bytes, 0).map(u64::from),
            _ => u64_at(&bytes, 0),
        }
        .unwrap_or_default();
        if address == 0 {
            continue;
        }
        let address = HostPhysAddr(address);
        let mut signature = [0; 4];
        if memory.read(address, &mut signature).is_err() || signature != *Table::Fadt.signature() {
            continue;
        }
        match check(memory, address, Table::Fadt) {
            Ok(fadt) => return Ok(fadt),
            Err(error) => {
                log::warn!("{error}; looking for another FADT");
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(AcpiError::NoFadt))
}

/// The checked root table and its entry size: the XSDT when the RSDP gives
/// one, else (or if the XSDT is unusable) the RSDT.
fn root_table(memory: &impl PhysicalMemory, rsdp: &Rsdp) -> Result<(CheckedTable, u32), AcpiError> {
    let Some(xsdt) = rsdp.xsdt else {
        let rsdt = rsdp.rsdt.ok_or(AcpiError::NoRootTable)?;
        return Ok((check(memory, rsdt, Table::Rsdt)?, 4));
    };
    match check(memory, xsdt, Table::Xsdt) {
        Ok(table) => Ok((table, 8)),
        Err(error) => {
            let Some(rsdt) = rsdp.rsdt else {
                return Err(error);
            };
            log::warn!("{error}; using the RSDT");
            // The XSDT's fault is the one to report: it was meant to be used.
            check(memory, rsdt, Table::Rsdt)
                .map(|table| (table, 4))
                .map_err(|_| error)
        }
    }
}
