//! The wallclock in `shared_info`: UTC at system time zero. Linux computes
//! the time of day as wallclock + current system time.

use super::{NANOSECONDS_PER_SECOND, SystemTime, TimeError};

/// Offset of `wc_version` in `shared_info`; `wc_sec` (low 32 bits),
/// `wc_nsec` and `wc_sec_hi` follow it at +4, +8 and +12.
pub const WALLCLOCK_OFFSET: usize = 3072;

/// UTC at system time zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wallclock {
    /// Seconds since the Unix epoch.
    pub seconds: u64,
    /// Nanoseconds past `seconds`, below 10^9.
    pub nanoseconds: u32,
}

impl Wallclock {
    /// The record's size: `wc_version`, `wc_sec`, `wc_nsec`, `wc_sec_hi`.
    pub const SIZE: usize = 16;

    /// The wallclock from a UTC time (`utc_seconds` + `utc_nanoseconds`
    /// since 1970) read at system time `read_at`, such as the RTC read at
    /// boot.
    pub fn from_utc(
        utc_seconds: u64,
        utc_nanoseconds: u32,
        read_at: SystemTime,
    ) -> Result<Self, TimeError> {
        if u64::from(utc_nanoseconds) >= NANOSECONDS_PER_SECOND {
            return Err(TimeError::NanosecondsOutOfRange);
        }
        let utc = u128::from(utc_seconds) * u128::from(NANOSECONDS_PER_SECOND)
            + u128::from(utc_nanoseconds);
        let zero = utc
            .checked_sub(u128::from(read_at.as_nanos()))
            .ok_or(TimeError::WallclockBeforeEpoch)?;
        let nanoseconds_per_second = u128::from(NANOSECONDS_PER_SECOND);
        Ok(Self {
            // utc_seconds fits in u64, and zero <= utc.
            seconds: u64::try_from(zero / nanoseconds_per_second).unwrap_or(u64::MAX),
            nanoseconds: u32::try_from(zero % nanoseconds_per_second).unwrap_or(0),
        })
    }

    /// UTC at system time `time`, as (seconds, nanoseconds) since 1970.
    pub fn utc_at(&self, time: SystemTime) -> (u64, u32) {
        let total_nanoseconds =
            u64::from(self.nanoseconds) + time.as_nanos() % NANOSECONDS_PER_SECOND;
        let seconds = self
            .seconds
            .saturating_add(time.as_nanos() / NANOSECONDS_PER_SECOND)
            .saturating_add(total_nanoseconds / NANOSECONDS_PER_SECOND);
        // Below 10^9, so it fits.
        let nanoseconds = (total_nanoseconds % NANOSECONDS_PER_SECOND) as u32;
        (seconds, nanoseconds)
    }

    /// The 16 bytes at [`WALLCLOCK_OFFSET`]: `wc_version` (given), `wc_sec`
    /// (low half), `wc_nsec`, `wc_sec_hi` (Linux 6.1 ignores it; Xen fills
    /// it for 64-bit guests). Publish bytes 4.. with [`super::publish`].
    pub fn encode(&self, version: u32) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..4].copy_from_slice(&version.to_le_bytes());
        bytes[4..8].copy_from_slice(&(self.seconds as u32).to_le_bytes());
        bytes[8..12].copy_from_slice(&self.nanoseconds.to_le_bytes());
        bytes[12..16].copy_from_slice(&((self.seconds >> 32) as u32).to_le_bytes());
        bytes
    }
}
