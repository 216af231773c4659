//! Dom0 crashes: an exception in Dom0 or a triple fault is reported on the
//! serial console with the faulting RIP, and the machine stops with QEMU
//! status 35 (or resets, with `dom0_crash=reboot`).

use xenolith_tests::{EXIT_DOM0_CRASHED, EXIT_RESET, Failure, Qemu, boot_timeout};

#[test]
fn dom0_page_fault_is_reported_and_stops_the_machine() -> Result<(), Failure> {
    let mut qemu = Qemu::built_kernel("-- fault=page")?.spawn()?;

    qemu.wait_for("dom0 ready", boot_timeout())?;
    qemu.wait_for("dom0: exception", boot_timeout())?;
    qemu.wait_for("dom0 crashed", boot_timeout())?;
    qemu.expect_exit(EXIT_DOM0_CRASHED, boot_timeout())?;
    if qemu.serial_line_with(&["RIP"]).is_none() {
        return Err(qemu.failure("the exception report names no RIP"));
    }
    Ok(())
}

#[test]
fn dom0_triple_fault_is_reported_and_stops_the_machine() -> Result<(), Failure> {
    let mut qemu = Qemu::built_kernel("-- fault=triple")?.spawn()?;

    qemu.wait_for("dom0 ready", boot_timeout())?;
    qemu.wait_for("dom0 triple fault", boot_timeout())?;
    qemu.expect_exit(EXIT_DOM0_CRASHED, boot_timeout())?;
    qemu.assert_serial_contains(&["RIP"])
}

#[test]
fn dom0_crash_with_reboot_policy_resets_the_machine() -> Result<(), Failure> {
    let mut qemu = Qemu::built_kernel("dom0_crash=reboot -- fault=page")?.spawn()?;

    qemu.wait_for("dom0: exception", boot_timeout())?;
    qemu.wait_for("dom0 crashed", boot_timeout())?;
    // QEMU runs with -no-reboot: a reset ends it with status 0.
    qemu.expect_exit(EXIT_RESET, boot_timeout())
}
