//! Discard on a qcow2 volume: a Debian guest sees `discard-granularity`
//! (the 64 KiB cluster) on its xvda. In a first boot it makes ext4, keeps
//! a 2 MiB file, writes a 24 MiB file, syncs and deletes it without
//! trimming; the exported image still holds the deleted file's clusters.
//! In a second boot from the same disk, `fstrim` runs while a direct-I/O
//! write of another file is in flight; that file reads back by checksum
//! with the page cache dropped, and, with the kept file, after destroy and
//! create; it is deleted and trimmed too. The exported image then has at
//! least 20 MiB fewer allocated clusters, `qemu-img check` passes, and
//! `xenolith-img check` finds the appliance disk consistent. A read-only
//! qcow2 disk and one marked `no-discard` take no discards in the guest.

use std::path::Path;

use xenolith_tests::debian::{
    DETACH, attach, destroy_with_disk, guest_files, guest_iso, guest_value, is_md5, linux_timeout,
    recreate_and_read_back, write_filesystem,
};
use xenolith_tests::disks::{DISK_TROUBLE, appliance_disk, img, import_qemu_qcow2, path_text, run};
use xenolith_tests::{
    Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules, number_after,
};

/// In the kept file's neighbour, checked after destroy and create.
const MARKER: &str = "XENOLITH-DISCARD-MARKER-4b90";
/// qemu-img's default cluster size, which Dom0 offers as the granularity.
const CLUSTER: u64 = 64 << 10;

/// Boots the appliance with `disk` as its virtio disk and guest `trim` on
/// volume `data` (qcow2); attaches to the guest's console.
fn boot(dir: &TempDir, disk: &Path) -> Result<Running, Failure> {
    let config = "name = \"trim\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"format=qcow2, vdev=xvda, access=rw, target=data\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let iso = guest_iso(dir, "--", "trim", config)?;
    let mut qemu = Qemu::iso(iso).virtio_disk(disk).spawn()?;
    qemu.wait_for(
        "dom0: disk virtio0: Xenolith store: 1 volumes",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[trim] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "trim", 1)?;
    Ok(qemu)
}

/// Runs `command` in the guest and fails unless it printed `LABEL=0`.
fn guest_ok(qemu: &mut Running, command: &str, label: &str) -> Result<(), Failure> {
    let (head, tail) = label.split_at(2);
    let status = guest_value(
        qemu,
        &format!("{command}; echo \"{head}\"\"{tail}=$?\""),
        label,
    )?;
    if status != "0" {
        return Err(qemu.failure(format!("{command:?} failed: {status:?}")));
    }
    Ok(())
}

/// Destroys the guest, stops QEMU, and returns volume `data`'s allocated
/// clusters as `qemu-img check` counts them (which must pass).
fn allocated_after(
    mut qemu: Running,
    dir: &TempDir,
    disk: &Path,
    domain: u16,
    name: &str,
) -> Result<(u64, String), Failure> {
    qemu.send(DETACH)?;
    qemu.send("destroy trim\r")?;
    let detached = qemu.wait_for(
        &format!("dom0: domain {domain}: xvda detached"),
        boot_timeout(),
    )?;
    qemu.wait_for(
        &format!("dom0: destroyed domain {domain} (trim)"),
        boot_timeout(),
    )?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    img(xenolith_img::check(disk))?;
    let exported = dir.path().join(name);
    img(xenolith_img::export(disk, "data", &exported, false))?;
    let report = run(
        "qemu-img",
        &["check", "--output=json", path_text(&exported)?],
    )?;
    let clusters = number_after(&report, "\"allocated-clusters\":")
        .ok_or_else(|| Failure::new(format!("qemu-img check said:\n{report}")))?;
    Ok((clusters, detached))
}

#[test]
fn fstrim_frees_a_deleted_files_clusters_and_keeps_the_rest() -> Result<(), Failure> {
    let dir = TempDir::new("discard")?;
    let disk = appliance_disk(&dir, 128 << 20)?;
    import_qemu_qcow2(&disk, &dir, "data", "48M")?;

    // First boot: the deleted file's clusters stay allocated (no trim).
    let mut qemu = boot(&dir, &disk)?;
    let granularity = guest_value(
        &mut qemu,
        "echo \"GRA\"\"IN=$(cat /sys/block/xvda/queue/discard_granularity) \
         $(cat /sys/block/xvda/queue/discard_max_bytes)\"",
        "GRAIN",
    )?;
    let mut sizes = granularity.split(' ').map(str::parse::<u64>);
    match (sizes.next(), sizes.next()) {
        (Some(Ok(CLUSTER)), Some(Ok(most))) if most > 0 => {}
        _ => {
            return Err(qemu.failure(format!(
                "xvda's discard granularity and limit are {granularity:?}, not {CLUSTER} and more than 0"
            )));
        }
    }
    let written = write_filesystem(&mut qemu, MARKER)?;
    guest_ok(
        &mut qemu,
        "mount -t ext4 /dev/xvda /mnt && dd if=/dev/urandom of=/mnt/big bs=1M count=24 \
         2>/dev/null && sync && rm /mnt/big && sync && umount /mnt",
        "BIG",
    )?;
    let (before, _) = allocated_after(qemu, &dir, &disk, 1, "before.qcow2")?;

    // Second boot: fstrim while another file is being written.
    let mut qemu = boot(&dir, &disk)?;
    let source = guest_value(
        &mut qemu,
        "dd if=/dev/urandom of=/tmp/source bs=64k count=128 2>/dev/null; \
         echo \"SOUR\"\"CE=$(md5sum </tmp/source | cut -c1-32)\"",
        "SOURCE",
    )?;
    if !is_md5(&source) {
        return Err(qemu.failure(format!("making the source failed: {source:?}")));
    }
    guest_ok(
        &mut qemu,
        "mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt",
        "MOUNT",
    )?;
    let started = std::time::Instant::now();
    let trimmed = guest_value(
        &mut qemu,
        "(dd if=/tmp/source of=/mnt/busy bs=64k oflag=direct 2>/dev/null; echo done >/tmp/busy) & \
         sleep 0.2; T=$(fstrim -v /mnt 2>&1); wait; \
         echo \"TRIM\"\"MED=$(cat /tmp/busy) $T\"",
        "TRIMMED",
    )?;
    let trim_seconds = started.elapsed().as_secs_f64();
    let trimmed_bytes = trimmed
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|bytes| bytes.parse::<u64>().ok());
    if !trimmed.starts_with("done ") || trimmed_bytes.is_none_or(|bytes| bytes < 20 << 20) {
        return Err(qemu.failure(format!(
            "fstrim with a write in flight said {trimmed:?} (at least 20 MiB expected)"
        )));
    }
    let busy = guest_value(
        &mut qemu,
        "sync && echo 3 >/proc/sys/vm/drop_caches && \
         echo \"BU\"\"SY=$(md5sum </mnt/busy | cut -c1-32)\"",
        "BUSY",
    )?;
    if busy != source {
        return Err(qemu.failure(format!(
            "the file written during fstrim reads back as {busy}, not {source}"
        )));
    }
    guest_ok(&mut qemu, "umount /mnt", "UNMOUNT")?;
    destroy_with_disk(&mut qemu, "trim", 1)?;

    // Both files survive destroy and create; then the second is trimmed.
    recreate_and_read_back(&mut qemu, "trim", 2, MARKER, &written)?;
    let busy = guest_value(
        &mut qemu,
        "echo \"AGA\"\"IN=$(md5sum </mnt/busy | cut -c1-32)\"",
        "AGAIN",
    )?;
    if busy != source {
        return Err(qemu.failure(format!(
            "the file written during fstrim reads back as {busy} after create, not {source}"
        )));
    }
    guest_ok(
        &mut qemu,
        "rm /mnt/busy && fstrim /mnt && umount /mnt",
        "SECOND",
    )?;
    let (after, detached) = allocated_after(qemu, &dir, &disk, 2, "after.qcow2")?;
    // "... F flushes, D discards, E errors; ...": the number before "discards".
    let discards = detached
        .split(" discards,")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or(0);
    eprintln!(
        "discard: {before} clusters allocated before fstrim, {after} after; \
         first fstrim (beside an 8 MiB direct write) said {trimmed:?} in {trim_seconds:.1} s; \
         domain 2 sent {discards} discards"
    );
    if discards == 0 {
        return Err(Failure::new(format!(
            "the detach line counts no discards: {detached}"
        )));
    }
    let freed = before.saturating_sub(after) * CLUSTER;
    if freed < 20 << 20 {
        return Err(Failure::new(format!(
            "fstrim freed {freed} bytes of clusters ({before} allocated before, {after} after)"
        )));
    }
    Ok(())
}

#[test]
fn read_only_and_no_discard_qcow2_disks_offer_no_discard() -> Result<(), Failure> {
    let dir = TempDir::new("discard-off")?;
    let disk = appliance_disk(&dir, 128 << 20)?;
    import_qemu_qcow2(&disk, &dir, "shelf", "16M")?;
    import_qemu_qcow2(&disk, &dir, "plain", "16M")?;
    let guest = |name: &str, entry: &str| {
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nmemory = 128\nkernel = \"vmlinuz\"\n\
             ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
             disk = [ \"{entry}\" ]\non_poweroff = \"destroy\"\n"
        )
    };
    let reader = guest("reader", "format=qcow2, vdev=xvda, access=ro, target=shelf");
    let plain = guest(
        "plain",
        "format=qcow2, vdev=xvda, access=rw, no-discard, target=plain",
    );
    let reader = dir.write("reader.cfg", reader.as_bytes())?;
    let plain = dir.write("plain.cfg", plain.as_bytes())?;
    let (kernel, initramfs) = guest_files()?;
    // A guest's files follow its config.
    let modules: [(&Path, &str); 6] = [
        (&reader, "guest-config reader.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
        (&plain, "guest-config plain.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let iso = make_iso_with_modules(&dir, "--", &modules)?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    qemu.wait_for_all(
        &[
            "[reader] XENOLITH-GUEST: shell",
            "[plain] XENOLITH-GUEST: shell",
        ],
        linux_timeout(),
    )?;
    for name in ["reader", "plain"] {
        let created = qemu
            .serial_line_with(&["dom0: created domain", &format!("({name})")])
            .unwrap_or_default();
        let domain = number_after(&created, "created domain")
            .and_then(|domain| u16::try_from(domain).ok())
            .ok_or_else(|| qemu.failure(format!("{name} was not created: {created:?}")))?;
        attach(&mut qemu, name, domain)?;
        let limit = guest_value(
            &mut qemu,
            "echo \"LIM\"\"IT=$(cat /sys/block/xvda/queue/discard_max_bytes)\"",
            "LIMIT",
        )?;
        if limit != "0" {
            return Err(qemu.failure(format!(
                "{name}'s xvda takes discards of up to {limit:?} bytes; none were offered"
            )));
        }
        qemu.send(DETACH)?;
    }
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();
    Ok(())
}
