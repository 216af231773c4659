//! LZ4 payloads in the legacy frame format that Linux's `lz4 -l` writes and
//! its `unlz4` reads: the magic 0x184C2102, then blocks, each a
//! little-endian `u32` compressed length and an independent LZ4 block of at
//! most 8 MiB. The magic may recur between blocks (concatenated frames).
//! The format has no checksum; the payload's size trailer is the check.

use super::output::Output;
use super::{BzImageError, Compression};

const MAGIC: u32 = 0x184c_2102;
/// The uncompressed size of every block but the last.
const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// The largest compressed block: LZ4's bound for `BLOCK_SIZE` input.
const MAX_COMPRESSED_BLOCK: usize = BLOCK_SIZE + BLOCK_SIZE / 255 + 16;

const TRUNCATED: BzImageError = BzImageError::Truncated { part: "lz4 stream" };

fn corrupt(reason: &'static str) -> BzImageError {
    BzImageError::Corrupt {
        compression: Compression::Lz4,
        reason,
    }
}

/// A legacy LZ4 frame that fills `input`, being decoded a block per step
/// (a block is independent and decoded whole: up to 8 MiB of output, fast
/// beside XZ's 1 MiB).
pub(super) struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(super) fn new(input: &'a [u8]) -> Result<Self, BzImageError> {
        if read_u32(input) != Some(MAGIC) {
            return Err(corrupt("no legacy frame magic"));
        }
        Ok(Self {
            rest: input.get(4..).unwrap_or_default(),
        })
    }

    /// Decodes the next block; true once the input is used up.
    pub(super) fn step(&mut self, output: &mut Output) -> Result<bool, BzImageError> {
        let block = loop {
            if self.rest.is_empty() {
                return Ok(true);
            }
            let length = read_u32(self.rest).ok_or(TRUNCATED)?;
            self.rest = self.rest.get(4..).unwrap_or_default();
            if length == MAGIC {
                continue;
            }
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if length == 0 || length > MAX_COMPRESSED_BLOCK {
                return Err(corrupt("block length out of range"));
            }
            let block = self.rest.get(..length).ok_or(TRUNCATED)?;
            self.rest = self.rest.get(length..).unwrap_or_default();
            break block;
        };
        // A block is decoded whole, into space for 8 MiB (clipped to
        // what the output still accepts).
        output.fill_with(BLOCK_SIZE, |space| {
            let written =
                lz4_flex::block::decompress_into(block, space).map_err(|error| match error {
                    lz4_flex::block::DecompressError::OutputTooSmall { .. } => {
                        corrupt("a block is larger than 8 MiB or than the size trailer")
                    }
                    _ => corrupt("invalid LZ4 block"),
                })?;
            Ok((written, ()))
        })?;
        Ok(self.rest.is_empty())
    }
}

fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}
