//! Xen system time from the TSC: one invariant TSC, one scale, one time
//! zero, so every pCPU computes the same nanoseconds from the same reading.

use super::{NANOSECONDS_PER_SECOND, SystemTime, TimeError, TimeScale, VcpuTimeInfo};

/// Converts host TSC readings to [`SystemTime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemClock {
    tsc_at_zero: u64,
    tsc_frequency_hz: u64,
    scale: TimeScale,
}

impl SystemClock {
    /// A clock whose time zero is host TSC value `tsc_at_zero`, for a TSC
    /// running at `tsc_frequency_hz`.
    pub fn new(tsc_frequency_hz: u64, tsc_at_zero: u64) -> Result<Self, TimeError> {
        Ok(Self {
            tsc_at_zero,
            tsc_frequency_hz,
            scale: TimeScale::from_frequency(tsc_frequency_hz)?,
        })
    }

    /// The host TSC value at system time zero.
    pub const fn tsc_at_zero(&self) -> u64 {
        self.tsc_at_zero
    }

    /// The TSC frequency this clock was built for.
    pub const fn tsc_frequency_hz(&self) -> u64 {
        self.tsc_frequency_hz
    }

    /// The scale guests are given (`tsc_to_system_mul`, `tsc_shift`).
    pub const fn scale(&self) -> TimeScale {
        self.scale
    }

    /// System time at host TSC value `tsc`. A reading before time zero
    /// (a pCPU whose TSC lags by a few ticks) is time zero.
    pub const fn now(&self, tsc: u64) -> SystemTime {
        SystemTime(self.scale.ticks_to_ns(tsc.saturating_sub(self.tsc_at_zero)))
    }

    /// TSC ticks in `duration_ns`, rounded up so a deadline computed from
    /// it is never early. Saturates at `u64::MAX`.
    pub fn ticks_for_ns(&self, duration_ns: u64) -> u64 {
        let ticks = (u128::from(duration_ns) * u128::from(self.tsc_frequency_hz))
            .div_ceil(u128::from(NANOSECONDS_PER_SECOND));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The `vcpu_time_info` contents for a guest, sampled at host TSC
    /// `tsc`: `system_time = now(tsc)` and `tsc_timestamp` the guest's TSC
    /// at that moment, `tsc + tsc_offset` (the VMCB `TSC_OFFSET`, two's
    /// complement). `version` is left 0: [`super::publish`] sets it.
    pub const fn time_info(&self, tsc: u64, tsc_offset: u64, flags: u8) -> VcpuTimeInfo {
        VcpuTimeInfo {
            version: 0,
            tsc_timestamp: tsc.wrapping_add(tsc_offset),
            system_time: self.now(tsc).0,
            tsc_to_system_mul: self.scale.mul,
            tsc_shift: self.scale.shift,
            flags,
        }
    }
}
