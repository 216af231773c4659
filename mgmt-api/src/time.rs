//! Time as the caller gives it: milliseconds on a monotonic clock whose
//! origin does not matter. The API never reads a clock itself.

use core::ops::Add;

/// A point on the caller's monotonic clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    /// Milliseconds since the clock's origin.
    pub millis: u64,
}

impl Instant {
    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant { millis }
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later (a clock
    /// going backwards must not underflow).
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.millis.saturating_sub(earlier.millis))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, duration: Duration) -> Instant {
        Instant::from_millis(self.millis.saturating_add(duration.millis))
    }
}

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    /// Milliseconds.
    pub millis: u64,
}

impl Duration {
    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Duration {
        Duration { millis }
    }

    /// `seconds` seconds.
    pub const fn from_secs(seconds: u64) -> Duration {
        Duration {
            millis: seconds.saturating_mul(1000),
        }
    }
}
