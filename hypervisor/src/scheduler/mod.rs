//! A credit scheduler for vCPUs in the manner of Xen's credit2
//! (`xen/common/sched/credit2.c`), as pure logic: time comes in as an
//! argument, decisions go out as values.
//!
//! - Every vCPU has a weight (default 256) and credit, in nanoseconds of
//!   CPU at the run queue's highest weight. Running burns credit at
//!   `max_weight / weight` per nanosecond, so heavier vCPUs burn slower.
//! - The eligible vCPU with the most credit runs, until its credit falls to
//!   the next one's, within [`SchedulerConfig::min_timeslice_ns`] and
//!   [`SchedulerConfig::timeslice_ns`].
//! - When the best candidate has no credit left, everyone gains
//!   [`CREDIT_INIT`] (capped at `CREDIT_INIT` + 0.5 ms, so a vCPU that
//!   slept cannot hoard). Blocked vCPUs keep their credit, so they win the
//!   pCPU promptly when they wake.
//! - A cap (percent of one CPU) is a budget per
//!   [`SchedulerConfig::cap_period_ns`]; a vCPU that spends it is parked
//!   (offline) until the next period boundary.
//!
//! The data model is SMP-shaped: one [`RunQueue`] per pCPU, every vCPU
//! assigned to one. Only pCPU 0 exists for now; there is no balancing.
//!
//! How the hypervisor drives it, per pCPU:
//! 1. `pick(cpu, now)` → run `next` for at most `run_for_ns` (arm a timer),
//!    or halt until an interrupt or `run_for_ns` if `next` is `None`.
//! 2. When the vCPU stops (timer, `HLT`, hypercall, interrupt):
//!    `account(vcpu, guest_ns, now)`, then `block` if it halted, then
//!    `pick` again.
//! 3. `wake`, `unpause` and `add` return a pCPU to interrupt and `pick` on,
//!    when the woken vCPU should preempt what runs there.
//! 4. `runstate(vcpu)` gives the record to copy into the guest's runstate
//!    area at context switches.

mod run_queue;
mod runstate;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

pub use run_queue::RunQueue;
pub use runstate::{RUNSTATE_UPDATE, Runstate, VcpuState};

use crate::time::SystemTime;

/// Weight of a vCPU nobody configured (Xen's `CSCHED2_DEFAULT_WEIGHT`).
pub const DEFAULT_WEIGHT: u16 = 256;

/// Credit a vCPU starts with and a reset adds: 10 ms at the highest
/// weight (`CSCHED2_CREDIT_INIT`).
pub const CREDIT_INIT: i64 = 10_000_000;

/// Credit never goes below this (`CSCHED2_CREDIT_MIN`).
const CREDIT_MIN: i64 = -CREDIT_INIT;

/// Credit a vCPU may carry over a reset (`CSCHED2_CARRYOVER_MAX`).
const CARRYOVER_MAX: i64 = 500_000;

/// Bounds on [`SchedulerConfig`]: no slice shorter than 100 µs, none
/// longer than [`CREDIT_INIT`] (credit2's `CSCHED2_MAX_TIMER`).
pub const MIN_TIMESLICE_FLOOR_NS: u64 = 100_000;
/// See [`MIN_TIMESLICE_FLOOR_NS`].
pub const MAX_TIMESLICE_NS: u64 = CREDIT_INIT as u64;
/// Cap periods from 1 ms to 1 s.
pub const CAP_PERIOD_RANGE_NS: core::ops::RangeInclusive<u64> = 1_000_000..=1_000_000_000;

/// Tunables, checked by [`Scheduler::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Longest slice (default 10 ms).
    pub timeslice_ns: u64,
    /// Shortest slice (default 1 ms), except where a cap's budget is
    /// shorter: the cap wins.
    pub min_timeslice_ns: u64,
    /// A vCPU just switched in keeps the pCPU this long before a wake-up
    /// can take it (default 1 ms, credit2's default rate limit; 0 = off).
    /// This bounds the wake-up latency of a vCPU with more credit.
    pub ratelimit_ns: u64,
    /// Caps are enforced per period of this length (default 10 ms).
    pub cap_period_ns: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            timeslice_ns: 10_000_000,
            min_timeslice_ns: 1_000_000,
            ratelimit_ns: 1_000_000,
            cap_period_ns: 10_000_000,
        }
    }
}

impl SchedulerConfig {
    fn is_valid(&self) -> bool {
        MIN_TIMESLICE_FLOOR_NS <= self.min_timeslice_ns
            && self.min_timeslice_ns <= self.timeslice_ns
            && self.timeslice_ns <= MAX_TIMESLICE_NS
            && self.ratelimit_ns <= self.timeslice_ns
            && CAP_PERIOD_RANGE_NS.contains(&self.cap_period_ns)
    }
}

/// A physical CPU, numbered from 0 in the order the hypervisor brought them
/// up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysicalCpu(pub u32);

/// What a pCPU should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<V> {
    /// The vCPU to run, or `None` to idle (halt until an interrupt).
    pub next: Option<V>,
    /// Ask again after this long at most. When idle, `None` means nothing
    /// is due: only an interrupt (a wake-up) needs a new decision; `Some`
    /// is the time until a parked vCPU gets budget back.
    pub run_for_ns: Option<u64>,
}

/// Why a scheduler operation was refused. These are the hypervisor's own
/// mistakes or configuration errors, never a guest's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerError {
    /// The configuration is outside the documented bounds.
    InvalidConfig,
    /// No such pCPU.
    InvalidCpu,
    /// The vCPU is not in the scheduler.
    UnknownVcpu,
    /// The vCPU is in the scheduler already.
    AlreadyPresent,
    /// The scheduler holds as many vCPUs as it was sized for.
    Full,
    /// Weights run from 1 to 65535.
    InvalidWeight,
    /// Caps run from 1 to 100 percent (`None` for no cap).
    InvalidCap,
    /// `unpause` without a matching `pause`.
    NotPaused,
    /// Too many nested `pause` calls.
    PauseCountOverflow,
}

impl fmt::Display for SchedulerError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::InvalidConfig => "scheduler configuration out of bounds",
            Self::InvalidCpu => "no such physical CPU",
            Self::UnknownVcpu => "vCPU not in the scheduler",
            Self::AlreadyPresent => "vCPU already in the scheduler",
            Self::Full => "scheduler full",
            Self::InvalidWeight => "weight must be 1 to 65535",
            Self::InvalidCap => "cap must be 1 to 100 percent",
            Self::NotPaused => "vCPU is not paused",
            Self::PauseCountOverflow => "too many nested pauses",
        })
    }
}

/// The scheduler: one run queue per pCPU, generic over the vCPU handle.
#[derive(Debug)]
pub struct Scheduler<V> {
    config: SchedulerConfig,
    run_queues: Vec<RunQueue<V>>,
    max_vcpus: usize,
}

impl<V: Copy + Ord> Scheduler<V> {
    /// A scheduler for `physical_cpus` pCPUs (at least one) and at most
    /// `max_vcpus` vCPUs.
    pub fn new(
        physical_cpus: usize,
        max_vcpus: usize,
        config: SchedulerConfig,
    ) -> Result<Self, SchedulerError> {
        if !config.is_valid() {
            return Err(SchedulerError::InvalidConfig);
        }
        if physical_cpus == 0 || u32::try_from(physical_cpus).is_err() {
            return Err(SchedulerError::InvalidCpu);
        }
        Ok(Self {
            config,
            run_queues: (0..physical_cpus).map(|_| RunQueue::new(config)).collect(),
            max_vcpus,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// How many pCPUs there are.
    pub fn physical_cpus(&self) -> usize {
        self.run_queues.len()
    }

    /// How many vCPUs there are, in any state.
    pub fn len(&self) -> usize {
        self.run_queues.iter().map(RunQueue::len).sum()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A pCPU's run queue.
    pub fn run_queue(&self, cpu: PhysicalCpu) -> Option<&RunQueue<V>> {
        self.run_queues.get(usize::try_from(cpu.0).ok()?)
    }

    /// The pCPU a vCPU is assigned to.
    pub fn cpu_of(&self, vcpu: V) -> Option<PhysicalCpu> {
        self.locate(vcpu).ok().map(|(cpu, _)| cpu)
    }

    /// The vCPU running on a pCPU.
    pub fn current(&self, cpu: PhysicalCpu) -> Option<V> {
        self.run_queue(cpu)?.current()
    }

    /// A vCPU's state.
    pub fn state(&self, vcpu: V) -> Option<VcpuState> {
        self.queue_of(vcpu)?.state(vcpu)
    }

    /// A vCPU's runstate record as last changed; [`Runstate::at`] adds the
    /// current interval.
    pub fn runstate(&self, vcpu: V) -> Option<Runstate> {
        self.queue_of(vcpu)?.runstate(vcpu)
    }

    /// A vCPU's credit, in nanoseconds at its queue's highest weight.
    pub fn credit(&self, vcpu: V) -> Option<i64> {
        self.queue_of(vcpu)?.credit(vcpu)
    }

    /// A vCPU's weight.
    pub fn weight(&self, vcpu: V) -> Option<u16> {
        self.queue_of(vcpu)?.weight(vcpu)
    }

    /// A vCPU's cap (`Some(None)`: present, uncapped).
    pub fn cap(&self, vcpu: V) -> Option<Option<u8>> {
        self.queue_of(vcpu)?.cap(vcpu)
    }

    /// Adds a runnable vCPU with `weight` (1–65535) and an optional `cap`
    /// (1–100 percent of one CPU) to the pCPU with the fewest vCPUs, with
    /// full credit. Returns the pCPU to `pick` on now, if the new vCPU
    /// should run there at once. A vCPU that must not run yet (a secondary
    /// vCPU before `VCPUOP_up`) is added, then paused.
    pub fn add(
        &mut self,
        vcpu: V,
        weight: u16,
        cap: Option<u8>,
        now: SystemTime,
    ) -> Result<Option<PhysicalCpu>, SchedulerError> {
        check_params(weight, cap)?;
        if self.locate(vcpu).is_ok() {
            return Err(SchedulerError::AlreadyPresent);
        }
        if self.len() >= self.max_vcpus {
            return Err(SchedulerError::Full);
        }
        let (index, queue) = self
            .run_queues
            .iter_mut()
            .enumerate()
            .min_by_key(|(index, queue)| (queue.len(), *index))
            .ok_or(SchedulerError::InvalidCpu)?;
        let cpu = cpu_at(index);
        Ok(queue.add(vcpu, weight, cap, now).then_some(cpu))
    }

    /// Removes a vCPU; returns its final runstate. If it was running, its
    /// pCPU must `pick` again.
    pub fn remove(&mut self, vcpu: V, now: SystemTime) -> Result<Runstate, SchedulerError> {
        let (_, queue) = self.locate_mut(vcpu)?;
        queue.remove(vcpu, now).ok_or(SchedulerError::UnknownVcpu)
    }

    /// The vCPU waits for an event (`SCHEDOP_block`, `HLT`). If it was
    /// running, its pCPU must `pick` again. Blocking twice is harmless.
    pub fn block(&mut self, vcpu: V, now: SystemTime) -> Result<(), SchedulerError> {
        self.locate_mut(vcpu)?.1.block(vcpu, now)
    }

    /// An event arrived for the vCPU. Returns the pCPU to `pick` on now if
    /// it should preempt what runs there (more credit, or an idle pCPU).
    /// Waking a vCPU that is not blocked does nothing.
    pub fn wake(
        &mut self,
        vcpu: V,
        now: SystemTime,
    ) -> Result<Option<PhysicalCpu>, SchedulerError> {
        let (cpu, queue) = self.locate_mut(vcpu)?;
        Ok(queue.wake(vcpu, now)?.then_some(cpu))
    }

    /// Stops the vCPU from running until a matching `unpause` (pauses
    /// nest). If it was running, its pCPU must `pick` again.
    pub fn pause(&mut self, vcpu: V, now: SystemTime) -> Result<(), SchedulerError> {
        self.locate_mut(vcpu)?.1.pause(vcpu, now)
    }

    /// Undoes one `pause`; returns the pCPU to `pick` on now, as `wake`.
    pub fn unpause(
        &mut self,
        vcpu: V,
        now: SystemTime,
    ) -> Result<Option<PhysicalCpu>, SchedulerError> {
        let (cpu, queue) = self.locate_mut(vcpu)?;
        Ok(queue.unpause(vcpu, now)?.then_some(cpu))
    }

    /// The running vCPU gives way (`SCHEDOP_yield`): the next `pick` on its
    /// pCPU prefers anyone else eligible, whatever their credit.
    pub fn yield_cpu(&mut self, vcpu: V) -> Result<(), SchedulerError> {
        self.locate_mut(vcpu)?.1.yield_cpu(vcpu)
    }

    /// Changes a vCPU's weight (1–65535).
    pub fn set_weight(
        &mut self,
        vcpu: V,
        weight: u16,
        now: SystemTime,
    ) -> Result<(), SchedulerError> {
        check_params(weight, None)?;
        self.locate_mut(vcpu)?.1.set_weight(vcpu, weight, now)
    }

    /// Changes a vCPU's cap (1–100 percent, or `None`); the new cap starts
    /// with a full budget. Returns the pCPU to `pick` on, as `wake`.
    pub fn set_cap(
        &mut self,
        vcpu: V,
        cap: Option<u8>,
        now: SystemTime,
    ) -> Result<Option<PhysicalCpu>, SchedulerError> {
        check_params(DEFAULT_WEIGHT, cap)?;
        let (cpu, queue) = self.locate_mut(vcpu)?;
        Ok(queue.set_cap(vcpu, cap, now)?.then_some(cpu))
    }

    /// Charges `ran_ns` nanoseconds of CPU (what the guest actually ran,
    /// measured by the hypervisor) to `vcpu`, at `now`. A capped vCPU that
    /// spends its budget is parked and, if running, taken off its pCPU,
    /// which must `pick` again.
    pub fn account(&mut self, vcpu: V, ran_ns: u64, now: SystemTime) -> Result<(), SchedulerError> {
        self.locate_mut(vcpu)?.1.account(vcpu, ran_ns, now)
    }

    /// What `cpu` should do from `now`. The vCPU it ran before must have
    /// been `account`ed first.
    pub fn pick(
        &mut self,
        cpu: PhysicalCpu,
        now: SystemTime,
    ) -> Result<Decision<V>, SchedulerError> {
        let index = usize::try_from(cpu.0).map_err(|_| SchedulerError::InvalidCpu)?;
        let queue = self
            .run_queues
            .get_mut(index)
            .ok_or(SchedulerError::InvalidCpu)?;
        Ok(queue.pick(now))
    }

    fn locate(&self, vcpu: V) -> Result<(PhysicalCpu, &RunQueue<V>), SchedulerError> {
        self.run_queues
            .iter()
            .enumerate()
            .find(|(_, queue)| queue.contains(vcpu))
            .map(|(index, queue)| (cpu_at(index), queue))
            .ok_or(SchedulerError::UnknownVcpu)
    }

    fn locate_mut(&mut self, vcpu: V) -> Result<(PhysicalCpu, &mut RunQueue<V>), SchedulerError> {
        self.run_queues
            .iter_mut()
            .enumerate()
            .find(|(_, queue)| queue.contains(vcpu))
            .map(|(index, queue)| (cpu_at(index), queue))
            .ok_or(SchedulerError::UnknownVcpu)
    }

    fn queue_of(&self, vcpu: V) -> Option<&RunQueue<V>> {
        self.locate(vcpu).ok().map(|(_, queue)| queue)
    }
}

fn check_params(weight: u16, cap: Option<u8>) -> Result<(), SchedulerError> {
    if weight == 0 {
        return Err(SchedulerError::InvalidWeight);
    }
    if cap.is_some_and(|percent| !(1..=100).contains(&percent)) {
        return Err(SchedulerError::InvalidCap);
    }
    Ok(())
}

/// The pCPU at a run-queue index; `new` checked that indices fit in u32.
fn cpu_at(index: usize) -> PhysicalCpu {
    PhysicalCpu(u32::try_from(index).unwrap_or(u32::MAX))
}
