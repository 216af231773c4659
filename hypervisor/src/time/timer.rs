//! Per-vCPU guest timers (one single-shot, one periodic, as in Xen) and the
//! queue that finds the earliest deadline across vCPUs. Every expiry means
//! the same thing to the guest: raise `VIRQ_TIMER` on that vCPU.

use alloc::vec::Vec;
use core::fmt;

use xenolith_abi::errno::Errno;

use super::SystemTime;

/// `VCPU_SSHOTTMR_future`: fail with `-ETIME` rather than fire at once if
/// the deadline has passed. Linux 6.1 passes 0. Current Xen ignores the
/// flag (the header allows it); Xenolith honours it, as Xen did before.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// The shortest period `VCPUOP_set_periodic_timer` accepts: Xen returns
/// `-EINVAL` below one millisecond (`xen/common/domain.c`).
pub const MIN_PERIOD_NS: u64 = 1_000_000;

/// The longest period it accepts: Xen's `STIME_DELTA_MAX`, 2^62 − 1 ns, so
/// that `now + period` cannot overflow within 200 years of uptime.
pub const MAX_PERIOD_NS: u64 = u64::MAX >> 2;

/// Linux's `ETIME` (not in `xenolith_abi::errno` yet).
const ETIME: Errno = Errno(62);

/// What `set_timer_op` does with a deadline it thinks is a guest's wrapped
/// jiffies: fire in 100 ms (Xen's `do_set_timer_op`).
const HUGE_TIMEOUT_FALLBACK_NS: u64 = 100_000_000;

/// Why a timer hypercall was refused; both are the guest's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerError {
    /// `VCPU_SSHOTTMR_future` was set and the deadline has passed.
    DeadlinePassed,
    /// The period is under [`MIN_PERIOD_NS`] or over [`MAX_PERIOD_NS`].
    InvalidPeriod,
}

impl TimerError {
    /// The error the hypercall returns.
    pub const fn errno(self) -> Errno {
        match self {
            Self::DeadlinePassed => ETIME,
            Self::InvalidPeriod => Errno::EINVAL,
        }
    }
}

impl fmt::Display for TimerError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::DeadlinePassed => "single-shot deadline already passed",
            Self::InvalidPeriod => "periodic timer period out of range",
        })
    }
}

/// One vCPU's timers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimers {
    singleshot: Option<SystemTime>,
    /// Zero when the periodic timer is off.
    period_ns: u64,
    /// When the periodic timer last fired; time zero for a new vCPU, so
    /// the first `set_periodic` fires at once, as in Xen.
    periodic_last_event: SystemTime,
}

impl VcpuTimers {
    /// No timer running.
    pub const fn new() -> Self {
        Self {
            singleshot: None,
            period_ns: 0,
            periodic_last_event: SystemTime::ZERO,
        }
    }

    /// `VCPUOP_set_singleshot_timer { timeout_abs_ns, flags }`. Replaces any
    /// earlier single-shot deadline. A deadline already passed fires at
    /// the next [`VcpuTimers::expire`] (Xen injects it at once), unless
    /// `flags` has [`VCPU_SSHOTTMR_FUTURE`]: then the timer is left as it
    /// was and the call fails. Other flag bits are ignored, as in Xen.
    pub fn set_singleshot(
        &mut self,
        timeout_abs: SystemTime,
        flags: u32,
        now: SystemTime,
    ) -> Result<(), TimerError> {
        if flags & VCPU_SSHOTTMR_FUTURE != 0 && timeout_abs < now {
            return Err(TimerError::DeadlinePassed);
        }
        self.singleshot = Some(timeout_abs);
        Ok(())
    }

    /// `VCPUOP_stop_singleshot_timer`; stopping a stopped timer is fine.
    pub fn stop_singleshot(&mut self) {
        self.singleshot = None;
    }

    /// `set_timer_op(timeout)` (hypercall 15), Xen's `do_set_timer_op`: 0
    /// stops the single-shot timer; a deadline that is negative as a signed
    /// value, or more than 2^50 ns (about 13 days) ahead, is taken for
    /// wrapped jiffies and replaced by `now` + 100 ms; anything else arms
    /// the single-shot timer.
    pub fn set_timer_op(&mut self, timeout: u64, now: SystemTime) {
        let offset = (timeout as i64).wrapping_sub(now.as_nanos() as i64);
        self.singleshot = if timeout == 0 {
            None
        } else if (timeout as i64) < 0 || (offset > 0 && offset >> 50 != 0) {
            Some(now.saturating_add_ns(HUGE_TIMEOUT_FALLBACK_NS))
        } else {
            Some(SystemTime(timeout))
        };
    }

    /// `VCPUOP_set_periodic_timer { period_ns }`. The next tick is one
    /// period after the last one (time zero if it never ticked), so it may
    /// be due at once, as in Xen.
    pub fn set_periodic(&mut self, period_ns: u64) -> Result<(), TimerError> {
        if !(MIN_PERIOD_NS..=MAX_PERIOD_NS).contains(&period_ns) {
            return Err(TimerError::InvalidPeriod);
        }
        self.period_ns = period_ns;
        Ok(())
    }

    /// `VCPUOP_stop_periodic_timer`; stopping a stopped timer is fine.
    pub fn stop_periodic(&mut self) {
        self.period_ns = 0;
    }

    /// The single-shot deadline, if armed.
    pub const fn singleshot_deadline(&self) -> Option<SystemTime> {
        self.singleshot
    }

    /// The periodic timer's period, if running.
    pub const fn period_ns(&self) -> Option<u64> {
        if self.period_ns == 0 {
            None
        } else {
            Some(self.period_ns)
        }
    }

    /// The next periodic tick, if running.
    pub const fn periodic_deadline(&self) -> Option<SystemTime> {
        if self.period_ns == 0 {
            None
        } else {
            Some(self.periodic_last_event.saturating_add_ns(self.period_ns))
        }
    }

    /// The earliest deadline of either timer.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        match (self.singleshot, self.periodic_deadline()) {
            (Some(single), Some(periodic)) => Some(single.min(periodic)),
            (single, periodic) => single.or(periodic),
        }
    }

    /// Fires whatever is due at `now`; true if anything did (raise
    /// `VIRQ_TIMER` once). The single-shot timer disarms. The periodic
    /// timer's next tick is `now` + period: ticks missed while late are
    /// dropped, not caught up (Xen's `vcpu_periodic_timer_work`).
    pub fn expire(&mut self, now: SystemTime) -> bool {
        let mut fired = false;
        if self.singleshot.is_some_and(|deadline| deadline <= now) {
            self.singleshot = None;
            fired = true;
        }
        if self
            .periodic_deadline()
            .is_some_and(|deadline| deadline <= now)
        {
            self.periodic_last_event = now;
            fired = true;
        }
        fired
    }
}

/// Why a vCPU could not join the [`TimerQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerQueueError {
    /// The queue already holds as many vCPUs as it was sized for.
    Full,
    /// The vCPU is already in the queue.
    AlreadyPresent,
}

/// Every vCPU's timers, and the earliest deadline among them.
///
/// Sized at creation for a number of vCPUs and never grows. A linear scan
/// finds the earliest deadline: vCPU counts are small, and the scan has no
/// state to fall out of step with the timers.
#[derive(Debug)]
pub struct TimerQueue<V> {
    /// Sorted by vCPU, so scans and ties are deterministic.
    entries: Vec<(V, VcpuTimers)>,
    capacity: usize,
}

impl<V: Copy + Ord> TimerQueue<V> {
    /// An empty queue with room for `max_vcpus` vCPUs.
    pub fn with_capacity(max_vcpus: usize) -> Self {
        Self {
            entries: Vec::with_capacity(max_vcpus),
            capacity: max_vcpus,
        }
    }

    /// How many vCPUs the queue holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a vCPU with no timer running.
    pub fn insert(&mut self, vcpu: V) -> Result<(), TimerQueueError> {
        let index = match self.find(vcpu) {
            Ok(_) => return Err(TimerQueueError::AlreadyPresent),
            Err(index) => index,
        };
        if self.entries.len() >= self.capacity {
            return Err(TimerQueueError::Full);
        }
        self.entries.insert(index, (vcpu, VcpuTimers::new()));
        Ok(())
    }

    /// Removes a vCPU, returning its timers.
    pub fn remove(&mut self, vcpu: V) -> Option<VcpuTimers> {
        let index = self.find(vcpu).ok()?;
        Some(self.entries.remove(index).1)
    }

    /// A vCPU's timers.
    pub fn timers(&self, vcpu: V) -> Option<&VcpuTimers> {
        let index = self.find(vcpu).ok()?;
        self.entries.get(index).map(|(_, timers)| timers)
    }

    /// A vCPU's timers, to set or stop them.
    pub fn timers_mut(&mut self, vcpu: V) -> Option<&mut VcpuTimers> {
        let index = self.find(vcpu).ok()?;
        self.entries.get_mut(index).map(|(_, timers)| timers)
    }

    /// The earliest deadline and its vCPU (the lowest vCPU on a tie).
    pub fn next_deadline(&self) -> Option<(SystemTime, V)> {
        self.entries
            .iter()
            .filter_map(|(vcpu, timers)| Some((timers.next_deadline()?, *vcpu)))
            .min()
    }

    /// Expires every timer due at `now`, calling `fire` once per vCPU that
    /// had one, in vCPU order. Returns how many vCPUs fired.
    pub fn expire(&mut self, now: SystemTime, mut fire: impl FnMut(V)) -> usize {
        let mut count = 0;
        for (vcpu, timers) in &mut self.entries {
            if timers.expire(now) {
                fire(*vcpu);
                count += 1;
            }
        }
        count
    }

    fn find(&self, vcpu: V) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(candidate, _)| candidate.cmp(&vcpu))
    }
}
