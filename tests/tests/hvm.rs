//! What a guest sees of the CPU and APIC beyond hypercalls: its own
//! TSC_AUX, NMIs through its virtual APIC, the refused xAPIC page; and
//! HVM guests (a PC-like start through the Linux boot protocol).

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
