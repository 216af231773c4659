//! Zstandard payloads through ruzstd's `FrameDecoder`: one frame, decoded a
//! megabyte at a time into the output, its content checksum (which the
//! `zstd` tool writes by default) checked when present.

use super::output::Output;
use super::{BzImageError, Compression};
use ruzstd::decoding::errors::FrameDecoderError;
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use ruzstd::io::Read;

/// The largest window accepted: 128 MiB, what `zstd -22 --ultra` (Linux's
/// `cmd_zstd22`) declares. ruzstd reserves the window when the frame
/// starts, so a Zstandard kernel costs up to this much beside the output.
const MAX_WINDOW: u64 = 128 * 1024 * 1024;

/// Output decoded between two drains of the decoder's buffer.
const BATCH: usize = 1024 * 1024;

const TRUNCATED: BzImageError = BzImageError::Truncated {
    part: "zstd stream",
};

fn corrupt(reason: &'static str) -> BzImageError {
    BzImageError::Corrupt {
        compression: Compression::Zstd,
        reason,
    }
}

/// Decompresses one Zstandard frame that fills `input`.
pub(super) fn decompress(input: &[u8], output: &mut Output) -> Result<(), BzImageError> {
    let mut source = input;
    let mut decoder = FrameDecoder::new();
    decoder.set_max_window_size(MAX_WINDOW);
    decoder.reset(&mut source).map_err(decoder_error)?;
    loop {
        let before = source.len();
        let finished = decoder
            .decode_blocks(&mut source, BlockDecodingStrategy::UptoBytes(BATCH))
            .map_err(decoder_error)?;
        let mut drained = 0;
        while decoder.can_collect() > 0 {
            let (written, ()) = output.fill_with(decoder.can_collect(), |space| {
                let written = decoder
                    .read(space)
                    .map_err(|_| corrupt("cannot drain the decoder"))?;
                Ok((written, ()))
            })?;
            if written == 0 {
                return Err(corrupt("cannot drain the decoder"));
            }
            drained += written;
        }
        if finished {
            break;
        }
        if source.len() == before && drained == 0 {
            return Err(TRUNCATED);
        }
    }
    if let (Some(stored), Some(computed)) = (
        decoder.get_checksum_from_data(),
        decoder.get_calculated_checksum(),
    ) && stored != computed
    {
        return Err(corrupt("content checksum mismatch"));
    }
    if !source.is_empty() {
        return Err(corrupt("data after the zstd frame"));
    }
    Ok(())
}

fn decoder_error(error: FrameDecoderError) -> BzImageError {
    use ruzstd::decoding::errors::{
        BlockHeaderReadError, DecodeBlockContentError, FrameDecoderError as Frame,
        ReadFrameHeaderError,
    };
    match error {
        Frame::WindowSizeTooBig { .. } => BzImageError::WindowTooLarge {
            compression: Compression::Zstd,
        },
        Frame::ReadFrameHeaderError(ReadFrameHeaderError::MagicNumberReadError(_))
        | Frame::ReadFrameHeaderError(ReadFrameHeaderError::FrameDescriptorReadError(_))
        | Frame::FailedToReadBlockHeader(BlockHeaderReadError::ReadError(_))
        | Frame::FailedToReadBlockBody(DecodeBlockContentError::ReadError { .. })
        | Frame::FailedToReadChecksum(_) => TRUNCATED,
        Frame::ReadFrameHeaderError(_) => corrupt("invalid frame header"),
        Frame::FailedToReadBlockHeader(_) => corrupt("invalid block header"),
        Frame::FailedToReadBlockBody(_) => corrupt("invalid block"),
        _ => corrupt("invalid frame"),
    }
}
