//! Xen's clock as a guest reads it: the `vcpu_time_info` pvclock record
//! (system time extrapolated with the TSC) and the wallclock. Pure
//! arithmetic; the reads themselves are in [`crate::shared`].

use crate::types::SystemTime;

/// `vcpu_time_info.flags` bit 0: the TSC is stable across vCPUs.
pub const TSC_STABLE: u8 = 1 << 0;
/// `vcpu_time_info.flags` bit 1: the guest was stopped.
pub const GUEST_STOPPED: u8 = 1 << 1;

/// Byte offsets inside `vcpu_time_info` (32 bytes).
pub(crate) mod layout {
    pub const VERSION: usize = 0;
    pub const TSC_TIMESTAMP: usize = 8;
    pub const SYSTEM_TIME: usize = 16;
    pub const TSC_TO_SYSTEM_MUL: usize = 24;
    pub const TSC_SHIFT: usize = 28;
    pub const FLAGS: usize = 29;
}

/// A consistent copy of a `vcpu_time_info` (read with its version even
/// and unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTime {
    pub version: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
}

impl VcpuTime {
    /// System time at TSC value `tsc`, as Linux's pvclock computes it:
    /// `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`.
    pub fn system_time_at(&self, tsc: u64) -> SystemTime {
        let delta = tsc.saturating_sub(self.tsc_timestamp);
        let shifted = if self.tsc_shift >= 0 {
            delta.checked_shl(u32::from(self.tsc_shift.unsigned_abs()))
        } else {
            delta.checked_shr(u32::from(self.tsc_shift.unsigned_abs()))
        }
        .unwrap_or(0);
        let scaled = (u128::from(shifted) * u128::from(self.tsc_to_system_mul)) >> 32;
        SystemTime(self.system_time.saturating_add(scaled as u64))
    }

    /// The TSC frequency the record implies, in kHz (0 if `mul` is 0).
    pub fn tsc_khz(&self) -> u64 {
        if self.tsc_to_system_mul == 0 {
            return 0;
        }
        let khz = (1_000_000u64 << 32) / u64::from(self.tsc_to_system_mul);
        let shift = u32::from(self.tsc_shift.unsigned_abs());
        if self.tsc_shift < 0 {
            khz.checked_shl(shift).unwrap_or(0)
        } else {
            khz.checked_shr(shift).unwrap_or(0)
        }
    }
}

/// A consistent copy of the shared_info wallclock: UTC at system time 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wallclock {
    pub version: u32,
    /// `wc_sec | wc_sec_hi << 32`.
    pub seconds: u64,
    pub nanoseconds: u32,
}

impl Wallclock {
    /// UTC seconds at `now`.
    pub fn seconds_at(&self, now: SystemTime) -> u64 {
        let nanoseconds = u64::from(self.nanoseconds).saturating_add(now.nanoseconds());
        self.seconds.saturating_add(nanoseconds / 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mul: u32, shift: i8) -> VcpuTime {
        VcpuTime {
            version: 2,
            tsc_timestamp: 1_000,
            system_time: 5_000_000,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            flags: TSC_STABLE,
        }
    }

    #[test]
    fn extrapolates_like_linux() {
        // A 2 GHz TSC: 0.5 ns per tick is mul = 2^31 with shift 0.
        let time = record(1 << 31, 0);
        assert_eq!(time.system_time_at(1_000), SystemTime(5_000_000));
        assert_eq!(time.system_time_at(3_000), SystemTime(5_001_000));
        // Same rate expressed with shift -1 and mul = 2^32 - 1 ~ 1.0.
        let shifted = record(u32::MAX, -1);
        assert_eq!(shifted.system_time_at(3_000), SystemTime(5_000_999));
        // A TSC behind the record's timestamp does not go backwards.
        assert_eq!(time.system_time_at(0), SystemTime(5_000_000));
    }

    #[test]
    fn tsc_frequency_follows_the_scale() {
        assert_eq!(record(1 << 31, 0).tsc_khz(), 2_000_000);
        assert_eq!(record(1 << 31, 1).tsc_khz(), 1_000_000);
        assert_eq!(record(1 << 31, -1).tsc_khz(), 4_000_000);
        assert_eq!(record(0, 0).tsc_khz(), 0);
    }

    #[test]
    fn wallclock_adds_system_time() {
        let wallclock = Wallclock {
            version: 2,
            seconds: 1_700_000_000,
            nanoseconds: 900_000_000,
        };
        assert_eq!(
            wallclock.seconds_at(SystemTime(2_200_000_000)),
            1_700_000_003
        );
    }
}
