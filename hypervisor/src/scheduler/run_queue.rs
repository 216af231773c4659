//! One pCPU's run queue: its vCPUs' credits, cap budgets and states, and
//! the choice of which runs next.

use alloc::vec::Vec;
use core::cmp::Reverse;

use super::{
    CARRYOVER_MAX, CREDIT_INIT, CREDIT_MIN, DEFAULT_WEIGHT, Decision, Runstate, SchedulerConfig,
    SchedulerError, VcpuState,
};
use crate::time::SystemTime;

/// A cap's budget: CPU time left in the current accounting period.
#[derive(Clone, Copy, Debug)]
struct Budget {
    /// Percent of one CPU.
    percent: u8,
    /// Budget granted per period.
    quota_ns: i64,
    /// Budget left; negative after an overrun, which the next period repays.
    remaining_ns: i64,
    /// Out of budget: not allowed to run until a replenishment.
    parked: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry<V> {
    vcpu: V,
    weight: u16,
    budget: Option<Budget>,
    /// Nanoseconds of CPU at the queue's highest weight.
    credit: i64,
    /// What integer division left over when burning credit, so that many
    /// short runs burn as much as one long one.
    residual: u64,
    blocked: bool,
    pause_count: u32,
    yielding: bool,
    /// Order of becoming runnable: the earlier wins among equal credits.
    sequence: u64,
    runstate: Runstate,
}

impl<V> Entry<V> {
    fn parked(&self) -> bool {
        self.budget.is_some_and(|budget| budget.parked)
    }

    /// May run: not blocked, paused or parked.
    fn eligible(&self) -> bool {
        !self.blocked && self.pause_count == 0 && !self.parked()
    }

    /// Its state when not on the pCPU (Xen's rule in `sched_switch_units`:
    /// blocked beats offline).
    fn waiting_state(&self) -> VcpuState {
        if self.blocked {
            VcpuState::Blocked
        } else if self.pause_count != 0 || self.parked() {
            VcpuState::Offline
        } else {
            VcpuState::Runnable
        }
    }
}

/// One pCPU's vCPUs and the scheduling state among them.
#[derive(Debug)]
pub struct RunQueue<V> {
    config: SchedulerConfig,
    entries: Vec<Entry<V>>,
    current: Option<V>,
    /// When `current` was last switched in, for the rate limit.
    running_since: SystemTime,
    /// The highest weight among the entries: it burns credit 1:1.
    max_weight: u16,
    next_sequence: u64,
    /// The next cap-period boundary (periods are aligned to time zero).
    next_replenish: SystemTime,
}

impl<V: Copy + Ord> RunQueue<V> {
    pub(super) fn new(config: SchedulerConfig) -> Self {
        Self {
            config,
            entries: Vec::new(),
            current: None,
            running_since: SystemTime::ZERO,
            max_weight: DEFAULT_WEIGHT,
            next_sequence: 0,
            next_replenish: SystemTime(config.cap_period_ns),
        }
    }

    /// The vCPU on this pCPU, if any.
    pub fn current(&self) -> Option<V> {
        self.current
    }

    /// How many vCPUs are assigned here, in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if none are.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if `vcpu` is assigned here.
    pub fn contains(&self, vcpu: V) -> bool {
        self.index_of(vcpu).is_some()
    }

    /// The assigned vCPUs, in the order they were added.
    pub fn vcpus(&self) -> impl Iterator<Item = V> + '_ {
        self.entries.iter().map(|entry| entry.vcpu)
    }

    /// The next cap-period boundary: parked vCPUs get budget back then.
    pub fn next_replenish(&self) -> SystemTime {
        self.next_replenish
    }

    pub(super) fn state(&self, vcpu: V) -> Option<VcpuState> {
        self.entry(vcpu).map(|entry| entry.runstate.state)
    }

    pub(super) fn runstate(&self, vcpu: V) -> Option<Runstate> {
        self.entry(vcpu).map(|entry| entry.runstate)
    }

    pub(super) fn credit(&self, vcpu: V) -> Option<i64> {
        self.entry(vcpu).map(|entry| entry.credit)
    }

    pub(super) fn weight(&self, vcpu: V) -> Option<u16> {
        self.entry(vcpu).map(|entry| entry.weight)
    }

    pub(super) fn cap(&self, vcpu: V) -> Option<Option<u8>> {
        self.entry(vcpu)
            .map(|entry| entry.budget.map(|budget| budget.percent))
    }

    /// Adds a runnable vCPU with full credit; true if this pCPU should pick
    /// again because of it.
    pub(super) fn add(&mut self, vcpu: V, weight: u16, cap: Option<u8>, now: SystemTime) -> bool {
        self.replenish(now);
        let sequence = self.take_sequence();
        let budget = cap.map(|percent| self.full_budget(percent));
        self.entries.push(Entry {
            vcpu,
            weight,
            budget,
            credit: CREDIT_INIT,
            residual: 0,
            blocked: false,
            pause_count: 0,
            yielding: false,
            sequence,
            runstate: Runstate::new(VcpuState::Runnable, now),
        });
        self.update_max_weight();
        self.should_preempt(self.entries.len() - 1)
    }

    /// Removes a vCPU; returns its runstate, closed at `now` as offline.
    pub(super) fn remove(&mut self, vcpu: V, now: SystemTime) -> Option<Runstate> {
        self.replenish(now);
        let index = self.index_of(vcpu)?;
        if self.current == Some(vcpu) {
            self.current = None;
        }
        let mut entry = self.entries.remove(index);
        entry.runstate.change(VcpuState::Offline, now);
        self.update_max_weight();
        Some(entry.runstate)
    }

    pub(super) fn block(&mut self, vcpu: V, now: SystemTime) -> Result<(), SchedulerError> {
        self.replenish(now);
        let index = self.index_of(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        self.modify(index, now, |entry| entry.blocked = true);
        Ok(())
    }

    pub(super) fn wake(&mut self, vcpu: V, now: SystemTime) -> Result<bool, SchedulerError> {
        self.replenish(now);
        let index = self.index_of(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        if !self.entries.get(index).is_some_and(|entry| entry.blocked) {
            return Ok(false);
        }
        self.modify(index, now, |entry| entry.blocked = false);
        Ok(self.should_preempt(index))
    }

    pub(super) fn pause(&mut self, vcpu: V, now: SystemTime) -> Result<(), SchedulerError> {
        self.replenish(now);
        let index = self.index_of(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        let count = self.entries.get(index).map_or(0, |entry| entry.pause_count);
        let count = count
            .checked_add(1)
            .ok_or(SchedulerError::PauseCountOverflow)?;
        self.modify(index, now, |entry| entry.pause_count = count);
        Ok(())
    }

    pub(super) fn unpause(&mut self, vcpu: V, now: SystemTime) -> Result<bool, SchedulerError> {
        self.replenish(now);
        let index = self.index_of(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        let count = self.entries.get(index).map_or(0, |entry| entry.pause_count);
        let count = count.checked_sub(1).ok_or(SchedulerError::NotPaused)?;
        self.modify(index, now, |entry| entry.pause_count = count);
        Ok(self.should_preempt(index))
    }

    pub(super) fn yield_cpu(&mut self, vcpu: V) -> Result<(), SchedulerError> {
        let entry = self.entry_mut(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        entry.yielding = true;
        Ok(())
    }

    pub(super) fn set_weight(
        &mut self,
        vcpu: V,
        weight: u16,
        now: SystemTime,
    ) -> Result<(), SchedulerError> {
        self.replenish(now);
        let entry = self.entry_mut(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        entry.weight = weight;
        self.update_max_weight();
        Ok(())
    }

    /// Replaces the cap; a new cap starts with a full budget.
    pub(super) fn set_cap(
        &mut self,
        vcpu: V,
        cap: Option<u8>,
        now: SystemTime,
    ) -> Result<bool, SchedulerError> {
        self.replenish(now);
        let index = self.index_of(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        let budget = cap.map(|percent| self.full_budget(percent));
        self.modify(index, now, |entry| entry.budget = budget);
        Ok(self.should_preempt(index))
    }

    /// Charges `ran_ns` of CPU to `vcpu`: credit at `max_weight / weight`
    /// per nanosecond, and cap budget 1:1. A vCPU that runs out of budget
    /// is parked (and taken off the pCPU) until the next replenishment.
    pub(super) fn account(
        &mut self,
        vcpu: V,
        ran_ns: u64,
        now: SystemTime,
    ) -> Result<(), SchedulerError> {
        let index = self.index_of(vcpu).ok_or(SchedulerError::UnknownVcpu)?;
        let max_weight = u128::from(self.max_weight);
        let mut exhausted = false;
        if let Some(entry) = self.entries.get_mut(index) {
            let scaled = u128::from(ran_ns) * max_weight + u128::from(entry.residual);
            let weight = u128::from(entry.weight.max(1));
            // The remainder is below a u16 weight.
            entry.residual = (scaled % weight) as u64;
            let burned = i64::try_from(scaled / weight).unwrap_or(i64::MAX);
            entry.credit = entry.credit.saturating_sub(burned).max(CREDIT_MIN);
            if let Some(budget) = &mut entry.budget {
                let ran = i64::try_from(ran_ns).unwrap_or(i64::MAX);
                budget.remaining_ns = budget.remaining_ns.saturating_sub(ran);
                exhausted = budget.remaining_ns <= 0 && !budget.parked;
            }
        }
        if exhausted {
            self.modify(index, now, |entry| {
                if let Some(budget) = &mut entry.budget {
                    budget.parked = true;
                }
            });
        }
        // After charging, so an overrun that straddles the boundary is
        // repaid from the new period's budget.
        self.replenish(now);
        Ok(())
    }

    /// Chooses what this pCPU runs next, as credit2's `csched2_schedule`:
    /// the eligible vCPU with the most credit (the current one on a tie,
    /// then the longest waiting), after a credit reset if even that one
    /// has none left.
    pub(super) fn pick(&mut self, now: SystemTime) -> Decision<V> {
        self.replenish(now);
        let current_index = self.current.and_then(|vcpu| self.index_of(vcpu));
        let yielding = current_index
            .and_then(|index| self.entries.get_mut(index))
            .is_some_and(|entry| core::mem::take(&mut entry.yielding));

        // Rate limit: a vCPU just switched in keeps the pCPU a little while
        // unless it yields, so a storm of wake-ups cannot thrash it.
        if let (Some(index), false) = (current_index, yielding) {
            let ran_ns = now.saturating_ns_since(self.running_since);
            if ran_ns < self.config.ratelimit_ns {
                let slice = self.limit_slice(index, self.config.ratelimit_ns - ran_ns, now);
                return Decision {
                    next: self.current,
                    run_for_ns: Some(slice),
                };
            }
        }

        let Some(best) = self.best_candidate(current_index, yielding) else {
            self.current = None;
            return Decision {
                next: None,
                run_for_ns: self
                    .any_parked_waiting()
                    .then(|| self.next_replenish.saturating_ns_since(now)),
            };
        };
        if self
            .entries
            .get(best)
            .is_some_and(|entry| entry.credit <= 0)
        {
            self.reset_credit(best);
        }
        let slice = self.runtime(best, now);
        self.switch_to(best, current_index, now);
        Decision {
            next: self.current,
            run_for_ns: Some(slice),
        }
    }

    fn best_candidate(&self, current_index: Option<usize>, yielding: bool) -> Option<usize> {
        let is_current = |index: usize| Some(index) == current_index;
        let best_of = |skip_current: bool| {
            self.entries
                .iter()
                .enumerate()
                .filter(|(index, entry)| entry.eligible() && !(skip_current && is_current(*index)))
                .max_by_key(|(index, entry)| {
                    (entry.credit, is_current(*index), Reverse(entry.sequence))
                })
                .map(|(index, _)| index)
        };
        // A yielding vCPU runs again only if nobody else can.
        if yielding {
            best_of(true).or(current_index)
        } else {
            best_of(false)
        }
    }

    /// credit2's `reset_credit`: everyone gains `CREDIT_INIT` (twice, if
    /// the best is deep in debt) so the best is back in the black; nobody
    /// keeps more than `CREDIT_INIT + CARRYOVER_MAX`.
    fn reset_credit(&mut self, best: usize) {
        let best_credit = self.entries.get(best).map_or(0, |entry| entry.credit);
        let rounds = 1 + best_credit.saturating_neg().max(0) / CREDIT_INIT;
        let reset = rounds.saturating_mul(CREDIT_INIT);
        for entry in &mut self.entries {
            entry.credit = entry
                .credit
                .saturating_add(reset)
                .min(CREDIT_INIT + CARRYOVER_MAX);
        }
    }

    /// credit2's `csched2_runtime`: run until the best's credit falls to
    /// the next waiter's (or to zero if nobody waits), within
    /// [min_timeslice, timeslice], then cut by the cap.
    fn runtime(&self, best: usize, now: SystemTime) -> u64 {
        let Some(chosen) = self.entries.get(best) else {
            return self.config.min_timeslice_ns;
        };
        let waiting_credit = self
            .entries
            .iter()
            .enumerate()
            .filter(|(index, entry)| *index != best && entry.eligible())
            .map(|(_, entry)| entry.credit)
            .max()
            .filter(|credit| *credit > 0);
        let run_credit = match waiting_credit {
            Some(credit) => chosen.credit - credit,
            None => chosen.credit,
        };
        let time = if run_credit > 0 {
            // Credit to time: the inverse of the burn rate.
            let time = i128::from(run_credit) * i128::from(chosen.weight)
                / i128::from(self.max_weight.max(1));
            u64::try_from(time).unwrap_or(u64::MAX)
        } else {
            0
        };
        let time = time.clamp(self.config.min_timeslice_ns, self.config.timeslice_ns);
        self.limit_slice(best, time, now)
    }

    /// Cuts a slice so a capped vCPU stops at the end of its budget and of
    /// the period, and so parked vCPUs get the pCPU back at replenishment.
    fn limit_slice(&self, index: usize, slice_ns: u64, now: SystemTime) -> u64 {
        let to_boundary = self.next_replenish.saturating_ns_since(now).max(1);
        let mut slice = slice_ns;
        if let Some(budget) = self.entries.get(index).and_then(|entry| entry.budget) {
            let remaining = u64::try_from(budget.remaining_ns).unwrap_or(0).max(1);
            slice = slice.min(remaining).min(to_boundary);
        }
        if self.any_parked_waiting() {
            slice = slice.min(to_boundary);
        }
        slice.max(1)
    }

    fn switch_to(&mut self, next: usize, current_index: Option<usize>, now: SystemTime) {
        if Some(next) == current_index {
            return;
        }
        self.current = None;
        if let Some(previous) = current_index {
            let sequence = self.take_sequence();
            if let Some(entry) = self.entries.get_mut(previous) {
                entry.sequence = sequence;
            }
            self.sync_state(previous, now);
        }
        self.current = self.entries.get(next).map(|entry| entry.vcpu);
        self.running_since = now;
        self.sync_state(next, now);
    }

    /// Refills cap budgets at every period boundary up to `now` and unparks
    /// vCPUs whose budget is positive again, at the boundary where it
    /// became so.
    fn replenish(&mut self, now: SystemTime) {
        if now < self.next_replenish {
            return;
        }
        let period = self.config.cap_period_ns.max(1);
        let first = self.next_replenish;
        let boundaries = now.saturating_ns_since(first) / period + 1;
        self.next_replenish = first.saturating_add_ns(boundaries.saturating_mul(period));
        for index in 0..self.entries.len() {
            let Some(mut budget) = self.entries.get(index).and_then(|entry| entry.budget) else {
                continue;
            };
            let quota = budget.quota_ns.max(1);
            let was_parked = budget.parked;
            // Boundaries needed for the budget to turn positive.
            let needed = u64::try_from(budget.remaining_ns.saturating_neg().max(0) / quota + 1)
                .unwrap_or(u64::MAX);
            let refill = i64::try_from(boundaries)
                .unwrap_or(i64::MAX)
                .saturating_mul(quota);
            budget.remaining_ns = budget
                .remaining_ns
                .saturating_add(refill)
                .min(budget.quota_ns);
            budget.parked = budget.parked && budget.remaining_ns <= 0;
            if was_parked && !budget.parked {
                let unparked_at = first.saturating_add_ns((needed - 1).saturating_mul(period));
                self.modify(index, unparked_at, |entry| entry.budget = Some(budget));
            } else if let Some(entry) = self.entries.get_mut(index) {
                entry.budget = Some(budget);
            }
        }
    }

    /// A parked vCPU that would run once unparked.
    fn any_parked_waiting(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.parked() && !entry.blocked && entry.pause_count == 0)
    }

    /// Whether `index`, just made eligible, should take the pCPU: it is
    /// idle, or the new vCPU has more credit than the current one. The
    /// pCPU's `pick` decides; this only says it is worth asking.
    fn should_preempt(&self, index: usize) -> bool {
        let Some(entry) = self.entries.get(index) else {
            return false;
        };
        if !entry.eligible() || self.current == Some(entry.vcpu) {
            return false;
        }
        match self.current.and_then(|vcpu| self.entry(vcpu)) {
            Some(current) => entry.credit > current.credit,
            None => true,
        }
    }

    /// Applies `change` to an entry, takes it off the pCPU if it may no
    /// longer run, gives it a new place in line if it may run again, and
    /// records the state change at `now`.
    fn modify(&mut self, index: usize, now: SystemTime, change: impl FnOnce(&mut Entry<V>)) {
        let sequence = self.take_sequence();
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        let was_eligible = entry.eligible();
        change(entry);
        let eligible = entry.eligible();
        if eligible && !was_eligible {
            entry.sequence = sequence;
        }
        if !eligible && self.current == Some(entry.vcpu) {
            self.current = None;
        }
        self.sync_state(index, now);
    }

    fn sync_state(&mut self, index: usize, now: SystemTime) {
        let current = self.current;
        if let Some(entry) = self.entries.get_mut(index) {
            let state = if current == Some(entry.vcpu) {
                VcpuState::Running
            } else {
                entry.waiting_state()
            };
            entry.runstate.change(state, now);
        }
    }

    fn full_budget(&self, percent: u8) -> Budget {
        let quota = u128::from(self.config.cap_period_ns) * u128::from(percent) / 100;
        let quota_ns = i64::try_from(quota).unwrap_or(i64::MAX).max(1);
        Budget {
            percent,
            quota_ns,
            remaining_ns: quota_ns,
            parked: false,
        }
    }

    fn update_max_weight(&mut self) {
        self.max_weight = self
            .entries
            .iter()
            .map(|entry| entry.weight)
            .max()
            .unwrap_or(DEFAULT_WEIGHT)
            .max(1);
    }

    fn take_sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    fn index_of(&self, vcpu: V) -> Option<usize> {
        self.entries.iter().position(|entry| entry.vcpu == vcpu)
    }

    fn entry(&self, vcpu: V) -> Option<&Entry<V>> {
        self.entries.iter().find(|entry| entry.vcpu == vcpu)
    }

    fn entry_mut(&mut self, vcpu: V) -> Option<&mut Entry<V>> {
        self.entries.iter_mut().find(|entry| entry.vcpu == vcpu)
    }
}
