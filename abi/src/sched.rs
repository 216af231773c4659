//! `sched_op` hypercall (number 29): commands and shutdown reasons (`sched.h`).

pub const SCHEDOP_YIELD: u64 = 0;
pub const SCHEDOP_BLOCK: u64 = 1;
pub const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SCHEDOP_POLL: u64 = 3;
pub const SCHEDOP_REMOTE_SHUTDOWN: u64 = 4;
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
pub const SCHEDOP_WATCHDOG: u64 = 6;

/// Why a domain asks to stop (`struct sched_shutdown { u32 reason; }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
}

impl ShutdownReason {
    /// Decodes the `reason` field; unknown values are the guest's error.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => Self::Poweroff,
            1 => Self::Reboot,
            2 => Self::Suspend,
            3 => Self::Crash,
            4 => Self::Watchdog,
            5 => Self::SoftReset,
            _ => return None,
        })
    }

    pub const fn as_raw(self) -> u32 {
        match self {
            Self::Poweroff => 0,
            Self::Reboot => 1,
            Self::Suspend => 2,
            Self::Crash => 3,
            Self::Watchdog => 4,
            Self::SoftReset => 5,
        }
    }
}
