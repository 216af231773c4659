//! Guest time: Xen system time from the TSC, the pvclock record guests read
//! it through, the wallclock, the CMOS RTC, and per-vCPU timers.
//!
//! Everything here is arithmetic on values passed in. The hypervisor reads
//! the TSC and the RTC and writes guest memory; this module says what to
//! compute and in which order to publish it.
//!
//! - [`PitCalibration`]: the TSC frequency from PIT samples, robust to
//!   the CPU being stalled while it measures.
//! - [`TimeScale`]: `tsc_to_system_mul`/`tsc_shift` as Xen's
//!   `set_time_scale` derives them from a frequency.
//! - [`SystemClock`]: Xen system time (nanoseconds since the hypervisor's
//!   time zero) from a TSC reading.
//! - [`VcpuTimeInfo`]: the 32-byte `vcpu_time_info`, its odd/even version
//!   protocol ([`publish`]) and the Linux reader ([`read_system_time`]).
//! - [`Wallclock`]: `wc_sec`/`wc_nsec`, UTC at system time zero.
//! - [`RtcReading`]: CMOS RTC registers to Unix seconds.
//! - [`VcpuTimers`] and [`TimerQueue`]: `VCPUOP_set_singleshot_timer`,
//!   `VCPUOP_set_periodic_timer` and `set_timer_op` semantics.

mod calibration;
mod clock;
mod pvclock;
mod rtc;
mod scale;
#[cfg(test)]
mod tests;
mod timer;
mod wallclock;

use core::fmt;

pub use calibration::{
    PIT_HZ, PitCalibration, PitSample, Progress, TscEstimate, best_estimate, estimate_from_samples,
};
pub use clock::SystemClock;
pub use pvclock::{
    GUEST_STOPPED, TSC_STABLE, VcpuTimeInfo, VersionedReader, VersionedWriter, publish,
    read_system_time, version_update_begin, version_update_end,
};
pub use rtc::{RtcError, RtcField, RtcReading, rtc_register};
pub use scale::TimeScale;
pub use timer::{
    MAX_PERIOD_NS, MIN_PERIOD_NS, TimerError, TimerQueue, TimerQueueError, VCPU_SSHOTTMR_FUTURE,
    VcpuTimers,
};
pub use wallclock::{WALLCLOCK_OFFSET, Wallclock};

/// Nanoseconds in one second.
pub const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// An instant of Xen system time: nanoseconds since the hypervisor's time
/// zero (`system_time` in `vcpu_time_info`, the unit of every timer
/// hypercall). Durations are plain `u64` nanoseconds, named `*_ns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemTime(pub u64);

impl SystemTime {
    /// The hypervisor's time zero.
    pub const ZERO: Self = Self(0);
    /// The latest representable instant; also "never" for deadlines.
    pub const MAX: Self = Self(u64::MAX);

    /// The instant `nanoseconds` after time zero.
    pub const fn from_nanos(nanoseconds: u64) -> Self {
        Self(nanoseconds)
    }

    /// Nanoseconds since time zero.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `duration_ns` later, saturating at [`SystemTime::MAX`].
    #[must_use]
    pub const fn saturating_add_ns(self, duration_ns: u64) -> Self {
        Self(self.0.saturating_add(duration_ns))
    }

    /// Nanoseconds from `earlier` to `self`; zero if `earlier` is later.
    pub const fn saturating_ns_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for SystemTime {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0 / NANOSECONDS_PER_SECOND;
        let nanoseconds = self.0 % NANOSECONDS_PER_SECOND;
        write!(formatter, "{seconds}.{nanoseconds:09}s")
    }
}

/// Why a time computation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// A frequency of zero ticks per second cannot be scaled.
    ZeroFrequency,
    /// A nanosecond field was 10^9 or more.
    NanosecondsOutOfRange,
    /// The UTC time given is earlier than the system time it was read at,
    /// which would put time zero before 1970.
    WallclockBeforeEpoch,
}

impl fmt::Display for TimeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::ZeroFrequency => "frequency of zero ticks per second",
            Self::NanosecondsOutOfRange => "nanoseconds not below one second",
            Self::WallclockBeforeEpoch => "UTC time would put system time zero before 1970",
        })
    }
}
