//! XZ payloads through lzma-rust2's sans-I/O `XzStream`, which handles the
//! x86 BCJ filter Linux's `scripts/xz_wrap.sh` adds (`xz --check=crc32
//! --x86 --lzma2=dict=32MiB`) and checks the stream's CRC-32. The stream
//! keeps its state between calls, so each step decodes one output budget.

use super::output::Output;
use super::{BzImageError, Compression};
use lzma_rust2::{Action, Error, Status, XzStream};

/// The largest dictionary accepted, in KiB of decoder memory (lzma-rust2's
/// measure: the dictionary plus a few KiB). Linux uses 32 MiB; xz's largest
/// preset 64 MiB. The decoder's window grows with the output rather than
/// being allocated at the declared size, so the output limit bounds memory
/// too; this bound keeps that true if the decoder ever changes.
const MEMORY_LIMIT_KIB: u32 = 128 * 1024 + 64;

const TRUNCATED: BzImageError = BzImageError::Truncated { part: "xz stream" };

fn corrupt(reason: &'static str) -> BzImageError {
    BzImageError::Corrupt {
        compression: Compression::Xz,
        reason,
    }
}

/// One XZ stream that fills `input`, being decoded.
pub(super) struct Decoder<'a> {
    input: &'a [u8],
    position: usize,
    stream: XzStream,
}

impl<'a> Decoder<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            position: 0,
            stream: XzStream::new_mem_limit(false, MEMORY_LIMIT_KIB),
        }
    }

    /// Decodes at most `budget` bytes more; true once the stream ended.
    pub(super) fn step(
        &mut self,
        output: &mut Output,
        budget: usize,
    ) -> Result<bool, BzImageError> {
        let rest = self.input.get(self.position..).unwrap_or_default();
        let stream = &mut self.stream;
        let (written, (consumed, status)) = output.fill_with(budget, |space| {
            let result = stream
                .process(rest, space, Action::Finish)
                .map_err(|error| {
                    if stream
                        .memory_usage()
                        .is_some_and(|need| need > MEMORY_LIMIT_KIB)
                    {
                        BzImageError::WindowTooLarge {
                            compression: Compression::Xz,
                        }
                    } else {
                        decoder_error(error)
                    }
                })?;
            Ok((
                result.bytes_produced,
                (result.bytes_consumed, result.status),
            ))
        })?;
        self.position = self.position.saturating_add(consumed);
        if status == Status::StreamEnd {
            if self.position < self.input.len() {
                return Err(corrupt("data after the xz stream"));
            }
            return Ok(true);
        }
        if written == 0 && consumed == 0 {
            return Err(TRUNCATED);
        }
        Ok(false)
    }
}

fn decoder_error(error: Error) -> BzImageError {
    match error {
        Error::Eof => TRUNCATED,
        Error::OutOfMemory(_) => BzImageError::OutOfMemory,
        Error::InvalidData(reason)
        | Error::InvalidInput(reason)
        | Error::Unsupported(reason)
        | Error::Other(reason)
        | Error::WriteZero(reason) => corrupt(reason),
        Error::Interrupted => corrupt("interrupted"),
    }
}
