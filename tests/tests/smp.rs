//! Debian Linux guests with several vCPUs: the toolstack creates them
//! from `vcpus = N`, Linux starts its application processors with
//! INIT/SIPI/SIPI through its x2APIC into real mode, they run time-sliced
//! with everything else on the one physical CPU, a CPU taken offline and
//! back comes up again, and `poweroff` (every vCPU halted with interrupts
//! off) still ends the domain.

use std::path::Path;

use xenolith_tests::debian::{DETACH, guest_files, guest_says, linux_timeout};
use xenolith_tests::{
    EXIT_POWEROFF, Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules,
};

/// Boots the appliance with one Debian guest `name` of `vcpus` vCPUs;
/// Dom0 powers off once it stopped.
fn boot_guest(dir: &TempDir, name: &str, vcpus: u32) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let config = format!(
        "name = \"{name}\"\ntype = \"pvh\"\nmemory = 256\nvcpus = {vcpus}\n\
         kernel = \"vmlinuz\"\nramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
         on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n"
    );
    let config = dir.write(&format!("{name}.cfg"), config.as_bytes())?;
    let modules: Vec<(&Path, String)> = vec![
        (&config, format!("guest-config {name}.cfg")),
        (&kernel, "guest-file vmlinuz".into()),
        (&initramfs, "guest-file initramfs.cpio.gz".into()),
    ];
    let modules: Vec<(&Path, &str)> = modules
        .iter()
        .map(|(file, line)| (*file, line.as_str()))
        .collect();
    let iso = make_iso_with_modules(dir, "-- exit-when-idle", &modules)?;
    Qemu::iso(iso).spawn()
}

/// Waits for the shell, attaches to it and checks which CPUs Linux has
/// online and how many it lists in /proc/cpuinfo.
fn attach_and_count_cpus(
    qemu: &mut Running,
    name: &str,
    online: &str,
    count: u32,
) -> Result<(), Failure> {
    qemu.wait_for(&format!("[{name}] XENOLITH-GUEST: shell"), linux_timeout())?;
    qemu.send(&format!("console {name}\r"))?;
    qemu.wait_for("attached to domain 1's console", boot_timeout())?;
    let line = guest_says(
        qemu,
        "echo \"ONLINE=$(cat /sys/devices/system/cpu/online) \
         COUNT=$(grep -c ^processor /proc/cpuinfo)\"",
        "ONLINE=0",
    )?;
    if !line.contains(&format!("ONLINE={online} COUNT={count}")) {
        return Err(qemu.failure(format!("the guest's CPUs: {line:?}")));
    }
    Ok(())
}

#[test]
fn a_two_vcpu_debian_guest_brings_its_second_cpu_up_and_powers_off() -> Result<(), Failure> {
    let dir = TempDir::new("debian-smp-2")?;
    let mut qemu = boot_guest(&dir, "duo", 2)?;
    qemu.wait_for("created domain 1 (256 MiB, 2 vCPU)", linux_timeout())?;
    qemu.wait_for("domain 1 starts vCPU 1 at", linux_timeout())?;
    qemu.wait_for("[duo] [", linux_timeout())?;
    qemu.wait_for("smp: Brought up 1 node, 2 CPUs", linux_timeout())?;
    attach_and_count_cpus(&mut qemu, "duo", "0-1", 2)?;

    // CPU 1 goes offline (it halts with interrupts off: the domain lives
    // on) and comes back through INIT/SIPI again.
    let offline = guest_says(
        &mut qemu,
        "echo 0 > /sys/devices/system/cpu/cpu1/online; \
         echo \"OFF=$(cat /sys/devices/system/cpu/online)\"",
        "OFF=0",
    )?;
    if !offline.contains("OFF=0") || offline.contains("OFF=0-1") {
        return Err(qemu.failure(format!("CPU 1 should be offline: {offline:?}")));
    }
    let back = guest_says(
        &mut qemu,
        "echo 1 > /sys/devices/system/cpu/cpu1/online; \
         echo \"BACK=$(cat /sys/devices/system/cpu/online)\"",
        "BACK=0",
    )?;
    if !back.contains("BACK=0-1") {
        return Err(qemu.failure(format!("CPU 1 should be back: {back:?}")));
    }

    // Both CPUs take timer and IPI events: work spread over both finishes.
    let work = guest_says(
        &mut qemu,
        "(dd if=/dev/zero bs=64k count=200 2>/dev/null | md5sum >/dev/null &); \
         dd if=/dev/zero bs=64k count=200 2>/dev/null | md5sum >/dev/null; \
         wait; echo \"WORK=done\"",
        "WORK=d",
    )?;
    if !work.contains("WORK=done") {
        return Err(qemu.failure(format!("work on both CPUs: {work:?}")));
    }

    // Linux stops CPU 1, then halts CPU 0: all vCPUs down is poweroff.
    qemu.send("poweroff\r")?;
    qemu.wait_for("dom0: domain 1 (duo) shut down (poweroff)", linux_timeout())?;
    qemu.wait_for("dom0: destroyed domain 1 (duo)", boot_timeout())?;
    qemu.wait_for("all guests done (1 powered off, 0 did not)", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())
}

#[test]
fn a_four_vcpu_debian_guest_runs_all_four_and_shuts_down_on_request() -> Result<(), Failure> {
    let dir = TempDir::new("debian-smp-4")?;
    let mut qemu = boot_guest(&dir, "quad", 4)?;
    qemu.wait_for("smp: Brought up 1 node, 4 CPUs", linux_timeout())?;
    attach_and_count_cpus(&mut qemu, "quad", "0-3", 4)?;
    qemu.send(DETACH)?;

    // The toolstack's request goes through xenstore to whichever CPU
    // handles the watch; the poweroff still ends the domain.
    qemu.send("shutdown quad\r")?;
    qemu.wait_for(
        "all guests done (1 powered off, 0 did not)",
        linux_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_contains(&[
        "domain 1 starts vCPU 1 at",
        "domain 1 starts vCPU 2 at",
        "domain 1 starts vCPU 3 at",
    ])
}
