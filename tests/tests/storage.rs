//! A guest's disk end to end: Debian's xen-blkfront against Dom0's blkif
//! back end, backed by the appliance's virtio disk (`target=virtio0`, the
//! whole disk). The guest makes a filesystem on /dev/xvda, writes a file
//! and syncs; the operator destroys and creates the guest again and the
//! file reads back with the same checksum; the disk image on the host
//! holds what the guest wrote. Dom0 reaches the ring in few grant copies
//! per request (its detach line counts them).

use std::path::Path;
use std::process::Command;

use xenolith_tests::debian::{
    DETACH, attach, destroy_with_disk, guest_iso, guest_value, linux_timeout,
    recreate_and_read_back, write_filesystem,
};
use xenolith_tests::disks::{DISK_TROUBLE, holds_marker, read_image};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout};

/// The appliance disk: 64 MiB.
const DISK_BYTES: usize = 64 << 20;
/// Written into a file on the guest's filesystem, looked for in the image.
const MARKER: &str = "XENOLITH-STORAGE-MARKER-7f3a";

/// Boots the appliance (interactive: destroy must not power it off) with
/// `disk` as its virtio disk and a guest `store` whose xl.cfg gives it
/// that disk as xvda.
fn boot(dir: &TempDir, disk: &Path) -> Result<Running, Failure> {
    let config = "name = \"store\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"vdev=xvda, access=rw, target=virtio0\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let iso = guest_iso(dir, "--", "store", config)?;
    Qemu::iso(iso).virtio_disk(disk).spawn()
}

/// The host's md5sum of `file`.
fn host_md5(file: &Path) -> Result<String, Failure> {
    let output = Command::new("md5sum")
        .arg(file)
        .output()
        .map_err(|error| Failure::new(format!("cannot run md5sum: {error}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[test]
fn a_guest_filesystem_survives_destroy_and_create() -> Result<(), Failure> {
    let dir = TempDir::new("storage")?;
    let disk = dir.write("disk.img", &vec![0u8; DISK_BYTES])?;
    let mut qemu = boot(&dir, &disk)?;
    qemu.wait_for("dom0: disk virtio0: 131072 sectors", boot_timeout())?;
    qemu.wait_for("dom0: created domain 1 (store)", linux_timeout())?;
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[store] XENOLITH-GUEST: shell", linux_timeout())?;

    attach(&mut qemu, "store", 1)?;
    let written = write_filesystem(&mut qemu, MARKER)?;
    destroy_with_disk(&mut qemu, "store", 1)?;

    // What the guest wrote is in the image on the host.
    if !holds_marker(&read_image(&disk)?, MARKER) {
        return Err(qemu.failure("the marker file's bytes are not in the disk image"));
    }

    // A new domain with the same config reads the same file back.
    recreate_and_read_back(&mut qemu, "store", 2, MARKER, &written)?;

    // The whole disk as the guest sees it equals the image on the host.
    let guest_disk = guest_value(
        &mut qemu,
        "umount /mnt && sync && echo \"WHOLE\"\"DISK=$(md5sum </dev/xvda | cut -c1-32)\"",
        "WHOLEDISK",
    )?;
    let host_disk = host_md5(&disk)?;
    if guest_disk != host_disk {
        return Err(qemu.failure(format!(
            "the guest reads {guest_disk} for /dev/xvda, the host image is {host_disk}"
        )));
    }
    // Sequential 1 MiB O_DIRECT reads, as the benchmark's: blkfront
    // issues each as several 128 KiB requests at once.
    let direct = guest_value(
        &mut qemu,
        "dd if=/dev/xvda of=/dev/null bs=1M count=32 iflag=direct 2>/dev/null; echo \"DIR\"\"ECT=$?\"",
        "DIRECT",
    )?;
    if direct != "0" {
        return Err(qemu.failure(format!("the O_DIRECT reads failed: {direct:?}")));
    }
    qemu.send(DETACH)?;
    qemu.send("destroy store\r")?;
    qemu.wait_for("dom0: domain 2: xvda detached", boot_timeout())?;
    qemu.wait_for("dom0: destroyed domain 2 (store)", boot_timeout())?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    let (requests, copies) = ring_copies(&qemu, 2)?;
    qemu.kill();
    eprintln!(
        "storage: {copies} ring copies for {requests} requests ({:.1} each)",
        copies as f64 / requests as f64
    );
    // Each ring access is a grant-copy hypercall. Reading a ring only on
    // its event, a batch of requests in one copy and a batch of responses
    // in one copy keeps it near 5 per request here; looking at every ring
    // on every pass, one request or response per copy, cost about 12.
    if copies > requests * MOST_RING_COPIES_PER_REQUEST {
        return Err(Failure::new(format!(
            "{copies} ring copies for {requests} requests: more than {MOST_RING_COPIES_PER_REQUEST} each"
        )));
    }
    Ok(())
}

/// The most ring copies (grant-copy hypercalls on the ring pages) per
/// request the test accepts.
const MOST_RING_COPIES_PER_REQUEST: u64 = 8;

/// Requests (reads, writes, flushes) and ring copies from the detach line
/// of domain `domain`'s xvda.
fn ring_copies(qemu: &Running, domain: u16) -> Result<(u64, u64), Failure> {
    let line = qemu
        .serial_line_with(&[&format!("dom0: domain {domain}: xvda detached (")])
        .unwrap_or_default();
    let number = |label: &str| -> Option<u64> {
        let before = line.split(&format!(" {label}")).next()?;
        before.rsplit(['(', ' ']).next()?.parse().ok()
    };
    match (
        number("reads,"),
        number("writes,"),
        number("flushes,"),
        number("ring copies;"),
    ) {
        (Some(reads), Some(writes), Some(flushes), Some(copies)) if reads + writes > 0 => {
            Ok((reads + writes + flushes, copies))
        }
        _ => Err(Failure::new(format!(
            "no request and ring copy counts in the detach line {line:?}"
        ))),
    }
}

#[test]
fn a_disk_target_other_than_virtio0_is_refused() -> Result<(), Failure> {
    let dir = TempDir::new("storage-refused")?;
    let disk = dir.write("disk.img", &vec![0u8; 1 << 20])?;
    let config = "name = \"other\"\ntype = \"pvh\"\nmemory = 64\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\n\
                  disk = [ \"vdev=xvda, access=rw, target=guests/debian\" ]\n";
    let iso = guest_iso(&dir, "-- exit-when-idle", "other", config)?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    let line = qemu.wait_for("disk target \"guests/debian\"", boot_timeout())?;
    if !line.contains("nor a volume name") {
        return Err(qemu.failure(format!("unclear refusal: {line:?}")));
    }
    qemu.kill();
    Ok(())
}
