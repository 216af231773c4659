//! The hypervisor's log: every record goes to COM1 with the time since
//! hypervisor entry, so boot figures can be read straight off the console,
//! each on a line of its own even when Dom0's output left one open.

use core::sync::atomic::{AtomicU64, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::hw::serial;

static TSC_AT_ENTRY: AtomicU64 = AtomicU64::new(0);
static TSC_PER_MILLISECOND: AtomicU64 = AtomicU64::new(1);

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

/// Starts logging at `level`; times are measured from `entry_tsc`.
pub fn init(entry_tsc: u64, tsc_hz: u64, level: LevelFilter) {
    TSC_AT_ENTRY.store(entry_tsc, Ordering::Relaxed);
    TSC_PER_MILLISECOND.store((tsc_hz / 1000).max(1), Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The TSC frequency in kHz.
pub fn tsc_khz() -> u32 {
    u32::try_from(TSC_PER_MILLISECOND.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
}

/// Microseconds since hypervisor entry.
pub fn micros_since_entry() -> u64 {
    let ticks = baremetal::cpu::rdtsc().wrapping_sub(TSC_AT_ENTRY.load(Ordering::Relaxed));
    ticks.saturating_mul(1000) / TSC_PER_MILLISECOND.load(Ordering::Relaxed)
}

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = micros_since_entry();
        let level = match record.level() {
            Level::Error => "ERROR ",
            Level::Warn => "WARN ",
            Level::Info => "",
            Level::Debug => "debug ",
            Level::Trace => "trace ",
        };
        serial::write_line_fmt(format_args!(
            "[{:4}.{:03}] {level}{}\n",
            micros / 1_000_000,
            (micros / 1000) % 1000,
            record.args()
        ));
    }

    fn flush(&self) {}
}
