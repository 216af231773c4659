//! Zstandard payloads through ruzstd's `FrameDecoder`: one frame, decoded a
//! step's budget at a time into the output, its content checksum (which the
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

const TRUNCATED: BzImageError = BzImageError::Truncated {
    part: "zstd stream",
};

fn corrupt(reason: &'static str) -> BzImageError {
    BzImageError::Corrupt {
        compression: Compression::Zstd,
        reason,
    }
}

/// One Zstandard frame that fills `input`, being decoded.
pub(super) struct Decoder<'a> {
    source: &'a [u8],
    decoder: FrameDecoder,
    /// The last block is decoded; what the decoder holds is drained.
    decoded: bool,
}

impl<'a> Decoder<'a> {
    /// Reads the frame header (which reserves the frame's window).
    pub(super) fn new(input: &'a [u8]) -> Result<Self, BzImageError> {
        let mut source = input;
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(MAX_WINDOW);
        decoder.reset(&mut source).map_err(decoder_error)?;
        Ok(Self {
            source,
            decoder,
            decoded: false,
        })
    }

    /// Decodes blocks worth about `budget` bytes (ruzstd stops after the
    /// block that reaches it: at most 128 KiB more), then drains at most
    /// `budget` bytes into `output`. The decoder keeps its window until
    /// the frame ends, so the last steps only drain. True once the frame
    /// ended, was drained and its checksum matched.
    pub(super) fn step(
        &mut self,
        output: &mut Output,
        budget: usize,
    ) -> Result<bool, BzImageError> {
        let decoder = &mut self.decoder;
        let before = self.source.len();
        if !self.decoded {
            self.decoded = decoder
                .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(budget))
                .map_err(decoder_error)?;
        }
        let mut drained = 0;
        while decoder.can_collect() > 0 && drained < budget {
            let want = decoder.can_collect().min(budget - drained);
            let (written, ()) = output.fill_with(want, |space| {
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
        if !self.decoded {
            if self.source.len() == before && drained == 0 {
                return Err(TRUNCATED);
            }
            return Ok(false);
        }
        if decoder.can_collect() > 0 {
            return Ok(false);
        }
        if let (Some(stored), Some(computed)) = (
            decoder.get_checksum_from_data(),
            decoder.get_calculated_checksum(),
        ) && stored != computed
        {
            return Err(corrupt("content checksum mismatch"));
        }
        if !self.source.is_empty() {
            return Err(corrupt("data after the zstd frame"));
        }
        Ok(true)
    }
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
