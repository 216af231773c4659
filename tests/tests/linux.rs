//! Stock Debian Linux as a guest, the way a user runs it: an xl.cfg and
//! the Debian kernel and busybox initramfs (`scripts/fetch-guest`) as
//! boot modules. Dom0's toolstack builds the PVH guest with a console
//! ring and a xenstore; the operator types on the serial line into Dom0's
//! management shell and, attached to the guest's console, into the
//! guest's own shell.

use std::path::Path;

use xenolith_tests::debian::{
    DETACH, expect_xen_guest_named, guest_files, guest_says, linux_timeout,
};
use xenolith_tests::{
    EXIT_POWEROFF, Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules,
};

/// Boots the appliance with one xl.cfg per guest name, each booting the
/// Debian kernel and initramfs; Dom0 powers off once every guest stopped.
fn boot_guests(dir: &TempDir, names: &[&str]) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let mut configs = Vec::new();
    for name in names {
        let config = format!(
            "name = \"{name}\"\ntype = \"pvh\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
             ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
             on_poweroff = \"destroy\"\non_reboot = \"restart\"\n"
        );
        configs.push(dir.write(&format!("{name}.cfg"), config.as_bytes())?);
    }
    let mut modules: Vec<(&Path, String)> = Vec::new();
    for (config, name) in configs.iter().zip(names) {
        modules.push((config, format!("guest-config {name}.cfg")));
        modules.push((&kernel, "guest-file vmlinuz".into()));
        modules.push((&initramfs, "guest-file initramfs.cpio.gz".into()));
    }
    let modules: Vec<(&Path, &str)> = modules
        .iter()
        .map(|(file, line)| (*file, line.as_str()))
        .collect();
    let iso = make_iso_with_modules(dir, "-- exit-when-idle", &modules)?;
    Qemu::iso(iso).spawn()
}

/// The "free memory A KiB before, B KiB after" figures of a Dom0 line.
fn before_after(line: &str) -> Option<(u64, u64)> {
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect();
    match numbers[..] {
        [.., before, after] => Some((before, after)),
        _ => None,
    }
}

#[test]
fn a_debian_guest_has_a_shell_xenstore_reboots_and_powers_off() -> Result<(), Failure> {
    let dir = TempDir::new("debian-guest")?;
    let mut qemu = boot_guests(&dir, &["debian"])?;
    qemu.wait_for("dom0: created domain 1 (debian)", linux_timeout())?;
    qemu.wait_for("[debian] [    0.000000] Linux version 6.1", linux_timeout())?;
    qemu.wait_for("[debian] XENOLITH-GUEST: shell", linux_timeout())?;

    // The operator attaches to the guest's console from Dom0's shell.
    qemu.send("console debian\r")?;
    qemu.wait_for("attached to domain 1's console", boot_timeout())?;
    // xenstore from inside: the guest's own nodes, read and written
    // through /dev/xen/xenbus.
    expect_xen_guest_named(&mut qemu, "debian")?;
    let echoed = guest_says(
        &mut qemu,
        "xenstore-write data/greeting hello && echo \"GOT=$(xenstore-read data/greeting)\"",
        "GOT=h",
    )?;
    if !echoed.contains("GOT=hello") {
        return Err(qemu.failure(format!("xenstore write then read: {echoed:?}")));
    }

    // The guest reboots itself: Dom0 restarts it as a new domain.
    qemu.send("reboot\r")?;
    qemu.wait_for(
        "dom0: domain 1 (debian) shut down (reboot)",
        linux_timeout(),
    )?;
    let first = qemu.wait_for("dom0: destroyed domain 1 (debian)", boot_timeout())?;
    qemu.wait_for("dom0: created domain 2 (debian)", linux_timeout())?;
    qemu.wait_for("[debian] XENOLITH-GUEST: shell", linux_timeout())?;

    // Powering off from inside ends the domain and the appliance.
    qemu.send("console debian\r")?;
    qemu.wait_for("attached to domain 2's console", boot_timeout())?;
    qemu.send("poweroff\r")?;
    qemu.wait_for(
        "dom0: domain 2 (debian) shut down (poweroff)",
        linux_timeout(),
    )?;
    let second = qemu.wait_for("dom0: destroyed domain 2 (debian)", boot_timeout())?;
    let done = qemu.wait_for("all guests done", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;

    // Each destroy returned the guest's memory: the same free memory after
    // the first and the second incarnation.
    let free_after = |line: &str| line.rsplit("free memory ").next().map(str::to_owned);
    if free_after(&first) != free_after(&second) {
        return Err(qemu.failure(format!("memory not returned: {first:?} then {second:?}")));
    }
    match before_after(&done) {
        // Dom0 keeps the nested tables of its first ring mappings.
        Some((before, after)) if before.abs_diff(after) <= 64 => Ok(()),
        _ => Err(qemu.failure(format!("memory not returned: {done:?}"))),
    }
}

#[test]
fn two_guests_run_at_once_and_cannot_read_each_others_nodes() -> Result<(), Failure> {
    let dir = TempDir::new("debian-pair")?;
    let mut qemu = boot_guests(&dir, &["alpha", "beta"])?;
    qemu.wait_for("[alpha] XENOLITH-GUEST: shell", linux_timeout())?;
    qemu.wait_for("[beta] XENOLITH-GUEST: shell", linux_timeout())?;
    qemu.send("list\r")?;
    qemu.wait_for("beta ", boot_timeout())?;

    qemu.send("console alpha\r")?;
    qemu.wait_for("attached to domain 1's console", boot_timeout())?;
    let own = guest_says(
        &mut qemu,
        "echo \"OWN=$(xenstore-read /local/domain/1/name)\"",
        "OWN=a",
    )?;
    if !own.contains("OWN=alpha") {
        return Err(qemu.failure(format!("reading its own node: {own:?}")));
    }
    let peer = guest_says(
        &mut qemu,
        "echo \"PEER=$(xenstore-read /local/domain/2/name 2>&1)\"",
        "PEER=x",
    )?;
    if !peer.contains("EACCES") || peer.contains("beta") {
        return Err(qemu.failure(format!("alpha should be refused beta's nodes: {peer:?}")));
    }
    qemu.send(DETACH)?;

    // The toolstack asks both to power off through control/shutdown.
    qemu.send("shutdown alpha\r")?;
    qemu.send("shutdown beta\r")?;
    qemu.wait_for(
        "all guests done (2 powered off, 0 did not)",
        linux_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    // In whichever order they went.
    qemu.assert_serial_contains(&[
        "dom0: domain 1 (alpha) shut down (poweroff)",
        "dom0: domain 2 (beta) shut down (poweroff)",
    ])
}
