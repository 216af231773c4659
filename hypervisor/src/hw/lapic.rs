//! The host's local APIC (xAPIC, memory-mapped): its one-shot timer wakes
//! the hypervisor for guest timers and time slices.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

/// Vector of the timer interrupt in the host IDT.
pub const TIMER_VECTOR: u8 = 0xf0;
/// Vector of spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const MSR_APIC_BASE: u32 = 0x1b;
const REGISTER_EOI: u64 = 0xb0;
const REGISTER_SPURIOUS: u64 = 0xf0;
const REGISTER_LVT_TIMER: u64 = 0x320;
const REGISTER_INITIAL_COUNT: u64 = 0x380;
const REGISTER_CURRENT_COUNT: u64 = 0x390;
const REGISTER_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per millisecond (divide by 1).
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

/// The MMIO page, identity-mapped uncached by the host page tables.
pub fn base_address() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it is
    // harmless.
    let value = unsafe { Msr::new(MSR_APIC_BASE).read() };
    value & 0xf_ffff_f000
}

fn write(register: u64, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `base` is the local APIC's MMIO page (from IA32_APIC_BASE),
    // mapped uncached; its registers are 32-bit and 16-byte aligned.
    unsafe { core::ptr::write_volatile((base + register) as *mut u32, value) };
}

fn read(register: u64) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return 0;
    }
    // SAFETY: as for `write`; reading these registers has no side effect.
    unsafe { core::ptr::read_volatile((base + register) as *const u32) }
}

/// Software-enables the APIC and measures its timer against the TSC
/// (`tsc_hz`). Call once the host page tables map the APIC page.
pub fn init(tsc_hz: u64) {
    // SAFETY: setting the global-enable bit of IA32_APIC_BASE keeps the
    // base address; the APIC is the hypervisor's.
    unsafe {
        let mut msr = Msr::new(MSR_APIC_BASE);
        let value = msr.read();
        msr.write(value | (1 << 11));
    }
    BASE.store(base_address(), Ordering::Relaxed);
    write(REGISTER_SPURIOUS, (1 << 8) | u32::from(SPURIOUS_VECTOR));
    write(REGISTER_DIVIDE, 0b1011); // divide by 1
    write(REGISTER_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    // Count down from the top for 1 ms of TSC time.
    write(REGISTER_INITIAL_COUNT, u32::MAX);
    let start = baremetal::cpu::rdtsc();
    let window = (tsc_hz / 1000).max(1);
    while baremetal::cpu::rdtsc().wrapping_sub(start) < window {
        core::hint::spin_loop();
    }
    let elapsed = u64::from(u32::MAX - read(REGISTER_CURRENT_COUNT));
    write(REGISTER_INITIAL_COUNT, 0);
    TICKS_PER_MS.store(elapsed.max(1), Ordering::Relaxed);
    write(REGISTER_LVT_TIMER, u32::from(TIMER_VECTOR));
}

/// Timer ticks per millisecond, for the boot log.
pub fn ticks_per_millisecond() -> u64 {
    TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Fires the timer interrupt once, `nanoseconds` from now (at least one
/// tick, at most the counter's range).
pub fn arm(nanoseconds: u64) {
    let ticks = (u128::from(nanoseconds) * u128::from(ticks_per_millisecond()) / 1_000_000).max(1);
    write(
        REGISTER_INITIAL_COUNT,
        u32::try_from(ticks).unwrap_or(u32::MAX),
    );
}

/// Stops the timer.
pub fn disarm() {
    write(REGISTER_INITIAL_COUNT, 0);
}

/// Ends the interrupt being handled.
pub fn end_of_interrupt() {
    write(REGISTER_EOI, 0);
}
