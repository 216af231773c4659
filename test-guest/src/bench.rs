//! Bench mode (`bench` on the command line): instead of the checks, times
//! the hypercalls on a Xen guest's hot paths with the TSC and prints one
//! `test-guest: bench <name> <value> <unit> (<how>)` line per figure, for
//! `scripts/bench`. Every loop has a fixed count and every wait a TSC
//! deadline, so it finishes even against a hypervisor that never answers.

use xen_guest::grant_table::{self, CopyEnd, GrantTableFrame};
use xen_guest::memory::{self as xen_memory, MapSpace};
use xen_guest::raw::rdtsc;
use xen_guest::shared::{SharedInfo, map_shared_info};
use xen_guest::{
    FrameSlot, GrantRef, PAGE_SIZE, Port, SystemTime, VcpuId, Virq, cpuid, event_channel, sched,
    vcpu, version,
};

use crate::checks::{Context, HOLE_SELF};
use crate::report::{self, Detail, Figure, Outcome, detail, ensure, fail, grant_ok, ok};

/// Samples of the per-call figures (hypercall, send, timer).
const CALLS: usize = 1000;
/// Map+unmap pairs timed.
const MAP_PAIRS: usize = 200;
/// 4 KiB copies timed for the throughput.
const COPIES: usize = 1000;
/// Timers armed for the timer figures.
const TIMERS: usize = 20;
/// Calls made before timing, so first-use costs (cold caches, lazily
/// built state) stay out of the figures.
const WARM_UP: usize = 10;
/// Longest any single wait for an event may take.
const WAIT_LIMIT_NS: u64 = 100_000_000;
/// Polls of a wait loop before it gives up even if the TSC is stuck.
const WAIT_ROUNDS_MAX: u32 = 1 << 26;
/// How far ahead the wake-up timers are set.
const TIMER_AHEAD_NS: u64 = 200_000;
/// Polls a wake-up figure makes at most for one timer.
const POLLS_MAX: usize = 4;
/// The grant reference the map+unmap and copy figures use (8 and up are
/// free; the checks, which do not run in bench mode, use 8 to 10).
const BENCH_GREF: GrantRef = GrantRef(16);

/// A figure's name and how to measure it.
pub struct Benchmark {
    pub name: &'static str,
    run: fn(&mut Bench) -> Result<Figure, Detail>,
}

/// Every figure, in the order they are measured.
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "hypercall-round-trip",
        run: hypercall_round_trip,
    },
    Benchmark {
        name: "evtchn-send",
        run: event_send,
    },
    Benchmark {
        name: "grant-map-unmap",
        run: grant_map_unmap,
    },
    Benchmark {
        name: "grant-copy",
        run: grant_copy,
    },
    Benchmark {
        name: "timer-immediate",
        run: timer_immediate,
    },
    Benchmark {
        name: "timer-wakeup",
        run: timer_wakeup,
    },
];

/// The name of the setup step, for crash reports.
pub const SETUP: &str = "bench-setup";

/// What the benchmarks share: the pages set up once, and the TSC rate.
struct Bench {
    tsc_khz: u64,
    shared: SharedInfo,
    grants: GrantTableFrame,
    domain: xen_guest::DomainId,
    hole: FrameSlot,
    copy_source: FrameSlot,
    copy_dest: FrameSlot,
    granted: FrameSlot,
}

impl Bench {
    /// `ticks` of the TSC in nanoseconds.
    fn nanoseconds(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000 / u128::from(self.tsc_khz.max(1))).min(u128::from(u64::MAX))
            as u64
    }

    /// TSC ticks in `nanoseconds`.
    fn ticks(&self, nanoseconds: u64) -> u64 {
        (u128::from(nanoseconds) * u128::from(self.tsc_khz) / 1_000_000).min(u128::from(u64::MAX))
            as u64
    }

    /// System time now, from vCPU 0's pvclock in shared_info.
    fn now(&self) -> Option<SystemTime> {
        self.shared.vcpu_info(VcpuId::BOOT)?.now()
    }

    /// Spins until `port` is pending or [`WAIT_LIMIT_NS`] pass; the TSC
    /// when it was seen.
    fn spin_until_pending(&self, port: Port) -> Option<u64> {
        let start = rdtsc();
        let limit = self.ticks(WAIT_LIMIT_NS);
        for _ in 0..WAIT_ROUNDS_MAX {
            let now = rdtsc();
            if self.shared.is_pending(port) {
                return Some(now);
            }
            if now.wrapping_sub(start) > limit {
                break;
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Forgets the upcall state events leave behind (interrupts are off,
    /// so nothing else clears it).
    fn clear_upcall(&self) {
        if let Some(info) = self.shared.vcpu_info(VcpuId::BOOT) {
            info.take_pending_selector();
            info.clear_upcall_pending();
        }
    }

    /// Median, minimum and maximum of `samples` (ticks), in nanoseconds.
    fn summary(&self, samples: &mut [u64]) -> Summary {
        samples.sort_unstable();
        let pick = |index: usize| self.nanoseconds(samples.get(index).copied().unwrap_or(0));
        Summary {
            median: pick(samples.len() / 2),
            minimum: pick(0),
            maximum: pick(samples.len().saturating_sub(1)),
        }
    }

    /// A per-call figure in nanoseconds from `samples`.
    fn per_call(&self, samples: &mut [u64], what: &str) -> Figure {
        let summary = self.summary(samples);
        Figure {
            value: summary.median,
            unit: "ns",
            how: detail(format_args!(
                "median of {} {what}; min {}, max {}",
                samples.len(),
                summary.minimum,
                summary.maximum
            )),
        }
    }
}

struct Summary {
    median: u64,
    minimum: u64,
    maximum: u64,
}

/// Sets up, measures every figure, and returns (the caller prints the
/// verdict and powers off).
pub fn run(context: &mut Context) {
    report::line(format_args!(
        "bench mode: {} figures, command line {:?}",
        BENCHMARKS.len(),
        context.start.cmdline.as_str()
    ));
    let mut bench = None;
    report::run(0, SETUP, || {
        bench = Some(setup(context)?);
        Ok(())
    });
    let Some(mut bench) = bench else {
        return;
    };
    // Crash reports find these at index + 1 (0 is the setup).
    for (index, benchmark) in BENCHMARKS.iter().enumerate() {
        report::measure(index + 1, benchmark.name, || (benchmark.run)(&mut bench));
    }
}

/// The name of step `index` of [`run`], for crash reports.
pub fn step_name(index: usize) -> &'static str {
    match index.checked_sub(1) {
        None => SETUP,
        Some(index) => BENCHMARKS
            .get(index)
            .map_or(SETUP, |benchmark| benchmark.name),
    }
}

/// Finds the hypervisor, the TSC rate and our domain id, and maps
/// shared_info and grant frame 0.
fn setup(context: &mut Context) -> Result<Bench, Detail> {
    let Some(leaves) = cpuid::find() else {
        fail!("no \"XenVMMXenVMM\" CPUID signature");
    };
    ensure!(
        leaves.max_leaf >= leaves.base + 4,
        "highest Xen leaf {:#x} is below base+4",
        leaves.max_leaf
    );
    // Leaf base+3 sub-leaf 0: ECX is the TSC frequency in kHz.
    let tsc_khz = core::arch::x86_64::__cpuid_count(leaves.base + 3, 0).ecx;
    ensure!(tsc_khz != 0, "CPUID base+3 reports a TSC of 0 kHz");
    let Some(domain) = cpuid::hvm_features(leaves).and_then(|features| features.domain) else {
        fail!("no domain id in CPUID base+4");
    };
    let pages = context.pages()?;
    let shared = ok(
        "add_to_physmap(shared_info, 0)",
        map_shared_info(pages.shared_info),
    )?;
    ok(
        "add_to_physmap(grant_table, 0)",
        xen_memory::add_to_physmap(MapSpace::GRANT_TABLE, 0, &pages.grant_table),
    )?;
    context.domain = Some(domain);
    context.shared = Some(shared);
    context.vcpu_info = shared.vcpu_info(VcpuId::BOOT);
    let bench = Bench {
        tsc_khz: u64::from(tsc_khz),
        shared,
        grants: GrantTableFrame::new(pages.grant_table, 0),
        domain,
        hole: context.hole(HOLE_SELF)?,
        copy_source: pages.copy_source,
        copy_dest: pages.copy_dest,
        granted: pages.self_grant,
    };
    ensure!(
        bench.now().is_some(),
        "no consistent pvclock record in shared_info"
    );
    report::line(format_args!("bench TSC {tsc_khz} kHz (CPUID base+3)"));
    Ok(bench)
}

/// `xen_version(XENVER_version)`: the cheapest hypercall there is, so its
/// time is the VMMCALL exit, dispatch and VMRUN back.
fn hypercall_round_trip(bench: &mut Bench) -> Result<Figure, Detail> {
    for _ in 0..WARM_UP {
        ok("xen_version(XENVER_version)", version::version())?;
    }
    let mut samples = [0u64; CALLS];
    for sample in &mut samples {
        let start = rdtsc();
        let result = version::version();
        *sample = rdtsc().wrapping_sub(start);
        ok("xen_version(XENVER_version)", result)?;
    }
    Ok(bench.per_call(&mut samples, "xen_version(XENVER_version) calls"))
}

/// `EVTCHNOP_send` on an IPI port bound to ourselves, until its pending
/// bit is visible. The hypervisor sets the bit before the hypercall
/// returns, so this is the cost of the send hypercall.
fn event_send(bench: &mut Bench) -> Result<Figure, Detail> {
    let port = ok("bind_ipi(vcpu 0)", event_channel::bind_ipi(VcpuId::BOOT))?;
    let result = time_sends(bench, port);
    bench.shared.clear_pending(port);
    bench.clear_upcall();
    let closed = ok("close(ipi)", event_channel::close(port));
    let figure = result?;
    closed?;
    Ok(figure)
}

fn time_sends(bench: &Bench, port: Port) -> Result<Figure, Detail> {
    for _ in 0..WARM_UP {
        bench.shared.clear_pending(port);
        ok("EVTCHNOP_send", event_channel::send(port))?;
    }
    let mut samples = [0u64; CALLS];
    for (index, sample) in samples.iter_mut().enumerate() {
        bench.shared.clear_pending(port);
        bench.clear_upcall();
        let start = rdtsc();
        ok("EVTCHNOP_send", event_channel::send(port))?;
        let Some(seen) = bench.spin_until_pending(port) else {
            fail!(
                "send {index}: port {} not pending {} ms later",
                port.0,
                WAIT_LIMIT_NS / 1_000_000
            );
        };
        *sample = seen.wrapping_sub(start);
    }
    Ok(bench.per_call(&mut samples, "sends to our own IPI port"))
}

/// `GNTTABOP_map_grant_ref` of a page we granted to ourselves, at a hole,
/// then `GNTTABOP_unmap_grant_ref`: what a backend pays per mapped request.
fn grant_map_unmap(bench: &mut Bench) -> Result<Figure, Detail> {
    bench.granted.fill(0x5a);
    ensure!(
        bench
            .grants
            .grant_access(BENCH_GREF, bench.domain, bench.granted.frame(), false),
        "could not write grant entry {}",
        BENCH_GREF.0
    );
    let result = time_maps(bench);
    let revoked = bench.grants.end_access(BENCH_GREF);
    let figure = result?;
    ensure!(
        revoked.is_ok(),
        "could not revoke gref {} after unmapping: {revoked:?}",
        BENCH_GREF.0
    );
    Ok(figure)
}

fn time_maps(bench: &Bench) -> Result<Figure, Detail> {
    let map_pair = || -> Outcome {
        let handle = grant_ok(
            "map_grant_ref(own gref)",
            grant_table::map_grant(&bench.hole, BENCH_GREF, bench.domain, false),
        )?;
        grant_ok(
            "unmap_grant_ref",
            grant_table::unmap_grant(&bench.hole, handle),
        )
    };
    for _ in 0..WARM_UP {
        map_pair()?;
    }
    // The mapping must really show the page, or the figure means nothing.
    let handle = grant_ok(
        "map_grant_ref(own gref)",
        grant_table::map_grant(&bench.hole, BENCH_GREF, bench.domain, false),
    )?;
    let seen = bench.hole.load::<u8>(123);
    grant_ok(
        "unmap_grant_ref",
        grant_table::unmap_grant(&bench.hole, handle),
    )?;
    ensure!(
        seen == Some(0x5a),
        "the mapping shows {seen:?}, not the granted page's 0x5a"
    );
    let mut samples = [0u64; MAP_PAIRS];
    for sample in &mut samples {
        let start = rdtsc();
        map_pair()?;
        *sample = rdtsc().wrapping_sub(start);
    }
    Ok(bench.per_call(&mut samples, "map+unmap pairs of our own grant"))
}

/// `GNTTABOP_copy` of a whole page between two of our own frames, one copy
/// per hypercall: the throughput a copying backend gets from one vCPU.
fn grant_copy(bench: &mut Bench) -> Result<Figure, Detail> {
    for offset in 0..PAGE_SIZE {
        bench
            .copy_source
            .store::<u8>(offset, (offset as u8).wrapping_mul(31) ^ 0xa5);
    }
    bench.copy_dest.fill(0);
    let copy = || {
        grant_ok(
            "copy(own frame -> own frame, 4096 bytes)",
            grant_table::copy_one(
                CopyEnd::own(bench.copy_source, 0),
                CopyEnd::own(bench.copy_dest, 0),
                PAGE_SIZE as u16,
            ),
        )
    };
    for _ in 0..WARM_UP {
        copy()?;
    }
    if let Some(offset) = (0..PAGE_SIZE)
        .find(|&offset| bench.copy_dest.load::<u8>(offset) != bench.copy_source.load::<u8>(offset))
    {
        fail!("the copy differs from its source at byte {offset}");
    }
    let mut samples = [0u64; COPIES];
    let start = rdtsc();
    for sample in &mut samples {
        let before = rdtsc();
        copy()?;
        *sample = rdtsc().wrapping_sub(before);
    }
    let elapsed = bench.nanoseconds(rdtsc().wrapping_sub(start)).max(1);
    let bytes = (COPIES * PAGE_SIZE) as u64;
    // Bytes per microsecond are MB/s.
    let megabytes_per_second = bytes * 1_000 / elapsed;
    let summary = bench.summary(&mut samples);
    Ok(Figure {
        value: megabytes_per_second,
        unit: "MB/s",
        how: detail(format_args!(
            "{COPIES} copies of 4 KiB in {} us, one per hypercall; median {} ns per copy",
            elapsed / 1_000,
            summary.median
        )),
    })
}

/// `VCPUOP_set_singleshot_timer` with a deadline already past, until
/// VIRQ_TIMER is pending (spinning): the hypervisor fires such a timer at
/// once, so this is the set-timer hypercall plus raising the event.
fn timer_immediate(bench: &mut Bench) -> Result<Figure, Detail> {
    timer_figure(bench, TimerWait::Immediate)
}

/// A singleshot timer [`TIMER_AHEAD_NS`] ahead, then `SCHEDOP_poll` on
/// VIRQ_TIMER: from the deadline until the guest runs again with the event
/// pending, the wake-up an idle guest's timer tick costs.
fn timer_wakeup(bench: &mut Bench) -> Result<Figure, Detail> {
    timer_figure(bench, TimerWait::Poll)
}

/// How a timer figure waits for its event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimerWait {
    /// Deadline in the past; spin until pending.
    Immediate,
    /// Deadline [`TIMER_AHEAD_NS`] ahead; block in `SCHEDOP_poll`.
    Poll,
}

/// Binds VIRQ_TIMER, times the timers, and unbinds it again.
fn timer_figure(bench: &Bench, wait: TimerWait) -> Result<Figure, Detail> {
    let port = ok(
        "bind_virq(TIMER, vcpu 0)",
        event_channel::bind_virq(Virq::TIMER, VcpuId::BOOT),
    )?;
    let result = time_timers(bench, port, wait);
    let _ = vcpu::stop_singleshot_timer(VcpuId::BOOT);
    bench.shared.clear_pending(port);
    bench.clear_upcall();
    let closed = ok("close(timer port)", event_channel::close(port));
    let figure = result?;
    closed?;
    Ok(figure)
}

/// Arms [`TIMERS`] singleshot timers on `port` (VIRQ_TIMER) and times each
/// until it is pending: from the hypercall ([`TimerWait::Immediate`]) or
/// from the deadline ([`TimerWait::Poll`]).
fn time_timers(bench: &Bench, port: Port, wait: TimerWait) -> Result<Figure, Detail> {
    let Some(info) = bench.shared.vcpu_info(VcpuId::BOOT) else {
        fail!("no vcpu_info slot 0");
    };
    let mut samples = [0u64; TIMERS];
    for (index, sample) in samples.iter_mut().enumerate() {
        bench.shared.clear_pending(port);
        bench.clear_upcall();
        let Some(record) = info.time() else {
            fail!("no consistent pvclock record");
        };
        let tsc = rdtsc();
        let now = record.system_time_at(tsc);
        let (deadline, start) = match wait {
            // Past, but not 0 (which would stop the timer).
            TimerWait::Immediate => (now.before(1_000).max(SystemTime(1)), tsc),
            TimerWait::Poll => (
                now.after(TIMER_AHEAD_NS),
                tsc.wrapping_add(bench.ticks(TIMER_AHEAD_NS)),
            ),
        };
        ok(
            "set_singleshot_timer",
            vcpu::set_singleshot_timer(VcpuId::BOOT, deadline, 0),
        )?;
        let seen = match wait {
            TimerWait::Immediate => bench.spin_until_pending(port),
            TimerWait::Poll => poll_until_pending(bench, port, deadline)?,
        };
        let Some(seen) = seen else {
            fail!(
                "timer {index}: VIRQ_TIMER not pending {} ms after its deadline",
                WAIT_LIMIT_NS / 1_000_000
            );
        };
        *sample = seen.saturating_sub(start);
    }
    let what = match wait {
        TimerWait::Immediate => "timers set in the past, hypercall to pending",
        TimerWait::Poll => "timers set 200 us ahead, deadline to running again",
    };
    Ok(bench.per_call(&mut samples, what))
}

/// Blocks in `SCHEDOP_poll` on `port` (a few times at most, in case of a
/// spurious wake-up) until it is pending; the TSC when it was seen.
fn poll_until_pending(
    bench: &Bench,
    port: Port,
    deadline: SystemTime,
) -> Result<Option<u64>, Detail> {
    for _ in 0..POLLS_MAX {
        if bench.shared.is_pending(port) {
            break;
        }
        ok(
            "SCHEDOP_poll(VIRQ_TIMER)",
            sched::poll(&[port], deadline.after(WAIT_LIMIT_NS)),
        )?;
    }
    let now = rdtsc();
    Ok(bench.shared.is_pending(port).then_some(now))
}
