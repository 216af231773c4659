//! The serial console as Dom0's management shell needs it: Dom0's output
//! reaches the serial line as Dom0 wrote it (no "(d0) " prefix, no log
//! timestamp), the hypervisor's own log lines still start at the margin,
//! what is typed on the serial line reaches Dom0's shell (whose `list`
//! shows the memory Dom0 was given), and Dom0 can
//! power off reporting failure (QEMU status 39).

use xenolith_tests::{
    EXIT_POWEROFF, EXIT_POWEROFF_FAILURE, Failure, Qemu, TempDir, boot_timeout, images, make_iso,
    make_iso_with_modules,
};

/// Lines that must never appear in a healthy boot.
const TROUBLE: &[&str] = &["fatal:", "dom0 crashed", "dom0 triple fault", "panic"];

#[test]
fn dom0_output_is_passed_through_without_a_prefix() -> Result<(), Failure> {
    let dir = TempDir::new("console-passthrough")?;
    let iso = make_iso(&dir, "-- poweroff")?;
    let mut qemu = Qemu::iso(iso).spawn()?;

    let ready = qemu.wait_for("dom0 ready", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    if !ready.starts_with("dom0 ready: memory ") {
        return Err(qemu.failure(format!(
            "Dom0's ready line should reach the serial line as Dom0 wrote it, got {ready:?}"
        )));
    }
    qemu.assert_serial_lacks(&["(d0)"])?;
    qemu.assert_serial_contains(&["dom0: powering off as asked"])?;
    // The hypervisor's log keeps its timestamp, at the start of its line.
    let Some(powered_off) = qemu.serial_line_with(&["dom0 powered off"]) else {
        return Err(qemu.failure("no \"dom0 powered off\" line"));
    };
    if !powered_off.starts_with('[') {
        return Err(qemu.failure(format!(
            "the hypervisor's log line should start with its timestamp, got {powered_off:?}"
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn the_shell_reads_what_is_typed_on_the_serial_line() -> Result<(), Failure> {
    // Typed bytes reach Dom0 through VIRQ_CONSOLE and CONSOLEIO_read; its
    // shell echoes them and answers, all passed straight through.
    let mut qemu = Qemu::iso(images()?.iso).spawn()?;
    qemu.wait_for("dom0 ready", boot_timeout())?;
    // Typed at once: the bytes wait in the UART until Dom0 binds
    // VIRQ_CONSOLE. (The prompt ends no line, so `wait_for` would wait for
    // it until its deadline.)
    qemu.send("help\r")?;
    qemu.wait_for("list domains", boot_timeout())?;
    qemu.wait_for("dmesg              show Dom0's recent log", boot_timeout())?;
    // The disk's and the NIC's PCI scans (both done by now) share one line
    // about the configuration mechanism (QEMU's i440FX has no MCFG).
    let scans = qemu
        .serial()
        .matches("using the configuration ports")
        .count();
    if scans != 1 {
        return Err(qemu.failure(format!(
            "the configuration mechanism was announced {scans} times"
        )));
    }
    qemu.send("list\r")?;
    let line = qemu.wait_for("Domain-0", boot_timeout())?;
    if !line.starts_with("Domain-0 ") {
        return Err(qemu.failure(format!("unexpected list line {line:?}")));
    }
    // xl's columns: name, id, memory in MiB: all Dom0 was given, not the
    // pages it still holds after handing some back.
    let given = qemu.dom0_memory_mib()?;
    if line.split_whitespace().nth(2) != Some(given.to_string().as_str()) {
        return Err(qemu.failure(format!("Dom0 was given {given} MiB, list shows {line:?}")));
    }
    // Domain 0 by the name list shows is the appliance, as by its id.
    for target in ["0", "Domain-0"] {
        qemu.send(&format!("pause {target}\r"))?;
        qemu.wait_for(
            &format!("pause {target}: domain 0 is the appliance itself"),
            boot_timeout(),
        )?;
    }
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}

#[test]
fn a_failed_guest_makes_dom0_power_off_reporting_failure() -> Result<(), Failure> {
    // POWER_OFF with a non-zero status: Dom0 (exit-when-idle) saw its guest
    // crash, so QEMU exits with 39 instead of 33.
    let dir = TempDir::new("console-power-off-failure")?;
    let dom0 = images()?.dom0;
    let config = dir.write(
        "crash.cfg",
        b"name = \"crash\"\nkernel = \"dom0.elf\"\nmemory = 32\nextra = \"fault=page\"\non_crash = \"destroy\"\n",
    )?;
    let iso = make_iso_with_modules(
        &dir,
        "-- exit-when-idle",
        &[
            (&config, "guest-config crash.cfg"),
            (&dom0, "guest-file dom0.elf"),
        ],
    )?;
    let mut qemu = Qemu::iso(iso).spawn()?;
    qemu.wait_for("domain 1 shut down (Crash)", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF_FAILURE, boot_timeout())?;
    qemu.assert_serial_contains(&["dom0 powered off, reporting failure (status 1)"])
}
