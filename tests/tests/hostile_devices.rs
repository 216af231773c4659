//! Guests are hostile: a Debian guest with a qcow2 disk and a vif does
//! disk and network I/O while the test guest, started beside it with
//! `hostile-vbd hostile-vif`, connects to its own vbd and vif as a front
//! end and abuses them — bad handshakes (each refused, then started
//! over), malformed block requests (each answered with an error),
//! malformed TX packets (each dropped and counted), then a ring index no
//! ring can have and a flood of bad packets, for which Dom0 cuts its
//! devices off. The Debian guest's files read back with the checksums
//! they were written with, its pings to the gateway come back, and Dom0
//! lives on and says what it refused and cut off, and why.

use std::path::Path;

use xenolith_tests::debian::{DETACH, attach, guest_files, guest_value, linux_timeout};
use xenolith_tests::disks::{appliance_disk, import_qemu_qcow2};
use xenolith_tests::{
    Failure, Qemu, Running, TempDir, boot_timeout, images, make_iso_with_modules, number_after,
};

/// Lines that must never appear: Dom0 going down, or the Debian guest's
/// disk or filesystem failing.
const TROUBLE: &[&str] = &[
    "dom0 crashed",
    "dom0: panic",
    "dom0 triple fault",
    "fatal:",
    "[debian] blk_update_request",
    "I/O error",
    "EXT4-fs error",
    "domain 1: vif1.0: disconnected",
];

/// Files the Debian guest writes while the hostile guest runs, 2 MiB each.
const FILES: u32 = 6;
/// Pings the Debian guest sends meanwhile, one each half second.
const PINGS: u32 = 40;

/// An appliance disk holding qcow2 volumes `data` (Debian's) and
/// `hostile` (the test guest's).
fn appliance_disk_with_volumes(dir: &TempDir) -> Result<std::path::PathBuf, Failure> {
    let disk = appliance_disk(dir, 128 << 20)?;
    for (name, size) in [("data", "48M"), ("hostile", "8M")] {
        import_qemu_qcow2(&disk, dir, name, size)?;
    }
    Ok(disk)
}

/// Boots the appliance (interactive) with a NIC on QEMU's user network,
/// `disk` as its virtio disk, guest `debian` started at boot and guest
/// `hostile` (the test guest) ready for `create`.
fn boot(dir: &TempDir, disk: &Path) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let test_guest = images()?.test_guest;
    let debian = "name = \"debian\"\ntype = \"pvh\"\nmemory = 192\nkernel = \"vmlinuz\"\n\
                  ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
                  disk = [ \"format=qcow2, vdev=xvda, access=rw, target=data\" ]\n\
                  vif = [ \"mac=00:16:3e:00:00:0a, bridge=xenbr0\" ]\n\
                  on_poweroff = \"destroy\"\n";
    let hostile = "name = \"hostile\"\ntype = \"pvh\"\nmemory = 32\n\
                   kernel = \"test-guest.elf\"\nextra = \"hostile-vbd hostile-vif\"\n\
                   disk = [ \"format=qcow2, vdev=xvda, access=rw, target=hostile\" ]\n\
                   vif = [ \"mac=00:16:3e:00:00:0b, bridge=xenbr0\" ]\n\
                   on_poweroff = \"destroy\"\n";
    let debian = dir.write("debian.cfg", debian.as_bytes())?;
    let hostile = dir.write("hostile.cfg", hostile.as_bytes())?;
    let appliance = dir.write("appliance.cfg", b"guests = [ \"debian\" ]\n")?;
    let modules: [(&Path, &str); 6] = [
        (&debian, "guest-config debian.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
        (&hostile, "guest-config hostile.cfg"),
        (&test_guest, "guest-file test-guest.elf"),
        (&appliance, "appliance-config appliance.cfg"),
    ];
    let iso = make_iso_with_modules(dir, "--", &modules)?;
    Qemu::iso(iso).virtio_disk(disk).user_nic().spawn()
}

#[test]
fn a_hostile_guest_is_refused_and_cut_off_while_another_guests_io_goes_on() -> Result<(), Failure> {
    let dir = TempDir::new("hostile-devices")?;
    let disk = appliance_disk_with_volumes(&dir)?;
    let mut qemu = boot(&dir, &disk)?;
    qemu.wait_for(
        "dom0: disk virtio0: Xenolith store: 2 volumes",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: created domain 1 (debian)", linux_timeout())?;
    qemu.wait_for_all(
        &[
            "dom0: domain 1: xvda connected",
            "dom0: domain 1: vif1.0 connected",
            "[debian] XENOLITH-GUEST: shell",
        ],
        linux_timeout(),
    )?;

    // The Debian guest: a lease, a filesystem, then disk writes and pings
    // in the background.
    attach(&mut qemu, "debian", 1)?;
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: configured 10.0.2.", linux_timeout())?;
    let mounted = guest_value(
        &mut qemu,
        "mke2fs -q /dev/xvda && mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt; \
         echo \"MOUN\"\"TED=$?\"",
        "MOUNTED",
    )?;
    if mounted != "0" {
        return Err(qemu.failure(format!("making the filesystem failed: {mounted}")));
    }
    qemu.send(&format!(
        "(i=0; while [ $i -lt {FILES} ]; do dd if=/dev/urandom of=/mnt/f$i bs=4096 count=512 \
         2>/dev/null; md5sum </mnt/f$i | cut -c1-32 >>/tmp/sums; sync; i=$((i+1)); done) & \
         (ping -c {PINGS} -i 0.5 10.0.2.2 >/tmp/ping.log 2>&1) &\r"
    ))?;
    qemu.send(DETACH)?;

    // The hostile guest, while that runs.
    qemu.send("create hostile\r")?;
    qemu.wait_for("dom0: created domain 2 (hostile)", boot_timeout())?;
    let verdict = qemu.wait_for_line_with(
        &["(d2) test-guest: ", " passed, ", " failed"],
        linux_timeout(),
        "verdict from the hostile guest",
    )?;
    for check in [
        "hostile-vbd-handshake",
        "hostile-vif-handshake",
        "hostile-vbd-malformed",
        "hostile-vbd-malformed-indirect",
        "hostile-vbd-valid-after",
        "hostile-vbd-ring-cut-off",
        "hostile-vif-malformed",
        "hostile-vif-valid-after",
        "hostile-vif-rx-bad-page",
        "hostile-vif-flood-cut-off",
        "hostile-vif-reconnect",
    ] {
        let pass = format!("(d2) test-guest: PASS {check}");
        if !qemu.serial().contains(&pass) {
            return Err(qemu.failure(format!("the hostile guest did not pass {check}")));
        }
    }
    if number_after(&verdict, "passed,") != Some(0) {
        return Err(qemu.failure(format!("the hostile guest failed checks: {verdict:?}")));
    }
    // Dom0 says what it refused and cut off, with the drop counters.
    qemu.wait_for_all(
        &[
            "dom0: domain 2: xvda: mapping ring grant 1000000",
            "dom0: domain 2: xvda: unsupported protocol",
            "dom0: domain 2: vif2.0: connecting failed: queue 0: TX ring grant 1000000",
            "dom0: domain 2: vif2.0: reading front-end keys: RxCopyNotRequested",
            "dom0: domain 2: xvda queue 0: refused a request",
            "dom0: domain 2: xvda: producer index out of range",
            "dom0: domain 2: xvda detached",
            "dom0: domain 2: vif2.0: disconnected: Abuse",
            "tx dropped",
            "dom0: destroyed domain 2 (hostile)",
        ],
        boot_timeout(),
    )?;
    let cut_off = qemu
        .serial_line_with(&["dom0: domain 2: vif2.0: disconnected: Abuse"])
        .unwrap_or_default();
    // 16 of the bad block requests are errors (the rest "not supported").
    let detached = qemu
        .serial_line_with(&["dom0: domain 2: xvda detached"])
        .unwrap_or_default();
    if number_after(&detached, "discards,").unwrap_or(0) < 16 {
        return Err(qemu.failure(format!(
            "the vbd's detach line should count the refused requests: {detached:?}"
        )));
    }
    // No refused handshake ever showed as connected; cut off, the vif came
    // back when the guest started over.
    let serial = qemu.serial();
    let connections = (
        serial.matches("dom0: domain 2: xvda connected").count(),
        serial.matches("dom0: domain 2: vif2.0 connected").count(),
    );
    if connections != (1, 2) {
        return Err(qemu.failure(format!(
            "the hostile vbd and vif connected {connections:?} times, expected (1, 2)"
        )));
    }
    // What the operator sees (shown with --nocapture).
    println!("{detached}\n{cut_off}");
    let dropped = number_after(&cut_off, "tx dropped").unwrap_or(0);
    if dropped < 64 {
        return Err(qemu.failure(format!(
            "the cut-off line should count the 64+ bad packets: {cut_off:?}"
        )));
    }

    // The Debian guest's I/O went on: every file reads back from the disk
    // with the checksum it was written with, and the pings came back.
    attach(&mut qemu, "debian", 1)?;
    let finished = guest_value(&mut qemu, "wait; echo \"WAI\"\"TED=$?\"", "WAITED")?;
    if finished != "0" {
        return Err(qemu.failure(format!("the background jobs ended with {finished}")));
    }
    let matching = guest_value(
        &mut qemu,
        "sync; echo 3 >/proc/sys/vm/drop_caches; i=0; n=0; \
         while [ $i -lt 6 ]; do s=$(md5sum </mnt/f$i | cut -c1-32); \
         grep -q $s /tmp/sums && n=$((n+1)); i=$((i+1)); done; echo \"MATCH\"\"ING=$n\"",
        "MATCHING",
    )?;
    if matching != FILES.to_string() {
        return Err(qemu.failure(format!(
            "{matching} of {FILES} files read back with the checksum they were written with"
        )));
    }
    let received = guest_value(
        &mut qemu,
        "echo \"RECEIV\"\"ED=$(grep -o '[0-9]* packets received' /tmp/ping.log | cut -d' ' -f1)\"",
        "RECEIVED",
    )?;
    let received: u32 = received.parse().unwrap_or(0);
    // A loaded host may lose the odd ping under TCG; a broken bridge loses
    // them all.
    if received * 10 < PINGS * 9 {
        return Err(qemu.failure(format!(
            "{received} of {PINGS} pings to the gateway came back"
        )));
    }
    let again = guest_value(
        &mut qemu,
        "ping -c 2 -W 10 10.0.2.2 >/dev/null; echo \"PIN\"\"GED=$?\"",
        "PINGED",
    )?;
    if again != "0" {
        return Err(qemu.failure("the gateway no longer answers the Debian guest"));
    }
    qemu.send(DETACH)?;
    // The shell's `info` shows the Debian guest's vif, live, with its
    // traffic and drops.
    qemu.send("info\r")?;
    let vif = qemu.wait_for(": connected; tx ", boot_timeout())?;
    println!("{vif}");
    let packets = number_after(&vif, "; tx").unwrap_or(0);
    if !vif.starts_with("vif1.0 ") || packets == 0 {
        return Err(qemu.failure(format!(
            "`info` should show vif1.0 connected with packets sent: {vif:?}"
        )));
    }
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}
