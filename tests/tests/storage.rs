//! A guest's disk end to end: Debian's xen-blkfront against Dom0's blkif
//! back end, backed by the appliance's virtio disk (`target=virtio0`, the
//! whole disk). The guest makes a filesystem on /dev/xvda, writes a file
//! and syncs; the operator destroys and creates the guest again and the
//! file reads back with the same checksum; the disk image on the host
//! holds what the guest wrote.

use std::path::Path;
use std::process::Command;

use xenolith_tests::debian::{DETACH, guest_files, linux_timeout};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules};

/// The appliance disk: 64 MiB.
const DISK_BYTES: usize = 64 << 20;
/// Written into a file on the guest's filesystem, looked for in the image.
const MARKER: &str = "XENOLITH-STORAGE-MARKER-7f3a";
const TROUBLE: &[&str] = &[
    "dom0 crashed",
    "panic",
    "refused a request",
    "request failed",
    "I/O error",
    "EXT4-fs error",
];

/// Boots the appliance (interactive: destroy must not power it off) with
/// `disk` as its virtio disk and a guest `store` whose xl.cfg gives it
/// that disk as xvda.
fn boot(dir: &TempDir, disk: &Path) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let config = "name = \"store\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"vdev=xvda, access=rw, target=virtio0\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let config = dir.write("store.cfg", config.as_bytes())?;
    let modules: [(&Path, &str); 3] = [
        (&config, "guest-config store.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let iso = make_iso_with_modules(dir, "--", &modules)?;
    Qemu::iso(iso)
        .arg("-drive")
        .arg(format!(
            "file={},if=none,format=raw,id=disk0",
            disk.display()
        ))
        .arg("-device")
        .arg("virtio-blk-pci,drive=disk0")
        .spawn()
}

/// Types `command` into the attached guest shell and waits for the line
/// with `label=`; the command must spell the label split in two quoted
/// halves so that its echo does not match. Returns what follows `label=`.
fn guest_value(qemu: &mut Running, command: &str, label: &str) -> Result<String, Failure> {
    qemu.send(&format!("{command}\r"))?;
    let line = qemu.wait_for(&format!("{label}="), linux_timeout())?;
    let value = line
        .split(&format!("{label}="))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(value)
}

fn is_md5(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
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

fn attach(qemu: &mut Running, domain: u16) -> Result<(), Failure> {
    qemu.send("console store\r")?;
    qemu.wait_for(
        &format!("attached to domain {domain}'s console"),
        boot_timeout(),
    )?;
    // A fresh prompt, so the next command starts on a clean line.
    qemu.send("\r")?;
    Ok(())
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

    attach(&mut qemu, 1)?;
    let written = guest_value(
        &mut qemu,
        &format!(
            "mke2fs -q /dev/xvda && mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt && \
             dd if=/dev/urandom of=/mnt/data bs=4096 count=512 2>/dev/null && \
             echo {MARKER} >/mnt/marker && sync && \
             echo \"WRI\"\"TTEN=$(md5sum </mnt/data | cut -c1-32)\""
        ),
        "WRITTEN",
    )?;
    if !is_md5(&written) {
        return Err(qemu.failure(format!("writing the file failed: {written:?}")));
    }
    let unmounted = guest_value(
        &mut qemu,
        "umount /mnt; echo \"UNMOUN\"\"TED=$?\"",
        "UNMOUNTED",
    )?;
    if unmounted != "0" {
        return Err(qemu.failure(format!("umount failed: {unmounted:?}")));
    }
    qemu.send(DETACH)?;
    qemu.send("destroy store\r")?;
    qemu.wait_for("dom0: domain 1: xvda detached", boot_timeout())?;
    qemu.wait_for("dom0: destroyed domain 1 (store)", boot_timeout())?;

    // What the guest wrote is in the image on the host.
    let image = std::fs::read(&disk)
        .map_err(|error| Failure::new(format!("cannot read the disk image: {error}")))?;
    if !image
        .windows(MARKER.len())
        .any(|window| window == MARKER.as_bytes())
    {
        return Err(qemu.failure("the marker file's bytes are not in the disk image"));
    }

    // A new domain with the same config reads the same file back.
    qemu.send("create store\r")?;
    qemu.wait_for("dom0: created domain 2 (store)", linux_timeout())?;
    qemu.wait_for("dom0: domain 2: xvda connected", linux_timeout())?;
    qemu.wait_for("[store] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, 2)?;
    let read_back = guest_value(
        &mut qemu,
        &format!(
            "mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt && grep -q {MARKER} /mnt/marker && \
             echo \"READ\"\"BACK=$(md5sum </mnt/data | cut -c1-32)\""
        ),
        "READBACK",
    )?;
    if read_back != written {
        return Err(qemu.failure(format!(
            "the file changed across destroy and create: wrote {written}, read {read_back}"
        )));
    }

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
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}

#[test]
fn a_disk_target_other_than_virtio0_is_refused() -> Result<(), Failure> {
    let dir = TempDir::new("storage-refused")?;
    let disk = dir.write("disk.img", &vec![0u8; 1 << 20])?;
    let (kernel, initramfs) = guest_files()?;
    let config = "name = \"other\"\ntype = \"pvh\"\nmemory = 64\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\n\
                  disk = [ \"vdev=xvda, access=rw, target=guests/debian\" ]\n";
    let config = dir.write("other.cfg", config.as_bytes())?;
    let modules: [(&Path, &str); 3] = [
        (&config, "guest-config other.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let iso = make_iso_with_modules(&dir, "-- exit-when-idle", &modules)?;
    let mut qemu = Qemu::iso(iso)
        .arg("-drive")
        .arg(format!(
            "file={},if=none,format=raw,id=disk0",
            disk.display()
        ))
        .arg("-device")
        .arg("virtio-blk-pci,drive=disk0")
        .spawn()?;
    let line = qemu.wait_for("disk target \"guests/debian\"", boot_timeout())?;
    if !line.contains("nor a volume name") {
        return Err(qemu.failure(format!("unclear refusal: {line:?}")));
    }
    qemu.kill();
    Ok(())
}
