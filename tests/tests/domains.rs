//! Guests: Dom0 builds a PVH guest from a boot module, the guest runs and
//! prints on the console, shuts down, and Dom0 destroys it with all its
//! memory returned; domains come and go without leaking memory.

use std::time::Duration;

use xenolith_tests::{
    EXIT_POWEROFF, Failure, Qemu, TempDir, boot_timeout, images, make_iso_with_modules,
    number_after,
};

/// Checks a Dom0 report "free memory N KiB before, M KiB after".
fn check_no_leak(qemu: &xenolith_tests::Running, line: &str) -> Result<(), Failure> {
    let before = number_after(line, "free memory");
    let after = number_after(line, "before,");
    match (before, after) {
        (Some(before), Some(after)) if before == after && before > 0 => Ok(()),
        _ => Err(qemu.failure(format!("memory leaked or unreadable report: {line:?}"))),
    }
}

#[test]
fn dom0_starts_a_guest_which_runs_and_is_destroyed() -> Result<(), Failure> {
    // The Dom0 image doubles as a minimal PVH guest (its 32 MiB are 31.6 MiB
    // of RAM: the legacy hole below 1 MiB is reserved): it prints its ready
    // line on its console and powers itself off.
    let dir = TempDir::new("guest-lifecycle")?;
    let dom0 = images()?.dom0;
    let iso = make_iso_with_modules(&dir, "-- poweroff", &[(&dom0, "test-guest poweroff")])?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("created domain 1", boot_timeout())?;
    qemu.wait_for("(d1) dom0 ready: memory 31 MiB", boot_timeout())?;
    qemu.wait_for("domain 1 shut down (Poweroff)", boot_timeout())?;
    let report = qemu.wait_for("all guests done", boot_timeout())?;
    check_no_leak(&qemu, &report)?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn a_hundred_create_destroy_cycles_leak_no_memory() -> Result<(), Failure> {
    let mut qemu = Qemu::built_kernel("-- cycles=100 poweroff")?.spawn()?;
    let report = qemu.wait_for(
        "100 create/destroy cycles",
        boot_timeout() + Duration::from_secs(30),
    )?;
    check_no_leak(&qemu, &report)?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn a_crashing_guest_is_reported_and_the_machine_goes_on() -> Result<(), Failure> {
    let dir = TempDir::new("guest-crash")?;
    let dom0 = images()?.dom0;
    let iso = make_iso_with_modules(&dir, "-- poweroff", &[(&dom0, "test-guest fault=page")])?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("(d1) dom0: exception 14 (page fault)", boot_timeout())?;
    qemu.wait_for("domain 1 shut down (Crash)", boot_timeout())?;
    qemu.wait_for(
        "dom0: domain 1 shut down (crash); destroying it",
        boot_timeout(),
    )?;
    let report = qemu.wait_for("all guests done", boot_timeout())?;
    check_no_leak(&qemu, &report)?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

/// The test guest's verdict line, "test-guest: N passed, M failed", as
/// (N, M).
fn verdict(line: &str) -> Option<(u64, u64)> {
    let passed = number_after(line, "test-guest:")?;
    let failed = number_after(line, "passed,")?;
    Some((passed, failed))
}

#[test]
fn the_test_guest_passes_every_hypercall_check() -> Result<(), Failure> {
    // Every hypercall a PVH guest uses, and hostile calls that must fail
    // cleanly, checked from inside a guest Dom0 builds.
    let dir = TempDir::new("test-guest")?;
    let guest = images()?.test_guest;
    let iso = make_iso_with_modules(&dir, "-- poweroff", &[(&guest, "test-guest")])?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    let line = qemu.wait_for("failed", boot_timeout())?;
    match verdict(&line) {
        Some((passed, 0)) if passed >= 50 => {}
        _ => return Err(qemu.failure(format!("the test guest reported failures: {line:?}"))),
    }
    qemu.wait_for("domain 1 shut down (Poweroff)", boot_timeout())?;
    let report = qemu.wait_for("all guests done", boot_timeout())?;
    check_no_leak(&qemu, &report)?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn two_guests_exchange_events_and_share_a_page_through_grants() -> Result<(), Failure> {
    let dir = TempDir::new("guest-pair")?;
    let guest = images()?.test_guest;
    let iso = make_iso_with_modules(&dir, "-- poweroff", &[(&guest, "test-guest pair")])?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("dom0: started domains 1 and 2 as a pair", boot_timeout())?;
    let report = qemu.wait_for("all guests done", boot_timeout())?;
    qemu.assert_serial_contains(&[
        "(d1) test-guest: PASS peer-offer",
        "(d2) test-guest: PASS peer-accept",
    ])?;
    for domain in ["(d1)", "(d2)"] {
        let line = qemu
            .serial_line_with(&[domain, "passed,"])
            .ok_or_else(|| qemu.failure(format!("no verdict from {domain}")))?;
        if !matches!(verdict(&line), Some((_, 0))) {
            return Err(qemu.failure(format!("{domain} reported failures: {line:?}")));
        }
    }
    check_no_leak(&qemu, &report)?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn a_guest_that_never_yields_does_not_starve_the_others() -> Result<(), Failure> {
    // The Dom0 image as a guest that spins with interrupts off forever,
    // beside the test guest: the scheduler must preempt the spinner.
    let dir = TempDir::new("guest-spin")?;
    let images = images()?;
    let iso = make_iso_with_modules(
        &dir,
        "-- poweroff",
        &[
            (&images.dom0, "test-guest fault=spin"),
            (&images.test_guest, "test-guest"),
        ],
    )?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("(d1) dom0 ready", boot_timeout())?;
    let line = qemu.wait_for("(d2) test-guest: ", boot_timeout())?;
    let _ = line;
    let verdict_line = qemu.wait_for("failed", boot_timeout() + Duration::from_secs(30))?;
    match verdict(&verdict_line) {
        Some((passed, 0)) if passed >= 50 => Ok(()),
        _ => Err(qemu.failure(format!(
            "the test guest beside a spinner failed: {verdict_line:?}"
        ))),
    }
}

#[test]
fn a_guest_flooding_the_console_is_rate_limited() -> Result<(), Failure> {
    let dir = TempDir::new("guest-flood")?;
    let dom0 = images()?.dom0;
    let iso = make_iso_with_modules(
        &dir,
        "-- poweroff",
        &[(&dom0, "test-guest fault=flood poweroff")],
    )?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("all guests done", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    let printed = qemu.serial().matches("(d1) dom0: flood line").count();
    if printed >= 1000 {
        return Err(qemu.failure(format!(
            "{printed} of 10000 flood lines reached the console"
        )));
    }
    // What was lost is said, and the guest still shut down normally.
    qemu.assert_serial_contains(&["console lines dropped", "domain 1 shut down (Poweroff)"])
}

#[test]
fn dom0_maps_a_guests_frames_and_sees_its_own_writes() -> Result<(), Failure> {
    let mut qemu = Qemu::built_kernel("-- mapcheck poweroff")?.spawn()?;
    qemu.wait_for("dom0: foreign mapping check passed", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn a_device_interrupt_reaches_dom0() -> Result<(), Failure> {
    // Dom0 routes the CMOS clock's periodic interrupt through the IOAPIC
    // to a vector of its own and halts; the hypervisor must deliver it.
    let mut qemu = Qemu::built_kernel("-- irqcheck poweroff")?.spawn()?;
    qemu.wait_for("dom0: device interrupt check passed", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}
