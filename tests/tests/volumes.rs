//! A guest's disk as a qcow2 volume of the Xenolith store: `xenolith-img`
//! builds the appliance disk and imports a `qemu-img`-made qcow2 as volume
//! `data`; a Debian guest with `format=qcow2, target=data` makes ext4 on
//! it, writes a file and syncs; destroyed and created again, it reads the
//! file back with the same checksum; after QEMU exits, the exported volume
//! passes `qemu-img check` and its raw conversion holds the marker.

use std::path::Path;

use xenolith_tests::debian::{
    DETACH, attach, destroy_with_disk, guest_iso, guest_value, linux_timeout,
    recreate_and_read_back, write_filesystem,
};
use xenolith_tests::disks::{
    DISK_TROUBLE, appliance_disk, holds_marker, img, import_qemu_qcow2, path_text, qcow2_as_raw,
    run,
};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout};

/// Written into a file on the guest's filesystem, looked for in the export.
const MARKER: &str = "XENOLITH-VOLUME-MARKER-5d21";

/// Boots the appliance (interactive) with `disk` as its virtio disk and a
/// guest `store` whose disk is volume `data` as qcow2.
fn boot(dir: &TempDir, disk: &Path) -> Result<Running, Failure> {
    let config = "name = \"store\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"format=qcow2, vdev=xvda, access=rw, target=data\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let iso = guest_iso(dir, "--", "store", config)?;
    Qemu::iso(iso).virtio_disk(disk).spawn()
}

#[test]
fn a_qcow2_volume_keeps_a_guest_filesystem_and_exports_valid() -> Result<(), Failure> {
    let dir = TempDir::new("volumes")?;
    let disk = appliance_disk(&dir, 128 << 20)?;
    import_qemu_qcow2(&disk, &dir, "data", "48M")?;

    let mut qemu = boot(&dir, &disk)?;
    qemu.wait_for(
        "dom0: disk virtio0: Xenolith store: 1 volumes",
        boot_timeout(),
    )?;
    qemu.wait_for(
        "dom0: domain 1: xvda is volume data (qcow2",
        linux_timeout(),
    )?;
    qemu.wait_for("dom0: created domain 1 (store)", linux_timeout())?;
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[store] XENOLITH-GUEST: shell", linux_timeout())?;

    attach(&mut qemu, "store", 1)?;
    let written = write_filesystem(&mut qemu, MARKER)?;
    destroy_with_disk(&mut qemu, "store", 1)?;

    recreate_and_read_back(&mut qemu, "store", 2, MARKER, &written)?;
    guest_value(
        &mut qemu,
        "umount /mnt && sync; echo \"SYN\"\"CED=$?\"",
        "SYNCED",
    )?;
    qemu.send(DETACH)?;
    qemu.send("destroy store\r")?;
    qemu.wait_for("dom0: destroyed domain 2 (store)", boot_timeout())?;
    qemu.assert_serial_lacks(DISK_TROUBLE)?;
    qemu.kill();

    // The volume is a valid qcow2 holding what the guest wrote.
    let exported = dir.path().join("exported.qcow2");
    img(xenolith_img::export(&disk, "data", &exported, false))?;
    run("qemu-img", &["check", path_text(&exported)?])?;
    let bytes = qcow2_as_raw(&exported, &dir.path().join("exported.raw"))?;
    if !holds_marker(&bytes, MARKER) {
        return Err(Failure::new(
            "the marker file's bytes are not in the exported volume",
        ));
    }
    Ok(())
}
