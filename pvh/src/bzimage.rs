//! Turning a Linux bzImage (what Debian ships as `/boot/vmlinuz`) into the
//! ELF `vmlinux` inside it, which [`crate::image::parse`] reads.
//!
//! A bzImage is real-mode setup code, then the protected-mode decompressor,
//! which carries the kernel as a compressed payload (Linux's
//! `Documentation/x86/boot.rst`, boot protocol 2.08 and later). The payload
//! is the compressed `vmlinux` (plus its relocations) followed by its
//! uncompressed size as a little-endian `u32`, which Linux's decompressor
//! and Xen's loader both rely on. The image is untrusted: every offset is
//! checked, the output never passes the caller's limit, and no input makes
//! this module panic.

mod gzip;
mod lz4;
mod output;
mod xz;
mod zstd;

#[cfg(test)]
mod tests;

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;
use output::Output;

/// A limit that fits every Debian 6.1 kernel with room to spare: the
/// `linux-image-6.1.0-*-amd64` vmlinux (ELF and relocations) is about
/// 63 MiB, too close to 64 MiB for comfort.
pub const SUGGESTED_LIMIT: usize = 128 * 1024 * 1024;

/// Where the setup header's fields lie in the file (`boot.rst`).
mod offset {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const PAYLOAD_OFFSET: usize = 0x248;
    pub const PAYLOAD_LENGTH: usize = 0x24c;
}

/// The oldest boot protocol with `payload_offset` and `payload_length`.
pub const MIN_PROTOCOL: u16 = 0x0208;

const SECTOR: usize = 512;
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// How a bzImage's payload is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`CONFIG_KERNEL_GZIP`).
    Gzip,
    /// XZ, with the x86 BCJ filter in Linux's own images (`CONFIG_KERNEL_XZ`:
    /// Debian's amd64 kernels).
    Xz,
    /// LZ4 in the legacy frame format, magic 0x184C2102 (`CONFIG_KERNEL_LZ4`).
    Lz4,
    /// Zstandard (`CONFIG_KERNEL_ZSTD`).
    Zstd,
}

impl Compression {
    /// The compressor whose magic starts `payload`: `Ok(None)` when the
    /// magic is unknown, `Err` with the name of a compressor Linux supports
    /// but this module does not decode.
    fn identify(payload: &[u8]) -> Result<Option<Self>, &'static str> {
        const MAGICS: [(&[u8], Result<Compression, &str>); 7] = [
            (b"\x1f\x8b", Ok(Compression::Gzip)),
            (b"\xfd7zXZ\x00", Ok(Compression::Xz)),
            (b"\x02\x21\x4c\x18", Ok(Compression::Lz4)),
            (b"\x28\xb5\x2f\xfd", Ok(Compression::Zstd)),
            (b"BZh", Err("bzip2")),
            (b"\x5d\x00\x00", Err("lzma")),
            (b"\x89LZO", Err("lzo")),
        ];
        for (magic, compression) in MAGICS {
            if payload.starts_with(magic) {
                return compression.map(Some);
            }
        }
        Ok(None)
    }

    /// The compressor's usual name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Why a kernel image cannot be turned into its ELF `vmlinux`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// Neither an ELF image nor a bzImage (no "HdrS" at 0x202).
    NotBzImage,
    /// A bzImage whose boot protocol predates 2.08, so has no payload fields.
    UnsupportedProtocol { version: u16 },
    /// The file, or the compressed stream, ends inside the part named.
    Truncated { part: &'static str },
    /// The payload starts with no compressor's magic.
    UnknownCompression { magic: [u8; 4] },
    /// A compressor Linux can use that this module does not decode.
    UnsupportedCompression { name: &'static str },
    /// The payload declares, or decompresses to, more than the caller's limit.
    TooLarge { limit: usize },
    /// The stream asks for a larger history window (XZ dictionary, Zstandard
    /// window) than this module allows.
    WindowTooLarge { compression: Compression },
    /// Allocating the output failed.
    OutOfMemory,
    /// The compressed stream is malformed or fails its check.
    Corrupt {
        compression: Compression,
        reason: &'static str,
    },
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot unpack the kernel image: ")?;
        match self {
            Self::NotBzImage => f.write_str("neither an ELF image nor a bzImage"),
            Self::UnsupportedProtocol { version } => write!(
                f,
                "boot protocol {}.{:02} is older than 2.08",
                version >> 8,
                version & 0xff
            ),
            Self::Truncated { part } => write!(f, "the file ends inside the {part}"),
            Self::UnknownCompression { magic } => {
                write!(f, "unknown compression (payload starts {magic:02x?})")
            }
            Self::UnsupportedCompression { name } => {
                write!(f, "{name} compression is not supported")
            }
            Self::TooLarge { limit } => {
                write!(f, "the kernel is larger than the {limit}-byte limit")
            }
            Self::WindowTooLarge { compression } => write!(
                f,
                "the {} stream needs too large a history window",
                compression.name()
            ),
            Self::OutOfMemory => f.write_str("out of memory for the decompressed kernel"),
            Self::Corrupt {
                compression,
                reason,
            } => write!(f, "corrupt {} stream: {reason}", compression.name()),
        }
    }
}

/// A bzImage's compressed payload, found but not yet decompressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The boot protocol version (0x020f for Linux 6.1).
    pub protocol: u16,
    /// The compressor, from the payload's magic.
    pub compression: Compression,
    /// The compressed stream, without the size trailer.
    pub compressed: &'a [u8],
    /// The size the stream decompresses to, from the payload's trailer.
    pub uncompressed_size: u32,
}

/// Finds and identifies a bzImage's payload.
pub fn payload(image: &[u8]) -> Result<Payload<'_>, BzImageError> {
    if image.get(offset::HEADER..offset::HEADER + 4) != Some(b"HdrS") {
        return Err(BzImageError::NotBzImage);
    }
    let protocol = read_u16(image, offset::VERSION).ok_or(BzImageError::Truncated {
        part: "setup header",
    })?;
    if protocol < MIN_PROTOCOL {
        return Err(BzImageError::UnsupportedProtocol { version: protocol });
    }
    let header_fields = (
        image.get(offset::SETUP_SECTS),
        read_u32(image, offset::PAYLOAD_OFFSET),
        read_u32(image, offset::PAYLOAD_LENGTH),
    );
    let (Some(&setup_sectors), Some(payload_offset), Some(payload_length)) = header_fields else {
        return Err(BzImageError::Truncated {
            part: "setup header",
        });
    };
    // Zero setup sectors means four, for images older than the field.
    let setup_sectors = if setup_sectors == 0 { 4 } else { setup_sectors };
    let protected_mode_start = (usize::from(setup_sectors) + 1) * SECTOR;
    if protected_mode_start > image.len() {
        return Err(BzImageError::Truncated { part: "setup code" });
    }
    let start = usize::try_from(payload_offset)
        .ok()
        .and_then(|offset| protected_mode_start.checked_add(offset));
    let end = start.and_then(|start| start.checked_add(usize::try_from(payload_length).ok()?));
    let (Some(start), Some(end)) = (start, end) else {
        return Err(BzImageError::Truncated { part: "payload" });
    };
    let payload = image
        .get(start..end)
        .ok_or(BzImageError::Truncated { part: "payload" })?;
    let trailer_start = payload
        .len()
        .checked_sub(4)
        .ok_or(BzImageError::Truncated { part: "payload" })?;
    let (compressed, trailer) = payload.split_at(trailer_start);
    let uncompressed_size =
        read_u32(trailer, 0).ok_or(BzImageError::Truncated { part: "payload" })?;
    let compression = match Compression::identify(compressed) {
        Ok(Some(compression)) => compression,
        Ok(None) => {
            let mut magic = [0u8; 4];
            for (byte, value) in magic.iter_mut().zip(compressed) {
                *byte = *value;
            }
            return Err(BzImageError::UnknownCompression { magic });
        }
        Err(name) => return Err(BzImageError::UnsupportedCompression { name }),
    };
    Ok(Payload {
        protocol,
        compression,
        compressed,
        uncompressed_size,
    })
}

/// Most output one [`Decompression::step`] makes (an LZ4 block, up to
/// 8 MiB, is the exception: it decodes whole, far faster than XZ's
/// megabyte). About 80 ms of Debian's XZ kernel under TCG.
pub const STEP_OUTPUT: usize = 1 << 20;

impl<'a> Payload<'a> {
    /// Decompresses the payload, refusing a kernel larger than `limit`
    /// bytes before decoding anything. The result must be exactly
    /// `uncompressed_size` bytes.
    pub fn decompress(&self, limit: usize) -> Result<Vec<u8>, BzImageError> {
        let mut decompression = self.start(limit)?;
        while decompression.step()? == Progress::More {}
        decompression.finish()
    }

    /// Starts decompressing the payload a step at a time: refuses a kernel
    /// larger than `limit` bytes, allocates the output, reads the stream's
    /// header. [`Decompression::step`] does the rest.
    pub fn start(&self, limit: usize) -> Result<Decompression<'a>, BzImageError> {
        let size = usize::try_from(self.uncompressed_size).unwrap_or(usize::MAX);
        if size > limit {
            return Err(BzImageError::TooLarge { limit });
        }
        let output = Output::new(size, self.wrong_size())?;
        Decompression::new(*self, size, output)
    }

    /// The first `length` bytes of the decompressed kernel (fewer when it
    /// is shorter): enough to read its ELF and program headers without
    /// decompressing, or allocating, the rest.
    pub fn decompress_prefix(&self, length: usize) -> Result<Vec<u8>, BzImageError> {
        let size = usize::try_from(self.uncompressed_size).unwrap_or(usize::MAX);
        let output = Output::prefix(length.min(size), self.wrong_size())?;
        let mut decompression = Decompression::new(*self, size, output)?;
        while decompression.step()? == Progress::More {}
        Ok(decompression.output.into_bytes())
    }

    fn wrong_size(&self) -> BzImageError {
        BzImageError::Corrupt {
            compression: self.compression,
            reason: "the stream's length differs from the payload's size trailer",
        }
    }
}

/// Whether a [`Decompression`] has more to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Call [`Decompression::step`] again.
    More,
    /// The stream ended (or the prefix asked for is there).
    Done,
}

/// A payload being decompressed a bounded step at a time, so a caller
/// (Dom0's main loop) can serve other work between steps. The decoder's
/// state lives here; nothing is global.
pub struct Decompression<'a> {
    payload: Payload<'a>,
    size: usize,
    output: Output,
    decoder: Decoder<'a>,
    /// Set once a step ended the stream.
    done: bool,
    /// The error a step failed with: every later step gives it again.
    failed: Option<BzImageError>,
}

/// The decoder's state (XZ's and Zstandard's boxed: they are large).
enum Decoder<'a> {
    Gzip(gzip::Decoder<'a>),
    Xz(alloc::boxed::Box<xz::Decoder<'a>>),
    Lz4(lz4::Decoder<'a>),
    Zstd(alloc::boxed::Box<zstd::Decoder<'a>>),
}

impl<'a> Decompression<'a> {
    fn new(payload: Payload<'a>, size: usize, output: Output) -> Result<Self, BzImageError> {
        let decoder = match payload.compression {
            Compression::Gzip => Decoder::Gzip(gzip::Decoder::new(payload.compressed)?),
            Compression::Xz => {
                Decoder::Xz(alloc::boxed::Box::new(xz::Decoder::new(payload.compressed)))
            }
            Compression::Lz4 => Decoder::Lz4(lz4::Decoder::new(payload.compressed)?),
            Compression::Zstd => Decoder::Zstd(alloc::boxed::Box::new(zstd::Decoder::new(
                payload.compressed,
            )?)),
        };
        Ok(Self {
            payload,
            size,
            output,
            decoder,
            done: false,
            failed: None,
        })
    }

    /// Decodes at most [`STEP_OUTPUT`] more bytes (one LZ4 block).
    pub fn step(&mut self) -> Result<Progress, BzImageError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.done || self.output.prefix_full() {
            self.done = true;
            return Ok(Progress::Done);
        }
        // A prefix decodes no more than it keeps (but an LZ4 block whole).
        let budget = self
            .output
            .prefix_room()
            .map_or(STEP_OUTPUT, |room| room.min(STEP_OUTPUT));
        let output = &mut self.output;
        let result = match &mut self.decoder {
            Decoder::Gzip(decoder) => decoder.step(output, budget),
            Decoder::Xz(decoder) => decoder.step(output, budget),
            Decoder::Lz4(decoder) => decoder.step(output),
            Decoder::Zstd(decoder) => decoder.step(output, budget),
        };
        match result {
            Ok(ended) => {
                self.done = ended || self.output.prefix_full();
                Ok(if self.done {
                    Progress::Done
                } else {
                    Progress::More
                })
            }
            Err(error) => {
                self.failed = Some(error);
                Err(error)
            }
        }
    }

    /// Bytes decompressed so far.
    pub fn written(&self) -> usize {
        self.output.len()
    }

    /// The size the payload's trailer declares.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The decompressed kernel, once a step said [`Progress::Done`]; its
    /// length must be the trailer's.
    pub fn finish(self) -> Result<Vec<u8>, BzImageError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if !self.done || self.output.len() != self.size {
            return Err(self.payload.wrong_size());
        }
        Ok(self.output.into_bytes())
    }
}

/// The ELF `vmlinux` of a kernel image: a plain ELF image as it is, a
/// bzImage's payload decompressed (at most `limit` bytes).
pub fn vmlinux(image: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, BzImageError> {
    if image.starts_with(ELF_MAGIC) {
        return Ok(Cow::Borrowed(image));
    }
    payload(image)?.decompress(limit).map(Cow::Owned)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// bzImage-shaped buffers for tests, here and in the crates that use this
/// one (and for the fuzz target's seeds).
pub mod testing {
    use alloc::vec;
    use alloc::vec::Vec;

    /// A bzImage with boot protocol `protocol`, `setup_sectors` setup
    /// sectors (as written at 0x1f1), the protected-mode part starting with
    /// 16 filler bytes and then the payload: `compressed` followed by
    /// `uncompressed_size` as the trailer.
    pub fn bzimage(
        protocol: u16,
        setup_sectors: u8,
        compressed: &[u8],
        uncompressed_size: u32,
    ) -> Vec<u8> {
        const PAYLOAD_OFFSET: usize = 16;
        let sectors = if setup_sectors == 0 { 4 } else { setup_sectors };
        let protected_mode_start = (usize::from(sectors) + 1) * 512;
        let mut image = vec![0u8; protected_mode_start + PAYLOAD_OFFSET];
        image[0x1f1] = setup_sectors;
        image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        let payload_length = (compressed.len() + 4) as u32;
        image[0x248..0x24c].copy_from_slice(&(PAYLOAD_OFFSET as u32).to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&payload_length.to_le_bytes());
        image.extend_from_slice(compressed);
        image.extend_from_slice(&uncompressed_size.to_le_bytes());
        // What follows the payload in a real image (the decompressor's
        // data, a signature): not part of the payload.
        image.extend_from_slice(&[0xcc; 64]);
        image
    }
}
