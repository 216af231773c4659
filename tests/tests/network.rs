//! Guests on the network end to end: two Debian guests whose xl.cfg give
//! each a vif on `xenbr0`, Debian's xen-netfront against Dom0's netif back
//! end, bridged to the appliance's virtio NIC on QEMU's user network. Guest
//! A gets a DHCP lease from QEMU and pings the gateway; A and B ping each
//! other across the bridge.

use std::path::Path;
use std::time::Duration;

use xenolith_tests::debian::{DETACH, guest_files, linux_timeout};
use xenolith_tests::{Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules};

const TROUBLE: &[&str] = &[
    "dom0 crashed",
    "panic",
    "disconnected:",
    "connecting failed",
];

fn config(name: &str, mac: &str) -> String {
    format!(
        "name = \"{name}\"\ntype = \"pvh\"\nmemory = 192\nkernel = \"vmlinuz\"\n\
         ramdisk = \"initramfs.cpio.gz\"\nextra = \"console=hvc0\"\n\
         vif = [ \"mac={mac}, bridge=xenbr0\" ]\non_poweroff = \"destroy\"\n"
    )
}

/// Boots the appliance (interactive) with a virtio NIC on QEMU's user
/// network and two guests with a vif each.
fn boot(dir: &TempDir) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let alpha = dir.write("alpha.cfg", config("alpha", "00:16:3e:00:00:0a").as_bytes())?;
    let beta = dir.write("beta.cfg", config("beta", "00:16:3e:00:00:0b").as_bytes())?;
    // Each config is followed by the files it names.
    let modules: [(&Path, &str); 6] = [
        (&alpha, "guest-config alpha.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
        (&beta, "guest-config beta.cfg"),
        (&kernel, "guest-file vmlinuz"),
        (&initramfs, "guest-file initramfs.cpio.gz"),
    ];
    let iso = make_iso_with_modules(dir, "--", &modules)?;
    Qemu::iso(iso)
        .arg("-netdev")
        .arg("user,id=net0")
        // No option ROM: the BIOS boots the CD and need not load iPXE.
        .arg("-device")
        .arg("virtio-net-pci,netdev=net0,romfile=")
        .spawn()
}

/// Waits until the serial console has printed every one of `needles`, in
/// any order.
fn wait_for_all(qemu: &mut Running, needles: &[&str]) -> Result<(), Failure> {
    let deadline = std::time::Instant::now() + linux_timeout();
    loop {
        let serial = qemu.serial();
        let missing: Vec<&str> = needles
            .iter()
            .copied()
            .filter(|needle| !serial.contains(needle))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !qemu.is_running()? || std::time::Instant::now() >= deadline {
            return Err(qemu.failure(format!("the serial console never printed {missing:?}")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Attaches to `name`'s console and gets a fresh prompt.
fn attach(qemu: &mut Running, name: &str, domain: u16) -> Result<(), Failure> {
    qemu.send(&format!("console {name}\r"))?;
    qemu.wait_for(
        &format!("attached to domain {domain}'s console"),
        boot_timeout(),
    )?;
    qemu.send("\r")?;
    Ok(())
}

/// Types `command` into the attached guest shell and waits for the line
/// with `label=`; the command must spell the label split in two quoted
/// halves so that its echo does not match. Returns what follows `label=`.
fn guest_value(qemu: &mut Running, command: &str, label: &str) -> Result<String, Failure> {
    qemu.send(&format!("{command}\r"))?;
    let line = qemu.wait_for(&format!("{label}="), linux_timeout())?;
    Ok(line
        .split(&format!("{label}="))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// Pings `address` from the attached guest; fails unless replies came.
fn ping(qemu: &mut Running, from: &str, address: &str, label: &str) -> Result<(), Failure> {
    let status = guest_value(
        qemu,
        &format!(
            "ping -c 3 -W 10 {address}; echo \"{}\"\"{}=$?\"",
            &label[..2],
            &label[2..]
        ),
        label,
    )?;
    if status != "0" {
        return Err(qemu.failure(format!("{from} could not ping {address}: status {status}")));
    }
    Ok(())
}

#[test]
fn guests_get_a_lease_ping_the_gateway_and_each_other() -> Result<(), Failure> {
    let dir = TempDir::new("network")?;
    let mut qemu = boot(&dir)?;
    qemu.wait_for("dom0: nic: virtio-net 52:54:00", boot_timeout())?;
    qemu.wait_for("dom0: created domain 1 (alpha)", linux_timeout())?;
    qemu.wait_for("dom0: created domain 2 (beta)", linux_timeout())?;
    // The two guests boot side by side: their lines come in either order.
    wait_for_all(
        &mut qemu,
        &[
            "dom0: domain 1: vif1.0 connected",
            "dom0: domain 2: vif2.0 connected",
            "[alpha] XENOLITH-GUEST: shell",
            "[beta] XENOLITH-GUEST: shell",
        ],
    )?;

    // Alpha: a lease from QEMU's DHCP server through the bridge, then the
    // gateway answers.
    attach(&mut qemu, "alpha", 1)?;
    let mac = guest_value(
        &mut qemu,
        "echo \"MA\"\"C=$(cat /sys/class/net/eth0/address)\"",
        "MAC",
    )?;
    if mac != "00:16:3e:00:00:0a" {
        return Err(qemu.failure(format!("alpha's eth0 has MAC {mac:?}")));
    }
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: lease of 10.0.2.", linux_timeout())?;
    let configured = qemu.wait_for("udhcpc: configured 10.0.2.", linux_timeout())?;
    if !configured.contains("on eth0") {
        return Err(qemu.failure(format!("odd lease line: {configured:?}")));
    }
    ping(&mut qemu, "alpha", "10.0.2.2", "GWPING")?;
    let added = guest_value(
        &mut qemu,
        "ip addr add 192.168.77.1/24 dev eth0; echo \"AD\"\"DED=$?\"",
        "ADDED",
    )?;
    if added != "0" {
        return Err(qemu.failure(format!("adding alpha's address failed: {added}")));
    }
    qemu.send(DETACH)?;

    // Beta: a static address on the same bridge; it and alpha reach each
    // other.
    attach(&mut qemu, "beta", 2)?;
    let added = guest_value(
        &mut qemu,
        "ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0; echo \"AD\"\"DED=$?\"",
        "ADDED",
    )?;
    if added != "0" {
        return Err(qemu.failure(format!("adding beta's address failed: {added}")));
    }
    ping(&mut qemu, "beta", "192.168.77.1", "BAPING")?;
    qemu.send(DETACH)?;
    attach(&mut qemu, "alpha", 1)?;
    ping(&mut qemu, "alpha", "192.168.77.2", "ABPING")?;
    qemu.send(DETACH)?;

    qemu.send("destroy beta\r")?;
    qemu.wait_for("dom0: domain 2: vif2.0 detached", boot_timeout())?;
    qemu.wait_for("dom0: destroyed domain 2 (beta)", boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)?;
    qemu.kill();
    Ok(())
}
