//! Interoperability with QEMU: images made by `qemu-img` (versions 2 and 3,
//! several cluster sizes and refcount widths, compressed, with backing files
//! and zero clusters from `qemu-io`) read byte for byte as `qemu-img
//! convert -O raw` reads them; images created and written here (and QEMU's
//! images written here) pass `qemu-img check` and convert back identical.
//!
//! Needs `qemu-img` and `qemu-io` (Debian's qemu-utils, installed by
//! scripts/setup): without them every test fails, saying so.
// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, File, OpenOptions as FileOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use disk_formats::{
    BackingFormat, BackingReference, CreateOptions, DiskImage, DiskOffset, ImageError, NoBacking,
    OpenOptions, Qcow2, Raw, Storage, StorageError, StorageOffset,
};

const MIB: u64 = 1 << 20;

/// A host file as image storage.
struct FileStorage {
    file: File,
    length: u64,
}

impl FileStorage {
    fn open(path: &Path, writable: bool) -> Self {
        let file = FileOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
        let length = file.metadata().unwrap().len();
        Self { file, length }
    }

    fn create(path: &Path) -> Self {
        File::create(path).unwrap();
        Self::open(path, true)
    }
}

fn device_error(error: &std::io::Error) -> StorageError {
    StorageError::Device(error.raw_os_error().unwrap_or(0) as u32)
}

impl Storage for FileStorage {
    fn len(&self) -> u64 {
        self.length
    }
    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        if offset.0 + buffer.len() as u64 > self.length {
            return Err(StorageError::OutOfBounds {
                offset: offset.0,
                length: buffer.len() as u64,
            });
        }
        self.file
            .read_exact_at(buffer, offset.0)
            .map_err(|error| device_error(&error))
    }
    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        if offset.0 + data.len() as u64 > self.length {
            return Err(StorageError::OutOfBounds {
                offset: offset.0,
                length: data.len() as u64,
            });
        }
        self.file
            .write_all_at(data, offset.0)
            .map_err(|error| device_error(&error))
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|error| device_error(&error))
    }
    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        self.file
            .set_len(length)
            .map_err(|error| device_error(&error))?;
        self.length = length;
        Ok(())
    }
}

/// Fails the test unless `tool` runs.
fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "{tool} not found: run scripts/setup (it installs Debian's qemu-utils); \
         these tests compare against QEMU and must not pass without it"
    );
}

/// Runs a QEMU tool, failing the test on a non-zero exit.
fn run(tool: &str, arguments: &[&str]) -> String {
    require(tool);
    let output = Command::new(tool).args(arguments).output().unwrap();
    assert!(
        output.status.success(),
        "{tool} {arguments:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `qemu-img check`: exit 0 means no corruption and no leaks.
fn assert_checks_clean(image: &Path) {
    require("qemu-img");
    let output = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(image)
        .output()
        .unwrap();
    assert!(
        output.status.code() == Some(0),
        "qemu-img check {} exited {:?}: {}{}",
        image.display(),
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What QEMU reads from an image.
fn qemu_reads(image: &Path, directory: &Path) -> Vec<u8> {
    let raw = directory.join("converted.raw");
    run(
        "qemu-img",
        &["convert", "-O", "raw", path(image), path(&raw)],
    );
    fs::read(raw).unwrap()
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A fresh directory per test under the system temporary directory.
fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let directory = std::env::temp_dir().join(format!(
        "xenolith-disk-formats-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&directory);
    fs::create_dir_all(&directory).unwrap();
    directory
}

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit
    }
}

/// Guest data with runs of zeros (unallocated in converted images), runs of
/// noise (incompressible) and runs of text (compressible).
fn pattern(size: u64, seed: u64) -> Vec<u8> {
    let mut random = Random(seed);
    let mut bytes = vec![0u8; size as usize];
    let mut at = 0usize;
    while at < bytes.len() {
        let run = (random.below(200_000) as usize + 1).min(bytes.len() - at);
        match random.below(3) {
            0 => {}
            1 => bytes[at..at + run]
                .iter_mut()
                .for_each(|byte| *byte = random.next() as u8),
            _ => bytes[at..at + run]
                .iter_mut()
                .enumerate()
                .for_each(|(index, byte)| *byte = b"xenolith qcow2 "[(at + index) % 15]),
        }
        at += run;
    }
    bytes
}

/// Opens backing files by name in `directory`, as QEMU resolves relative
/// names next to the image.
fn file_resolver(
    directory: PathBuf,
) -> impl FnMut(&BackingReference<'_>) -> Result<Box<dyn DiskImage>, ImageError> {
    move |reference| {
        let storage = FileStorage::open(&directory.join(reference.name), false);
        match reference.format {
            Some(BackingFormat::Raw) => Ok(Box::new(Raw::new(storage, true))),
            Some(BackingFormat::Qcow2) | None => {
                let options = OpenOptions {
                    read_only: true,
                    depth: reference.depth,
                };
                let mut inner = file_resolver(directory.clone());
                Ok(Box::new(Qcow2::open(storage, options, &mut inner)?))
            }
            Some(BackingFormat::Other) => Err(ImageError::BackingUnavailable),
        }
    }
}

fn read_all(image: &mut dyn DiskImage) -> Vec<u8> {
    let mut bytes = vec![0u8; image.virtual_size() as usize];
    // Odd-sized pieces cross cluster boundaries at every alignment.
    let mut at = 0usize;
    let mut piece = 1usize;
    while at < bytes.len() {
        let end = (at + piece).min(bytes.len());
        image
            .read(DiskOffset(at as u64), &mut bytes[at..end])
            .unwrap();
        at = end;
        piece = piece * 3 % 200_003 + 1;
    }
    bytes
}

/// Random writes through `image`, mirrored in `mirror`.
fn scribble(image: &mut dyn DiskImage, mirror: &mut [u8], seed: u64, writes: usize) {
    let mut random = Random(seed);
    let size = mirror.len() as u64;
    for _ in 0..writes {
        let offset = random.below(size);
        let length = (random.below(150_000) + 1).min(size - offset);
        let fill = random.next() as u8;
        let data: Vec<u8> = (0..length)
            .map(|index| fill.wrapping_add((index % 251) as u8))
            .collect();
        image.write(DiskOffset(offset), &data).unwrap();
        mirror[offset as usize..(offset + length) as usize].copy_from_slice(&data);
    }
    image.flush().unwrap();
}

#[test]
fn qemu_images_read_byte_for_byte() {
    let directory = scratch("read");
    let size = 5 * MIB + 4096;
    let guest = pattern(size, 1);
    let raw = directory.join("guest.raw");
    fs::write(&raw, &guest).unwrap();
    let variants: &[(&str, &[&str])] = &[
        ("v2", &["-o", "compat=0.10"]),
        ("v3", &["-o", "compat=1.1"]),
        (
            "v3-512-refcount1",
            &["-o", "compat=1.1,cluster_size=512,refcount_bits=1"],
        ),
        (
            "v3-4k-refcount64",
            &["-o", "compat=1.1,cluster_size=4096,refcount_bits=64"],
        ),
        (
            "v3-2m-refcount8",
            &["-o", "compat=1.1,cluster_size=2M,refcount_bits=8"],
        ),
        ("v3-compressed", &["-c", "-o", "compat=1.1"]),
        (
            "v2-compressed-4k",
            &["-c", "-o", "compat=0.10,cluster_size=4096"],
        ),
    ];
    for (name, options) in variants {
        let image = directory.join(format!("{name}.qcow2"));
        let mut arguments = vec!["convert", "-f", "raw", "-O", "qcow2"];
        arguments.extend_from_slice(options);
        arguments.extend_from_slice(&[path(&raw), path(&image)]);
        run("qemu-img", &arguments);
        let storage = FileStorage::open(&image, false);
        let options = OpenOptions {
            read_only: true,
            depth: 0,
        };
        let mut opened = Qcow2::open(storage, options, &mut NoBacking).unwrap();
        assert_eq!(opened.virtual_size(), size, "{name}");
        assert!(
            read_all(&mut opened) == guest,
            "{name}: reads differ from the raw image"
        );
    }
    fs::remove_dir_all(directory).unwrap();
}

#[test]
fn qemu_backing_files_and_zero_clusters_read_as_qemu_reads_them() {
    let directory = scratch("backing");
    let size = 4 * MIB;
    let raw = directory.join("base.raw");
    fs::write(&raw, pattern(size, 2)).unwrap();
    let base = directory.join("base.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            path(&raw),
            path(&base),
        ],
    );
    for (name, compat) in [
        ("top-v3.qcow2", "compat=1.1"),
        ("top-v2.qcow2", "compat=0.10"),
    ] {
        let top = directory.join(name);
        run(
            "qemu-img",
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                compat,
                "-b",
                "base.qcow2",
                "-F",
                "qcow2",
                path(&top),
            ],
        );
        run(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                "write -P 0x5a 100k 200k",
                "-c",
                "write -z 1M 256k",
                "-c",
                "write -z 2M 64k",
                "-c",
                "write -P 0x11 3M 3k",
                path(&top),
            ],
        );
        let expected = qemu_reads(&top, &directory);
        let mut resolver = file_resolver(directory.clone());
        let options = OpenOptions {
            read_only: true,
            depth: 0,
        };
        let mut opened =
            Qcow2::open(FileStorage::open(&top, false), options, &mut resolver).unwrap();
        assert_eq!(opened.backing_name(), Some("base.qcow2"));
        assert!(
            read_all(&mut opened) == expected,
            "{name}: reads differ from QEMU's"
        );
    }
    // A raw backing file.
    let top = directory.join("top-raw.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            path(&top),
        ],
    );
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x77 10k 70k", path(&top)],
    );
    let expected = qemu_reads(&top, &directory);
    let mut resolver = file_resolver(directory.clone());
    let mut opened = Qcow2::open(
        FileStorage::open(&top, true),
        OpenOptions::default(),
        &mut resolver,
    )
    .unwrap();
    assert!(read_all(&mut opened) == expected);
    fs::remove_dir_all(directory).unwrap();
}

#[test]
fn images_created_and_written_here_pass_qemu_img_check() {
    let directory = scratch("create");
    for (name, cluster_bits, refcount_order) in
        [("default", 16, 4), ("small", 9, 6), ("4k-refcount2", 12, 1)]
    {
        let image = directory.join(format!("{name}.qcow2"));
        let size = 6 * MIB + 512;
        let options = CreateOptions {
            cluster_bits,
            refcount_order,
            ..CreateOptions::new(size)
        };
        Qcow2::create(FileStorage::create(&image), &options).unwrap();
        assert_checks_clean(&image);
        let info = run("qemu-img", &["info", path(&image)]);
        assert!(info.contains("compat: 1.1"), "{info}");

        let mut mirror = vec![0u8; size as usize];
        let mut opened = Qcow2::open(
            FileStorage::open(&image, true),
            OpenOptions::default(),
            &mut NoBacking,
        )
        .unwrap();
        scribble(&mut opened, &mut mirror, 10 + u64::from(cluster_bits), 80);
        opened.discard(DiskOffset(MIB), MIB).unwrap();
        mirror[MIB as usize..2 * MIB as usize].fill(0);
        scribble(&mut opened, &mut mirror, 20, 10);
        drop(opened);
        assert_checks_clean(&image);
        assert!(
            qemu_reads(&image, &directory) == mirror,
            "{name}: QEMU reads differ"
        );
    }
    fs::remove_dir_all(directory).unwrap();
}

#[test]
fn images_made_here_with_a_backing_file_convert_identically() {
    let directory = scratch("create-backing");
    let size = 3 * MIB;
    let base_bytes = pattern(size, 3);
    let base_raw = directory.join("base.raw");
    fs::write(&base_raw, &base_bytes).unwrap();
    let base = directory.join("base.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            path(&base_raw),
            path(&base),
        ],
    );
    let top = directory.join("top.qcow2");
    let options = CreateOptions {
        backing: Some(("base.qcow2", BackingFormat::Qcow2)),
        ..CreateOptions::new(size)
    };
    Qcow2::create(FileStorage::create(&top), &options).unwrap();
    let mut resolver = file_resolver(directory.clone());
    let mut opened = Qcow2::open(
        FileStorage::open(&top, true),
        OpenOptions::default(),
        &mut resolver,
    )
    .unwrap();
    let mut mirror = base_bytes;
    scribble(&mut opened, &mut mirror, 30, 40);
    opened.discard(DiskOffset(0), 256 << 10).unwrap();
    mirror[..256 << 10].fill(0);
    drop(opened);
    assert_checks_clean(&top);
    assert_checks_clean(&base);
    assert!(qemu_reads(&top, &directory) == mirror);
    fs::remove_dir_all(directory).unwrap();
}

#[test]
fn qemu_images_written_here_pass_qemu_img_check() {
    let directory = scratch("write");
    let size = 4 * MIB;
    let guest = pattern(size, 4);
    let raw = directory.join("guest.raw");
    fs::write(&raw, &guest).unwrap();
    let variants: &[(&str, &[&str])] = &[
        ("v2", &["-o", "compat=0.10"]),
        ("v3-compressed", &["-c", "-o", "compat=1.1"]),
        // A one-cluster refcount table covers 1 MiB: writes must grow it.
        (
            "v3-512-refcount64",
            &["-o", "compat=1.1,cluster_size=512,refcount_bits=64"],
        ),
        (
            "v2-compressed-1k",
            &["-c", "-o", "compat=0.10,cluster_size=1024"],
        ),
    ];
    for (name, options) in variants {
        let image = directory.join(format!("{name}.qcow2"));
        let mut arguments = vec!["convert", "-f", "raw", "-O", "qcow2"];
        arguments.extend_from_slice(options);
        arguments.extend_from_slice(&[path(&raw), path(&image)]);
        run("qemu-img", &arguments);
        // Zero clusters in v3 images, from qemu-io.
        if name.starts_with("v3") {
            run(
                "qemu-io",
                &["-f", "qcow2", "-c", "write -z 512k 64k", path(&image)],
            );
        }
        let mut mirror = qemu_reads(&image, &directory);
        let mut opened = Qcow2::open(
            FileStorage::open(&image, true),
            OpenOptions::default(),
            &mut NoBacking,
        )
        .unwrap();
        assert!(read_all(&mut opened) == mirror, "{name}: reads differ");
        scribble(&mut opened, &mut mirror, 40, 60);
        opened.write(DiskOffset(520 << 10), &[0xee; 3000]).unwrap();
        mirror[520 << 10..(520 << 10) + 3000].fill(0xee);
        drop(opened);
        assert_checks_clean(&image);
        assert!(
            qemu_reads(&image, &directory) == mirror,
            "{name}: QEMU reads differ"
        );
    }
    fs::remove_dir_all(directory).unwrap();
}
