//! `vcpu_op` and `sched_op`: the runstate area, a registered vcpu_info,
//! the singleshot and periodic timers (seen through VIRQ_TIMER and
//! SCHEDOP_poll), yield, and poll's timeout.

use xen_guest::raw::rdtsc;
use xen_guest::shared::selector_bit;
use xen_guest::time::TSC_STABLE;
use xen_guest::vcpu::{
    self, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING, SINGLESHOT_FUTURE,
};
use xen_guest::{
    DomainId, RunstateArea, SystemTime, TimeArea, VcpuId, XenError, event_channel, sched,
};

use super::physmap::spin;
use super::{Context, MILLISECOND};
use crate::report::{Outcome, ensure, expect_error, fail, ok};

/// Where the hypervisor writes vCPU 0's runstate.
static RUNSTATE: RunstateArea = RunstateArea::new();
/// Where the hypervisor keeps a second copy of vCPU 0's time record.
static TIME: TimeArea = TimeArea::new();
/// Where vcpu_info goes in its page: not page-aligned, as Linux's
/// per-CPU areas are not.
const VCPU_INFO_OFFSET: u32 = 192;
const SECOND: u64 = 1_000 * MILLISECOND;

pub fn runstate_area(_context: &mut Context) -> Outcome {
    ok(
        "register_runstate_memory_area",
        vcpu::register_runstate_memory_area(VcpuId::BOOT, &RUNSTATE),
    )?;
    // Xen fills the area in at registration; it must say "running".
    let info = RUNSTATE.read();
    ensure!(
        info.is_written(),
        "runstate area left empty after registration"
    );
    ensure!(
        info.state == RUNSTATE_RUNNING,
        "state {} while running",
        info.state
    );
    Ok(())
}

/// Nanoseconds vCPU 0 has so far waited for a physical CPU (runnable or
/// offline), as its runstate area says; 0 before the area is registered.
/// Checks that bound how long a call took subtract the time stolen
/// meanwhile: with many guests on few CPUs a vCPU may wait a whole round
/// of time slices for its turn, which says nothing about the call.
pub fn stolen_ns() -> u64 {
    let info = RUNSTATE.read();
    if !info.is_written() {
        return 0;
    }
    info.time[RUNSTATE_RUNNABLE as usize].wrapping_add(info.time[RUNSTATE_OFFLINE as usize])
}

pub fn time_area(_context: &mut Context) -> Outcome {
    ok(
        "register_vcpu_time_memory_area",
        vcpu::register_time_memory_area(VcpuId::BOOT, &TIME),
    )?;
    // Linux reads the flags straight after registering (to decide whether
    // its vDSO may use the record), so registration must fill it in.
    let Some(first) = TIME.read() else {
        fail!("time area not filled in at registration");
    };
    ensure!(
        first.flags & TSC_STABLE != 0 && first.tsc_to_system_mul != 0,
        "time area flags {:#x}, scale {:#x}: not a stable clock",
        first.flags,
        first.tsc_to_system_mul
    );
    // It is kept current: every entry republishes it with a new version.
    ok("sched_op yield", sched::yield_now())?;
    let Some(second) = TIME.read() else {
        fail!("time area unreadable after a yield");
    };
    ensure!(
        second.version != first.version && second.system_time >= first.system_time,
        "time area not republished (versions {} then {})",
        first.version,
        second.version
    );
    let now = second.system_time_at(rdtsc());
    ensure!(
        now >= SystemTime(second.system_time),
        "time area's clock runs backwards"
    );
    Ok(())
}

pub fn register_vcpu_info(context: &mut Context) -> Outcome {
    let slot = context.pages()?.vcpu_info;
    slot.fill(0);
    let info = ok(
        "register_vcpu_info",
        vcpu::register_vcpu_info(VcpuId::BOOT, slot, VCPU_INFO_OFFSET),
    )?;
    context.vcpu_info = Some(info);
    // Xen marks everything pending on registration (a spurious upcall).
    ensure!(
        info.upcall_pending(),
        "evtchn_upcall_pending not set by registration"
    );
    let selector = info.take_pending_selector();
    info.clear_upcall_pending();
    ensure!(
        selector == u64::MAX,
        "evtchn_pending_sel {selector:#x} after registration, expected all ones"
    );
    let Some(record) = info.time() else {
        fail!("registered time record never even and stable");
    };
    ensure!(
        record.tsc_to_system_mul != 0,
        "registered tsc_to_system_mul is 0"
    );
    let before = record.system_time_at(rdtsc());
    spin(2_000_000);
    let after = info.now().unwrap_or_default();
    ensure!(
        after > before,
        "registered time did not advance: {} then {} ns",
        before.nanoseconds(),
        after.nanoseconds()
    );
    expect_error(
        "second register_vcpu_info",
        vcpu::register_vcpu_info(VcpuId::BOOT, slot, VCPU_INFO_OFFSET + 64),
        &[XenError::EBUSY],
    )
}

pub fn sched_yield(_context: &mut Context) -> Outcome {
    for _ in 0..3 {
        ok("SCHEDOP_yield", sched::yield_now())?;
    }
    Ok(())
}

pub fn timer_singleshot(context: &mut Context) -> Outcome {
    let port = context.timer_port()?;
    let (shared, info) = (context.shared()?, context.vcpu_info()?);
    shared.clear_pending(port);
    info.take_pending_selector();
    let deadline = context.clock()?.after(MILLISECOND);
    ok(
        "set_singleshot_timer(+1 ms)",
        vcpu::set_singleshot_timer(VcpuId::BOOT, deadline, 0),
    )?;
    ensure!(
        context.wait_for_pending(port, SECOND),
        "VIRQ_TIMER port {} not pending 1 s after a 1 ms timer",
        port.0
    );
    let fired = context.clock()?;
    shared.clear_pending(port);
    ensure!(
        fired >= deadline.before(100_000),
        "fired {} ns before its deadline",
        deadline.since(fired)
    );
    ensure!(
        shared.is_masked(port) || info.pending_selector() & selector_bit(port) != 0,
        "the event did not reach the registered vcpu_info (selector {:#x})",
        info.pending_selector()
    );
    info.take_pending_selector();
    info.clear_upcall_pending();
    Ok(())
}

/// How far ahead `timer_stop_singleshot` arms the timer, try by try. A try
/// only proves something if `stop_singleshot_timer` returned before the
/// deadline: a vCPU preempted between the two hypercalls (other guests
/// running, a loaded host) finds its timer fired and its event pending,
/// in Xen as here, since stopping a timer does not take back an event it
/// already sent. Longer leads make a late return ever less likely.
const STOP_LEADS: [u64; 4] = [
    5 * MILLISECOND,
    20 * MILLISECOND,
    100 * MILLISECOND,
    500 * MILLISECOND,
];
/// Allowance for the guest's pvclock reading differing from the
/// hypervisor's own clock.
const CLOCK_MARGIN: u64 = MILLISECOND / 10;

pub fn timer_stop_singleshot(context: &mut Context) -> Outcome {
    let port = context.timer_port()?;
    let shared = context.shared()?;
    for lead in STOP_LEADS {
        shared.clear_pending(port);
        let deadline = context.clock()?.after(lead);
        ok(
            "set_singleshot_timer",
            vcpu::set_singleshot_timer(VcpuId::BOOT, deadline, 0),
        )?;
        ok(
            "stop_singleshot_timer",
            vcpu::stop_singleshot_timer(VcpuId::BOOT),
        )?;
        let stopped = context.clock()?;
        if stopped.after(CLOCK_MARGIN) >= deadline {
            // Preempted past the deadline: the timer may rightly have
            // fired; try again further ahead.
            continue;
        }
        ensure!(
            !context.wait_for_pending(port, deadline.since(stopped) + 20 * MILLISECOND),
            "timer fired after stop_singleshot_timer returned {} µs before its deadline",
            deadline.since(stopped) / 1_000
        );
        return ok(
            "stop_singleshot_timer (none armed)",
            vcpu::stop_singleshot_timer(VcpuId::BOOT),
        );
    }
    fail!(
        "stop_singleshot_timer returned after the deadline in every try (last lead {} ms)",
        STOP_LEADS[STOP_LEADS.len() - 1] / MILLISECOND
    )
}

pub fn timer_periodic(context: &mut Context) -> Outcome {
    let port = context.timer_port()?;
    let shared = context.shared()?;
    expect_error(
        "set_periodic_timer(0.5 ms)",
        vcpu::set_periodic_timer(VcpuId::BOOT, MILLISECOND / 2),
        &[XenError::EINVAL],
    )?;
    ok(
        "set_periodic_timer(1 ms)",
        vcpu::set_periodic_timer(VcpuId::BOOT, MILLISECOND),
    )?;
    for tick in 1..=2 {
        shared.clear_pending(port);
        if !context.wait_for_pending(port, SECOND) {
            let _ = vcpu::stop_periodic_timer(VcpuId::BOOT);
            fail!("periodic tick {tick} missing after 1 s");
        }
    }
    ok(
        "stop_periodic_timer",
        vcpu::stop_periodic_timer(VcpuId::BOOT),
    )?;
    shared.clear_pending(port);
    ensure!(
        !context.wait_for_pending(port, 20 * MILLISECOND),
        "ticks continue after stop_periodic_timer"
    );
    ok(
        "stop_periodic_timer (none running)",
        vcpu::stop_periodic_timer(VcpuId::BOOT),
    )
}

/// `VCPU_SSHOTTMR_future` with a past deadline: `-ETIME`, or (Xen 4.18+
/// ignores the flag) accepted and fired at once.
pub fn timer_future_flag(context: &mut Context) -> Outcome {
    let port = context.timer_port()?;
    let shared = context.shared()?;
    shared.clear_pending(port);
    let past = context.clock()?.before(MILLISECOND).max(SystemTime(1));
    match vcpu::set_singleshot_timer(VcpuId::BOOT, past, SINGLESHOT_FUTURE) {
        Err(XenError::ETIME) => Ok(()),
        Ok(()) => {
            let fired = context.wait_for_pending(port, 100 * MILLISECOND);
            shared.clear_pending(port);
            ensure!(fired, "accepted a past deadline but the timer did not fire");
            Ok(())
        }
        Err(error) => fail!("expected -ETIME (or an immediate event), got {error}"),
    }
}

pub fn sched_poll_timeout(context: &mut Context) -> Outcome {
    // An unbound port nobody will ever raise.
    let quiet = ok(
        "alloc_unbound",
        event_channel::alloc_unbound(DomainId::SELF, DomainId::SELF),
    )?;
    let result = poll_timeouts(context, quiet);
    let _ = event_channel::close(quiet);
    result
}

fn poll_timeouts(context: &Context, quiet: xen_guest::Port) -> Outcome {
    let info = context.vcpu_info()?;
    // A new upcall for this vCPU ends a poll early (as Xen's vcpu_kick
    // does): start with none outstanding so any wake-up is the timeout.
    info.take_pending_selector();
    info.clear_upcall_pending();
    let start = context.clock()?;
    let stolen_before = stolen_ns();
    ok(
        "SCHEDOP_poll(+2 ms)",
        sched::poll(&[quiet], start.after(2 * MILLISECOND)),
    )?;
    let slept = context.clock()?.since(start);
    let stolen = stolen_ns().wrapping_sub(stolen_before);
    ensure!(
        slept >= 3 * MILLISECOND / 2,
        "returned after {slept} ns, before its 2 ms timeout (selector {:#x}, upcall {})",
        info.pending_selector(),
        info.upcall_pending()
    );
    ensure!(
        slept.saturating_sub(stolen) < SECOND,
        "returned after {slept} ns ({stolen} ns of it waiting for a CPU) for a 2 ms timeout"
    );
    let start = context.clock()?;
    let stolen_before = stolen_ns();
    ok("SCHEDOP_poll(past)", sched::poll(&[quiet], SystemTime(1)))?;
    let stolen = stolen_ns().wrapping_sub(stolen_before);
    let slept = context.clock()?.since(start).saturating_sub(stolen);
    ensure!(
        slept < 100 * MILLISECOND,
        "a past timeout still slept {slept} ns (besides {stolen} ns waiting for a CPU)"
    );
    Ok(())
}
