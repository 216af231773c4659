//! TSC-to-nanosecond scaling: the `(tsc_to_system_mul, tsc_shift)` pair of
//! `vcpu_time_info`, derived the way Xen's `set_time_scale` derives it and
//! applied the way Xen's `scale_delta` and Linux's `pvclock_scale_delta` do.

use super::{NANOSECONDS_PER_SECOND, TimeError};

/// Converts tick counts to nanoseconds:
/// `ns = ((ticks << shift, or >> -shift) * mul) >> 32`.
///
/// `mul` is a 32-bit binary fraction; `shift` brings the frequency into
/// (1 GHz, 2 GHz] first, so `mul` always lies in [2^31, 2^32) and keeps 31
/// significant bits (better than 0.001 ppm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeScale {
    /// `tsc_to_system_mul`.
    pub mul: u32,
    /// `tsc_shift`: positive shifts the tick count left, negative right.
    pub shift: i8,
}

impl TimeScale {
    /// The scale for a counter running at `ticks_per_second`, computed
    /// exactly as Xen's `set_time_scale` (`xen/arch/x86/time.c`): halve the
    /// frequency while it exceeds 2·10^9, double it while it is at most
    /// 10^9, then `mul = (10^9 << 32) / frequency`.
    pub fn from_frequency(ticks_per_second: u64) -> Result<Self, TimeError> {
        if ticks_per_second == 0 {
            return Err(TimeError::ZeroFrequency);
        }
        let mut frequency = ticks_per_second;
        let mut shift: i8 = 0;
        while frequency > 2 * NANOSECONDS_PER_SECOND {
            frequency >>= 1;
            shift -= 1;
        }
        while frequency <= NANOSECONDS_PER_SECOND {
            frequency <<= 1;
            shift += 1;
        }
        // frequency is now in (10^9, 2·10^9], so the quotient is in
        // [2^31, 2^32): it fits, as Xen's 32-bit `divl` requires.
        let mul = (NANOSECONDS_PER_SECOND << 32) / frequency;
        let mul = u32::try_from(mul).unwrap_or(u32::MAX);
        Ok(Self { mul, shift })
    }

    /// Nanoseconds in `ticks`, as a pvclock reader computes them: a shift
    /// (bits shifted out are lost, as in C) then a 64×32→96-bit multiply.
    pub const fn ticks_to_ns(self, ticks: u64) -> u64 {
        let shifted = if self.shift < 0 {
            ticks.wrapping_shr(self.shift.unsigned_abs() as u32)
        } else {
            ticks.wrapping_shl(self.shift as u32)
        };
        ((shifted as u128 * self.mul as u128) >> 32) as u64
    }

    /// The TSC frequency in kHz as Linux derives it from this pair
    /// (`pvclock_tsc_khz`): `(10^6 << 32) / mul`, then undo the shift.
    pub const fn tsc_khz(self) -> u64 {
        if self.mul == 0 {
            return 0;
        }
        let khz = (1_000_000u64 << 32) / self.mul as u64;
        if self.shift < 0 {
            khz.wrapping_shl(self.shift.unsigned_abs() as u32)
        } else {
            khz.wrapping_shr(self.shift as u32)
        }
    }
}
