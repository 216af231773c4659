//! Nothing a guest wrote and flushed is lost when the machine dies: a
//! Debian guest on a qcow2 volume makes ext4, writes a file, runs `sync`
//! and prints a marker; QEMU is killed (SIGKILL) the moment the marker
//! shows. `xenolith-img check` then finds the appliance disk consistent
//! (GPT, the store's metadata, the qcow2 image's refcounts) and so does
//! `qemu-img check` on the exported volume; the appliance boots again from
//! the same disk file and the guest reads the file back by checksum. A
//! second test kills QEMU in the middle of a burst of writes that grows
//! the qcow2 image (and so the volume, a store metadata update): the disk
//! still checks consistent (leaked clusters and a torn older metadata copy
//! are allowed, as a crash may leave them) and the guest boots from it
//! again.

use std::path::Path;

use xenolith_tests::debian::{attach, guest_iso, guest_value, is_md5, linux_timeout, read_back};
use xenolith_tests::disks::{DISK_TROUBLE, appliance_disk, img, qemu_img_check_after_crash};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout};

const MARKER: &str = "XENOLITH-DURABLE-MARKER-7c03";

/// An ISO whose Dom0 starts guest `crash` with volume `data` (qcow2) as
/// its xvda.
fn iso(dir: &TempDir) -> Result<std::path::PathBuf, Failure> {
    let config = "name = \"crash\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"format=qcow2, vdev=xvda, access=rw, target=data\" ]\n\
                  on_poweroff = \"destroy\"\n";
    guest_iso(dir, "--", "crash", config)
}

/// Boots the ISO with `disk` as the virtio disk and waits for the guest's
/// shell with its disk connected; attaches to it.
fn boot(iso: &Path, disk: &Path) -> Result<Running, Failure> {
    let mut qemu = Qemu::iso(iso).virtio_disk(disk).spawn()?;
    qemu.wait_for(
        "dom0: disk virtio0: Xenolith store: 1 volumes",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: created domain 1 (crash)", linux_timeout())?;
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[crash] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "crash", 1)?;
    Ok(qemu)
}

/// An appliance disk with an empty 48 MiB qcow2 volume `data`.
fn disk_with_data_volume(dir: &TempDir) -> Result<std::path::PathBuf, Failure> {
    let disk = appliance_disk(dir, 128 << 20)?;
    img(xenolith_img::new_qcow2(&disk, "data", 48 << 20))?;
    Ok(disk)
}

/// After QEMU was killed: `xenolith-img check` of the appliance disk must
/// pass, and `qemu-img check` of volume `data` exported must find it clean
/// or with leaked clusters only (`what` names the moment in the failure).
/// Returns `xenolith-img check`'s report.
fn check_after_kill(dir: &TempDir, disk: &Path, what: &str) -> Result<String, Failure> {
    let report = img(xenolith_img::check(disk))?;
    let exported = dir.path().join("data.qcow2");
    img(xenolith_img::export(disk, "data", &exported, false))?;
    qemu_img_check_after_crash(
        &exported,
        what,
        &format!("xenolith-img check said:\n{report}"),
    )?;
    Ok(report)
}

#[test]
fn data_synced_before_qemu_is_killed_survives_and_the_disk_checks_clean() -> Result<(), Failure> {
    let dir = TempDir::new("durability")?;
    let disk = disk_with_data_volume(&dir)?;
    let iso = iso(&dir)?;

    let mut qemu = boot(&iso, &disk)?;
    // The checksum is taken before `sync`, so the marker line only shows
    // once sync has returned; QEMU dies right after it.
    let written = guest_value(
        &mut qemu,
        &format!(
            "mke2fs -q /dev/xvda && mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt && \
             dd if=/dev/urandom of=/mnt/data bs=4096 count=512 2>/dev/null && \
             echo {MARKER} >/mnt/marker && S=$(md5sum </mnt/data | cut -c1-32) && sync && \
             echo \"DURA\"\"BLE=$S\""
        ),
        "DURABLE",
    )?;
    qemu.kill();
    if !is_md5(&written) {
        return Err(qemu.failure(format!("writing the file failed: {written:?}")));
    }
    qemu.assert_serial_lacks(DISK_TROUBLE)?;

    // The store's metadata and the image inside are consistent.
    let report = check_after_kill(&dir, &disk, "of the volume after the kill")?;
    if !report.contains("volume data: qcow2:") {
        return Err(Failure::new(format!(
            "the check did not look at the qcow2 volume:\n{report}"
        )));
    }

    // The same disk file boots again and the file is there.
    let mut qemu = boot(&iso, &disk)?;
    let read_back = read_back(&mut qemu, MARKER)?;
    if read_back != written {
        return Err(qemu.failure(format!(
            "the synced file changed across the kill: wrote {written}, read {read_back}"
        )));
    }
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    img(xenolith_img::check(&disk))?;
    Ok(())
}

#[test]
fn a_kill_in_the_middle_of_writes_leaves_a_consistent_disk() -> Result<(), Failure> {
    let dir = TempDir::new("durability-burst")?;
    let disk = disk_with_data_volume(&dir)?;
    let iso = iso(&dir)?;

    let mut qemu = boot(&iso, &disk)?;
    // Writes all over the disk, allocating clusters and growing the
    // volume as they go; QEMU dies while they run.
    guest_value(
        &mut qemu,
        "(i=0; while [ $i -lt 40 ]; do dd if=/dev/urandom of=/dev/xvda bs=64k count=8 \
         seek=$(( (i * 37) % 90 * 8 )) oflag=direct 2>/dev/null; i=$((i+1)); done) & \
         sleep 2; echo \"BUR\"\"ST=$(cat /sys/block/xvda/stat | tr -s ' ' | cut -d' ' -f6)\"",
        "BURST",
    )?;
    qemu.kill();
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    let grown = qemu
        .serial()
        .lines()
        .any(|line| line.contains("dom0: volume grown to"));

    let report = check_after_kill(&dir, &disk, "after a kill mid-write")?;
    eprintln!(
        "durability: killed mid-write (volume grown before the kill: {grown}); check said:\n{report}"
    );

    // The appliance still boots from the disk and serves the volume.
    let mut qemu = boot(&iso, &disk)?;
    guest_value(
        &mut qemu,
        "dd if=/dev/xvda of=/dev/null bs=1M count=48 iflag=direct 2>/dev/null; echo \"REA\"\"D=$?\"",
        "READ",
    )
    .and_then(|status| {
        if status == "0" {
            Ok(())
        } else {
            Err(Failure::new(format!("reading the disk back failed: {status}")))
        }
    })?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    Ok(())
}
