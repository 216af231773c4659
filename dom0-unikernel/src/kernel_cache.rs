//! Kernels kept loaded between creates. Decompressing a distro bzImage is
//! most of a guest's creation time (3–4 s of TCG time for Debian's XZ
//! kernel), so after the first build the toolstack keeps what loading
//! needs: the entry point, the extent, and the non-zero pages of each
//! PT_LOAD segment, LZ4-compressed in runs of at most [`RUN_BYTES`]. Half
//! of a distro vmlinux is zero pages (bss, padding), and a fresh domain's
//! RAM is zero already, so those are never stored or copied. Debian's
//! 63 MiB vmlinux keeps in about 17 MiB; restoring it is an LZ4 decode of
//! each run into a scratch buffer, copied into the guest.
//!
//! Compression goes a run at a time ([`Compressor::step`]), so a caller
//! can spread it out; the toolstack does it all right after unpausing the
//! guest whose build decompressed the kernel.

use alloc::vec::Vec;

use pvh::image::{self, ImageError};

/// The most bytes of guest memory one run covers (the control
/// interface's copy limit).
pub const RUN_BYTES: usize = 1 << 20;
const PAGE: usize = 4096;

/// A kernel ready to load again.
#[derive(Clone, Debug)]
pub struct CachedKernel {
    /// The PVH 32-bit entry point.
    pub entry: u32,
    /// One past the highest byte the kernel occupies in guest memory.
    pub end: u64,
    runs: Vec<Run>,
}

/// Non-zero guest memory: `length` bytes at `address`, compressed.
#[derive(Clone, Debug)]
pub struct Run {
    pub address: u64,
    pub length: usize,
    compressed: Vec<u8>,
}

/// A cached run that does not decode to its length: the cache is
/// corrupt (never expected; the toolstack falls back to the kernel file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptRun {
    pub address: u64,
}

impl Run {
    /// Decodes the run into `buffer` (at least `length` bytes); returns
    /// the decoded bytes.
    pub fn decompress<'b>(&self, buffer: &'b mut [u8]) -> Result<&'b [u8], CorruptRun> {
        let corrupt = CorruptRun {
            address: self.address,
        };
        let output = buffer.get_mut(..self.length).ok_or(corrupt)?;
        match lz4_flex::block::decompress_into(&self.compressed, output) {
            Ok(count) if count == self.length => Ok(output),
            _ => Err(corrupt),
        }
    }
}

impl CachedKernel {
    /// The runs, in address order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Bytes the cache entry takes.
    pub fn stored_bytes(&self) -> usize {
        self.runs
            .iter()
            .map(|run| run.compressed.len())
            .sum::<usize>()
            + self.runs.len() * core::mem::size_of::<Run>()
    }
}

/// One piece of work: a run of the image to compress.
#[derive(Clone, Copy, Debug)]
struct Pending {
    address: u64,
    offset: usize,
    length: usize,
}

/// Turns a vmlinux into a [`CachedKernel`], one run per step.
pub struct Compressor {
    kernel: CachedKernel,
    pending: Vec<Pending>,
    next: usize,
}

impl Compressor {
    /// Plans the runs of `elf` (a PVH ELF kernel).
    pub fn new(elf: &[u8]) -> Result<Self, ImageError> {
        let parsed = image::parse(elf)?;
        let mut pending = Vec::new();
        for segment in &parsed.segments {
            let start = segment.file_offset as usize;
            let bytes = elf
                .get(start..start + segment.file_size as usize)
                .ok_or(ImageError::NotElf("segment beyond the file"))?;
            for (offset, length) in nonzero_runs(bytes) {
                pending.push(Pending {
                    address: segment.start + offset as u64,
                    offset: start + offset,
                    length,
                });
            }
        }
        Ok(Self {
            kernel: CachedKernel {
                entry: parsed.entry,
                end: parsed.end,
                runs: Vec::with_capacity(pending.len()),
            },
            pending,
            next: 0,
        })
    }

    /// Compresses the next run of `elf` (the same bytes given to
    /// [`Compressor::new`]); true while runs remain.
    pub fn step(&mut self, elf: &[u8]) -> bool {
        let Some(piece) = self.pending.get(self.next).copied() else {
            return false;
        };
        self.next += 1;
        let Some(bytes) = elf.get(piece.offset..piece.offset + piece.length) else {
            return self.next < self.pending.len();
        };
        self.kernel.runs.push(Run {
            address: piece.address,
            length: piece.length,
            compressed: lz4_flex::block::compress(bytes),
        });
        self.next < self.pending.len()
    }

    /// The cached kernel, once every step is done.
    pub fn finish(self) -> Option<CachedKernel> {
        (self.next == self.pending.len() && self.kernel.runs.len() == self.pending.len())
            .then_some(self.kernel)
    }
}

/// Runs of non-zero pages in `bytes`, each at most [`RUN_BYTES`]:
/// (offset, length) pairs. The last page may be partial.
fn nonzero_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    for (index, page) in bytes.chunks(PAGE).enumerate() {
        let offset = index * PAGE;
        let zero = page.iter().all(|&byte| byte == 0);
        match start {
            Some(begin) if zero => {
                runs.push((begin, offset - begin));
                start = None;
            }
            Some(begin) if offset + page.len() - begin > RUN_BYTES => {
                runs.push((begin, offset - begin));
                start = Some(offset);
            }
            None if !zero => start = Some(offset),
            _ => {}
        }
    }
    if let Some(begin) = start {
        runs.push((begin, bytes.len() - begin));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_split_runs_and_runs_stay_within_the_copy_limit() {
        let mut bytes = vec![0u8; 3 * RUN_BYTES];
        bytes[10] = 1; // page 0
        bytes[PAGE * 2 + 5] = 2; // page 2, after a zero page
        for page in 10..(10 + RUN_BYTES / PAGE + 3) {
            bytes[page * PAGE] = 3;
        }
        let runs = nonzero_runs(&bytes);
        assert_eq!(runs[0], (0, PAGE));
        assert_eq!(runs[1], (2 * PAGE, PAGE));
        assert_eq!(runs[2], (10 * PAGE, RUN_BYTES));
        assert_eq!(runs[3], (10 * PAGE + RUN_BYTES, 3 * PAGE));
        assert_eq!(runs.len(), 4);
        assert!(nonzero_runs(&[0; 3 * PAGE]).is_empty());
        // A partial last page counts.
        assert_eq!(nonzero_runs(&[0, 0, 7]), [(0, 3)]);
    }

    #[test]
    fn a_cached_kernel_restores_every_nonzero_byte_of_its_segments() {
        let image = pvh::image::testing::elf_image(0x10_0000, 5 * PAGE as u64, Some(0x10_0000));
        let mut elf = image.bytes().to_vec();
        let parsed = pvh::image::parse(&elf).unwrap();
        let segment = parsed.segments[0];
        let start = segment.file_offset as usize;
        // Some data, a zero page, more data.
        for (index, byte) in elf[start..start + PAGE].iter_mut().enumerate() {
            *byte = index as u8 | 1;
        }
        elf[start + 3 * PAGE + 7] = 0x5a;
        let mut compressor = Compressor::new(&elf).unwrap();
        let mut steps = 0;
        while compressor.step(&elf) {
            steps += 1;
            assert!(steps < 100);
        }
        let kernel = compressor.finish().expect("all steps done");
        assert_eq!(kernel.entry, parsed.entry);
        assert_eq!(kernel.end, parsed.end);
        let mut guest = vec![0u8; segment.memory_size as usize];
        let mut buffer = vec![0u8; RUN_BYTES];
        for run in kernel.runs() {
            let bytes = run.decompress(&mut buffer).unwrap();
            let at = (run.address - segment.start) as usize;
            guest[at..at + bytes.len()].copy_from_slice(bytes);
        }
        assert_eq!(
            &guest[..segment.file_size as usize],
            &elf[start..start + segment.file_size as usize]
        );
        assert!(kernel.stored_bytes() < 2 * PAGE + 1024);
    }

    #[test]
    fn an_unfinished_compressor_gives_nothing_and_junk_is_refused() {
        let image = pvh::image::testing::elf_image(0x10_0000, 2 * PAGE as u64, Some(0x10_0000));
        let mut elf = image.bytes().to_vec();
        let start = pvh::image::parse(&elf).unwrap().segments[0].file_offset as usize;
        elf[start] = 1;
        let compressor = Compressor::new(&elf).unwrap();
        assert!(compressor.finish().is_none());
        assert!(Compressor::new(b"not an elf").is_err());
        let run = Run {
            address: 0x1000,
            length: 100,
            compressed: vec![0xff; 8],
        };
        assert_eq!(
            run.decompress(&mut [0u8; 100]),
            Err(CorruptRun { address: 0x1000 })
        );
        assert!(run.decompress(&mut [0u8; 10]).is_err());
    }
}
