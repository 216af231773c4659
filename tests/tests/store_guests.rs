//! Guests started from the appliance disk alone: `xenolith-img` puts
//! Debian's kernel and initramfs, two guest configs, an appliance config
//! and a qcow2 data volume on the disk; the ISO has no guest modules. Dom0
//! starts the guest the appliance config lists (and not the other), from
//! the kernel and initramfs volumes, with its disk on the data volume, and
//! the guest reaches its shell and sees its disk.

use std::path::Path;

use xenolith_img::VolumeKind;
use xenolith_tests::debian::{attach, guest_files, guest_value, linux_timeout};
use xenolith_tests::disks::{appliance_disk, img};
use xenolith_tests::{Failure, Qemu, TempDir, boot_timeout, make_iso};

fn import(disk: &Path, name: &str, file: &Path, kind: VolumeKind) -> Result<(), Failure> {
    img(xenolith_img::import(disk, name, file, kind, false)).map(drop)
}

#[test]
fn an_appliance_disk_made_with_xenolith_img_alone_starts_its_guests() -> Result<(), Failure> {
    let dir = TempDir::new("store-guests")?;
    let disk = appliance_disk(&dir, 128 << 20)?;
    let (kernel, initramfs) = guest_files()?;
    import(&disk, "debian-vmlinuz", &kernel, VolumeKind::Kernel)?;
    import(&disk, "busybox-initrd", &initramfs, VolumeKind::Initrd)?;
    img(xenolith_img::new_qcow2(&disk, "data", 16 << 20))?;
    let shell = dir.write(
        "shell.cfg",
        b"name = \"shell\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"debian-vmlinuz\"\n\
          ramdisk = \"busybox-initrd\"\nextra = \"console=hvc0\"\n\
          disk = [ \"format=qcow2, vdev=xvda, access=rw, target=data\" ]\n",
    )?;
    import(&disk, "shell.cfg", &shell, VolumeKind::Config)?;
    // Defined but not listed by the appliance config: not started.
    let spare = dir.write(
        "spare.cfg",
        b"name = \"spare\"\ntype = \"pvh\"\nmemory = 128\nkernel = \"debian-vmlinuz\"\n",
    )?;
    import(&disk, "spare.cfg", &spare, VolumeKind::Config)?;
    let appliance = dir.write("appliance", b"guests = [ \"shell\" ]\n")?;
    import(&disk, "appliance", &appliance, VolumeKind::Config)?;

    // The tool agrees the disk is whole and its configs resolve.
    let report = img(xenolith_img::check(&disk))?;
    if !report.contains("volume shell.cfg: config of guest shell") {
        return Err(Failure::new(format!(
            "check did not vouch for shell.cfg:\n{report}"
        )));
    }
    let iso = make_iso(&dir, "")?;
    let mut qemu = Qemu::iso(iso).virtio_disk(&disk).spawn()?;
    qemu.wait_for(
        "dom0: disk virtio0: Xenolith store: 6 volumes",
        boot_timeout(),
    )?;
    qemu.wait_for(
        "dom0: volume shell.cfg: guest shell (kernel and ramdisk from the store)",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: created domain 1 (shell)", linux_timeout())?;
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[shell] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "shell", 1)?;
    let sectors = guest_value(
        &mut qemu,
        "echo \"SECT\"\"ORS=$(cat /sys/block/xvda/size)\"",
        "SECTORS",
    )?;
    if sectors != (16u64 * 2048).to_string() {
        return Err(qemu.failure(format!(
            "the guest's xvda has {sectors:?} sectors, not the data volume's 32768"
        )));
    }
    qemu.assert_serial_contains(&["dom0: volume spare.cfg: guest spare"])?;
    qemu.assert_serial_lacks(&[
        "created domain 2",
        "dom0 crashed",
        "panic",
        "cannot create",
        "no guest config defines",
    ])?;
    qemu.kill();
    Ok(())
}
