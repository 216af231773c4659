//! What a guest sees of the CPU and APIC beyond hypercalls: its own
//! TSC_AUX, NMIs through its virtual APIC, the refused xAPIC page; and
//! HVM guests (a PC-like start through the Linux boot protocol).

use std::path::Path;

use xenolith_tests::debian::{
    DETACH, attach, expect_xen_guest_named, guest_files, guest_value, linux_timeout,
    write_filesystem,
};
use xenolith_tests::disks::{holds_marker, read_image};
use xenolith_tests::{
    EXIT_POWEROFF, EXIT_POWEROFF_FAILURE, Failure, Qemu, Running, TempDir, boot_timeout, images,
    make_iso_with_modules,
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

/// What the appliance gets besides the guest.
#[derive(Clone, Copy)]
enum Device<'a> {
    None,
    /// This image as its virtio disk.
    Disk(&'a Path),
    /// A virtio NIC on QEMU's user network.
    Nic,
}

/// Boots the appliance with one HVM guest `hvm` booting Debian's kernel
/// and initramfs, `extra_config` added to its xl.cfg, and `device`.
fn boot_hvm_guest(
    dir: &TempDir,
    extra_config: &str,
    device: Device<'_>,
) -> Result<Running, Failure> {
    boot_hvm_guest_with_arguments(dir, "", extra_config, device)
}

/// [`boot_hvm_guest`] with `kernel_arguments` after `console=hvc0` on
/// the guest kernel's command line.
fn boot_hvm_guest_with_arguments(
    dir: &TempDir,
    kernel_arguments: &str,
    extra_config: &str,
    device: Device<'_>,
) -> Result<Running, Failure> {
    let (kernel, initramfs) = guest_files()?;
    let command_line = format!("console=hvc0 {kernel_arguments}");
    let command_line = command_line.trim_end();
    let config = format!(
        "name = \"hvm\"\ntype = \"hvm\"\nmemory = 256\nkernel = \"vmlinuz\"\n\
         ramdisk = \"initramfs.cpio.gz\"\nextra = \"{command_line}\"\n\
         on_poweroff = \"destroy\"\n{extra_config}"
    );
    let config = dir.write("hvm.cfg", config.as_bytes())?;
    let iso = make_iso_with_modules(
        dir,
        "-- exit-when-idle",
        &[
            (&config, "guest-config hvm.cfg"),
            (&kernel, "guest-file vmlinuz"),
            (&initramfs, "guest-file initramfs.cpio.gz"),
        ],
    )?;
    let qemu = Qemu::iso(iso);
    let qemu = match device {
        Device::None => qemu,
        Device::Disk(disk) => qemu
            .arg("-drive")
            .arg(format!(
                "file={},if=none,format=raw,id=disk0",
                disk.display()
            ))
            .arg("-device")
            .arg("virtio-blk-pci,drive=disk0"),
        Device::Nic => qemu
            .arg("-netdev")
            .arg("user,id=net0")
            .arg("-device")
            .arg("virtio-net-pci,netdev=net0,romfile="),
    };
    qemu.spawn()
}

#[test]
fn debian_boots_as_a_two_vcpu_hvm_guest_to_a_shell() -> Result<(), Failure> {
    let dir = TempDir::new("hvm-debian")?;
    let mut qemu = boot_hvm_guest(&dir, "vcpus = 2\non_reboot = \"destroy\"\n", Device::None)?;
    qemu.wait_for("dom0: created domain 1 (hvm)", linux_timeout())?;
    // The kernel decompressed itself (entered at code32_start) and the
    // Xen platform ports answered its probe (the hypervisor's line comes
    // before the guest's console, which Dom0 relays), so its PV drivers
    // may load.
    qemu.wait_for(
        "domain 1 found the Xen platform and unplugged emulated devices",
        linux_timeout(),
    )?;
    // It found Xen through CPUID as an HVM guest, not PVH.
    qemu.wait_for("[hvm] [    0.000000] Linux version 6.1", linux_timeout())?;
    qemu.wait_for("Booting paravirtualized kernel on Xen HVM", linux_timeout())?;
    // Its second vCPU came up by INIT/SIPI as on a PC.
    qemu.wait_for("smp: Brought up 1 node, 2 CPUs", linux_timeout())?;
    // The platform PCI device's driver set up the grant table.
    qemu.wait_for(
        "xen-platform-pci 0000:00:02.0: enabling device",
        linux_timeout(),
    )?;
    qemu.wait_for("Grant table initialized", linux_timeout())?;
    qemu.wait_for("[hvm] XENOLITH-GUEST: shell", linux_timeout())?;
    qemu.send("console hvm\r")?;
    qemu.wait_for("attached to domain 1's console", boot_timeout())?;
    expect_xen_guest_named(&mut qemu, "hvm")?;
    // An NMI to the other vCPU through the virtual x2APIC: sysrq-l has
    // the CPU running the shell send an NMI to the other one, which prints
    // its backtrace from its NMI handler.
    // The shell's next prompt waits a second, so it cannot split the other
    // CPU's line (it once did, right after that line's "N"). The sending
    // CPU prints its own backtrace first, so only a line after "Sending
    // NMI" proves the NMI arrived.
    qemu.send("echo l >/proc/sysrq-trigger; sleep 1\r")?;
    qemu.wait_for("Sending NMI from CPU", linux_timeout())?;
    qemu.wait_for("NMI backtrace for cpu", linux_timeout())?;
    // Rebooting from inside: Linux's native restart (a real-mode jump to
    // the reset vector, where the guest has a stub instead of firmware)
    // resets through port 0xCF9, a reboot for on_reboot.
    qemu.send("reboot\r")?;
    qemu.wait_for("reboot: machine restart", linux_timeout())?;
    qemu.wait_for("domain 1 reset itself through port 0xcf9", linux_timeout())?;
    qemu.wait_for("dom0: domain 1 (hvm) shut down (reboot)", linux_timeout())?;
    qemu.wait_for("dom0: destroyed domain 1 (hvm)", boot_timeout())?;
    // The appliance then stops, reporting the guest that did not power off.
    qemu.wait_for("all guests done (0 powered off, 1 did not)", boot_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF_FAILURE, boot_timeout())?;
    qemu.assert_serial_lacks(&["Booting paravirtualized kernel on Xen PVH", "crashed"])
}

#[test]
fn an_hvm_guest_reboots_through_the_keyboard_controller() -> Result<(), Failure> {
    // reboot=k: Linux waits for the keyboard controller's input buffer to
    // be empty, then pulses its reset line (0xFE to port 0x64). Without
    // it, Linux would fall back to the reset vector's stub and port 0xCF9.
    // on_reboot is left at its default, restart: the guest comes back.
    let dir = TempDir::new("hvm-reboot-kbd")?;
    let mut qemu = boot_hvm_guest_with_arguments(&dir, "reboot=k", "", Device::None)?;
    qemu.wait_for("[hvm] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "hvm", 1)?;
    qemu.send("reboot\r")?;
    qemu.wait_for("reboot: machine restart", linux_timeout())?;
    qemu.wait_for(
        "domain 1 reset itself through the keyboard controller (port 0x64)",
        linux_timeout(),
    )?;
    qemu.wait_for("dom0: domain 1 (hvm) shut down (reboot)", linux_timeout())?;
    // The restarted guest (Dom0 makes it again) reaches its shell and
    // powers off for good.
    qemu.wait_for("dom0: created domain 2 (hvm)", linux_timeout())?;
    qemu.wait_for("[hvm] XENOLITH-GUEST: shell", linux_timeout())?;
    qemu.send(DETACH)?;
    attach(&mut qemu, "hvm", 2)?;
    qemu.send("poweroff\r")?;
    qemu.wait_for("dom0: domain 2 (hvm) shut down (poweroff)", linux_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(&["through port 0xcf9", "crashed"])
}

const MARKER: &str = "XENOLITH-HVM-DISK-MARKER-51c9";

#[test]
fn an_hvm_guest_writes_a_filesystem_on_its_pv_disk() -> Result<(), Failure> {
    let dir = TempDir::new("hvm-disk")?;
    let disk = dir.write("disk.img", &vec![0u8; 64 << 20])?;
    let mut qemu = boot_hvm_guest(
        &dir,
        "disk = [ \"vdev=xvda, access=rw, target=virtio0\" ]\n",
        Device::Disk(&disk),
    )?;
    qemu.wait_for("dom0: created domain 1 (hvm)", linux_timeout())?;
    // blkfront loaded (the platform ports answered) and connected through
    // grants set up by the platform PCI device's driver.
    qemu.wait_for("dom0: domain 1: xvda connected", linux_timeout())?;
    qemu.wait_for("[hvm] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "hvm", 1)?;
    write_filesystem(&mut qemu, MARKER)?;
    qemu.send("poweroff\r")?;
    qemu.wait_for("dom0: domain 1 (hvm) shut down (poweroff)", linux_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, linux_timeout())?;
    if !holds_marker(&read_image(&disk)?, MARKER) {
        return Err(qemu.failure("the marker file's bytes are not in the disk image"));
    }
    qemu.assert_serial_lacks(&["I/O error", "EXT4-fs error", "dom0 crashed"])
}

#[test]
fn an_hvm_guest_takes_a_dhcp_lease_and_pings_the_gateway_over_its_vif() -> Result<(), Failure> {
    let dir = TempDir::new("hvm-vif")?;
    let mut qemu = boot_hvm_guest(
        &dir,
        "vif = [ \"mac=00:16:3e:00:00:4d, bridge=xenbr0\" ]\n",
        Device::Nic,
    )?;
    qemu.wait_for("dom0: created domain 1 (hvm)", linux_timeout())?;
    // netfront loaded (the platform ports answered) and connected.
    qemu.wait_for("dom0: domain 1: vif1.0 connected", linux_timeout())?;
    qemu.wait_for("[hvm] XENOLITH-GUEST: shell", linux_timeout())?;
    attach(&mut qemu, "hvm", 1)?;
    qemu.send("ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3\r")?;
    qemu.wait_for("udhcpc: lease of 10.0.2.", linux_timeout())?;
    let status = guest_value(
        &mut qemu,
        "ping -c 3 -W 10 10.0.2.2; echo \"PI\"\"NGED=$?\"",
        "PINGED",
    )?;
    if status != "0" {
        return Err(qemu.failure(format!("the gateway did not answer: status {status}")));
    }
    qemu.send("poweroff\r")?;
    qemu.wait_for("dom0: domain 1 (hvm) shut down (poweroff)", linux_timeout())?;
    qemu.expect_exit(EXIT_POWEROFF, linux_timeout())?;
    qemu.assert_serial_lacks(&["dom0 crashed", "disconnected:"])
}
