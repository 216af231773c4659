//! The serial console as Dom0's management shell needs it: Dom0's output
//! reaches the serial line as Dom0 wrote it (no "(d0) " prefix, no log
//! timestamp), the hypervisor's own log lines still start at the margin,
//! and text typed on the serial line does no harm before Dom0 listens.

use std::thread;
use std::time::Duration;

use xenolith_tests::{EXIT_POWEROFF, Failure, Qemu, TempDir, boot_timeout, images, make_iso};

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
fn typing_before_dom0_listens_does_no_harm() -> Result<(), Failure> {
    // Dom0 has not bound VIRQ_CONSOLE, so the hypervisor leaves the UART
    // alone; typing must neither stop the appliance nor show up anywhere.
    let mut qemu = Qemu::iso(images()?.iso).spawn()?;
    qemu.wait_for("dom0 ready", boot_timeout())?;
    qemu.send("help\r\x1b[A\x7fq\r")?;
    thread::sleep(Duration::from_secs(1));
    if !qemu.is_running()? {
        let status = qemu.wait_exit(Duration::from_secs(1))?;
        return Err(qemu.failure(format!(
            "QEMU exited with status {status} after typing on the serial line"
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}
