//! Normal boots: from the GRUB ISO and with QEMU's `-kernel`, the appliance
//! reaches "dom0 ready", reports its boot timing and powers off on request;
//! left alone, Dom0 stays up and idles without spinning.

use std::thread;
use std::time::{Duration, Instant};

use xenolith_tests::{
    EXIT_POWEROFF, Failure, Qemu, Running, TempDir, boot_timeout, images, make_iso,
    millisecond_figures,
};

/// Lines that must never appear in a healthy boot.
const TROUBLE: &[&str] = &["fatal:", "dom0 crashed", "dom0 triple fault", "panic"];

/// Checks the boot timing a user sees once QEMU has exited: the ready line
/// gives the time since hypervisor entry in ms, a timing line gives
/// "hypervisor entry -> dom0 entry" in ms, and the two agree.
fn check_timing(qemu: &Running, ready_line: &str) -> Result<(), Failure> {
    let ready_figures = millisecond_figures(ready_line);
    let Some(&ready_ms) = ready_figures.first() else {
        return Err(qemu.failure(format!("no ms figure in the ready line {ready_line:?}")));
    };
    let Some(entry_line) = qemu.serial_line_with(&["hypervisor entry -> dom0 entry"]) else {
        return Err(qemu.failure("no \"hypervisor entry -> dom0 entry\" timing line"));
    };
    let entry_figures = millisecond_figures(&entry_line);
    let Some(&entry_ms) = entry_figures.first() else {
        return Err(qemu.failure(format!("no ms figure in the timing line {entry_line:?}")));
    };
    let plausible = |ms: f64| ms.is_finite() && (0.0..60_000.0).contains(&ms);
    if !plausible(ready_ms) || !plausible(entry_ms) {
        return Err(qemu.failure(format!(
            "implausible timing: ready after {ready_ms} ms, dom0 entry after {entry_ms} ms"
        )));
    }
    // Dom0 is entered before it is ready; allow a millisecond of rounding.
    if ready_ms + 1.0 < entry_ms {
        return Err(qemu.failure(format!(
            "Dom0 ready ({ready_ms} ms) before Dom0 entry ({entry_ms} ms)"
        )));
    }
    Ok(())
}

#[test]
fn iso_boot_reaches_dom0_ready_and_powers_off() -> Result<(), Failure> {
    let dir = TempDir::new("iso-poweroff")?;
    let iso = make_iso(&dir, "-- poweroff")?;
    let mut qemu = Qemu::iso(iso).spawn()?;

    let ready = qemu.wait_for("dom0 ready", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    check_timing(&qemu, &ready)?;
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn kernel_boot_reaches_dom0_ready_and_powers_off() -> Result<(), Failure> {
    let mut qemu = Qemu::built_kernel("dom0_mem=128M -- poweroff")?.spawn()?;

    let ready = qemu.wait_for("dom0 ready", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    check_timing(&qemu, &ready)?;
    if !ready.contains("128 MiB") {
        return Err(qemu.failure(format!(
            "dom0_mem=128M, but the ready line says {ready:?} (expected \"128 MiB\")"
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn without_the_debug_exit_device_poweroff_goes_through_acpi() -> Result<(), Failure> {
    // As on hardware: no isa-debug-exit, so the hypervisor writes the ACPI
    // S5 sleep type to PM1a; QEMU powers off and exits with status 0.
    let mut qemu = Qemu::built_kernel("-- poweroff")?
        .without_debug_exit()
        .spawn()?;
    qemu.wait_for("ACPI: power off through port", boot_timeout())?;
    qemu.wait_for("dom0 powered off", boot_timeout())?;
    qemu.expect_exit(0, boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn idle_dom0_stays_up_without_spinning() -> Result<(), Failure> {
    // The plain ISO, as `scripts/run` boots it: no poweroff.
    let mut qemu = Qemu::iso(images()?.iso).spawn()?;
    qemu.wait_for("dom0 ready", boot_timeout())?;

    let window = Duration::from_secs(2);
    let cpu_before = qemu.cpu_time()?;
    let wall_before = Instant::now();
    thread::sleep(window);
    if !qemu.is_running()? {
        let status = qemu.wait_exit(Duration::from_secs(1))?;
        return Err(qemu.failure(format!(
            "QEMU exited with status {status} within {} s of \"dom0 ready\"; expected Dom0 to stay up",
            window.as_secs()
        )));
    }
    let cpu = qemu.cpu_time()?.saturating_sub(cpu_before);
    let wall = wall_before.elapsed();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    if share >= 0.5 {
        return Err(qemu.failure(format!(
            "idle Dom0 kept QEMU busy: {:.2} s of CPU in {:.2} s ({:.0} %); an idle Dom0 must block, not spin",
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
            share * 100.0
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}
