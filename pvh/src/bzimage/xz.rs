//! XZ payloads through lzma-rust2's sans-I/O `XzStream`, which handles the
//! x86 BCJ filter Linux's `scripts/xz_wrap.sh` adds (`xz --check=crc32
//! --x86 --lzma2=dict=32MiB`) and checks the stream's CRC-32.

use super::output::{Output, STEP};
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

/// Decompresses one XZ stream that fills `input`.
pub(super) fn decompress(input: &[u8], output: &mut Output) -> Result<(), BzImageError> {
    let mut stream = XzStream::new_mem_limit(false, MEMORY_LIMIT_KIB);
    let mut position = 0;
    loop {
        let rest = input.get(position..).unwrap_or_default();
        let (written, (consumed, status)) = output.fill_with(STEP, |space| {
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
        position = position.saturating_add(consumed);
        if status == Status::StreamEnd {
            break;
        }
        if written == 0 && consumed == 0 {
            return Err(TRUNCATED);
        }
    }
    if position < input.len() {
        return Err(corrupt("data after the xz stream"));
    }
    Ok(())
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
