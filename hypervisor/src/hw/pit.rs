//! The legacy PIT, used once at boot to measure the TSC frequency.
//!
//! The counter is latched and read back over and over with the TSC read
//! around each latch; `hypervisor::time::PitCalibration` picks the
//! samples to trust, so a stall of this CPU (an emulator's thread losing
//! its host CPU) does not skew the result.

use hypervisor::time::{PitCalibration, PitSample, Progress, TscEstimate, best_estimate};
use x86_64::instructions::port::Port;

/// One window: about 30 ms, well inside the 55 ms the 16-bit counter
/// takes to run down from 0xffff, so it never wraps within a window.
const WINDOW_TICKS: u64 = 35_795;
/// Good enough to stop early: 200 ppm is 0.5 MHz at 2.6 GHz.
const GOOD_ENOUGH_PPM: u64 = 200;
/// Windows tried before settling for the best one seen.
const WINDOWS_MAX: u32 = 8;
/// Samples in one window before deciding the PIT does not count.
const SAMPLES_MAX: u32 = 2_000_000;
/// Read-back command: latch channel 2's status and count together.
const READ_BACK_CHANNEL_2: u8 = 0xc8;
/// Status bit: OUT is high, so the counter reached zero (and wrapped).
const STATUS_OUT: u8 = 0x80;
/// Status bit: the count written has not reached the counter yet.
const STATUS_NULL_COUNT: u8 = 0x40;

/// The TSC frequency and how it was found.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// The chosen window's estimate.
    pub estimate: TscEstimate,
    /// Windows measured.
    pub windows: u32,
}

/// Measures TSC ticks per second against PIT channel 2, or `None` if the
/// PIT does not count (no legacy PIT on this machine).
pub fn measure_tsc_hz() -> Option<Measurement> {
    let mut best: Option<TscEstimate> = None;
    for window in 1..=WINDOWS_MAX {
        match measure_window() {
            Window::Measured(estimate) => {
                best = best_estimate(best.into_iter().chain([estimate]));
                if estimate.error_ppm <= GOOD_ENOUGH_PPM {
                    return Some(Measurement {
                        estimate,
                        windows: window,
                    });
                }
            }
            // A quarter of the window went without a sample: try again.
            Window::Lost => {}
            Window::NoPit => return None,
        }
    }
    best.map(|estimate| Measurement {
        estimate,
        windows: WINDOWS_MAX,
    })
}

/// How one window went.
enum Window {
    Measured(TscEstimate),
    /// The PIT counted, but a quarter of the window had no sample.
    Lost,
    /// The PIT never finished the window: there is none.
    NoPit,
}

/// One window of samples.
fn measure_window() -> Window {
    let mut control = Port::<u8>::new(0x61);
    let mut mode = Port::<u8>::new(0x43);
    let mut counter = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61/0x42/0x43 drive the PC speaker gate and PIT
    // channel 2, which nothing else uses; the speaker stays off.
    unsafe {
        let gate = (control.read() & !0x02) | 0x01;
        control.write(gate);
        mode.write(0xb0); // channel 2, low then high byte, mode 0
        counter.write(0xff);
        counter.write(0xff);
    }
    let mut calibration = PitCalibration::new(WINDOW_TICKS);
    for _ in 0..SAMPLES_MAX {
        let tsc_before = baremetal::cpu::rdtsc();
        // SAFETY: the read-back command only latches channel 2.
        unsafe { mode.write(READ_BACK_CHANNEL_2) };
        let tsc_after = baremetal::cpu::rdtsc();
        // SAFETY: reading channel 2 returns the latched status and count.
        let (status, low, high) = unsafe { (counter.read(), counter.read(), counter.read()) };
        if status & STATUS_NULL_COUNT != 0 {
            continue;
        }
        let pit_ticks = if status & STATUS_OUT != 0 {
            // Past zero: the window is over, whatever the count says.
            u64::MAX
        } else {
            0xffff - u64::from(u16::from_le_bytes([low, high]))
        };
        let sample = PitSample {
            tsc_before,
            tsc_after,
            pit_ticks,
        };
        if calibration.add(sample) == Progress::Done {
            return calibration
                .estimate()
                .map_or(Window::Lost, Window::Measured);
        }
    }
    Window::NoPit
}
