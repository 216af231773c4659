//! A guest's disk end to end: Debian's xen-blkfront against Dom0's blkif
//! back end, backed by the appliance's virtio disk (`target=virtio0`, the
//! whole disk). The guest makes a filesystem on /dev/xvda, writes a file
//! and syncs; the operator destroys and creates the guest again and the
//! file reads back with the same checksum; the disk image on the host
//! holds what the guest wrote.

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
    qemu.send(DETACH)?;
    qemu.send("destroy store\r")?;
    qemu.wait_for("dom0: destroyed domain 2 (store)", boot_timeout())?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    Ok(())
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
