//! A check that device interrupts reach Dom0: the CMOS clock's periodic
//! interrupt, routed by Dom0 itself through the IOAPIC to a vector of its
//! own, must arrive through the hypervisor while Dom0 halts.

use core::sync::atomic::{AtomicU32, Ordering};

use log::{error, info};
use x86_64::instructions::port::Port;

/// The vector Dom0 gives the clock.
pub const CLOCK_VECTOR: u64 = 0x40;
/// The IOAPIC's registers (QEMU's and most PCs' default base).
const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The clock's interrupt line on the IOAPIC.
const CLOCK_PIN: u32 = 8;
/// Interrupts to see before the check passes.
const WANTED: u32 = 10;

static RECEIVED: AtomicU32 = AtomicU32::new(0);

fn cmos(index: u8) -> u8 {
    // SAFETY: CMOS index/data ports; Dom0 owns the clock's interrupt here.
    unsafe {
        Port::<u8>::new(0x70).write(index);
        Port::<u8>::new(0x71).read()
    }
}

fn cmos_write(index: u8, value: u8) {
    // SAFETY: as for `cmos`.
    unsafe {
        Port::<u8>::new(0x70).write(index);
        Port::<u8>::new(0x71).write(value);
    }
}

fn ioapic_write(register: u32, value: u32) {
    // SAFETY: the IOAPIC's index and data registers, device memory the
    // hypervisor maps into Dom0 (and Dom0's boot tables cover).
    unsafe {
        core::ptr::write_volatile(IOAPIC_BASE as *mut u32, register);
        core::ptr::write_volatile((IOAPIC_BASE + 0x10) as *mut u32, value);
    }
}

/// Called from Dom0's interrupt handler for [`CLOCK_VECTOR`].
pub fn on_clock_interrupt() {
    // Reading register C acknowledges the clock's interrupt.
    let _ = cmos(0x0c);
    RECEIVED.fetch_add(1, Ordering::Relaxed);
}

/// Runs the check, bounded to about three seconds.
pub fn run() {
    let entry = 0x10 + 2 * CLOCK_PIN;
    ioapic_write(entry + 1, 0); // destination: APIC id 0
    ioapic_write(entry, CLOCK_VECTOR as u32); // fixed, physical, edge, high, unmasked
    cmos_write(0x0a, 0x2a); // 32.768 kHz base, 64 Hz periodic rate
    let register_b = cmos(0x0b);
    cmos_write(0x0b, register_b | 0x40); // periodic interrupt on
    let _ = cmos(0x0c);

    let khz =
        u64::from(baremetal::cpu::cpuid(xenolith_abi::cpuid::XEN_CPUID_BASE + 3, 0)[2].max(1));
    let deadline = baremetal::cpu::rdtsc() + 3_000 * khz;
    while RECEIVED.load(Ordering::Relaxed) < WANTED && baremetal::cpu::rdtsc() < deadline {
        // Sleep until an interrupt (the clock's, or the hypervisor's wake).
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }

    cmos_write(0x0b, register_b & !0x40);
    ioapic_write(entry, (1 << 16) | CLOCK_VECTOR as u32); // masked again
    let received = RECEIVED.load(Ordering::Relaxed);
    if received >= WANTED {
        info!("dom0: device interrupt check passed: {received} clock interrupts");
    } else {
        error!("dom0: device interrupt check failed: {received} clock interrupts in 3 s");
    }
}
