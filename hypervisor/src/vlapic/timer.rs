//! The APIC timer as a function of time passed in: one-shot and periodic
//! countdown from the initial count at the bus clock over the divider, or
//! a TSC deadline the hypervisor has already converted to system time.
//!
//! The virtual bus clock runs at 1 GHz (one count per nanosecond before
//! division), as in Xen and KVM, so a count never needs scaling.

use crate::time::SystemTime;

/// Nanoseconds per bus-clock cycle.
pub const BUS_CYCLE_NS: u64 = 1;

/// The timer mode, LVT timer bits 18:17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimerMode {
    /// Count down once from the initial count and stop at zero.
    #[default]
    OneShot,
    /// Count down, interrupt, reload from the initial count, repeat.
    Periodic,
    /// Interrupt when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

impl TimerMode {
    /// The mode LVT timer entry `entry` selects; the reserved mode 3 is
    /// taken as one-shot (x2APIC writes of it fault before getting here).
    pub const fn from_entry(entry: u32) -> Self {
        match (entry >> 17) & 0b11 {
            0b01 => Self::Periodic,
            0b10 => Self::TscDeadline,
            _ => Self::OneShot,
        }
    }
}

/// The divide configuration register's divisor: bits 3, 1:0 encode
/// 2, 4, …, 128, and 0b111 is divide-by-1.
pub const fn divisor(divide_configuration: u32) -> u64 {
    let code = (divide_configuration & 0b11) | ((divide_configuration >> 1) & 0b100);
    if code == 0b111 { 1 } else { 2 << code }
}

/// The timer's state; the LVT entry (vector, mask) lives with the other
/// registers, and whether an expiry interrupts is decided there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) struct Timer {
    mode: TimerMode,
    initial_count: u32,
    divide_configuration: u32,
    /// The counter's value at `count_start` (the initial count, or what was
    /// left when the divider changed or a period reloaded).
    count_at_start: u32,
    count_start: SystemTime,
    /// The next expiry; `None` when stopped or a one-shot has run out.
    deadline: Option<SystemTime>,
    /// IA32_TSC_DEADLINE as written; zero when disarmed or fired.
    tsc_deadline: u64,
}

impl Timer {
    /// Stopped, one-shot, divide by 2: the power-up state.
    pub(super) const fn new() -> Self {
        Self {
            mode: TimerMode::OneShot,
            initial_count: 0,
            divide_configuration: 0,
            count_at_start: 0,
            count_start: SystemTime::ZERO,
            deadline: None,
            tsc_deadline: 0,
        }
    }

    fn tick_ns(&self) -> u64 {
        divisor(self.divide_configuration) * BUS_CYCLE_NS
    }

    pub(super) const fn initial_count(&self) -> u32 {
        self.initial_count
    }

    pub(super) const fn divide_configuration(&self) -> u32 {
        self.divide_configuration
    }

    pub(super) const fn deadline(&self) -> Option<SystemTime> {
        self.deadline
    }

    /// The TSC deadline MSR as the guest reads it: zero outside
    /// TSC-deadline mode and once the deadline has fired.
    pub(super) const fn tsc_deadline(&self) -> u64 {
        match self.mode {
            TimerMode::TscDeadline => self.tsc_deadline,
            _ => 0,
        }
    }

    /// Changes mode from the LVT. Entering or leaving TSC-deadline mode
    /// disarms the timer (SDM 11.5.4.1); one-shot ↔ periodic keeps the
    /// countdown and the new mode decides what its expiry does.
    pub(super) fn set_mode(&mut self, mode: TimerMode) {
        if (self.mode == TimerMode::TscDeadline) != (mode == TimerMode::TscDeadline) {
            self.stop();
        }
        self.mode = mode;
    }

    fn stop(&mut self) {
        self.initial_count = 0;
        self.count_at_start = 0;
        self.deadline = None;
        self.tsc_deadline = 0;
    }

    /// A write of the initial count: (re)starts the countdown, or stops it
    /// for zero. Ignored in TSC-deadline mode.
    pub(super) fn set_initial_count(&mut self, count: u32, now: SystemTime) {
        if self.mode == TimerMode::TscDeadline {
            return;
        }
        self.initial_count = count;
        self.count_at_start = count;
        self.count_start = now;
        self.deadline =
            (count != 0).then(|| now.saturating_add_ns(u64::from(count) * self.tick_ns()));
    }

    /// A write of the divide configuration: the count carries on from
    /// where it is, at the new rate.
    pub(super) fn set_divide_configuration(&mut self, configuration: u32, now: SystemTime) {
        let counting = self.mode != TimerMode::TscDeadline && self.deadline.is_some();
        let remaining = self.current_count(now);
        self.divide_configuration = configuration;
        if counting && remaining != 0 {
            self.count_at_start = remaining;
            self.count_start = now;
            self.deadline = Some(now.saturating_add_ns(u64::from(remaining) * self.tick_ns()));
        }
    }

    /// A write of IA32_TSC_DEADLINE (`raw`), which the hypervisor has
    /// converted to system time `at`. Zero disarms. Ignored outside
    /// TSC-deadline mode.
    pub(super) fn set_tsc_deadline(&mut self, raw: u64, at: SystemTime) {
        if self.mode != TimerMode::TscDeadline {
            return;
        }
        self.tsc_deadline = raw;
        self.deadline = (raw != 0).then_some(at);
    }

    /// The current-count register at `now` (zero in TSC-deadline mode,
    /// when stopped, and once a one-shot has run out).
    pub(super) fn current_count(&self, now: SystemTime) -> u32 {
        if self.mode == TimerMode::TscDeadline || self.deadline.is_none() {
            return 0;
        }
        let elapsed = now.saturating_ns_since(self.count_start) / self.tick_ns();
        let at_start = u64::from(self.count_at_start);
        let count = if elapsed < at_start {
            at_start - elapsed
        } else if self.mode == TimerMode::Periodic && self.initial_count != 0 {
            // Expired but not yet polled: reloaded, and counting again.
            let initial = u64::from(self.initial_count);
            initial - (elapsed - at_start) % initial
        } else {
            0
        };
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Moves the timer to `now`; true if it expired at least once since the
    /// last call. Periods missed in between fold into one expiry (the IRR
    /// holds one bit per vector anyway), and the next deadline is the first
    /// period boundary after `now`.
    pub(super) fn poll(&mut self, now: SystemTime) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        if now < deadline {
            return false;
        }
        match self.mode {
            TimerMode::OneShot => self.deadline = None,
            TimerMode::TscDeadline => {
                self.deadline = None;
                self.tsc_deadline = 0;
            }
            TimerMode::Periodic => {
                let period = u64::from(self.initial_count) * self.tick_ns();
                if period == 0 {
                    self.deadline = None;
                    return true;
                }
                let missed = now.saturating_ns_since(deadline) / period;
                let reload = deadline.saturating_add_ns(missed.saturating_mul(period));
                self.count_start = reload;
                self.count_at_start = self.initial_count;
                self.deadline = Some(reload.saturating_add_ns(period));
            }
        }
        true
    }
}
