//! Ending the machine: power off, reboot, halt. Under QEMU the
//! `isa-debug-exit` device lets tests see why the machine stopped.

use hypervisor::acpi::{self, PowerControl, ResetSpace};
use spin::Once;
use x86_64::instructions::port::Port;

/// The firmware's power controls, read from ACPI at boot (the tables may
/// sit in loader memory that is reused later).
static ACPI: Once<Option<PowerControl>> = Once::new();

/// Reads and keeps the ACPI power controls; call once at boot.
pub fn discover(
    memory: &impl hypervisor::memory::PhysicalMemory,
    rsdp: Option<hypervisor::memory::HostPhysAddr>,
) {
    ACPI.call_once(|| match acpi::power_control(memory, rsdp) {
        Ok(control) => {
            log::info!(
                "ACPI: power off through port {:#x} (sleep type {}), reset {}",
                control.pm1a_control,
                control.sleep_type_a,
                if control.reset.is_some() {
                    "register"
                } else {
                    "by port 0xcf9"
                }
            );
            Some(control)
        }
        Err(error) => {
            log::warn!("{error}; the machine can halt but not power itself off");
            None
        }
    });
}

/// ACPI S5: write SLP_TYP | SLP_EN to the PM1 control registers.
fn acpi_poweroff() {
    let Some(Some(control)) = ACPI.get() else {
        return;
    };
    // SAFETY: the PM1 control ports come from the firmware's FADT; writing
    // SLP_EN with the S5 sleep type powers the machine off, our intent.
    unsafe {
        Port::<u16>::new(control.pm1a_control).write(acpi::poweroff_value(control.sleep_type_a));
        if let Some(port) = control.pm1b_control {
            Port::<u16>::new(port).write(acpi::poweroff_value(control.sleep_type_b));
        }
    }
}

/// Why the machine stops, as QEMU's exit status encodes it
/// (`isa-debug-exit` exits with `value << 1 | 1`). The values start at
/// 0x10 so no status collides with QEMU's own failure status 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Dom0 asked for power off: status 33.
    Poweroff = 0x10,
    /// Dom0 crashed: status 35.
    Dom0Crashed = 0x11,
    /// The hypervisor could not go on: status 37.
    Fatal = 0x12,
    /// Dom0 powered off on purpose but reports failure (the control
    /// interface's POWER_OFF with a non-zero status): status 39.
    PoweroffReportingFailure = 0x13,
}

/// Whether we run under QEMU: its fw_cfg interface answers "QEMU".
fn running_under_qemu() -> bool {
    let mut selector = Port::<u16>::new(0x510);
    let mut data = Port::<u8>::new(0x511);
    let mut signature = [0u8; 4];
    // SAFETY: fw_cfg's selector and data ports; selecting the signature
    // item (0) and reading it has no other effect. On hardware without
    // fw_cfg the ports float and the signature does not match.
    unsafe {
        selector.write(0);
        for byte in &mut signature {
            *byte = data.read();
        }
    }
    &signature == b"QEMU"
}

/// Tells QEMU's `isa-debug-exit` device (if present) to end QEMU.
fn qemu_exit(reason: StopReason) {
    if running_under_qemu() {
        // SAFETY: port 0xf4 is isa-debug-exit under QEMU (the hypervisor
        // keeps it from Dom0); without the device the write is ignored.
        unsafe { Port::<u32>::new(0xf4).write(reason as u32) };
    }
}

/// Stops the machine for `reason`: QEMU exits; hardware powers off
/// through ACPI when Dom0 asked for it (whatever status it reports), and
/// halts otherwise.
pub fn stop(reason: StopReason) -> ! {
    qemu_exit(reason);
    if matches!(
        reason,
        StopReason::Poweroff | StopReason::PoweroffReportingFailure
    ) {
        acpi_poweroff();
    }
    log::info!("machine halted; it is safe to power it off");
    baremetal::cpu::halt_forever()
}

/// Resets the machine: the reset control register, the keyboard
/// controller, then a triple fault.
pub fn reboot() -> ! {
    log::info!("rebooting");
    if let Some(Some(PowerControl {
        reset: Some(reset), ..
    })) = ACPI.get()
        && let ResetSpace::IoPort(port) = reset.space
    {
        // SAFETY: the FADT names this port and value as the reset register.
        unsafe { Port::<u8>::new(port).write(reset.value) };
    }
    // SAFETY: port 0xcf9 is the chipset reset control, 0x64 the keyboard
    // controller; both only reset the machine, which is what we want.
    unsafe {
        Port::<u8>::new(0xcf9).write(0x06);
        Port::<u8>::new(0x64).write(0xfe);
    }
    baremetal::cpu::triple_fault()
}
