//! The legacy PIT, used once at boot to measure the TSC frequency.

use x86_64::instructions::port::Port;

/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// A 10 ms countdown.
const LATCH: u64 = 11_932;

/// Measures TSC ticks per second against PIT channel 2, or `None` if the
/// PIT does not count (no legacy PIT on this machine).
pub fn measure_tsc_hz() -> Option<u64> {
    let mut control = Port::<u8>::new(0x61);
    let mut mode = Port::<u8>::new(0x43);
    let mut counter = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61/0x42/0x43 drive the PC speaker gate and PIT
    // channel 2, which nothing else uses; the speaker stays off.
    let start = unsafe {
        let gate = (control.read() & !0x02) | 0x01;
        control.write(gate);
        mode.write(0xb0); // channel 2, low then high byte, mode 0
        counter.write(LATCH as u8);
        counter.write((LATCH >> 8) as u8);
        baremetal::cpu::rdtsc()
    };
    for _ in 0..50_000_000u32 {
        // SAFETY: reading the gate register has no side effects.
        if unsafe { control.read() } & 0x20 != 0 {
            let ticks = baremetal::cpu::rdtsc().wrapping_sub(start);
            return Some(ticks * PIT_HZ / LATCH);
        }
    }
    None
}
