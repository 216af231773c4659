//! `\_S5`'s sleep types, found in the DSDT's AML by their bytes rather
//! than by an interpreter: `Name (_S5, Package () { SLP_TYPa, SLP_TYPb, … })`
//! compiles to
//!
//! ```text
//! 08 [5C] 5F 53 35 5F   NameOp, optional root prefix '\', "_S5_"
//! 12 <PkgLength>        PackageOp, 1–4 byte package length
//! <NumElements>         one byte
//! <integer> <integer>   ZeroOp 00, OneOp 01, OnesOp FF, or a prefix
//!                       (0A byte, 0B word, 0C dword, 0E qword) and value
//! ```
//!
//! SeaBIOS (QEMU) emits `08 5F 53 35 5F 12 06 04 00 00 00 00`; much real
//! firmware uses byte prefixes (`12 08 04 0A 07 0A 07 00 00`). A `_S5_`
//! elsewhere (a reference, a string) is passed over. An `_S5` computed by
//! a method, or whose elements are names, would need an interpreter and is
//! reported as missing or unusable.

use super::table::{CheckedTable, HEADER_LENGTH};
use super::{AcpiError, SleepType, u16_at, u32_at, u64_at};
use crate::memory::{HostPhysAddr, PhysicalMemory};

const S5: &[u8; 4] = b"_S5_";
const NAME_OP: u8 = 0x08;
const ROOT_PREFIX: u8 = 0x5c;
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const ONES_OP: u8 = 0xff;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const QWORD_PREFIX: u8 = 0x0e;
/// Longest integer encoding: a prefix and eight bytes.
const MAX_INTEGER: usize = 9;
/// Bytes read after the name: PackageOp, PkgLength, NumElements, and two
/// integers.
const LOOKAHEAD: usize = 1 + 4 + 1 + 2 * MAX_INTEGER;
/// Bytes of AML read per step of the search.
const CHUNK: usize = 512;

/// Finds `Name (_S5, Package …)` in the checked DSDT `dsdt`.
pub(super) fn find_s5(
    memory: &impl PhysicalMemory,
    dsdt: &CheckedTable,
) -> Result<SleepType, AcpiError> {
    let wraps = AcpiError::TableWraps {
        table: super::Table::Dsdt,
        address: dsdt.address,
    };
    let body_start = dsdt.at(u64::from(HEADER_LENGTH)).ok_or(wraps)?;
    let body_end = dsdt.at(u64::from(dsdt.length)).ok_or(wraps)?;
    let mut problem = None;
    let mut position = body_start;
    let mut buffer = [0; CHUNK];
    // Each step moves on by CHUNK - 3 bytes (keeping 3 so a name across
    // the boundary is seen once), so the loop ends.
    while position < body_end {
        let left = body_end.raw() - position.raw();
        let size = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        let chunk = buffer.get_mut(..size).unwrap_or_default();
        memory.read(position, chunk)?;
        for (offset, window) in chunk.windows(S5.len()).enumerate() {
            if window != S5 {
                continue;
            }
            let Some(name) = position.checked_add(offset as u64) else {
                break;
            };
            if !named_object(memory, name, body_start)? {
                continue;
            }
            match package_after(memory, name, body_end)? {
                Ok(sleep_type) => return Ok(sleep_type),
                Err(reason) => {
                    problem.get_or_insert(reason);
                }
            }
        }
        if size < CHUNK {
            break;
        }
        let Some(next) = position.checked_add((CHUNK - (S5.len() - 1)) as u64) else {
            break;
        };
        position = next;
    }
    Err(match problem {
        Some(reason) => AcpiError::BadS5 { reason },
        None => AcpiError::NoS5,
    })
}

/// Whether the `_S5_` at `name` is the name a NameOp defines: preceded by
/// NameOp, or by NameOp and the root prefix, inside the table body.
fn named_object(
    memory: &impl PhysicalMemory,
    name: HostPhysAddr,
    body_start: HostPhysAddr,
) -> Result<bool, AcpiError> {
    let before = |back: u64| -> Result<Option<u8>, AcpiError> {
        match name.raw().checked_sub(back) {
            Some(address) if address >= body_start.raw() => {
                let mut byte = [0];
                memory.read(HostPhysAddr(address), &mut byte)?;
                Ok(Some(byte[0]))
            }
            _ => Ok(None),
        }
    };
    Ok(match before(1)? {
        Some(NAME_OP) => true,
        Some(ROOT_PREFIX) => before(2)? == Some(NAME_OP),
        _ => false,
    })
}

/// Reads what follows the name at `name` and decodes it as the package.
/// The outer error is a read fault; the inner one says why the bytes are
/// not a usable package.
fn package_after(
    memory: &impl PhysicalMemory,
    name: HostPhysAddr,
    body_end: HostPhysAddr,
) -> Result<Result<SleepType, &'static str>, AcpiError> {
    let Some(start) = name.checked_add(S5.len() as u64) else {
        return Ok(Err("the name ends the address space"));
    };
    let available = body_end.raw().saturating_sub(start.raw());
    let size = usize::try_from(available).map_or(LOOKAHEAD, |left| left.min(LOOKAHEAD));
    let mut bytes = [0; LOOKAHEAD];
    let bytes = bytes.get_mut(..size).unwrap_or_default();
    memory.read(start, bytes)?;
    Ok(parse_package(bytes, available))
}

/// Decodes the package at the start of `aml`, which holds the first bytes
/// of `available` bytes left in the table.
pub(super) fn parse_package(aml: &[u8], available: u64) -> Result<SleepType, &'static str> {
    let mut reader = Reader {
        bytes: aml,
        position: 0,
    };
    if reader.byte()? != PACKAGE_OP {
        return Err("_S5 is not a package");
    }
    let length_start = reader.position;
    let length = package_length(&mut reader)?;
    let package_end = (length_start as u64).saturating_add(u64::from(length));
    if package_end > available {
        return Err("the package runs past the end of the DSDT");
    }
    let count = reader.byte()?;
    if count == 0 {
        return Err("the package is empty");
    }
    let first = integer(&mut reader)?;
    let second = if count >= 2 {
        Some(integer(&mut reader)?)
    } else {
        None
    };
    if reader.position as u64 > package_end {
        return Err("the elements run past the package's length");
    }
    // Only the low byte counts, as ACPICA reads it. One element holds both
    // values: SLP_TYPa in bits 0-7, SLP_TYPb in 8-15.
    Ok(match second {
        Some(second) => SleepType {
            a: first as u8,
            b: second as u8,
        },
        None => SleepType {
            a: first as u8,
            b: (first >> 8) as u8,
        },
    })
}

/// A PkgLength: one byte holding a 6-bit length, or a lead byte whose top
/// two bits count 1–3 more bytes, its low nibble the length's low bits.
fn package_length(reader: &mut Reader<'_>) -> Result<u32, &'static str> {
    let lead = reader.byte()?;
    let extra = lead >> 6;
    if extra == 0 {
        return Ok(u32::from(lead & 0x3f));
    }
    if lead & 0x30 != 0 {
        return Err("bad package length encoding");
    }
    let mut length = u32::from(lead & 0x0f);
    for index in 0..u32::from(extra) {
        length |= u32::from(reader.byte()?) << (4 + 8 * index);
    }
    Ok(length)
}

/// An integer constant: ZeroOp, OneOp, OnesOp or a prefixed value.
fn integer(reader: &mut Reader<'_>) -> Result<u64, &'static str> {
    Ok(match reader.byte()? {
        ZERO_OP => 0,
        ONE_OP => 1,
        ONES_OP => u64::MAX,
        BYTE_PREFIX => u64::from(reader.byte()?),
        WORD_PREFIX => u64::from(u16_at(reader.take(2)?, 0).ok_or(TRUNCATED)?),
        DWORD_PREFIX => u64::from(u32_at(reader.take(4)?, 0).ok_or(TRUNCATED)?),
        QWORD_PREFIX => u64_at(reader.take(8)?, 0).ok_or(TRUNCATED)?,
        _ => return Err("a package element is not an integer constant"),
    })
}

const TRUNCATED: &str = "the package is cut off by the end of the DSDT";

/// A cursor over AML bytes that fails, never panics, at their end.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], &'static str> {
        let end = self.position.checked_add(count).ok_or(TRUNCATED)?;
        let bytes = self.bytes.get(self.position..end).ok_or(TRUNCATED)?;
        self.position = end;
        Ok(bytes)
    }
}
