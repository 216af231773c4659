//! Stock Debian Linux as a guest: Dom0 decompresses Debian's bzImage
//! (XZ with the x86 BCJ filter), builds a PVH guest with the busybox
//! initramfs that `scripts/fetch-guest` makes, and the kernel starts and
//! prints its banner on the Xen console. (How far it gets is the
//! measure of the Linux-guest work; whatever it does, the machine goes on
//! and Dom0 cleans up after it.)

use std::path::PathBuf;
use std::time::Duration;

use xenolith_tests::{
    EXIT_POWEROFF, Failure, Qemu, TempDir, boot_timeout, make_iso_with_modules, repo_root,
};

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
    // However far it gets today, the domain ends and Dom0 cleans up.
    qemu.wait_for(
        "dom0: domain 1 shut down",
        boot_timeout() + Duration::from_secs(60),
    )?;
    qemu.wait_for("all guests done", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}
