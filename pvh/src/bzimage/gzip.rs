//! gzip payloads (RFC 1952): the member header, raw DEFLATE through
//! miniz_oxide, then the CRC-32 and length trailer, both checked.

use super::output::Output;
use super::{BzImageError, Compression};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

const TEXT: u8 = 1 << 0;
const HEADER_CRC: u8 = 1 << 1;
const EXTRA: u8 = 1 << 2;
const NAME: u8 = 1 << 3;
const COMMENT: u8 = 1 << 4;
const DEFLATE: u8 = 8;

fn corrupt(reason: &'static str) -> BzImageError {
    BzImageError::Corrupt {
        compression: Compression::Gzip,
        reason,
    }
}

const TRUNCATED: BzImageError = BzImageError::Truncated {
    part: "gzip stream",
};

/// One gzip member that fills `input`, being decoded: the CRC-32 is
/// summed as output arrives, so the last step checks it without reading
/// the whole output again.
pub(super) struct Decoder<'a> {
    body: &'a [u8],
    position: usize,
    state: alloc::boxed::Box<InflateState>,
    crc: u32,
}

impl<'a> Decoder<'a> {
    pub(super) fn new(input: &'a [u8]) -> Result<Self, BzImageError> {
        Ok(Self {
            body: skip_header(input)?,
            position: 0,
            state: InflateState::new_boxed(DataFormat::Raw),
            crc: CRC_START,
        })
    }

    /// Decodes at most `budget` bytes more; true once the member ended
    /// and its trailer matched.
    pub(super) fn step(
        &mut self,
        output: &mut Output,
        budget: usize,
    ) -> Result<bool, BzImageError> {
        let rest = self.body.get(self.position..).unwrap_or_default();
        let before = output.len();
        let state = &mut self.state;
        let (written, result) = output.fill_with(budget, |space| {
            let result = inflate(state, rest, space, MZFlush::None);
            Ok((result.bytes_written, result))
        })?;
        self.crc = crc32_update(self.crc, output.written().get(before..).unwrap_or_default());
        self.position += result.bytes_consumed;
        match result.status {
            Ok(MZStatus::StreamEnd) => {}
            Ok(_) if written > 0 || result.bytes_consumed > 0 => return Ok(false),
            Ok(_) | Err(MZError::Buf) if self.position >= self.body.len() => {
                return Err(TRUNCATED);
            }
            Ok(_) | Err(MZError::Buf) => return Err(corrupt("the DEFLATE stream stalls")),
            Err(_) => return Err(corrupt("invalid DEFLATE data")),
        }
        let trailer = self.body.get(self.position..).unwrap_or_default();
        let (Some(crc), Some(size)) = (read_u32(trailer, 0), read_u32(trailer, 4)) else {
            return Err(TRUNCATED);
        };
        if trailer.len() > 8 {
            return Err(corrupt("data after the gzip member"));
        }
        if !self.crc != crc {
            return Err(corrupt("CRC-32 mismatch"));
        }
        // The trailer holds the length modulo 2^32.
        if output.len() as u32 != size {
            return Err(corrupt("length mismatch"));
        }
        Ok(true)
    }
}

/// The bytes after the member header (RFC 1952 §2.3).
fn skip_header(input: &[u8]) -> Result<&[u8], BzImageError> {
    let header = input.get(..10).ok_or(TRUNCATED)?;
    let (method, flags) = (header[2], header[3]);
    if method != DEFLATE {
        return Err(corrupt("compression method is not DEFLATE"));
    }
    if flags & !(TEXT | HEADER_CRC | EXTRA | NAME | COMMENT) != 0 {
        return Err(corrupt("reserved header flags set"));
    }
    let mut rest = &input[10..];
    if flags & EXTRA != 0 {
        let length = read_u16(rest).ok_or(TRUNCATED)?;
        rest = rest.get(2 + usize::from(length)..).ok_or(TRUNCATED)?;
    }
    for field in [NAME, COMMENT] {
        if flags & field != 0 {
            let end = rest.iter().position(|&byte| byte == 0).ok_or(TRUNCATED)?;
            rest = &rest[end + 1..];
        }
    }
    if flags & HEADER_CRC != 0 {
        rest = rest.get(2..).ok_or(TRUNCATED)?;
    }
    Ok(rest)
}

fn read_u16(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The CRC-32 register before any byte.
const CRC_START: u32 = !0;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) of `bytes`.
#[cfg(test)]
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    !crc32_update(CRC_START, bytes)
}

/// Feeds `bytes` into the CRC-32 register `crc` (not inverted), one table
/// lookup per byte.
fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut index = 0;
        while index < 256 {
            let mut value = index as u32;
            let mut bit = 0;
            while bit < 8 {
                value = if value & 1 != 0 {
                    (value >> 1) ^ 0xedb8_8320
                } else {
                    value >> 1
                };
                bit += 1;
            }
            table[index] = value;
            index += 1;
        }
        table
    };
    bytes.iter().fold(crc, |crc, &byte| {
        TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    })
}
