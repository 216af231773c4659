//! `event_channel_op` end to end: guest bytes in, tables changed, guest
//! bytes out, effects for the hypervisor.

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::event_channel::{
    self as abi, alloc_unbound, bind_interdomain, bind_ipi, bind_virq, status,
};

use super::args::{self, u16_at, u32_at};
use super::{ARGUMENT, FakeGuest, FakeSharedInfo, World};
use crate::event_channel::*;
use crate::memory::GuestVirtAddr;

const DOM0: DomainId = DomainId::DOM0;
const GUEST: DomainId = DomainId(1);
const OTHER: DomainId = DomainId(2);
const SELF: u16 = DomainId::SELF.0;

fn world() -> World {
    World::new(&[
        (
            DOM0,
            Limits {
                global_virq_handler: true,
                ..Limits::new(2)
            },
        ),
        (GUEST, Limits::new(2)),
        (OTHER, Limits::new(1)),
    ])
}

fn command(number: u32) -> u64 {
    u64::from(number)
}

fn ok() -> Result<(), Errno> {
    Ok(())
}

#[test]
fn alloc_unbound_writes_the_port_and_resolves_domid_self() {
    let mut world = world();
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(SELF, 0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(call.response.effect, Effect::None);
    assert_eq!(call.response.return_value(), 0);
    assert_eq!(u32_at(&call.bytes, alloc_unbound::PORT), 1);
    // The rest of the struct is as the guest wrote it.
    assert_eq!(u16_at(&call.bytes, alloc_unbound::DOM), SELF);
    assert_eq!(
        world.table(GUEST).state(Port(1)),
        Some(PortState::Unbound { remote: DOM0 })
    );
    // remote_dom = DOMID_SELF means the caller.
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(GUEST.0, SELF),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(
        world.table(GUEST).state(Port(2)),
        Some(PortState::Unbound { remote: GUEST })
    );
}

#[test]
fn alloc_unbound_in_another_domain_needs_privilege() {
    let mut world = world();
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(OTHER.0, SELF),
    );
    assert_eq!(call.response.result, Err(Errno::EPERM));
    assert_eq!(call.response.return_value(), Errno::EPERM.as_return());
    assert_eq!(world.table(OTHER).bound_ports().count(), 0);
    // Nothing is written back on failure.
    assert_eq!(u32_at(&call.bytes, alloc_unbound::PORT), 0);
    // The toolstack allocates a guest's port for itself.
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(GUEST.0, SELF),
    );
    assert_eq!(call.response.result, ok());
    let port = Port(u32_at(&call.bytes, alloc_unbound::PORT));
    assert_eq!(
        world.table(GUEST).state(port),
        Some(PortState::Unbound { remote: DOM0 })
    );
    // A domain that does not exist.
    for privileged in [false, true] {
        let call = world.call(
            DOM0,
            privileged,
            command(abi::EVTCHNOP_ALLOC_UNBOUND),
            &args::alloc_unbound(77, SELF),
        );
        assert_eq!(call.response.result, Err(Errno::ESRCH));
    }
}

/// Guest offers a port to Dom0, Dom0 binds it: the xenstore/console shape.
fn connect(world: &mut World) -> (Port, Port) {
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(SELF, DOM0.0),
    );
    let guest_port = Port(u32_at(&call.bytes, alloc_unbound::PORT));
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &args::bind_interdomain(GUEST.0, guest_port.0),
    );
    assert_eq!(call.response.result, ok());
    let dom0_port = Port(u32_at(&call.bytes, bind_interdomain::LOCAL_PORT));
    assert_eq!(
        call.response.effect,
        Effect::Local(Delivery {
            newly_pending: Some(dom0_port),
            upcall: Some(VcpuId(0))
        })
    );
    (guest_port, dom0_port)
}

#[test]
fn bind_interdomain_then_send_both_ways() {
    let mut world = world();
    let (guest_port, dom0_port) = connect(&mut world);
    assert!(world.memory(DOM0).is_pending(dom0_port));
    world.memory(DOM0).guest_handle_upcall(VcpuId(0));

    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_SEND),
        &args::port(dom0_port.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(
        call.response.effect,
        Effect::Remote(Notify {
            domain: GUEST,
            port: guest_port
        })
    );
    assert_eq!(
        call.remote,
        Some((
            GUEST,
            Delivery {
                newly_pending: Some(guest_port),
                upcall: Some(VcpuId(0))
            }
        ))
    );
    assert!(world.memory(GUEST).is_pending(guest_port));

    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_SEND),
        &args::port(guest_port.0),
    );
    assert_eq!(
        call.response.effect,
        Effect::Remote(Notify {
            domain: DOM0,
            port: dom0_port
        })
    );
    assert!(world.memory(DOM0).is_pending(dom0_port));
}

#[test]
fn bind_interdomain_errors() {
    let mut world = world();
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(SELF, OTHER.0),
    );
    let for_other = u32_at(&call.bytes, alloc_unbound::PORT);
    // Not offered to Dom0.
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &args::bind_interdomain(GUEST.0, for_other),
    );
    assert_eq!(call.response.result, Err(Errno::EINVAL));
    assert_eq!(call.response.effect, Effect::None);
    assert_eq!(world.table(DOM0).bound_ports().count(), 0);
    // No such domain.
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &args::bind_interdomain(9, 1),
    );
    assert_eq!(call.response.result, Err(Errno::ESRCH));
    // The intended peer binds fine.
    let call = world.call(
        OTHER,
        false,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &args::bind_interdomain(GUEST.0, for_other),
    );
    assert_eq!(call.response.result, ok());
}

#[test]
fn loopback_through_domid_self() {
    let mut world = world();
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(SELF, SELF),
    );
    let offered = u32_at(&call.bytes, alloc_unbound::PORT);
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &args::bind_interdomain(SELF, offered),
    );
    assert_eq!(call.response.result, ok());
    let bound = Port(u32_at(&call.bytes, bind_interdomain::LOCAL_PORT));
    world.memory(GUEST).guest_handle_upcall(VcpuId(0));
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_SEND),
        &args::port(offered),
    );
    assert_eq!(
        call.response.effect,
        Effect::Local(Delivery {
            newly_pending: Some(bound),
            upcall: Some(VcpuId(0))
        })
    );
}

#[test]
fn close_of_a_connected_port_then_the_peer_send_is_dropped() {
    let mut world = world();
    let (guest_port, dom0_port) = connect(&mut world);
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_CLOSE),
        &args::port(dom0_port.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(world.table(DOM0).state(dom0_port), Some(PortState::Free));
    assert!(!world.memory(DOM0).is_pending(dom0_port));
    assert_eq!(
        world.table(GUEST).state(guest_port),
        Some(PortState::Unbound { remote: DOM0 })
    );
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_SEND),
        &args::port(guest_port.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(call.response.effect, Effect::None);
    assert_eq!(call.remote, None);
    // Closing again, or a port never used.
    for port in [dom0_port.0, 0, 4096] {
        let call = world.call(DOM0, true, command(abi::EVTCHNOP_CLOSE), &args::port(port));
        assert_eq!(call.response.result, Err(Errno::EINVAL));
    }
}

#[test]
fn close_when_the_peer_domain_is_gone() {
    let mut world = world();
    let (guest_port, _dom0_port) = connect(&mut world);
    world.tables.remove(&DOM0);
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_CLOSE),
        &args::port(guest_port.0),
    );
    assert_eq!(call.response.result, ok());
}

#[test]
fn bind_virq_and_ipi_write_their_ports() {
    let mut world = world();
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_VIRQ),
        &args::bind_virq(Virq::TIMER.0, 1),
    );
    assert_eq!(call.response.result, ok());
    let timer = Port(u32_at(&call.bytes, bind_virq::PORT));
    assert_eq!(
        world.table(GUEST).virq_port(Virq::TIMER, VcpuId(1)),
        Some(timer)
    );
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_VIRQ),
        &args::bind_virq(Virq::TIMER.0, 1),
    );
    assert_eq!(call.response.result, Err(Errno::EEXIST));
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_VIRQ),
        &args::bind_virq(24, 0),
    );
    assert_eq!(call.response.result, Err(Errno::EINVAL));

    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_IPI),
        &args::bind_ipi(1),
    );
    assert_eq!(call.response.result, ok());
    let ipi = Port(u32_at(&call.bytes, bind_ipi::PORT));
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_SEND),
        &args::port(ipi.0),
    );
    assert_eq!(
        call.response.effect,
        Effect::Local(Delivery {
            newly_pending: Some(ipi),
            upcall: Some(VcpuId(1))
        })
    );
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_IPI),
        &args::bind_ipi(2),
    );
    assert_eq!(call.response.result, Err(Errno::ENOENT));
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_SEND),
        &args::port(timer.0),
    );
    assert_eq!(call.response.result, Err(Errno::EINVAL));
}

#[test]
fn status_fills_only_the_fields_of_the_state() {
    let mut world = world();
    let (guest_port, dom0_port) = connect(&mut world);
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_STATUS),
        &args::status(SELF, dom0_port.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(
        u32_at(&call.bytes, status::STATUS),
        abi::EVTCHNSTAT_INTERDOMAIN
    );
    assert_eq!(u32_at(&call.bytes, status::VCPU), 0);
    assert_eq!(u16_at(&call.bytes, status::INTERDOMAIN_DOM), GUEST.0);
    assert_eq!(u32_at(&call.bytes, status::INTERDOMAIN_PORT), guest_port.0);

    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_IPI),
        &args::bind_ipi(1),
    );
    let ipi = u32_at(&call.bytes, bind_ipi::PORT);
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_STATUS),
        &args::status(SELF, ipi),
    );
    assert_eq!(u32_at(&call.bytes, status::STATUS), abi::EVTCHNSTAT_IPI);
    assert_eq!(u32_at(&call.bytes, status::VCPU), 1);
    assert_eq!(&call.bytes[16..24], &[0xaa; 8]);

    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_VIRQ),
        &args::bind_virq(Virq::DEBUG.0, 0),
    );
    let virq = u32_at(&call.bytes, bind_virq::PORT);
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_STATUS),
        &args::status(SELF, virq),
    );
    assert_eq!(u32_at(&call.bytes, status::STATUS), abi::EVTCHNSTAT_VIRQ);
    assert_eq!(u32_at(&call.bytes, status::VIRQ), Virq::DEBUG.0);
    assert_eq!(&call.bytes[20..24], &[0xaa; 4]);

    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_STATUS),
        &args::status(SELF, 300),
    );
    assert_eq!(u32_at(&call.bytes, status::STATUS), abi::EVTCHNSTAT_CLOSED);
    assert_eq!(&call.bytes[16..24], &[0xaa; 8]);
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_STATUS),
        &args::status(SELF, 4096),
    );
    assert_eq!(call.response.result, Err(Errno::EINVAL));
    assert_eq!(u32_at(&call.bytes, status::STATUS), 0xaaaa_aaaa);
}

#[test]
fn status_of_another_domain() {
    let mut world = world();
    let (guest_port, _) = connect(&mut world);
    let call = world.call(
        OTHER,
        false,
        command(abi::EVTCHNOP_STATUS),
        &args::status(GUEST.0, guest_port.0),
    );
    assert_eq!(call.response.result, Err(Errno::EPERM));
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_STATUS),
        &args::status(GUEST.0, guest_port.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(
        u32_at(&call.bytes, status::STATUS),
        abi::EVTCHNSTAT_INTERDOMAIN
    );
    assert_eq!(u16_at(&call.bytes, status::INTERDOMAIN_DOM), DOM0.0);
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_STATUS),
        &args::status(50, 1),
    );
    assert_eq!(call.response.result, Err(Errno::ESRCH));
    // Naming oneself by id needs no privilege.
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_STATUS),
        &args::status(GUEST.0, guest_port.0),
    );
    assert_eq!(call.response.result, ok());
}

#[test]
fn bind_vcpu_and_unmask() {
    let mut world = world();
    let (guest_port, dom0_port) = connect(&mut world);
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_VCPU),
        &args::bind_vcpu(guest_port.0, 1),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(world.table(GUEST).notify_vcpu(guest_port), Some(VcpuId(1)));
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_VCPU),
        &args::bind_vcpu(guest_port.0, 2),
    );
    assert_eq!(call.response.result, Err(Errno::ENOENT));

    world.memory(GUEST).set_masked(guest_port, true);
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_SEND),
        &args::port(dom0_port.0),
    );
    assert_eq!(
        call.remote,
        Some((
            GUEST,
            Delivery {
                newly_pending: Some(guest_port),
                upcall: None
            }
        ))
    );
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_UNMASK),
        &args::port(guest_port.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(
        call.response.effect,
        Effect::Local(Delivery {
            newly_pending: None,
            upcall: Some(VcpuId(1))
        })
    );
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_UNMASK),
        &args::port(4096),
    );
    assert_eq!(call.response.result, Err(Errno::EINVAL));
}

#[test]
fn reset_of_oneself_and_of_another_domain() {
    let mut world = world();
    let (guest_port, dom0_port) = connect(&mut world);
    world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_IPI),
        &args::bind_ipi(0),
    );
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_RESET),
        &args::reset(SELF),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(world.table(GUEST).bound_ports().count(), 0);
    assert_eq!(
        world.table(DOM0).state(dom0_port),
        Some(PortState::Unbound { remote: GUEST })
    );

    // Dom0 reconnects, then resets the guest from outside.
    let call = world.call(
        GUEST,
        false,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &args::bind_interdomain(DOM0.0, dom0_port.0),
    );
    assert_eq!(call.response.result, ok());
    let call = world.call(
        OTHER,
        false,
        command(abi::EVTCHNOP_RESET),
        &args::reset(GUEST.0),
    );
    assert_eq!(call.response.result, Err(Errno::EPERM));
    let call = world.call(
        DOM0,
        true,
        command(abi::EVTCHNOP_RESET_CONT),
        &args::reset(GUEST.0),
    );
    assert_eq!(call.response.result, ok());
    assert_eq!(world.table(GUEST).bound_ports().count(), 0);
    assert_eq!(
        world.table(DOM0).state(dom0_port),
        Some(PortState::Unbound { remote: GUEST })
    );
    let _ = guest_port;
}

#[test]
fn unsupported_commands_are_enosys_without_touching_the_guest() {
    let mut world = world();
    for number in [
        abi::EVTCHNOP_BIND_PIRQ,
        abi::EVTCHNOP_INIT_CONTROL,
        abi::EVTCHNOP_EXPAND_ARRAY,
        abi::EVTCHNOP_SET_PRIORITY,
        15,
        1000,
        u32::MAX,
    ] {
        let call = world.call(DOM0, true, command(number), &[]);
        assert_eq!(call.response.result, Err(Errno::ENOSYS), "command {number}");
        assert_eq!(call.response.return_value(), Errno::ENOSYS.as_return());
    }
}

#[test]
fn the_command_is_a_32_bit_int() {
    let mut world = world();
    let call = world.call(
        GUEST,
        false,
        0xffff_ffff_0000_0000 | command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &args::alloc_unbound(SELF, 0),
    );
    assert_eq!(call.response.result, ok());
}

#[test]
fn unreadable_arguments_fault() {
    let mut world = world();
    // One byte short of each struct.
    for (number, size) in [
        (abi::EVTCHNOP_BIND_INTERDOMAIN, 12),
        (abi::EVTCHNOP_BIND_VIRQ, 12),
        (abi::EVTCHNOP_CLOSE, 4),
        (abi::EVTCHNOP_SEND, 4),
        (abi::EVTCHNOP_STATUS, 24),
        (abi::EVTCHNOP_ALLOC_UNBOUND, 8),
        (abi::EVTCHNOP_BIND_IPI, 8),
        (abi::EVTCHNOP_BIND_VCPU, 8),
        (abi::EVTCHNOP_UNMASK, 4),
        (abi::EVTCHNOP_RESET, 2),
    ] {
        assert_eq!(argument_size(number), Ok(size));
        let call = world.call(GUEST, false, command(number), &vec![0; size - 1]);
        assert_eq!(call.response.result, Err(Errno::EFAULT), "command {number}");
        assert_eq!(
            Request::decode(number, &vec![0; size - 1]),
            Err(Errno::EFAULT)
        );
    }
    assert_eq!(world.table(GUEST).bound_ports().count(), 0);
}

#[test]
fn an_unwritable_result_faults_but_the_change_stands() {
    let mut world = world();
    let mut guest = FakeGuest::new(&args::alloc_unbound(SELF, 0));
    guest.read_only = true;
    let call = world.call_with(
        GUEST,
        false,
        command(abi::EVTCHNOP_ALLOC_UNBOUND),
        &mut guest,
    );
    assert_eq!(call.response.result, Err(Errno::EFAULT));
    assert_eq!(
        world.table(GUEST).state(Port(1)),
        Some(PortState::Unbound { remote: DOM0 })
    );
    // The effect still has to be carried out.
    let mut guest = FakeGuest::new(&args::bind_interdomain(GUEST.0, 1));
    guest.read_only = true;
    let call = world.call_with(
        DOM0,
        true,
        command(abi::EVTCHNOP_BIND_INTERDOMAIN),
        &mut guest,
    );
    assert_eq!(call.response.result, Err(Errno::EFAULT));
    assert!(matches!(call.response.effect, Effect::Local(delivery) if delivery.upcall.is_some()));
    // Requests without outputs write nothing, so a read-only struct is fine.
    let mut guest = FakeGuest::new(&args::port(1));
    guest.read_only = true;
    let call = world.call_with(GUEST, false, command(abi::EVTCHNOP_SEND), &mut guest);
    assert_eq!(call.response.result, ok());
}

#[test]
fn execute_without_guest_memory() {
    let mut table = EventChannels::new(GUEST, Limits::new(1)).unwrap();
    let mut memory = FakeSharedInfo::new();
    let request = Request::decode(abi::EVTCHNOP_BIND_IPI, &args::bind_ipi(0)).unwrap();
    assert_eq!(request, Request::BindIpi { vcpu: VcpuId(0) });
    let (reply, effect) =
        execute(request, false, &mut table, &mut memory, &mut NoOtherDomains).unwrap();
    assert_eq!(reply, Reply::Port(Port(1)));
    assert_eq!(effect, Effect::None);
    let request = Request::BindInterdomain {
        remote_domain: DOM0,
        remote_port: Port(1),
    };
    assert_eq!(
        execute(request, false, &mut table, &mut memory, &mut NoOtherDomains),
        Err(Errno::ESRCH)
    );
}

#[test]
fn read_poll_ports() {
    let mut bytes = Vec::new();
    for port in [3u32, 7, 4095] {
        bytes.extend_from_slice(&port.to_le_bytes());
    }
    let guest = FakeGuest::new(&bytes);
    let ports = super::super::read_poll_ports(&guest, ARGUMENT, 3).unwrap();
    assert_eq!(ports.as_slice(), &[Port(3), Port(7), Port(4095)]);
    assert_eq!(
        super::super::read_poll_ports(&guest, ARGUMENT, 0).map(|ports| ports.len()),
        Ok(0)
    );
    assert_eq!(
        super::super::read_poll_ports(&guest, ARGUMENT, 4).map(|_| ()),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        super::super::read_poll_ports(&guest, GuestVirtAddr(0), 1).map(|_| ()),
        Err(Errno::EFAULT)
    );
    let many = FakeGuest::new(&[0; 129 * 4]);
    assert_eq!(
        super::super::read_poll_ports(&many, ARGUMENT, 128).map(|ports| ports.len()),
        Ok(128)
    );
    assert_eq!(
        super::super::read_poll_ports(&many, ARGUMENT, 129).map(|_| ()),
        Err(Errno::EINVAL)
    );
}
