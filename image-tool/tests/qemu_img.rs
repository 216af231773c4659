//! The binary against qemu-img: a disk made by `xenolith-img create` takes a
//! qemu-img-made qcow2 and gives it back byte for byte; a qcow2 volume
//! written through the volume adapter (as Dom0 writes it) exports to a file
//! `qemu-img check` passes and `qemu-img convert` reads the data from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use disk_formats::{DiskImage, DiskOffset, NoBacking, OpenOptions, Qcow2};
use xenolith_img::media::VolumeStorage;

const MARKER: &[u8] = b"XENOLITH-IMG-MARKER-0c41";

struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("xenolith-img-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tool(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xenolith-img"))
        .args(arguments)
        .output()
        .expect("running xenolith-img")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "xenolith-img failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn qemu_img(arguments: &[&str]) -> Output {
    let output = Command::new("qemu-img")
        .args(arguments)
        .output()
        .expect("qemu-img is missing: run scripts/setup (qemu-utils)");
    assert!(
        output.status.success(),
        "qemu-img {arguments:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_qemu_img_qcow2_round_trips_and_guest_writes_stay_valid() {
    let scratch = Scratch::new("round-trip");
    let disk = scratch.path("appliance.img");
    let disk_name = text(&disk);
    ok(tool(&["create", disk_name, "--size", "64M"]));

    // A qcow2 with data in it, made by qemu-img from a raw file.
    let mut raw = vec![0u8; 4 << 20];
    raw[(1 << 20) + 100..(1 << 20) + 100 + MARKER.len()].copy_from_slice(MARKER);
    let raw_file = scratch.path("source.raw");
    std::fs::write(&raw_file, &raw).unwrap();
    let qcow2_file = scratch.path("source.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        text(&raw_file),
        text(&qcow2_file),
    ]);
    let empty_file = scratch.path("empty.qcow2");
    qemu_img(&["create", "-f", "qcow2", text(&empty_file), "64M"]);

    ok(tool(&["import", disk_name, "data", text(&qcow2_file)]));
    ok(tool(&["import", disk_name, "empty", text(&empty_file)]));
    ok(tool(&[
        "import",
        disk_name,
        "flat",
        text(&qcow2_file),
        "--convert",
        "raw",
    ]));
    let listing = ok(tool(&["list", disk_name]));
    let row = |name: &str| {
        listing
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from:\n{listing}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("data")[1..3], ["disk", "qcow2"]);
    assert_eq!(row("flat")[1..3], ["disk", "raw"]);

    // Byte for byte back, and still what qemu-img made.
    for (name, original) in [("data", &qcow2_file), ("empty", &empty_file)] {
        let out = scratch.path(&format!("{name}.out"));
        ok(tool(&["export", disk_name, name, text(&out)]));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(original).unwrap(),
            "{name} changed"
        );
        qemu_img(&["check", text(&out)]);
    }
    let flat = scratch.path("flat.out");
    ok(tool(&["export", disk_name, "flat", text(&flat)]));
    assert_eq!(std::fs::read(&flat).unwrap(), raw);

    // Write into the empty qcow2 as Dom0 does (the volume grows), then
    // export: qemu-img checks it and finds the data.
    {
        let mut store = xenolith_img::open_store(&disk).unwrap();
        let id = store.lookup("empty").unwrap().id;
        let options = OpenOptions {
            read_only: false,
            depth: 0,
        };
        let mut image = Qcow2::open(VolumeStorage::new(&mut store, id), options, &mut NoBacking)
            .expect("opening the imported qcow2");
        let mut sector = vec![0u8; 4096];
        sector[..MARKER.len()].copy_from_slice(MARKER);
        for offset in [0u64, 5 << 20, 40 << 20, (64 << 20) - 4096] {
            image.write(DiskOffset(offset), &sector).unwrap();
        }
        image.flush().unwrap();
    }
    let written = scratch.path("written.qcow2");
    ok(tool(&["export", disk_name, "empty", text(&written)]));
    qemu_img(&["check", text(&written)]);
    let converted = scratch.path("written.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        text(&written),
        text(&converted),
    ]);
    let bytes = std::fs::read(&converted).unwrap();
    assert_eq!(bytes.len(), 64 << 20);
    for offset in [0usize, 5 << 20, 40 << 20, (64 << 20) - 4096] {
        assert_eq!(&bytes[offset..offset + MARKER.len()], MARKER, "at {offset}");
    }

    ok(tool(&["remove", disk_name, "flat"]));
    assert!(!ok(tool(&["list", disk_name])).contains("flat"));
}

#[test]
fn the_binary_refuses_foreign_disks_and_overwrites_with_clear_exit_codes() {
    let scratch = Scratch::new("refusals");
    let foreign = scratch.path("foreign.img");
    std::fs::write(&foreign, vec![0u8; 8 << 20]).unwrap();
    let output = tool(&["list", text(&foreign)]);
    assert_eq!(output.status.code(), Some(3));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("not a usable Xenolith appliance disk"),
        "{message}"
    );

    let output = tool(&["create", text(&foreign), "--size", "8M"]);
    assert_eq!(output.status.code(), Some(4));
    ok(tool(&["create", text(&foreign), "--size", "8M", "--force"]));
    ok(tool(&["list", text(&foreign)]));

    let output = tool(&["import"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
}

#[test]
fn a_qcow2_overlay_imports_only_over_a_disk_volume_of_its_backing_name() {
    let scratch = Scratch::new("overlay");
    let disk = scratch.path("appliance.img");
    let disk_name = text(&disk);
    ok(tool(&["create", disk_name, "--size", "64M"]));
    // qemu-img records the backing name as given: "base", a volume name.
    std::fs::write(scratch.path("base"), vec![0x5a; 1 << 20]).unwrap();
    std::fs::write(scratch.path("elsewhere"), vec![0x5a; 1 << 20]).unwrap();
    let overlay = scratch.path("overlay.qcow2");
    let stray = scratch.path("stray.qcow2");
    for (file, backing) in [(&overlay, "base"), (&stray, "elsewhere")] {
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            backing,
            "-F",
            "raw",
            text(file),
        ]);
    }

    // Before its backing volume is in the store the overlay is refused.
    let early = tool(&["import", disk_name, "overlay", text(&overlay)]);
    assert!(!early.status.success());
    let why = String::from_utf8_lossy(&early.stderr);
    assert!(why.contains("backing"), "{why}");

    ok(tool(&[
        "import",
        disk_name,
        "base",
        text(&scratch.path("base")),
    ]));
    ok(tool(&["import", disk_name, "overlay", text(&overlay)]));
    let stray_import = tool(&["import", disk_name, "stray", text(&stray)]);
    assert!(!stray_import.status.success());
    let flattened = tool(&[
        "import",
        disk_name,
        "flat",
        text(&overlay),
        "--convert",
        "raw",
    ]);
    assert!(!flattened.status.success());
    let report = ok(tool(&["check", disk_name]));
    assert!(report.contains("volume overlay: qcow2"), "{report}");
    assert!(report.contains("volume base: raw disk"), "{report}");
}
