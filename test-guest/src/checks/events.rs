//! 2-level event channels: every kind of port, its status, sending,
//! masking and unmasking, closing, and the FIFO probe that must fail.

use xen_guest::event_channel::{self, ChannelState};
use xen_guest::shared::selector_bit;
use xen_guest::{DomainId, Port, VcpuId, Virq, XenError, sched};

use super::{Context, MILLISECOND, vcpu};
use crate::report::{Detail, Outcome, ensure, expect_error, fail, ok};

/// `EVTCHNOP_status` of our `port`, decoded.
fn state(port: Port) -> Result<(ChannelState, VcpuId), Detail> {
    let status = ok(
        "EVTCHNOP_status",
        event_channel::status(DomainId::SELF, port),
    )?;
    Ok((status.state, status.vcpu))
}

fn expect_state(port: Port, expected: ChannelState) -> Outcome {
    let (found, vcpu) = state(port)?;
    ensure!(
        found == expected,
        "port {} is {found:?}, expected {expected:?}",
        port.0
    );
    ensure!(
        vcpu == VcpuId::BOOT,
        "port {} notifies vCPU {}",
        port.0,
        vcpu.0
    );
    Ok(())
}

pub fn init_control(context: &mut Context) -> Outcome {
    // Offer a hole as the control block, so a wrong success maps nothing
    // over our memory.
    let hole = context.hole(super::HOLE_HOSTILE)?;
    expect_error(
        "EVTCHNOP_init_control",
        event_channel::init_control(&hole, 0, VcpuId::BOOT),
        &[XenError::ENOSYS],
    )
}

pub fn unbound(context: &mut Context) -> Outcome {
    let domain = context.domain()?;
    let port = ok(
        "alloc_unbound(self, self)",
        event_channel::alloc_unbound(DomainId::SELF, DomainId::SELF),
    )?;
    ensure!(port.0 != 0, "port 0 was allocated");
    // Xen records DOMID_SELF as our real id.
    let result = expect_state(port, ChannelState::Unbound { remote: domain });
    let closed = ok("close", event_channel::close(port));
    result.and(closed)
}

/// An interdomain channel between two of our own ports.
pub fn loopback(context: &mut Context) -> Outcome {
    let (domain, shared) = (context.domain()?, context.shared()?);
    let unbound = ok(
        "alloc_unbound(self, self)",
        event_channel::alloc_unbound(DomainId::SELF, DomainId::SELF),
    )?;
    let local = ok(
        "bind_interdomain(self, unbound port)",
        event_channel::bind_interdomain(DomainId::SELF, unbound),
    )?;
    ensure!(
        shared.is_pending(local),
        "new local port {} not pending after bind_interdomain",
        local.0
    );
    expect_state(
        local,
        ChannelState::Interdomain {
            remote: domain,
            port: unbound,
        },
    )?;
    expect_state(
        unbound,
        ChannelState::Interdomain {
            remote: domain,
            port: local,
        },
    )?;
    for (from, to) in [(local, unbound), (unbound, local)] {
        shared.clear_pending(local);
        shared.clear_pending(unbound);
        ok("EVTCHNOP_send", event_channel::send(from))?;
        ensure!(
            shared.is_pending(to) && !shared.is_pending(from),
            "send on {} left {} pending={} and {} pending={}",
            from.0,
            to.0,
            shared.is_pending(to),
            from.0,
            shared.is_pending(from)
        );
    }
    shared.clear_pending(local);
    shared.clear_pending(unbound);
    ok("close(local)", event_channel::close(local))?;
    expect_state(unbound, ChannelState::Unbound { remote: domain })?;
    ok("close(remote)", event_channel::close(unbound))?;
    expect_state(unbound, ChannelState::Closed)
}

pub fn ipi(context: &mut Context) -> Outcome {
    let shared = context.shared()?;
    let port = ok("bind_ipi(vcpu 0)", event_channel::bind_ipi(VcpuId::BOOT))?;
    context.ipi_port = Some(port);
    expect_state(port, ChannelState::Ipi)?;
    shared.clear_pending(port);
    ok("send(ipi)", event_channel::send(port))?;
    ensure!(
        shared.is_pending(port),
        "IPI port {} not pending after send",
        port.0
    );
    // Poll returns at once for a port already pending.
    let start = context.clock()?;
    let stolen_before = vcpu::stolen_ns();
    ok(
        "SCHEDOP_poll(pending port)",
        sched::poll(&[port], start.after(1_000 * MILLISECOND)),
    )?;
    let stolen = vcpu::stolen_ns().wrapping_sub(stolen_before);
    let waited = context.clock()?.since(start).saturating_sub(stolen);
    ensure!(
        waited < 100 * MILLISECOND,
        "poll on a pending port waited {waited} ns (besides {stolen} ns waiting for a CPU)"
    );
    shared.clear_pending(port);
    expect_error(
        "bind_vcpu(ipi port)",
        event_channel::bind_vcpu(port, VcpuId::BOOT),
        &[XenError::EINVAL],
    )
}

pub fn virq(context: &mut Context) -> Outcome {
    let port = context.timer_port()?;
    expect_state(port, ChannelState::Virq(Virq::TIMER))?;
    expect_error(
        "second bind_virq(TIMER, vcpu 0)",
        event_channel::bind_virq(Virq::TIMER, VcpuId::BOOT),
        &[XenError::EEXIST],
    )?;
    expect_error(
        "bind_vcpu(per-vCPU VIRQ port)",
        event_channel::bind_vcpu(port, VcpuId::BOOT),
        &[XenError::EINVAL],
    )
}

pub fn unmask(context: &mut Context) -> Outcome {
    let (shared, info) = (context.shared()?, context.vcpu_info()?);
    let Some(port) = context.ipi_port else {
        fail!("no IPI port (evtchn-ipi failed)");
    };
    shared.mask(port);
    shared.clear_pending(port);
    info.take_pending_selector();
    info.clear_upcall_pending();
    ok("send(masked ipi)", event_channel::send(port))?;
    ensure!(
        shared.is_pending(port),
        "masked port {} not pending after send",
        port.0
    );
    let selector = info.pending_selector();
    ensure!(
        selector & selector_bit(port) == 0,
        "a masked port set the selector ({selector:#x})"
    );
    ok("EVTCHNOP_unmask", event_channel::unmask(port))?;
    let result = (|| {
        ensure!(!shared.is_masked(port), "mask bit still set after unmask");
        let selector = info.pending_selector();
        ensure!(
            selector & selector_bit(port) != 0,
            "unmask of a pending port did not set the selector ({selector:#x})"
        );
        ensure!(
            info.upcall_pending(),
            "unmask of a pending port did not set evtchn_upcall_pending"
        );
        Ok::<(), Detail>(())
    })();
    shared.clear_pending(port);
    info.take_pending_selector();
    info.clear_upcall_pending();
    result
}

pub fn close(context: &mut Context) -> Outcome {
    let Some(port) = context.ipi_port.take() else {
        fail!("no IPI port (evtchn-ipi failed)");
    };
    ok("close(ipi)", event_channel::close(port))?;
    expect_state(port, ChannelState::Closed)?;
    expect_error(
        "second close",
        event_channel::close(port),
        &[XenError::EINVAL],
    )?;
    expect_error(
        "send on a closed port",
        event_channel::send(port),
        &[XenError::EINVAL],
    )
}
