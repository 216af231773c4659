//! Interoperability with QEMU's VMDK writer: monolithicSparse images made
//! by `qemu-img create -f vmdk` and `qemu-img convert -O vmdk` read byte for
//! byte as their raw source (and as `qemu-img convert -O raw` reads them);
//! the streamOptimized images QEMU writes are refused.
//!
//! Needs `qemu-img` (Debian's qemu-utils, installed by scripts/setup):
//! without it every test fails, saying so.
// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use disk_formats::fake::MemoryStorage;
use disk_formats::{DiskImage, DiskOffset, ImageError, Vmdk, VmdkError};

const MIB: u64 = 1 << 20;

/// Runs `qemu-img`, failing the test when it is missing or fails.
fn qemu_img(arguments: &[&str]) {
    let output = Command::new("qemu-img").args(arguments).output();
    let output = output.unwrap_or_else(|error| {
        panic!(
            "qemu-img not runnable ({error}): run scripts/setup (it installs Debian's \
             qemu-utils); these tests compare against QEMU and must not pass without it"
        )
    });
    assert!(
        output.status.success(),
        "qemu-img {arguments:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A fresh directory per test under the system temporary directory.
fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let directory = std::env::temp_dir().join(format!(
        "xenolith-vmdk-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&directory);
    fs::create_dir_all(&directory).unwrap();
    directory
}

/// Guest data: runs of zeros (left unallocated by the converter), runs of
/// noise and runs of text, from a seeded xorshift.
fn pattern(size: u64, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut bytes = vec![0u8; size as usize];
    let mut at = 0usize;
    while at < bytes.len() {
        let run = (next() % 300_000) as usize + 1;
        let run = run.min(bytes.len() - at);
        match next() % 3 {
            0 => {}
            1 => bytes[at..at + run]
                .iter_mut()
                .for_each(|byte| *byte = next() as u8),
            _ => bytes[at..at + run]
                .iter_mut()
                .enumerate()
                .for_each(|(index, byte)| *byte = b"xenolith vmdk "[(at + index) % 14]),
        }
        at += run;
    }
    bytes
}

fn open(image: &Path) -> Result<Vmdk<MemoryStorage>, ImageError> {
    Vmdk::open(MemoryStorage::from_bytes(fs::read(image).unwrap(), 0))
}

/// Reads the whole disk in odd-sized pieces and compares with `expected`.
fn assert_reads(image: &mut Vmdk<MemoryStorage>, expected: &[u8]) {
    assert_eq!(image.virtual_size(), expected.len() as u64);
    let mut whole = vec![0x5au8; expected.len()];
    image.read(DiskOffset(0), &mut whole).unwrap();
    assert!(whole == expected, "whole-disk read differs from the source");
    let mut offset = 0usize;
    let mut step = 1usize;
    while offset < expected.len() {
        let length = (step * 4093 % 200_000 + 1).min(expected.len() - offset);
        let mut piece = vec![0x5au8; length];
        image.read(DiskOffset(offset as u64), &mut piece).unwrap();
        assert!(
            piece[..] == expected[offset..offset + length],
            "at {offset}"
        );
        offset += length;
        step += 1;
    }
}

#[test]
fn converted_monolithic_sparse_images_read_as_their_source() {
    let directory = scratch("convert");
    // An odd size (a partial last grain), two grain tables (each covers
    // 32 MiB of 64 KiB grains), and the version 3 header compat6 writes.
    for (size, options) in [
        (11 * MIB + 512, "subformat=monolithicSparse"),
        (40 * MIB, "subformat=monolithicSparse"),
        (3 * MIB, "subformat=monolithicSparse,compat6=on"),
    ] {
        let source = pattern(size, size ^ 0x766d646b);
        let raw = directory.join("source.raw");
        let image = directory.join("image.vmdk");
        fs::write(&raw, &source).unwrap();
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            options,
            path(&raw),
            path(&image),
        ]);
        let mut vmdk = open(&image).unwrap_or_else(|error| panic!("{options}: {error}"));
        assert!(vmdk.is_read_only());
        assert_reads(&mut vmdk, &source);
        // And as QEMU itself reads it back.
        let back = directory.join("back.raw");
        qemu_img(&[
            "convert",
            "-f",
            "vmdk",
            "-O",
            "raw",
            path(&image),
            path(&back),
        ]);
        assert!(
            fs::read(&back).unwrap() == source,
            "qemu-img's own read differs"
        );
        assert_eq!(
            vmdk.write(DiskOffset(0), &[0u8; 512]),
            Err(ImageError::ReadOnly)
        );
    }
    fs::remove_dir_all(directory).unwrap();
}

#[test]
fn created_images_read_as_zeros() {
    let directory = scratch("create");
    let image = directory.join("empty.vmdk");
    qemu_img(&["create", "-f", "vmdk", path(&image), "70M"]);
    let mut vmdk = open(&image).unwrap();
    assert_reads(&mut vmdk, &vec![0u8; (70 * MIB) as usize]);
    fs::remove_dir_all(directory).unwrap();
}

#[test]
fn other_subformats_are_refused() {
    let directory = scratch("subformats");
    let raw = directory.join("source.raw");
    fs::write(&raw, pattern(2 * MIB, 7)).unwrap();
    let stream = directory.join("stream.vmdk");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        path(&raw),
        path(&stream),
    ]);
    assert_eq!(
        open(&stream).err(),
        Some(ImageError::Vmdk(VmdkError::Compressed))
    );
    // A flat image's descriptor file is text, not a sparse extent.
    let flat = directory.join("flat.vmdk");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        path(&raw),
        path(&flat),
    ]);
    assert!(matches!(
        open(&flat).err(),
        Some(ImageError::Vmdk(
            VmdkError::BadMagic | VmdkError::HeaderTruncated
        ))
    ));
    fs::remove_dir_all(directory).unwrap();
}
