//! Disks for the integration tests: the appliance disk `xenolith-img`
//! builds, qcow2 images `qemu-img` makes and checks, and the host programs
//! that do it, each failure a [`Failure`] that says what failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::debian::{attach, guest_files, linux_timeout};
use crate::{Failure, Running, TempDir, make_iso_with_modules, number_after};

/// Lines that must never appear while a guest uses its disk: Dom0 going
/// down, the block back end refusing or failing a request, the guest's
/// block layer or ext4 reporting an error.
pub const DISK_TROUBLE: &[&str] = &[
    "dom0 crashed",
    "panic",
    "refused a request",
    "request failed",
    "I/O error",
    "EXT4-fs error",
];

/// Whether `marker`'s bytes stand anywhere in `bytes` (a disk image, a
/// volume read out of one).
pub fn holds_marker(bytes: &[u8], marker: &str) -> bool {
    bytes
        .windows(marker.len())
        .any(|window| window == marker.as_bytes())
}

/// The bytes of the disk image at `path` on the host.
pub fn read_image(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| {
        Failure::new(format!(
            "cannot read the disk image {}: {error}",
            path.display()
        ))
    })
}

/// A `xenolith-img` library call, its error as a failure.
pub fn img<T>(result: Result<T, xenolith_img::ToolError>) -> Result<T, Failure> {
    result.map_err(|error| Failure::new(format!("xenolith-img: {error}")))
}

/// A path as text for a host program's command line.
pub fn path_text(path: &Path) -> Result<&str, Failure> {
    path.to_str()
        .ok_or_else(|| Failure::new(format!("{} is not UTF-8", path.display())))
}

/// Runs a host program to its end, whatever its exit status.
fn output(program: &str, arguments: &[&str]) -> Result<Output, Failure> {
    Command::new(program)
        .args(arguments)
        .output()
        .map_err(|error| Failure::new(format!("cannot run {program}: {error}")))
}

/// Converts the qcow2 image `qcow2` to a raw image at `raw` with the real
/// `qemu-img convert` (backing files and all) and returns the raw bytes.
pub fn qcow2_as_raw(qcow2: &Path, raw: &Path) -> Result<Vec<u8>, Failure> {
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            path_text(qcow2)?,
            path_text(raw)?,
        ],
    )?;
    std::fs::read(raw).map_err(|error| {
        Failure::new(format!(
            "cannot read the converted image {}: {error}",
            raw.display()
        ))
    })
}

/// Runs a host program that must succeed; its standard output.
pub fn run(program: &str, arguments: &[&str]) -> Result<String, Failure> {
    let output = output(program, arguments)?;
    if !output.status.success() {
        return Err(Failure::new(format!(
            "{program} {arguments:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// An empty appliance disk (GPT and an empty store) of `bytes`,
/// `appliance.img` in `dir`.
pub fn appliance_disk(dir: &TempDir, bytes: u64) -> Result<PathBuf, Failure> {
    let disk = dir.path().join("appliance.img");
    img(xenolith_img::create(&disk, bytes, false))?;
    Ok(disk)
}

/// Makes an empty qcow2 image of `size` (qemu-img's syntax, `48M`) with
/// `qemu-img`, as a user would, and imports it into `disk` as disk-image
/// volume `name`.
pub fn import_qemu_qcow2(
    disk: &Path,
    dir: &TempDir,
    name: &str,
    size: &str,
) -> Result<(), Failure> {
    let image = dir.path().join(format!("{name}.qcow2"));
    run(
        "qemu-img",
        &["create", "-f", "qcow2", path_text(&image)?, size],
    )?;
    img(xenolith_img::import(
        disk,
        name,
        &image,
        xenolith_img::VolumeKind::DiskImage,
        false,
    ))?;
    Ok(())
}

/// `qemu-img check` of a qcow2 image after QEMU was killed: clean, or
/// leaked clusters only (exit status 3), which a crash may leave.
/// `what` and `context` (say, `xenolith-img check`'s report) go into the
/// failure.
pub fn qemu_img_check_after_crash(image: &Path, what: &str, context: &str) -> Result<(), Failure> {
    let output = output("qemu-img", &["check", path_text(image)?])?;
    if !matches!(output.status.code(), Some(0 | 3)) {
        return Err(Failure::new(format!(
            "qemu-img check {what} failed ({:?}):\n{}{}\n{context}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// A boot ISO whose Dom0 starts two Debian guests given the same disk:
/// `writer` with `access=rw`, then `reader` with `access=ro`. `disk` is
/// the rest of the xl disk entry (format, vdev) before its `target`, which
/// xl takes as the last key (a target may hold commas).
pub fn writer_and_reader_iso(dir: &TempDir, disk: &str, target: &str) -> Result<PathBuf, Failure> {
    let guest = |name: &str, access: &str| {
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nmemory = 128\nkernel = \"vmlinuz\"\n\
             ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
             disk = [ \"{disk}, access={access}, target={target}\" ]\n\
             on_poweroff = \"destroy\"\n"
        )
    };
    let writer = dir.write("writer.cfg", guest("writer", "rw").as_bytes())?;
    let reader = dir.write("reader.cfg", guest("reader", "ro").as_bytes())?;
    let (kernel, initramfs) = guest_files()?;
    // A guest's files follow its config.
    let modules: [(&Path, &str); 6] = [
        (&writer, "guest-config writer.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
        (&reader, "guest-config reader.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    make_iso_with_modules(dir, "--", &modules)
}

/// Waits for [`writer_and_reader_iso`]'s reader to be created with its
/// disk connected and its shell up, attaches to its console and returns
/// its domain id (the refused writer may have used one before it).
pub fn reader_attached(qemu: &mut Running) -> Result<u16, Failure> {
    let created = qemu.wait_for_line_with(
        &["dom0: created domain", "(reader)"],
        linux_timeout(),
        "reader's creation",
    )?;
    let domain = number_after(&created, "created domain")
        .and_then(|domain| u16::try_from(domain).ok())
        .ok_or_else(|| qemu.failure(format!("reader was not created: {created:?}")))?;
    qemu.wait_for(
        &format!("dom0: domain {domain}: xvda connected"),
        linux_timeout(),
    )?;
    qemu.wait_for("[reader] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(qemu, "reader", domain)?;
    Ok(domain)
}
