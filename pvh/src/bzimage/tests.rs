//! Tests of bzImage unpacking: payloads compressed at test time by the same
//! tools, with the same options, that Linux's build uses; malformed images;
//! a seeded run over corrupted images; and, when scripts/fetch-guest has
//! run, Debian's real kernel.

use super::testing::bzimage;
use super::*;
use crate::image::testing::elf_image;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

const MIB: usize = 1024 * 1024;
const PROTOCOL_6_1: u16 = 0x020f;
/// Debian 6.1's amd64 image has 39 setup sectors.
const SETUP_SECTORS: u8 = 39;

/// Runs `tool args` with `input` on stdin and returns its stdout; fails the
/// test, naming the Debian package, when the tool is missing.
fn run_tool(tool: &str, args: &[&str], package: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run `{tool}` ({error}): install Debian's {package} package")
        });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // Written from a thread so a large input cannot deadlock against stdout.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let result = child.wait_with_output().expect("tool runs");
    writer
        .join()
        .expect("writer thread")
        .expect("tool reads its input");
    assert!(
        result.status.success(),
        "`{tool} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&result.stderr)
    );
    result.stdout
}

/// Compresses `data` as Linux's build does for each `CONFIG_KERNEL_*`
/// (scripts/Makefile.lib, scripts/xz_wrap.sh), reading from a pipe as it does.
fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
    match compression {
        Compression::Gzip => run_tool("gzip", &["-n", "-f", "-9"], "gzip", data),
        Compression::Xz => run_tool(
            "xz",
            &["--check=crc32", "--x86", "--lzma2=dict=32MiB"],
            "xz-utils",
            data,
        ),
        Compression::Lz4 => run_tool("lz4", &["-l", "-12", "--favor-decSpeed"], "lz4", data),
        Compression::Zstd => run_tool("zstd", &["-22", "--ultra", "-q", "-c"], "zstd", data),
    }
}

const ALL: [Compression; 4] = [
    Compression::Gzip,
    Compression::Xz,
    Compression::Lz4,
    Compression::Zstd,
];

/// A small PRNG (xorshift64*), so every run sees the same data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// A PVH ELF (entry note, PT_LOAD at 16 MiB) followed by `extra` bytes of
/// x86-like code: many E8/E9 (call/jmp rel32) opcodes, which the XZ x86
/// BCJ filter rewrites, so a decoder without the inverse filter would
/// produce different bytes.
fn vmlinux_like(extra: usize, seed: u64) -> Vec<u8> {
    let mut random = Random(seed);
    let mut data = elf_image(16 * MIB as u64, 0x3000, Some(16 * MIB as u64 + 0x40))
        .bytes()
        .to_vec();
    let start = data.len();
    while data.len() < start + extra {
        match random.below(4) {
            0 => {
                data.push(0xe8);
                let target = (random.below(1 << 16) as i32 - (1 << 15)).to_le_bytes();
                data.extend_from_slice(&target);
            }
            1 => data.extend_from_slice(&[0x48, 0x89, 0xe5]),
            2 => data.push(0xe9),
            _ => data.push(random.next() as u8),
        }
    }
    data.truncate(start + extra);
    data
}

fn kernel_image(compression: Compression, data: &[u8]) -> Vec<u8> {
    bzimage(
        PROTOCOL_6_1,
        SETUP_SECTORS,
        &compress(compression, data),
        data.len() as u32,
    )
}

#[test]
fn every_compressor_round_trips_to_a_loadable_elf() {
    let data = vmlinux_like(256 * 1024, 1);
    for compression in ALL {
        let image = kernel_image(compression, &data);
        let found = payload(&image).expect("a bzImage");
        assert_eq!(found.compression, compression);
        assert_eq!(found.protocol, PROTOCOL_6_1);
        assert_eq!(found.uncompressed_size as usize, data.len());
        let unpacked = vmlinux(&image, 64 * MIB).expect("decompresses");
        assert!(matches!(unpacked, Cow::Owned(_)));
        assert!(unpacked[..] == data[..], "{compression:?} output differs");
        let parsed = crate::image::parse(&unpacked).expect("a PVH ELF");
        assert_eq!(parsed.entry, 16 * MIB as u32 + 0x40);
        assert_eq!(parsed.start, 16 * MIB as u64);
    }
}

#[test]
fn xz_payloads_use_the_x86_filter_and_decode_through_it() {
    let data = vmlinux_like(128 * 1024, 2);
    let compressed = compress(Compression::Xz, &data);
    // The first block header's filter flags: x86 BCJ (ID 4), then LZMA2 (ID 0x21).
    let header_size = (usize::from(compressed[12]) + 1) * 4;
    let header = &compressed[12..12 + header_size];
    assert!(
        header.windows(4).any(|w| w == [0x04, 0x00, 0x21, 0x01]),
        "xz wrote no x86 filter: {header:02x?}"
    );
    let image = bzimage(PROTOCOL_6_1, SETUP_SECTORS, &compressed, data.len() as u32);
    assert!(vmlinux(&image, MIB).expect("decompresses")[..] == data[..]);
}

#[test]
fn multi_block_and_concatenated_lz4_frames_decode() {
    // Past 8 MiB, `lz4 -l` starts a second block (the fast level: the
    // block structure does not depend on it).
    let data = vmlinux_like(8 * MIB + 12345, 3);
    let compressed = run_tool("lz4", &["-l", "-1"], "lz4", &data);
    let image = bzimage(PROTOCOL_6_1, SETUP_SECTORS, &compressed, data.len() as u32);
    assert!(vmlinux(&image, 16 * MIB).expect("two blocks")[..] == data[..]);

    // Two frames back to back: the magic recurs between blocks.
    let (first, second) = data.split_at(1000);
    let mut compressed = compress(Compression::Lz4, first);
    compressed.extend(compress(Compression::Lz4, second));
    let image = bzimage(PROTOCOL_6_1, 1, &compressed, data.len() as u32);
    assert!(vmlinux(&image, 16 * MIB).expect("two frames")[..] == data[..]);
}

#[test]
fn gzip_header_fields_are_skipped() {
    let data = vmlinux_like(4096, 4);
    let plain = compress(Compression::Gzip, &data);
    // Add an extra field, a file name and a comment to the 10-byte header.
    let mut compressed = plain[..10].to_vec();
    compressed[3] |= EXTRA_NAME_COMMENT;
    compressed.extend_from_slice(&[3, 0, 1, 2, 3]);
    compressed.extend_from_slice(b"vmlinux.bin\0a comment\0");
    compressed.extend_from_slice(&plain[10..]);
    let image = bzimage(PROTOCOL_6_1, SETUP_SECTORS, &compressed, data.len() as u32);
    assert!(vmlinux(&image, MIB).expect("decompresses")[..] == data[..]);
}
const EXTRA_NAME_COMMENT: u8 = 0x04 | 0x08 | 0x10;

#[test]
fn zero_setup_sectors_means_four() {
    let data = vmlinux_like(1000, 5);
    let image = bzimage(
        PROTOCOL_6_1,
        0,
        &compress(Compression::Gzip, &data),
        data.len() as u32,
    );
    assert!(vmlinux(&image, MIB).expect("decompresses")[..] == data[..]);
}

#[test]
fn a_plain_elf_is_returned_as_it_is() {
    let elf = elf_image(16 * MIB as u64, 0x100, Some(16 * MIB as u64));
    let result = vmlinux(elf.bytes(), 0).expect("an ELF");
    assert!(matches!(result, Cow::Borrowed(bytes) if bytes == elf.bytes()));
}

#[test]
fn header_faults_are_named() {
    assert_eq!(
        vmlinux(b"MZ not a kernel", MIB),
        Err(BzImageError::NotBzImage)
    );
    assert_eq!(vmlinux(&[], MIB), Err(BzImageError::NotBzImage));
    let gzip = compress(Compression::Gzip, b"kernel");

    let old = bzimage(0x0207, 4, &gzip, 6);
    assert_eq!(
        vmlinux(&old, MIB),
        Err(BzImageError::UnsupportedProtocol { version: 0x0207 })
    );

    let image = bzimage(PROTOCOL_6_1, 4, &gzip, 6);
    assert_eq!(
        vmlinux(&image[..0x248], MIB),
        Err(BzImageError::Truncated {
            part: "setup header"
        })
    );
    assert_eq!(
        vmlinux(&image[..0x400], MIB),
        Err(BzImageError::Truncated { part: "setup code" })
    );
    let mut past_the_end = image.clone();
    past_the_end[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        vmlinux(&past_the_end, MIB),
        Err(BzImageError::Truncated { part: "payload" })
    );
    let mut too_short = image.clone();
    too_short[0x24c..0x250].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(
        vmlinux(&too_short, MIB),
        Err(BzImageError::Truncated { part: "payload" })
    );

    let unknown = bzimage(PROTOCOL_6_1, 4, b"\x12\x34\x56\x78rest", 6);
    assert_eq!(
        vmlinux(&unknown, MIB),
        Err(BzImageError::UnknownCompression {
            magic: [0x12, 0x34, 0x56, 0x78]
        })
    );
    let bzip2 = bzimage(PROTOCOL_6_1, 4, b"BZh91AY&SY", 6);
    assert_eq!(
        vmlinux(&bzip2, MIB),
        Err(BzImageError::UnsupportedCompression { name: "bzip2" })
    );
}

#[test]
fn the_limit_is_enforced_before_decoding() {
    let data = vmlinux_like(100_000, 6);
    let size = data.len();
    for compression in ALL {
        let image = kernel_image(compression, &data);
        assert_eq!(
            vmlinux(&image, size - 1),
            Err(BzImageError::TooLarge { limit: size - 1 })
        );
        assert!(vmlinux(&image, size).is_ok());
    }
}

#[test]
fn a_stream_disagreeing_with_its_size_trailer_is_corrupt() {
    let data = vmlinux_like(50_000, 7);
    let size = data.len() as u32;
    for compression in ALL {
        let compressed = compress(compression, &data);
        for declared in [size - 1, size + 1, 0] {
            let image = bzimage(PROTOCOL_6_1, 4, &compressed, declared);
            assert!(
                matches!(
                    vmlinux(&image, MIB),
                    Err(BzImageError::Corrupt { compression: c, .. }) if c == compression
                ),
                "{compression:?} declared {declared}: {:?}",
                vmlinux(&image, MIB)
            );
        }
    }
}

#[test]
fn truncated_and_overlong_streams_are_rejected() {
    let data = vmlinux_like(50_000, 8);
    for compression in ALL {
        let compressed = compress(compression, &data);
        for cut in [compressed.len() - 1, compressed.len() / 2, 7] {
            let image = bzimage(PROTOCOL_6_1, 4, &compressed[..cut], data.len() as u32);
            let result = vmlinux(&image, MIB);
            assert!(
                matches!(
                    result,
                    Err(BzImageError::Truncated { .. } | BzImageError::Corrupt { .. })
                ),
                "{compression:?} cut at {cut}: {result:?}"
            );
        }
        let mut overlong = compressed.clone();
        overlong.extend_from_slice(&[0xaa; 16]);
        let image = bzimage(PROTOCOL_6_1, 4, &overlong, data.len() as u32);
        assert!(
            matches!(vmlinux(&image, MIB), Err(BzImageError::Corrupt { .. })),
            "{compression:?} with trailing bytes: {:?}",
            vmlinux(&image, MIB)
        );
    }
}

#[test]
fn checksums_are_verified() {
    let data = vmlinux_like(10_000, 9);
    // gzip: flip the stored CRC-32.
    let mut gzip = compress(Compression::Gzip, &data);
    let crc_at = gzip.len() - 8;
    gzip[crc_at] ^= 1;
    let image = bzimage(PROTOCOL_6_1, 4, &gzip, data.len() as u32);
    assert_eq!(
        vmlinux(&image, MIB),
        Err(BzImageError::Corrupt {
            compression: Compression::Gzip,
            reason: "CRC-32 mismatch"
        })
    );
    // xz and zstd: flip the check that ends the block / frame.
    for compression in [Compression::Xz, Compression::Zstd] {
        let mut compressed = compress(compression, &data);
        let check_at = match compression {
            // CRC-32 check, then the index and the 12-byte footer.
            Compression::Xz => compressed.len() - 12 - xz_index_size(&compressed) - 4,
            _ => compressed.len() - 4,
        };
        compressed[check_at] ^= 1;
        let image = bzimage(PROTOCOL_6_1, 4, &compressed, data.len() as u32);
        assert!(
            matches!(vmlinux(&image, MIB), Err(BzImageError::Corrupt { .. })),
            "{compression:?}: {:?}",
            vmlinux(&image, MIB)
        );
    }
}

/// The size of an XZ stream's index, from its footer's backward size.
fn xz_index_size(stream: &[u8]) -> usize {
    let footer = &stream[stream.len() - 12..];
    (u32::from_le_bytes(footer[4..8].try_into().expect("4 bytes")) as usize + 1) * 4
}

#[test]
fn oversized_history_windows_are_refused() {
    // XZ: rewrite the LZMA2 dictionary byte to 4 GiB and fix the block
    // header's CRC-32.
    let data = vmlinux_like(10_000, 10);
    let mut xz = compress(Compression::Xz, &data);
    let header_size = (usize::from(xz[12]) + 1) * 4;
    let header = 12..12 + header_size;
    let dictionary_at = xz[header.clone()]
        .windows(2)
        .position(|w| w == [0x21, 0x01])
        .expect("LZMA2 filter flags")
        + 12
        + 2;
    xz[dictionary_at] = 40;
    let crc = gzip::crc32(&xz[12..12 + header_size - 4]);
    xz[12 + header_size - 4..12 + header_size].copy_from_slice(&crc.to_le_bytes());
    let image = bzimage(PROTOCOL_6_1, 4, &xz, data.len() as u32);
    assert_eq!(
        vmlinux(&image, MIB),
        Err(BzImageError::WindowTooLarge {
            compression: Compression::Xz
        })
    );

    // Zstandard: a 1 GiB window (from a pipe, so the tool cannot shrink it).
    let zstd = run_tool("zstd", &["-1", "--zstd=wlog=30", "-q", "-c"], "zstd", &data);
    let image = bzimage(PROTOCOL_6_1, 4, &zstd, data.len() as u32);
    assert_eq!(
        vmlinux(&image, MIB),
        Err(BzImageError::WindowTooLarge {
            compression: Compression::Zstd
        })
    );
}

#[test]
fn messages_say_what_is_wrong() {
    assert_eq!(
        BzImageError::UnsupportedProtocol { version: 0x0206 }.to_string(),
        "cannot unpack the kernel image: boot protocol 2.06 is older than 2.08"
    );
    assert_eq!(
        BzImageError::Corrupt {
            compression: Compression::Xz,
            reason: "CRC32 mismatch"
        }
        .to_string(),
        "cannot unpack the kernel image: corrupt xz stream: CRC32 mismatch"
    );
}

/// Corrupts valid images at random, with a fixed seed: every result must be
/// an answer, never a panic, and an image that still decodes must decode to
/// no more than the limit.
#[test]
fn corrupted_images_never_panic() {
    const ROUNDS: usize = 300;
    const LIMIT: usize = 256 * 1024;
    let data = vmlinux_like(20_000, 11);
    let mut random = Random(0x5eed_0fb2_1a6e);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for compression in ALL {
        let image = kernel_image(compression, &data);
        let payload_start = (usize::from(SETUP_SECTORS) + 1) * 512;
        for round in 0..ROUNDS {
            let mut corrupted = image.clone();
            match round % 4 {
                // A few bytes anywhere in the payload.
                0 | 1 => {
                    for _ in 0..1 + random.below(8) {
                        let at = payload_start + random.below(corrupted.len() - payload_start);
                        corrupted[at] = random.next() as u8;
                    }
                }
                // A run of bytes: a burst error.
                2 => {
                    let at = payload_start + random.below(corrupted.len() - payload_start - 32);
                    for byte in &mut corrupted[at..at + 1 + random.below(32)] {
                        *byte = random.next() as u8;
                    }
                }
                // A header field.
                _ => {
                    let at =
                        [0x1f1, 0x206, 0x207, 0x248, 0x249, 0x24c, 0x24d, 0x24f][random.below(8)];
                    corrupted[at] = random.next() as u8;
                }
            }
            let result = vmlinux(&corrupted, LIMIT);
            if let Ok(bytes) = &result {
                assert!(bytes.len() <= LIMIT);
                // A stream with a checksum never decodes to wrong bytes.
                if compression != Compression::Lz4 {
                    assert!(bytes[..] == data[..], "{compression:?} round {round}");
                }
            }
            let outcome = match result {
                Ok(_) => "decoded".to_string(),
                Err(error) => format!("{error:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            };
            *outcomes
                .entry(format!("{compression:?} {outcome}"))
                .or_default() += 1;
        }
    }
    println!("corrupted-image outcomes: {outcomes:?}");
    // Most corruptions must be caught (LZ4 has no checksum but the size trailer).
    for compression in ALL {
        let decoded = outcomes
            .get(&format!("{compression:?} decoded"))
            .copied()
            .unwrap_or(0);
        assert!(decoded < ROUNDS / 2, "{compression:?}: {outcomes:?}");
    }
}

/// Every prefix of a small image, and of its payload, is handled.
#[test]
fn every_prefix_is_handled_without_panic() {
    let data = vmlinux_like(2000, 12);
    for compression in ALL {
        let image = kernel_image(compression, &data);
        for length in 0..image.len() {
            let _ = vmlinux(&image[..length], MIB);
        }
        let compressed = compress(compression, &data);
        for length in 0..compressed.len() {
            let image = bzimage(PROTOCOL_6_1, 4, &compressed[..length], data.len() as u32);
            assert!(vmlinux(&image, MIB).is_err());
        }
    }
}

/// Where scripts/fetch-guest puts Debian's kernel (or XENOLITH_GUEST_KERNEL).
fn guest_kernel() -> PathBuf {
    std::env::var_os("XENOLITH_GUEST_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guest/vmlinuz")
        })
}

/// Debian's own kernel, when scripts/fetch-guest has fetched it: unpacks to
/// a PVH ELF with its entry note and its PT_LOAD at 16 MiB. Set
/// XENOLITH_REQUIRE_GUEST_KERNEL=1 to fail instead of skipping without it.
#[test]
fn real_debian_kernel_unpacks_to_a_pvh_elf() {
    let path = guest_kernel();
    let Ok(image) = std::fs::read(&path) else {
        assert!(
            std::env::var_os("XENOLITH_REQUIRE_GUEST_KERNEL").is_none(),
            "{} is missing: run scripts/fetch-guest",
            path.display()
        );
        println!(
            "SKIPPED real-kernel test: {} absent (run scripts/fetch-guest)",
            path.display()
        );
        return;
    };
    let found = payload(&image).expect("Debian's vmlinuz is a bzImage");
    let started = Instant::now();
    let vmlinux = vmlinux(&image, SUGGESTED_LIMIT).expect("decompresses");
    let elapsed = started.elapsed();
    let parsed = crate::image::parse(&vmlinux).expect("a PVH ELF");
    println!(
        "RAN against the real kernel {}: {} bytes, protocol {:#06x}, {:?} payload of {} bytes -> \
         vmlinux of {} bytes in {:.2?} ({} build); PVH entry {:#x}, {} PT_LOAD segments {:#x}..{:#x}",
        path.display(),
        image.len(),
        found.protocol,
        found.compression,
        found.compressed.len(),
        vmlinux.len(),
        elapsed,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        parsed.entry,
        parsed.segments.len(),
        parsed.start,
        parsed.end,
    );
    assert_eq!(vmlinux.len(), found.uncompressed_size as usize);
    assert_eq!(parsed.start, 0x100_0000, "the first PT_LOAD is at 16 MiB");
    assert!(
        parsed.segments.iter().any(|s| s.start == 0x100_0000),
        "a PT_LOAD at 16 MiB"
    );
    assert!(u64::from(parsed.entry) >= parsed.start && u64::from(parsed.entry) < parsed.end);
}

/// Writes the fuzz target's seed corpus (fuzz/corpus/bzimage): run with
/// `cargo test -p xenolith-pvh write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/bzimage"]
fn write_fuzz_seeds() {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/bzimage");
    std::fs::create_dir_all(&directory).expect("corpus directory");
    let elf = elf_image(16 * MIB as u64, 0x200, Some(16 * MIB as u64 + 0x10));
    std::fs::write(directory.join("elf"), elf.bytes()).expect("seed written");
    for compression in ALL {
        let image = bzimage(
            PROTOCOL_6_1,
            1,
            &compress(compression, elf.bytes()),
            elf.bytes().len() as u32,
        );
        std::fs::write(directory.join(compression.name()), image).expect("seed written");
    }
}

/// Runs `image`'s payload through [`Decompression::step`] to the end,
/// checking each step's output stays within its bound; returns the bytes
/// and the number of steps.
fn decompress_in_steps(image: &[u8], limit: usize) -> Result<(Vec<u8>, usize), BzImageError> {
    let found = payload(image)?;
    let bound = match found.compression {
        Compression::Lz4 => 8 * MIB,
        _ => STEP_OUTPUT,
    };
    let mut decompression = found.start(limit)?;
    let mut steps = 0;
    loop {
        let before = decompression.written();
        let progress = decompression.step()?;
        steps += 1;
        let made = decompression.written() - before;
        assert!(
            made <= bound,
            "{:?}: one step made {made} bytes",
            found.compression
        );
        if progress == Progress::Done {
            break;
        }
    }
    // Done stays done.
    assert_eq!(decompression.step(), Ok(Progress::Done));
    decompression.finish().map(|bytes| (bytes, steps))
}

#[test]
fn stepped_decompression_gives_the_one_shot_bytes_a_bounded_step_at_a_time() {
    // Past 8 MiB so LZ4 has two blocks and the others many steps.
    let data = vmlinux_like(9 * MIB, 13);
    for compression in ALL {
        let image = kernel_image(compression, &data);
        let one_shot = vmlinux(&image, 16 * MIB).expect("decompresses");
        let (stepped, steps) = decompress_in_steps(&image, 16 * MIB).expect("decompresses");
        assert!(
            stepped[..] == one_shot[..],
            "{compression:?}: stepped bytes differ"
        );
        assert!(
            stepped[..] == data[..],
            "{compression:?}: bytes differ from the input"
        );
        let fewest = match compression {
            Compression::Lz4 => 2,
            _ => data.len() / STEP_OUTPUT,
        };
        assert!(steps >= fewest, "{compression:?}: {steps} steps");
    }
}

#[test]
fn a_corrupt_stream_fails_a_step_and_every_later_one() {
    let data = vmlinux_like(3 * MIB, 14);
    for compression in ALL {
        let mut image = kernel_image(compression, &data);
        let payload_start = (usize::from(SETUP_SECTORS) + 1) * 512 + 16;
        // Damage the middle of the stream: some steps succeed first.
        let compressed_length = payload(&image).unwrap().compressed.len();
        let middle = payload_start + compressed_length / 2;
        for byte in &mut image[middle..middle + 64] {
            *byte ^= 0x5a;
        }
        let found = payload(&image).unwrap();
        let mut decompression = found.start(16 * MIB).unwrap();
        let error = loop {
            match decompression.step() {
                Ok(Progress::More) => {}
                Ok(Progress::Done) => panic!("{compression:?}: a damaged stream decoded"),
                Err(error) => break error,
            }
        };
        assert_eq!(decompression.step(), Err(error), "{compression:?}");
        assert_eq!(decompression.finish(), Err(error), "{compression:?}");
    }
}

#[test]
fn a_prefix_reads_the_elf_headers_without_the_rest() {
    let data = vmlinux_like(3 * MIB, 15);
    let whole = crate::image::parse(&data).expect("a PVH ELF");
    for compression in ALL {
        let image = kernel_image(compression, &data);
        let found = payload(&image).unwrap();
        let prefix = found.decompress_prefix(64 * 1024).expect("a prefix");
        assert_eq!(prefix.len(), 64 * 1024, "{compression:?}");
        assert!(prefix[..] == data[..64 * 1024], "{compression:?}");
        let extent = crate::image::extent(&prefix, u64::from(found.uncompressed_size));
        assert_eq!(extent, Ok((whole.start, whole.end)), "{compression:?}");
        // A prefix longer than the kernel is the kernel.
        let all = found.decompress_prefix(16 * MIB).expect("the whole");
        assert!(all[..] == data[..], "{compression:?}");
    }
    // Segments beyond the declared length are refused from the prefix too.
    assert_eq!(
        crate::image::extent(&data[..4096], 100),
        Err(crate::image::ImageError::SegmentOutsideFile)
    );
    assert!(crate::image::extent(b"not an elf", 100).is_err());
}

/// Debian's kernel in steps: the same bytes as one-shot, each step's time
/// printed (the slowest bounds how long Dom0 stalls per step), and its
/// memory extent known from a 64 KiB prefix.
#[test]
fn real_debian_kernel_decompresses_in_bounded_steps() {
    let Ok(image) = std::fs::read(guest_kernel()) else {
        println!("SKIPPED: no Debian kernel (run scripts/fetch-guest)");
        return;
    };
    let found = payload(&image).expect("a bzImage");
    let mut decompression = found.start(SUGGESTED_LIMIT).unwrap();
    let mut slowest = std::time::Duration::ZERO;
    let mut steps = 0;
    let started = Instant::now();
    loop {
        let before = decompression.written();
        let step_started = Instant::now();
        let progress = decompression.step().expect("decodes");
        slowest = slowest.max(step_started.elapsed());
        assert!(decompression.written() - before <= STEP_OUTPUT);
        steps += 1;
        if progress == Progress::Done {
            break;
        }
    }
    let total = started.elapsed();
    let stepped = decompression.finish().expect("the whole kernel");
    let parsed = crate::image::parse(&stepped).expect("a PVH ELF");
    let prefix = found.decompress_prefix(64 * 1024).unwrap();
    assert_eq!(
        crate::image::extent(&prefix, u64::from(found.uncompressed_size)),
        Ok((parsed.start, parsed.end))
    );
    println!(
        "RAN: {} bytes in {steps} steps, {total:.2?} in all, slowest step {slowest:.2?}",
        stepped.len()
    );
    assert!(steps >= stepped.len() / STEP_OUTPUT);
}
