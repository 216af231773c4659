//! Stock Debian Linux as a guest: Dom0 decompresses Debian's bzImage
//! (XZ with the x86 BCJ filter), builds a PVH guest with the busybox
//! initramfs that `scripts/fetch-guest` makes, and the kernel starts,
//! prints its banner on the Xen console, finds Xen and its x2APIC, and
//! sets up its memory. How far it gets is the measure of the Linux-guest
//! work (today it stops where it needs ACPI tables to pick its APIC
//! driver); whatever it does, the hypervisor and Dom0 go on.

use std::path::PathBuf;
use std::time::Duration;

use xenolith_tests::{Failure, Qemu, TempDir, boot_timeout, make_iso_with_modules, repo_root};

/// The kernel and initramfs `scripts/fetch-guest --poweroff` leaves.
fn guest_files() -> Result<(PathBuf, PathBuf), Failure> {
    let dir = repo_root().join("target").join("guest");
    let kernel = dir.join("vmlinuz");
    let initramfs = dir.join("initramfs-poweroff.cpio.gz");
    for file in [&kernel, &initramfs] {
        if !file.is_file() {
            return Err(Failure::new(format!(
                "{} is missing: run scripts/fetch-guest --poweroff (scripts/test does)",
                file.display()
            )));
        }
    }
    Ok((kernel, initramfs))
}

#[test]
fn a_stock_debian_kernel_starts_as_a_pvh_guest() -> Result<(), Failure> {
    let (kernel, initramfs) = guest_files()?;
    let dir = TempDir::new("debian-linux")?;
    let iso = make_iso_with_modules(
        &dir,
        "-- poweroff",
        &[
            (&kernel, "linux memory=256 console=hvc0 earlyprintk=xen"),
            (&initramfs, "linux-initrd"),
        ],
    )?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("dom0: Linux image", boot_timeout())?;
    qemu.wait_for("(d1) [    0.000000] Linux version 6.1", boot_timeout())?;
    qemu.wait_for("Command line: console=hvc0 earlyprintk=xen", boot_timeout())?;
    qemu.wait_for("BIOS-e820", boot_timeout())?;
    qemu.wait_for("Hypervisor detected: Xen HVM", boot_timeout())?;
    qemu.wait_for(
        "x2apic: enabled by BIOS, switching to x2apic ops",
        boot_timeout(),
    )?;
    qemu.wait_for("Initmem setup node 0", boot_timeout())?;
    // The machine stays up whatever the guest does next.
    std::thread::sleep(Duration::from_secs(1));
    if !qemu.is_running()? {
        return Err(qemu.failure("QEMU stopped while the Linux guest ran"));
    }
    Ok(())
}
