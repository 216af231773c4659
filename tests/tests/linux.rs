//! Stock Debian Linux as a guest: Dom0 decompresses Debian's bzImage
//! (XZ with the x86 BCJ filter), builds a PVH guest with ACPI tables and
//! the busybox initramfs that `scripts/fetch-guest` makes; the unmodified
//! kernel boots on Xen PVH (x2APIC, event channels, grant tables, Xen
//! clock), runs /init, which powers it off, and Dom0 destroys it with all
//! its memory returned.

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
fn a_stock_debian_kernel_boots_as_a_pvh_guest_to_init_and_powers_off() -> Result<(), Failure> {
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
    qemu.wait_for("Booting kernel on Xen PVH", boot_timeout())?;
    qemu.wait_for(
        "xen:events: Xen HVM callback vector for event delivery is enabled",
        boot_timeout(),
    )?;
    qemu.wait_for("Grant tables using version 1 layout", boot_timeout())?;
    qemu.wait_for(
        "Run /init as init process",
        boot_timeout() + Duration::from_secs(60),
    )?;
    // The initramfs powers off; Linux halts every vCPU with interrupts
    // off, which is a power-off; Dom0 destroys the domain.
    qemu.wait_for("reboot: System halted", boot_timeout())?;
    qemu.wait_for("dom0: domain 1 shut down (poweroff)", boot_timeout())?;
    let report = qemu.wait_for("all guests done", boot_timeout())?;
    let numbers: Vec<&str> = report
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .collect();
    if numbers.len() < 2 || numbers[numbers.len() - 2] != numbers[numbers.len() - 1] {
        return Err(qemu.failure(format!(
            "memory not returned after the Linux guest: {report:?}"
        )));
    }
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}
