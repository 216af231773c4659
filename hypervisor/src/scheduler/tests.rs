//! Tests for the scheduler: API rules, credit mechanics, runstates, and
//! fairness, caps and latency measured over simulated time.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::*;

const CPU0: PhysicalCpu = PhysicalCpu(0);
const MILLISECOND: u64 = 1_000_000;
const MICROSECOND: u64 = 1_000;
const SECOND: u64 = 1_000_000_000;

fn at(nanoseconds: u64) -> SystemTime {
    SystemTime::from_nanos(nanoseconds)
}

fn scheduler() -> Scheduler<u32> {
    Scheduler::new(1, 16, SchedulerConfig::default()).expect("valid configuration")
}

// --- The simulator --------------------------------------------------------

/// What a simulated vCPU does with the CPU it gets.
#[derive(Clone, Copy, Debug)]
enum Workload {
    /// Always wants to run.
    Hog,
    /// Runs `burst_ns` of CPU, then blocks for `sleep_ns` (0: an event is
    /// already pending, so it wakes at once).
    Bursty { burst_ns: u64, sleep_ns: u64 },
    /// Blocks as soon as it runs and never wakes by itself.
    Sleeper,
}

/// One pCPU driven as the hypervisor would: `pick`, run until the slice
/// ends, the vCPU blocks, or a wake-up asks for preemption; `account` what
/// ran; repeat.
struct Simulation {
    scheduler: Scheduler<u32>,
    now: u64,
    workloads: BTreeMap<u32, Workload>,
    burst_left: BTreeMap<u32, u64>,
    wake_at: BTreeMap<u32, u64>,
    woken_at: BTreeMap<u32, u64>,
    usage: BTreeMap<u32, u64>,
    worst_latency: BTreeMap<u32, u64>,
}

impl Simulation {
    fn new(config: SchedulerConfig) -> Self {
        Self {
            scheduler: Scheduler::new(1, 16, config).expect("valid configuration"),
            now: 0,
            workloads: BTreeMap::new(),
            burst_left: BTreeMap::new(),
            wake_at: BTreeMap::new(),
            woken_at: BTreeMap::new(),
            usage: BTreeMap::new(),
            worst_latency: BTreeMap::new(),
        }
    }

    fn add(&mut self, vcpu: u32, weight: u16, cap: Option<u8>, workload: Workload) {
        self.scheduler
            .add(vcpu, weight, cap, at(self.now))
            .expect("room for the vCPU");
        self.workloads.insert(vcpu, workload);
        if let Workload::Bursty { burst_ns, .. } = workload {
            self.burst_left.insert(vcpu, burst_ns);
        }
        self.usage.entry(vcpu).or_insert(0);
    }

    fn remove(&mut self, vcpu: u32) {
        self.scheduler.remove(vcpu, at(self.now)).expect("present");
        self.workloads.remove(&vcpu);
        self.wake_at.remove(&vcpu);
        self.woken_at.remove(&vcpu);
    }

    fn usage(&self, vcpu: u32) -> u64 {
        self.usage.get(&vcpu).copied().unwrap_or(0)
    }

    fn share(&self, vcpu: u32, over_ns: u64) -> f64 {
        self.usage(vcpu) as f64 / over_ns as f64
    }

    fn next_wake(&self) -> Option<u64> {
        self.wake_at.values().copied().min()
    }

    /// Wakes whoever is due; true if one of them asks for preemption.
    fn deliver_wakes(&mut self) -> bool {
        let due: Vec<u32> = self
            .wake_at
            .iter()
            .filter(|(_, when)| **when <= self.now)
            .map(|(vcpu, _)| *vcpu)
            .collect();
        let mut preempt = false;
        for vcpu in due {
            self.wake_at.remove(&vcpu);
            self.woken_at.insert(vcpu, self.now);
            let kick = self.scheduler.wake(vcpu, at(self.now)).expect("present");
            preempt |= kick == Some(CPU0);
        }
        preempt
    }

    fn run_until(&mut self, end: u64) {
        while self.now < end {
            let decision = self.scheduler.pick(CPU0, at(self.now)).expect("pCPU 0");
            let Some(vcpu) = decision.next else {
                let mut next = end;
                if let Some(wake) = self.next_wake() {
                    next = next.min(wake);
                }
                if let Some(run_for) = decision.run_for_ns {
                    next = next.min(self.now + run_for);
                }
                self.now = next.max(self.now);
                self.deliver_wakes();
                continue;
            };
            if let Some(woken) = self.woken_at.remove(&vcpu) {
                let latency = self.now - woken;
                let worst = self.worst_latency.entry(vcpu).or_insert(0);
                *worst = (*worst).max(latency);
            }
            let run_for = decision.run_for_ns.expect("a running vCPU has a slice");
            assert!(run_for > 0);
            assert!(run_for <= self.scheduler.config().timeslice_ns);
            let slice_end = self.now + run_for;
            self.run_slice(vcpu, slice_end, end);
        }
    }

    fn run_slice(&mut self, vcpu: u32, slice_end: u64, end: u64) {
        loop {
            let workload = self.workloads[&vcpu];
            let block_at = match workload {
                Workload::Hog => u64::MAX,
                Workload::Bursty { .. } => self.now + self.burst_left[&vcpu],
                Workload::Sleeper => self.now,
            };
            let mut event = slice_end.min(block_at).min(end);
            if let Some(wake) = self.next_wake() {
                event = event.min(wake.max(self.now));
            }
            let ran = event - self.now;
            self.now = event;
            self.scheduler
                .account(vcpu, ran, at(self.now))
                .expect("present");
            *self.usage.entry(vcpu).or_insert(0) += ran;
            if let Workload::Bursty { burst_ns, sleep_ns } = workload {
                let left = self.burst_left.get_mut(&vcpu).expect("bursty");
                *left -= ran;
                if *left == 0 {
                    *left = burst_ns;
                    self.scheduler.block(vcpu, at(self.now)).expect("present");
                    self.wake_at.insert(vcpu, self.now + sleep_ns);
                    self.deliver_wakes();
                    return;
                }
            }
            if let Workload::Sleeper = workload {
                self.scheduler.block(vcpu, at(self.now)).expect("present");
                return;
            }
            // Parked by its cap.
            if self.scheduler.current(CPU0) != Some(vcpu) {
                return;
            }
            let preempt = self.deliver_wakes();
            if preempt || self.now >= slice_end || self.now >= end {
                return;
            }
        }
    }
}

fn assert_share(simulation: &Simulation, vcpu: u32, over_ns: u64, expected: f64) {
    let share = simulation.share(vcpu, over_ns);
    let error = (share - expected) / expected;
    println!(
        "vCPU {vcpu}: {:.2}% of CPU (expected {:.2}%, error {:+.2}%)",
        share * 100.0,
        expected * 100.0,
        error * 100.0
    );
    assert!(
        error.abs() <= 0.05,
        "vCPU {vcpu} got {share}, expected {expected}"
    );
}

// --- Fairness over simulated time -----------------------------------------

#[test]
fn weights_one_to_two_share_one_to_two() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, 256, None, Workload::Hog);
    simulation.add(2, 512, None, Workload::Hog);
    simulation.run_until(10 * SECOND);
    assert_share(&simulation, 1, 10 * SECOND, 1.0 / 3.0);
    assert_share(&simulation, 2, 10 * SECOND, 2.0 / 3.0);
    let ratio = simulation.usage(2) as f64 / simulation.usage(1) as f64;
    println!("weight 512 : weight 256 = {ratio:.4}");
    assert!((ratio - 2.0).abs() / 2.0 <= 0.05);
}

#[test]
fn weights_one_to_two_at_default_weight_and_below() {
    // The same ratio with the lighter vCPU below the default weight.
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, 100, None, Workload::Hog);
    simulation.add(2, 200, None, Workload::Hog);
    simulation.run_until(10 * SECOND);
    assert_share(&simulation, 1, 10 * SECOND, 1.0 / 3.0);
    assert_share(&simulation, 2, 10 * SECOND, 2.0 / 3.0);
}

#[test]
fn three_equal_weights_share_equally() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    for vcpu in 1..=3 {
        simulation.add(vcpu, DEFAULT_WEIGHT, None, Workload::Hog);
    }
    simulation.run_until(10 * SECOND);
    for vcpu in 1..=3 {
        assert_share(&simulation, vcpu, 10 * SECOND, 1.0 / 3.0);
    }
    // Every nanosecond went to someone.
    let total: u64 = (1..=3).map(|vcpu| simulation.usage(vcpu)).sum();
    assert_eq!(total, 10 * SECOND);
}

#[test]
fn cap_holds_when_alone() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, Some(25), Workload::Hog);
    simulation.run_until(10 * SECOND);
    let share = simulation.share(1, 10 * SECOND);
    println!("25% cap, alone: {:.3}%", share * 100.0);
    assert!(share <= 0.25 + 0.001, "capped vCPU got {share}");
    assert!(share >= 0.24, "capped vCPU got only {share}");
    // Parked time is offline (stolen) time in the runstate.
    let runstate = simulation
        .scheduler
        .runstate(1)
        .expect("present")
        .at(at(10 * SECOND));
    let offline = runstate.time_in(VcpuState::Offline) as f64 / (10 * SECOND) as f64;
    assert!((offline - 0.75).abs() < 0.01, "offline {offline}");
}

#[test]
fn cap_holds_against_competition_and_the_rest_goes_to_others() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, 1024, Some(25), Workload::Hog);
    simulation.add(2, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.run_until(10 * SECOND);
    let capped = simulation.share(1, 10 * SECOND);
    println!("25% cap, weight 1024 vs a hog: {:.3}%", capped * 100.0);
    assert!(capped <= 0.25 + 0.001);
    assert!(capped >= 0.24);
    assert_eq!(simulation.usage(1) + simulation.usage(2), 10 * SECOND);
}

#[test]
fn small_cap_is_honoured_despite_the_minimum_slice() {
    // A 5% cap is 0.5 ms per 10 ms: shorter than the 1 ms minimum slice.
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, Some(5), Workload::Hog);
    simulation.add(2, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.run_until(5 * SECOND);
    let capped = simulation.share(1, 5 * SECOND);
    println!("5% cap: {:.3}%", capped * 100.0);
    assert!(capped <= 0.05 + 0.001);
    assert!(capped >= 0.045);
}

// --- Blocking, waking, latency --------------------------------------------

#[test]
fn blocked_vcpu_gets_nothing_and_runs_promptly_on_wake() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(2, DEFAULT_WEIGHT, None, Workload::Sleeper);
    simulation.run_until(SECOND);
    // It ran only the instant it took to block.
    assert_eq!(simulation.usage(2), 0);
    assert_eq!(simulation.scheduler.state(2), Some(VcpuState::Blocked));
    assert_eq!(simulation.usage(1), SECOND);
    // An event arrives 300 µs into some slice of the hog.
    simulation.workloads.insert(2, Workload::Hog);
    simulation.wake_at.insert(2, SECOND + 300 * MICROSECOND);
    simulation.run_until(2 * SECOND);
    let latency = simulation.worst_latency[&2];
    println!("wake-up latency against a hog: {latency} ns");
    assert!(latency <= simulation.scheduler.config().ratelimit_ns);
    // Afterwards the two share (the sleeper first spends its saved credit).
    assert!(simulation.usage(2) >= SECOND / 2 - 10 * MILLISECOND);
}

#[test]
fn wake_latency_is_bounded_among_hogs() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(2, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(
        3,
        DEFAULT_WEIGHT,
        None,
        Workload::Bursty {
            burst_ns: 100 * MICROSECOND,
            sleep_ns: 5 * MILLISECOND,
        },
    );
    simulation.run_until(10 * SECOND);
    let latency = simulation.worst_latency[&3];
    println!("worst wake-up latency of an I/O vCPU among two hogs: {latency} ns");
    assert!(latency <= simulation.scheduler.config().ratelimit_ns);
    // It got all it asked for: 100 µs per 5.1 ms.
    let demand = 100.0 / 5_100.0;
    assert!(simulation.share(3, 10 * SECOND) >= demand * 0.95);
    // The hogs split the rest evenly.
    let rest = (1.0 - simulation.share(3, 10 * SECOND)) / 2.0;
    assert_share(&simulation, 1, 10 * SECOND, rest);
    assert_share(&simulation, 2, 10 * SECOND, rest);
}

#[test]
fn wake_latency_is_bounded_by_the_rate_limit() {
    // Wake-ups 300 µs after blocking land inside the hog's rate limit.
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(
        2,
        DEFAULT_WEIGHT,
        None,
        Workload::Bursty {
            burst_ns: 100 * MICROSECOND,
            sleep_ns: 300 * MICROSECOND,
        },
    );
    simulation.run_until(10 * SECOND);
    let latency = simulation.worst_latency[&2];
    println!("worst wake-up latency, 300 µs sleeps against a hog: {latency} ns");
    assert!(latency > 0);
    assert!(latency <= simulation.scheduler.config().ratelimit_ns);
}

#[test]
fn tiny_slice_blocker_does_not_starve_others() {
    // vCPU 3 runs 10 µs, blocks, and has an event pending at once: it asks
    // for the CPU thousands of times a second.
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(2, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(
        3,
        DEFAULT_WEIGHT,
        None,
        Workload::Bursty {
            burst_ns: 10 * MICROSECOND,
            sleep_ns: 0,
        },
    );
    simulation.run_until(10 * SECOND);
    for vcpu in 1..=3 {
        println!(
            "vCPU {vcpu}: {:.2}%",
            simulation.share(vcpu, 10 * SECOND) * 100.0
        );
    }
    // It cannot take more than a fair third, so the hogs get theirs.
    assert!(simulation.share(3, 10 * SECOND) <= 1.0 / 3.0 * 1.05);
    assert!(simulation.share(1, 10 * SECOND) >= 1.0 / 3.0 * 0.95);
    assert!(simulation.share(2, 10 * SECOND) >= 1.0 / 3.0 * 0.95);
    // And it is not starved either.
    assert!(simulation.share(3, 10 * SECOND) >= 0.05);
}

#[test]
fn interactive_vcpus_keep_low_latency_without_starving_a_hog() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    for vcpu in 2..=5 {
        let sleep_ns = (vcpu as u64) * MILLISECOND;
        simulation.add(
            vcpu,
            DEFAULT_WEIGHT,
            None,
            Workload::Bursty {
                burst_ns: 50 * MICROSECOND,
                sleep_ns,
            },
        );
    }
    simulation.run_until(10 * SECOND);
    let interactive: u64 = (2..=5).map(|vcpu| simulation.usage(vcpu)).sum();
    assert!(simulation.usage(1) + interactive == 10 * SECOND);
    assert!(simulation.share(1, 10 * SECOND) >= 0.9);
    for vcpu in 2..=5 {
        println!(
            "vCPU {vcpu}: worst wake-up latency {} ns",
            simulation.worst_latency[&vcpu]
        );
        // Queued behind at most the rate limit and the other three.
        assert!(simulation.worst_latency[&vcpu] <= MILLISECOND + 3 * 50 * MICROSECOND);
    }
}

// --- Adding and removing while running ------------------------------------

#[test]
fn add_and_remove_during_a_run() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.run_until(SECOND);
    assert_eq!(simulation.usage(1), SECOND);

    simulation.add(2, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.run_until(3 * SECOND);
    let first = simulation.usage(1) - SECOND;
    let second = simulation.usage(2);
    println!("after add: {first} vs {second}");
    assert!((first as f64 / second as f64 - 1.0).abs() <= 0.05);

    // Remove whichever is running, mid-slice.
    let running = simulation.scheduler.current(CPU0).expect("someone runs");
    let other = 3 - running;
    simulation.remove(running);
    assert_eq!(simulation.scheduler.current(CPU0), None);
    let before = simulation.usage(other);
    simulation.run_until(4 * SECOND);
    assert_eq!(simulation.usage(other) - before, SECOND);
    assert_eq!(simulation.scheduler.len(), 1);

    simulation.remove(other);
    let decision = simulation
        .scheduler
        .pick(CPU0, at(4 * SECOND))
        .expect("pCPU 0");
    assert_eq!(
        decision,
        Decision {
            next: None,
            run_for_ns: None
        }
    );
}

// --- Idle, API rules -----------------------------------------------------

#[test]
fn idle_queue_returns_none() {
    let mut scheduler = scheduler();
    assert_eq!(
        scheduler.pick(CPU0, at(0)),
        Ok(Decision {
            next: None,
            run_for_ns: None
        })
    );
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler.block(1, at(0)).expect("present");
    assert_eq!(
        scheduler.pick(CPU0, at(5)),
        Ok(Decision {
            next: None,
            run_for_ns: None
        })
    );
    // Paused counts the same.
    assert_eq!(scheduler.wake(1, at(6)), Ok(Some(CPU0)));
    scheduler.pause(1, at(7)).expect("present");
    assert_eq!(
        scheduler.pick(CPU0, at(8)).map(|decision| decision.next),
        Ok(None)
    );
    assert_eq!(
        scheduler.pick(PhysicalCpu(1), at(8)),
        Err(SchedulerError::InvalidCpu)
    );
}

#[test]
fn idle_with_a_parked_vcpu_reports_when_to_ask_again() {
    let mut scheduler = scheduler();
    scheduler
        .add(1, DEFAULT_WEIGHT, Some(10), at(0))
        .expect("room");
    let decision = scheduler.pick(CPU0, at(0)).expect("pCPU 0");
    assert_eq!(
        decision,
        Decision {
            next: Some(1),
            run_for_ns: Some(MILLISECOND)
        }
    );
    scheduler
        .account(1, MILLISECOND, at(MILLISECOND))
        .expect("present");
    assert_eq!(scheduler.state(1), Some(VcpuState::Offline));
    assert_eq!(scheduler.current(CPU0), None);
    let decision = scheduler.pick(CPU0, at(MILLISECOND)).expect("pCPU 0");
    assert_eq!(
        decision,
        Decision {
            next: None,
            run_for_ns: Some(9 * MILLISECOND)
        }
    );
    let decision = scheduler.pick(CPU0, at(10 * MILLISECOND)).expect("pCPU 0");
    assert_eq!(decision.next, Some(1));
}

#[test]
fn parameters_are_checked() {
    let mut scheduler = scheduler();
    assert_eq!(
        scheduler.add(1, 0, None, at(0)),
        Err(SchedulerError::InvalidWeight)
    );
    assert_eq!(
        scheduler.add(1, 1, Some(0), at(0)),
        Err(SchedulerError::InvalidCap)
    );
    assert_eq!(
        scheduler.add(1, 1, Some(101), at(0)),
        Err(SchedulerError::InvalidCap)
    );
    scheduler.add(1, u16::MAX, Some(100), at(0)).expect("valid");
    assert_eq!(
        scheduler.add(1, 1, None, at(0)),
        Err(SchedulerError::AlreadyPresent)
    );
    assert_eq!(scheduler.block(9, at(0)), Err(SchedulerError::UnknownVcpu));
    assert_eq!(scheduler.wake(9, at(0)), Err(SchedulerError::UnknownVcpu));
    assert_eq!(
        scheduler.account(9, 1, at(0)),
        Err(SchedulerError::UnknownVcpu)
    );
    assert_eq!(scheduler.remove(9, at(0)), Err(SchedulerError::UnknownVcpu));
    assert_eq!(scheduler.unpause(1, at(0)), Err(SchedulerError::NotPaused));
    assert_eq!(
        scheduler.set_weight(1, 0, at(0)),
        Err(SchedulerError::InvalidWeight)
    );
    scheduler.set_weight(1, 7, at(0)).expect("valid");
    assert_eq!(scheduler.weight(1), Some(7));
    assert_eq!(scheduler.set_cap(1, None, at(0)), Ok(Some(CPU0)));
    assert_eq!(scheduler.cap(1), Some(None));

    let mut small = Scheduler::new(1, 2, SchedulerConfig::default()).expect("valid");
    small.add(1, 1, None, at(0)).expect("room");
    small.add(2, 1, None, at(0)).expect("room");
    assert_eq!(small.add(3, 1, None, at(0)), Err(SchedulerError::Full));
}

#[test]
fn configuration_is_checked() {
    let default = SchedulerConfig::default();
    let bad = [
        SchedulerConfig {
            min_timeslice_ns: 10 * MICROSECOND,
            ..default
        },
        SchedulerConfig {
            timeslice_ns: 20 * MILLISECOND,
            ..default
        },
        SchedulerConfig {
            min_timeslice_ns: 5 * MILLISECOND,
            timeslice_ns: 2 * MILLISECOND,
            ..default
        },
        SchedulerConfig {
            ratelimit_ns: 11 * MILLISECOND,
            ..default
        },
        SchedulerConfig {
            cap_period_ns: 0,
            ..default
        },
        SchedulerConfig {
            cap_period_ns: 2 * SECOND,
            ..default
        },
    ];
    for config in bad {
        assert_eq!(
            Scheduler::<u32>::new(1, 4, config).map(|_| ()),
            Err(SchedulerError::InvalidConfig),
            "{config:?}"
        );
    }
    assert_eq!(
        Scheduler::<u32>::new(0, 4, default).map(|_| ()),
        Err(SchedulerError::InvalidCpu)
    );
}

#[test]
fn pauses_nest() {
    let mut scheduler = scheduler();
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    assert_eq!(
        scheduler.pick(CPU0, at(0)).map(|decision| decision.next),
        Ok(Some(1))
    );
    scheduler.pause(1, at(10)).expect("present");
    scheduler.pause(1, at(20)).expect("present");
    assert_eq!(scheduler.current(CPU0), None);
    assert_eq!(scheduler.state(1), Some(VcpuState::Offline));
    assert_eq!(scheduler.unpause(1, at(30)), Ok(None));
    assert_eq!(scheduler.state(1), Some(VcpuState::Offline));
    assert_eq!(scheduler.unpause(1, at(40)), Ok(Some(CPU0)));
    assert_eq!(scheduler.state(1), Some(VcpuState::Runnable));
    // Blocked beats offline, as in Xen.
    scheduler.block(1, at(50)).expect("present");
    scheduler.pause(1, at(60)).expect("present");
    assert_eq!(scheduler.state(1), Some(VcpuState::Blocked));
    assert_eq!(scheduler.wake(1, at(70)), Ok(None));
    assert_eq!(scheduler.state(1), Some(VcpuState::Offline));
}

#[test]
fn wake_of_a_runnable_vcpu_does_nothing() {
    let mut scheduler = scheduler();
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    assert_eq!(scheduler.wake(1, at(1)), Ok(None));
    assert_eq!(scheduler.state(1), Some(VcpuState::Runnable));
}

#[test]
fn yield_gives_way_whatever_the_credit() {
    let mut scheduler = scheduler();
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler.add(2, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler
        .account(2, 5 * MILLISECOND, at(0))
        .expect("present");
    let first = scheduler.pick(CPU0, at(0)).expect("pCPU 0");
    assert_eq!(first.next, Some(1));
    scheduler
        .account(1, 2 * MILLISECOND, at(2 * MILLISECOND))
        .expect("present");
    scheduler.yield_cpu(1).expect("present");
    let second = scheduler.pick(CPU0, at(2 * MILLISECOND)).expect("pCPU 0");
    assert_eq!(second.next, Some(2));
    // Yielding with nobody else eligible runs on.
    scheduler.block(2, at(3 * MILLISECOND)).expect("present");
    assert_eq!(
        scheduler
            .pick(CPU0, at(3 * MILLISECOND))
            .expect("pCPU 0")
            .next,
        Some(1)
    );
    scheduler.yield_cpu(1).expect("present");
    assert_eq!(
        scheduler
            .pick(CPU0, at(4 * MILLISECOND))
            .expect("pCPU 0")
            .next,
        Some(1)
    );
}

#[test]
fn credit_resets_and_clips_carry_over() {
    let mut scheduler = scheduler();
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler.add(2, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler.block(2, at(0)).expect("present");
    // vCPU 1 spends all its credit and more; the floor is -CREDIT_INIT.
    scheduler
        .account(1, 3 * CREDIT_INIT as u64, at(0))
        .expect("present");
    assert_eq!(scheduler.credit(1), Some(-CREDIT_INIT));
    let decision = scheduler.pick(CPU0, at(0)).expect("pCPU 0");
    assert_eq!(decision.next, Some(1));
    // Two rounds of CREDIT_INIT put it back in the black; the sleeper is
    // clipped to CREDIT_INIT + 0.5 ms.
    assert_eq!(scheduler.credit(1), Some(CREDIT_INIT));
    assert_eq!(scheduler.credit(2), Some(CREDIT_INIT + 500_000));
}

#[test]
fn heavier_weight_burns_slower() {
    let mut scheduler = scheduler();
    scheduler.add(1, 256, None, at(0)).expect("room");
    scheduler.add(2, 768, None, at(0)).expect("room");
    scheduler.account(1, 3, at(0)).expect("present");
    scheduler.account(2, 3, at(0)).expect("present");
    assert_eq!(scheduler.credit(1), Some(CREDIT_INIT - 9));
    assert_eq!(scheduler.credit(2), Some(CREDIT_INIT - 3));
    // Fractions carry: 1 ns at weight 768 against max 768 is 1 credit; at a
    // max of 1000 and weight 768, three 1 ns runs burn 3000/768 = 3 (and
    // keep the remainder).
    scheduler.set_weight(1, 1000, at(0)).expect("present");
    for _ in 0..3 {
        scheduler.account(2, 1, at(0)).expect("present");
    }
    assert_eq!(scheduler.credit(2), Some(CREDIT_INIT - 6));
    scheduler.account(2, 1, at(0)).expect("present");
    // Four runs burn 4000/768 = 5 in all: the remainders added up.
    assert_eq!(scheduler.credit(2), Some(CREDIT_INIT - 8));
}

#[test]
fn slices_stay_within_bounds() {
    let mut scheduler = scheduler();
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    // Alone, with full credit: the longest slice.
    assert_eq!(
        scheduler.pick(CPU0, at(0)).expect("pCPU 0").run_for_ns,
        Some(10 * MILLISECOND)
    );
    scheduler
        .account(1, 10 * MILLISECOND, at(10 * MILLISECOND))
        .expect("present");
    scheduler
        .add(2, DEFAULT_WEIGHT, None, at(10 * MILLISECOND))
        .expect("room");
    // vCPU 2 has full credit and vCPU 1 none: 2 runs until its credit is
    // gone, which is the longest slice.
    let decision = scheduler.pick(CPU0, at(10 * MILLISECOND)).expect("pCPU 0");
    assert_eq!(
        decision,
        Decision {
            next: Some(2),
            run_for_ns: Some(10 * MILLISECOND)
        }
    );
    // Equal credit: the shortest slice.
    scheduler
        .account(2, 10 * MILLISECOND, at(20 * MILLISECOND))
        .expect("present");
    let decision = scheduler.pick(CPU0, at(20 * MILLISECOND)).expect("pCPU 0");
    assert_eq!(decision.run_for_ns, Some(MILLISECOND));
}

#[test]
fn rate_limit_keeps_a_new_vcpu_briefly() {
    let mut scheduler = scheduler();
    scheduler.add(1, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler.add(2, DEFAULT_WEIGHT, None, at(0)).expect("room");
    scheduler.block(2, at(0)).expect("present");
    scheduler
        .account(1, 5 * MILLISECOND, at(0))
        .expect("present");
    assert_eq!(scheduler.pick(CPU0, at(0)).expect("pCPU 0").next, Some(1));
    // vCPU 2 wakes with more credit 300 µs later: worth a look...
    assert_eq!(scheduler.wake(2, at(300 * MICROSECOND)), Ok(Some(CPU0)));
    scheduler
        .account(1, 300 * MICROSECOND, at(300 * MICROSECOND))
        .expect("present");
    // ...but vCPU 1 keeps the pCPU to the end of its 1 ms.
    let decision = scheduler.pick(CPU0, at(300 * MICROSECOND)).expect("pCPU 0");
    assert_eq!(
        decision,
        Decision {
            next: Some(1),
            run_for_ns: Some(700 * MICROSECOND)
        }
    );
    scheduler
        .account(1, 700 * MICROSECOND, at(MILLISECOND))
        .expect("present");
    assert_eq!(
        scheduler.pick(CPU0, at(MILLISECOND)).expect("pCPU 0").next,
        Some(2)
    );
}

// --- Runstates -------------------------------------------------------------

#[test]
fn runstate_times_add_up() {
    let mut simulation = Simulation::new(SchedulerConfig::default());
    simulation.add(1, DEFAULT_WEIGHT, None, Workload::Hog);
    simulation.add(2, DEFAULT_WEIGHT, Some(20), Workload::Hog);
    simulation.add(
        3,
        DEFAULT_WEIGHT,
        None,
        Workload::Bursty {
            burst_ns: 200 * MICROSECOND,
            sleep_ns: 3 * MILLISECOND,
        },
    );
    simulation.run_until(5 * SECOND);
    let now = at(5 * SECOND);
    for vcpu in 1..=3 {
        let runstate = simulation
            .scheduler
            .runstate(vcpu)
            .expect("present")
            .at(now);
        let total: u64 = runstate.time_ns.iter().sum();
        assert_eq!(total, 5 * SECOND, "vCPU {vcpu}: {runstate:?}");
        // Running time is the CPU it was given.
        assert_eq!(runstate.time_in(VcpuState::Running), simulation.usage(vcpu));
        println!("vCPU {vcpu}: {:?}", runstate.time_ns);
    }
    let hog = simulation.scheduler.runstate(1).expect("present").at(now);
    assert_eq!(hog.time_in(VcpuState::Blocked), 0);
    assert_eq!(hog.time_in(VcpuState::Offline), 0);
    let capped = simulation.scheduler.runstate(2).expect("present").at(now);
    assert!(capped.time_in(VcpuState::Offline) > 0);
    assert!(capped.steal_ns() > 0);
    let interactive = simulation.scheduler.runstate(3).expect("present").at(now);
    assert!(interactive.time_in(VcpuState::Blocked) > 3 * SECOND);
}

#[test]
fn removal_returns_the_closed_runstate() {
    let mut scheduler = scheduler();
    scheduler
        .add(1, DEFAULT_WEIGHT, None, at(100))
        .expect("room");
    scheduler.pick(CPU0, at(150)).expect("pCPU 0");
    let runstate = scheduler.remove(1, at(400)).expect("present");
    assert_eq!(runstate.state, VcpuState::Offline);
    assert_eq!(runstate.state_entry_time, at(400));
    assert_eq!(runstate.time_ns, [250, 50, 0, 0]);
}

#[test]
fn runstate_layout() {
    let runstate = Runstate {
        state: VcpuState::Blocked,
        state_entry_time: at(0x0102_0304_0506_0708),
        time_ns: [1, 2, 3, 0x1122_3344_5566_7788],
    };
    let bytes = runstate.encode(false);
    assert_eq!(bytes[0..4], 2i32.to_le_bytes());
    assert_eq!(bytes[4..8], [0; 4]);
    assert_eq!(bytes[8..16], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(bytes[16..24], 1u64.to_le_bytes());
    assert_eq!(bytes[24..32], 2u64.to_le_bytes());
    assert_eq!(bytes[32..40], 3u64.to_le_bytes());
    assert_eq!(bytes[40..48], 0x1122_3344_5566_7788u64.to_le_bytes());
    let updating = runstate.encode(true);
    assert_eq!(
        updating[8..16],
        (0x0102_0304_0506_0708u64 | RUNSTATE_UPDATE).to_le_bytes()
    );
    assert_eq!(VcpuState::ALL.map(VcpuState::as_raw), [0, 1, 2, 3]);
}

#[test]
fn runstate_ignores_time_going_backwards() {
    let mut runstate = Runstate::new(VcpuState::Running, at(100));
    runstate.change(VcpuState::Blocked, at(50));
    assert_eq!(runstate.time_ns, [0; 4]);
    assert_eq!(runstate.state_entry_time, at(100));
    runstate.change(VcpuState::Runnable, at(130));
    assert_eq!(runstate.time_in(VcpuState::Blocked), 30);
}

// --- SMP shape -----------------------------------------------------------

#[test]
fn vcpus_spread_over_run_queues() {
    let mut scheduler = Scheduler::new(2, 8, SchedulerConfig::default()).expect("valid");
    for vcpu in 1..=3 {
        scheduler
            .add(vcpu, DEFAULT_WEIGHT, None, at(0))
            .expect("room");
    }
    assert_eq!(scheduler.cpu_of(1), Some(PhysicalCpu(0)));
    assert_eq!(scheduler.cpu_of(2), Some(PhysicalCpu(1)));
    assert_eq!(scheduler.cpu_of(3), Some(PhysicalCpu(0)));
    assert_eq!(
        scheduler.pick(PhysicalCpu(1), at(0)).expect("pCPU 1").next,
        Some(2)
    );
    assert_eq!(
        scheduler.pick(PhysicalCpu(0), at(0)).expect("pCPU 0").next,
        Some(1)
    );
    let queue = scheduler.run_queue(PhysicalCpu(0)).expect("pCPU 0");
    assert_eq!(queue.vcpus().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(queue.current(), Some(1));
    assert_eq!(scheduler.physical_cpus(), 2);
}

// --- Several vCPUs per domain on one pCPU ----------------------------------

/// A vCPU as the machine names it: (domain, index).
type DomainVcpu = (u16, u32);

/// Drives one pCPU over `vcpus` for `duration_ns` as the machine's loop
/// does: pick, run the slice (or less when `blocks_after` says the vCPU
/// halts), account, block the halted. Returns CPU time per vCPU.
fn run_domains(
    scheduler: &mut Scheduler<DomainVcpu>,
    start_ns: u64,
    duration_ns: u64,
    halts: &[DomainVcpu],
) -> BTreeMap<DomainVcpu, u64> {
    let mut usage = BTreeMap::new();
    let mut now = start_ns;
    while now < start_ns + duration_ns {
        let decision = scheduler.pick(CPU0, at(now)).expect("pCPU 0");
        let Some(vcpu) = decision.next else {
            break;
        };
        let slice = decision.run_for_ns.unwrap_or(MILLISECOND);
        let ran = if halts.contains(&vcpu) {
            MICROSECOND
        } else {
            slice
        };
        now += ran;
        *usage.entry(vcpu).or_insert(0) += ran;
        scheduler.account(vcpu, ran, at(now)).expect("present");
        if halts.contains(&vcpu) {
            scheduler.block(vcpu, at(now)).expect("present");
        }
    }
    usage
}

#[test]
fn every_vcpu_of_every_domain_gets_its_share() {
    let mut scheduler: Scheduler<DomainVcpu> =
        Scheduler::new(1, 16, SchedulerConfig::default()).expect("valid");
    for vcpu in [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3)] {
        scheduler
            .add(vcpu, DEFAULT_WEIGHT, None, at(0))
            .expect("room");
    }
    let usage = run_domains(&mut scheduler, 0, SECOND, &[]);
    // Seven busy vCPUs: a seventh of the CPU each, whichever domain.
    for (vcpu, used) in &usage {
        let share = *used as f64 / SECOND as f64;
        assert!(
            (share - 1.0 / 7.0).abs() < 0.02,
            "{vcpu:?} got {share:.3} of the CPU"
        );
    }
    assert_eq!(usage.len(), 7);
}

#[test]
fn halted_vcpus_of_a_domain_do_not_run_and_its_others_do() {
    let mut scheduler: Scheduler<DomainVcpu> =
        Scheduler::new(1, 16, SchedulerConfig::default()).expect("valid");
    for vcpu in [(0, 0), (1, 0), (1, 1)] {
        scheduler
            .add(vcpu, DEFAULT_WEIGHT, None, at(0))
            .expect("room");
    }
    // Guest vCPU 1 idles (HLT): once blocked it is never picked.
    let usage = run_domains(&mut scheduler, 0, SECOND, &[(1, 1)]);
    assert!(usage.get(&(1, 1)).copied().unwrap_or(0) <= MICROSECOND);
    assert_eq!(scheduler.state((1, 1)), Some(VcpuState::Blocked));
    assert!(usage[&(0, 0)].abs_diff(usage[&(1, 0)]) <= 10 * MILLISECOND);
    // An IPI wakes it: it runs at the next pick, ahead of the busy ones
    // (it kept its credit while blocked).
    let now = SECOND + 5 * MILLISECOND;
    scheduler.wake((1, 1), at(now)).expect("present");
    let mut next = None;
    for step in 0..3 {
        let at_ns = now + step * MILLISECOND;
        let decision = scheduler.pick(CPU0, at(at_ns)).expect("pCPU 0");
        let vcpu = decision.next.expect("someone runs");
        if vcpu == (1, 1) {
            next = Some(step);
            break;
        }
        scheduler
            .account(vcpu, MILLISECOND, at(at_ns + MILLISECOND))
            .expect("present");
    }
    assert!(next.is_some(), "the woken vCPU runs within the rate limit");
}

#[test]
fn application_processors_join_on_startup_and_leave_on_init() {
    let mut scheduler: Scheduler<DomainVcpu> =
        Scheduler::new(1, 16, SchedulerConfig::default()).expect("valid");
    // The guest's bootstrap vCPU runs; its AP waits for a start-up IPI
    // outside the scheduler.
    scheduler
        .add((1, 0), DEFAULT_WEIGHT, None, at(0))
        .expect("room");
    let before = run_domains(&mut scheduler, 0, 100 * MILLISECOND, &[]);
    assert_eq!(before.keys().collect::<Vec<_>>(), [&(1, 0)]);
    // SIPI: the AP is added and shares the CPU.
    let start = 100 * MILLISECOND;
    scheduler
        .add((1, 1), DEFAULT_WEIGHT, None, at(start))
        .expect("room");
    let shared = run_domains(&mut scheduler, start, 100 * MILLISECOND, &[]);
    assert!(shared[&(1, 1)] >= 40 * MILLISECOND);
    assert!(shared[&(1, 0)] >= 40 * MILLISECOND);
    // INIT (or HLT with interrupts off): the AP leaves and never runs.
    let gone = 200 * MILLISECOND;
    scheduler.remove((1, 1), at(gone)).expect("present");
    let after = run_domains(&mut scheduler, gone, 100 * MILLISECOND, &[]);
    assert_eq!(after.keys().collect::<Vec<_>>(), [&(1, 0)]);
    // Destroy: every vCPU of the domain goes; the pCPU idles.
    scheduler.remove((1, 0), at(gone)).expect("present");
    assert!(scheduler.is_empty());
    assert_eq!(scheduler.pick(CPU0, at(gone)).expect("pCPU 0").next, None);
}
