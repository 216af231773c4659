//! What a guest sees of the CPU and APIC beyond hypercalls: its own
//! TSC_AUX, NMIs through its virtual APIC, the refused xAPIC page; and
//! HVM guests (a PC-like start through the Linux boot protocol).

use xenolith_tests::debian::{guest_files, guest_says, linux_timeout};
use xenolith_tests::{
    EXIT_POWEROFF, Failure, Qemu, TempDir, boot_timeout, images, make_iso_with_modules,
};

#[test]
fn tsc_aux_and_self_nmis_behave_per_vcpu() -> Result<(), Failure> {
    let dir = TempDir::new("hvm-cpu")?;
    let guest = images()?.test_guest;
    let iso = make_iso_with_modules(&dir, "-- poweroff", &[(&guest, "test-guest")])?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("failed", boot_timeout())?;
    qemu.assert_serial_contains(&["test-guest: PASS tsc-aux", "test-guest: PASS nmi-self"])?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn a_guest_touching_the_xapic_page_is_stopped_with_a_clear_reason() -> Result<(), Failure> {
    let dir = TempDir::new("hvm-xapic")?;
    let guest = images()?.test_guest;
    let iso = make_iso_with_modules(&dir, "-- poweroff", &[(&guest, "test-guest touch-xapic")])?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("(d1) test-guest: ", boot_timeout())?;
    qemu.wait_for(
        "the virtual APIC is x2APIC-only, its MMIO page is not emulated",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: domain 1 shut down (crash)", boot_timeout())?;
    qemu.wait_for("all guests done", boot_timeout())?;
    // The hypervisor and Dom0 go on: the machine powers off normally.
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(&["xAPIC page: 0x"])
}

#[test]
fn debian_boots_as_an_hvm_guest_to_a_shell() -> Result<(), Failure> {
    let dir = TempDir::new("hvm-debian")?;
    let (kernel, initramfs) = guest_files()?;
    let config = dir.write(
        "hvm.cfg",
        b"name = \"hvm\"\ntype = \"hvm\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
          ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
          on_poweroff = \"destroy\"\n",
    )?;
    let iso = make_iso_with_modules(
        &dir,
        "-- exit-when-idle",
        &[
            (&config, "guest-config hvm.cfg"),
            (&kernel, "guest-file vmlinuz"),
            (&initramfs, "guest-file initramfs.cpio.gz"),
        ],
    )?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("dom0: created domain 1 (hvm)", linux_timeout())?;
    // The kernel decompressed itself (entered at code32_start) and found
    // Xen through CPUID as an HVM guest, not PVH.
    qemu.wait_for("[hvm] [    0.000000] Linux version 6.1", linux_timeout())?;
    qemu.wait_for("Booting paravirtualized kernel on Xen HVM", linux_timeout())?;
    qemu.wait_for("[hvm] XENOLITH-GUEST: shell", linux_timeout())?;
    qemu.send("console hvm\r")?;
    qemu.wait_for("attached to domain 1's console", boot_timeout())?;
    let kind = guest_says(
        &mut qemu,
        "echo \"TYPE=$(cat /sys/hypervisor/type)\"",
        "TYPE=x",
    )?;
    if !kind.contains("TYPE=xen") {
        return Err(qemu.failure(format!("/sys/hypervisor/type: {kind:?}")));
    }
    let name = guest_says(&mut qemu, "echo \"NAME=$(xenstore-read name)\"", "NAME=h")?;
    if !name.contains("NAME=hvm") {
        return Err(qemu.failure(format!("xenstore-read name: {name:?}")));
    }
    qemu.send("poweroff\r")?;
    qemu.wait_for("dom0: domain 1 (hvm) shut down (poweroff)", linux_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, linux_timeout())?;
    qemu.assert_serial_lacks(&["Booting paravirtualized kernel on Xen PVH"])
}
