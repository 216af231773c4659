//! The port table on its own: allocation, binding, closing, sending,
//! status, and every error Xen gives.

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;

use super::FakeSharedInfo;
use crate::event_channel::*;

const A: DomainId = DomainId(1);
const B: DomainId = DomainId(2);
const C: DomainId = DomainId(3);

fn table(domain: DomainId) -> EventChannels {
    EventChannels::new(domain, Limits::new(2)).unwrap()
}

fn small_table(domain: DomainId, max_ports: u32) -> EventChannels {
    let limits = Limits {
        max_ports,
        ..Limits::new(2)
    };
    EventChannels::new(domain, limits).unwrap()
}

/// A connected pair: A's port offered to B, then bound by B.
fn connected() -> (EventChannels, Port, EventChannels, Port) {
    let mut a = table(A);
    let mut b = table(B);
    let a_port = a.alloc_unbound(B).unwrap();
    let (b_port, _) = b
        .bind_interdomain(&mut a, a_port, &mut FakeSharedInfo::new())
        .unwrap();
    (a, a_port, b, b_port)
}

#[test]
fn port_zero_is_reserved() {
    let mut a = table(A);
    let mut memory = FakeSharedInfo::new();
    assert_eq!(a.state(Port(0)), Some(PortState::Reserved));
    assert_eq!(a.close(Port(0), &mut memory), Err(Errno::EINVAL));
    assert_eq!(a.send(Port(0)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(Port(0), VcpuId(0)), Err(Errno::EINVAL));
    assert_eq!(
        a.status(Port(0)),
        Ok(Status {
            status: ChannelStatus::Closed,
            vcpu: VcpuId(0)
        })
    );
    assert_eq!(a.alloc_unbound(B), Ok(Port(1)));
}

#[test]
fn allocation_takes_the_lowest_free_port() {
    let mut a = table(A);
    let mut memory = FakeSharedInfo::new();
    assert_eq!(a.alloc_unbound(B), Ok(Port(1)));
    assert_eq!(a.bind_ipi(VcpuId(1)), Ok(Port(2)));
    assert_eq!(a.bind_virq(Virq::TIMER, VcpuId(0)), Ok(Port(3)));
    assert_eq!(a.close(Port(2), &mut memory), Ok(None));
    assert_eq!(a.state(Port(2)), Some(PortState::Free));
    assert_eq!(a.alloc_unbound(C), Ok(Port(2)));
    assert_eq!(a.alloc_unbound(C), Ok(Port(4)));
}

#[test]
fn a_full_table_gives_enospc() {
    let mut a = small_table(A, 4);
    for expected in 1..4 {
        assert_eq!(a.alloc_unbound(B), Ok(Port(expected)));
    }
    assert_eq!(a.alloc_unbound(B), Err(Errno::ENOSPC));
    assert_eq!(a.bind_ipi(VcpuId(0)), Err(Errno::ENOSPC));
    assert_eq!(a.bind_virq(Virq::TIMER, VcpuId(0)), Err(Errno::ENOSPC));
    assert_eq!(a.virq_port(Virq::TIMER, VcpuId(0)), None);
    // Ports past the cap do not exist.
    assert_eq!(a.state(Port(4)), None);
    assert_eq!(a.status(Port(4)), Err(Errno::EINVAL));
}

#[test]
fn max_ports_is_clamped_to_the_2_level_reach() {
    let mut none = small_table(A, 0);
    assert_eq!(none.max_ports(), 1);
    assert_eq!(none.alloc_unbound(B), Err(Errno::ENOSPC));

    let mut all = small_table(A, 100_000);
    assert_eq!(all.max_ports(), 4096);
    for expected in 1..4096 {
        assert_eq!(all.alloc_unbound(B), Ok(Port(expected)));
    }
    assert_eq!(all.alloc_unbound(B), Err(Errno::ENOSPC));
    assert_eq!(all.status(Port(4096)), Err(Errno::EINVAL));
    assert_eq!(all.send(Port(u32::MAX)), Err(Errno::EINVAL));
}

#[test]
fn bind_virq_per_vcpu() {
    let mut a = table(A);
    let timer0 = a.bind_virq(Virq::TIMER, VcpuId(0)).unwrap();
    let timer1 = a.bind_virq(Virq::TIMER, VcpuId(1)).unwrap();
    assert_ne!(timer0, timer1);
    assert_eq!(a.virq_port(Virq::TIMER, VcpuId(0)), Some(timer0));
    assert_eq!(a.virq_port(Virq::TIMER, VcpuId(1)), Some(timer1));
    assert_eq!(a.notify_vcpu(timer1), Some(VcpuId(1)));
    assert_eq!(
        a.state(timer1),
        Some(PortState::Virq {
            virq: Virq::TIMER,
            vcpu: VcpuId(1)
        })
    );
    assert_eq!(a.bind_virq(Virq::TIMER, VcpuId(1)), Err(Errno::EEXIST));
    assert_eq!(a.bind_virq(Virq::DEBUG, VcpuId(1)).map(|_| ()), Ok(()));
}

#[test]
fn bind_virq_errors() {
    let mut a = table(A);
    assert_eq!(a.bind_virq(Virq(24), VcpuId(0)), Err(Errno::EINVAL));
    assert_eq!(a.bind_virq(Virq(u32::MAX), VcpuId(0)), Err(Errno::EINVAL));
    // Per-vCPU VIRQ on a vCPU that does not exist.
    assert_eq!(a.bind_virq(Virq::TIMER, VcpuId(2)), Err(Errno::ENOENT));
    // Non-per-vCPU VIRQs only bind on vCPU 0; that check comes first.
    assert_eq!(a.bind_virq(Virq::ARGO, VcpuId(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_virq(Virq::CONSOLE, VcpuId(5)), Err(Errno::EINVAL));
    // A global VIRQ belongs to its handling domain.
    assert_eq!(a.bind_virq(Virq::DOM_EXC, VcpuId(0)), Err(Errno::EBUSY));
    // Nothing was allocated.
    assert_eq!(a.bound_ports().count(), 0);
}

#[test]
fn global_and_domain_virqs_live_on_vcpu_0() {
    let mut dom0 = EventChannels::new(
        DomainId::DOM0,
        Limits {
            global_virq_handler: true,
            ..Limits::new(2)
        },
    )
    .unwrap();
    let console = dom0.bind_virq(Virq::CONSOLE, VcpuId(0)).unwrap();
    let argo = dom0.bind_virq(Virq::ARGO, VcpuId(0)).unwrap();
    assert_eq!(dom0.bind_virq(Virq::CONSOLE, VcpuId(0)), Err(Errno::EEXIST));
    // Looked up whatever vCPU is asked.
    assert_eq!(dom0.virq_port(Virq::CONSOLE, VcpuId(1)), Some(console));
    assert_eq!(dom0.virq_port(Virq::ARGO, VcpuId(1)), Some(argo));
    // Moving the notify vCPU keeps the slot on vCPU 0.
    dom0.bind_vcpu(console, VcpuId(1)).unwrap();
    assert_eq!(dom0.notify_vcpu(console), Some(VcpuId(1)));
    assert_eq!(dom0.virq_port(Virq::CONSOLE, VcpuId(0)), Some(console));
    dom0.close(console, &mut FakeSharedInfo::new()).unwrap();
    assert_eq!(dom0.virq_port(Virq::CONSOLE, VcpuId(0)), None);
    // A domain VIRQ needs no handler role.
    let mut a = table(A);
    assert!(a.bind_virq(Virq::ARGO, VcpuId(0)).is_ok());
}

#[test]
fn closing_a_virq_frees_its_slot() {
    let mut a = table(A);
    let port = a.bind_virq(Virq::TIMER, VcpuId(1)).unwrap();
    a.close(port, &mut FakeSharedInfo::new()).unwrap();
    assert_eq!(a.virq_port(Virq::TIMER, VcpuId(1)), None);
    assert_eq!(a.bind_virq(Virq::TIMER, VcpuId(1)), Ok(port));
}

#[test]
fn bind_ipi() {
    let mut a = table(A);
    let port = a.bind_ipi(VcpuId(1)).unwrap();
    assert_eq!(a.state(port), Some(PortState::Ipi { vcpu: VcpuId(1) }));
    assert_eq!(a.notify_vcpu(port), Some(VcpuId(1)));
    assert_eq!(a.bind_ipi(VcpuId(2)), Err(Errno::ENOENT));
    assert_eq!(a.bind_ipi(VcpuId(u32::MAX)), Err(Errno::ENOENT));
}

#[test]
fn bind_interdomain_connects_both_ends_and_raises_the_new_port() {
    let mut a = table(A);
    let mut b = table(B);
    let mut b_memory = FakeSharedInfo::new();
    let a_port = a.alloc_unbound(B).unwrap();
    let (b_port, delivery) = b.bind_interdomain(&mut a, a_port, &mut b_memory).unwrap();
    assert_eq!(
        a.state(a_port),
        Some(PortState::Interdomain {
            remote: B,
            remote_port: b_port
        })
    );
    assert_eq!(
        b.state(b_port),
        Some(PortState::Interdomain {
            remote: A,
            remote_port: a_port
        })
    );
    assert_eq!(b.notify_vcpu(b_port), Some(VcpuId(0)));
    assert_eq!(
        delivery,
        Delivery {
            newly_pending: Some(b_port),
            upcall: Some(VcpuId(0))
        }
    );
    assert!(b_memory.is_pending(b_port));
}

#[test]
fn bind_interdomain_keeps_the_remote_notify_vcpu() {
    let mut a = table(A);
    let mut b = table(B);
    let a_port = a.alloc_unbound(B).unwrap();
    a.bind_vcpu(a_port, VcpuId(1)).unwrap();
    let _ = b
        .bind_interdomain(&mut a, a_port, &mut FakeSharedInfo::new())
        .unwrap();
    assert_eq!(a.notify_vcpu(a_port), Some(VcpuId(1)));
}

#[test]
fn bind_interdomain_errors() {
    let mut a = table(A);
    let mut b = table(B);
    let mut memory = FakeSharedInfo::new();
    let for_c = a.alloc_unbound(C).unwrap();
    let ipi = a.bind_ipi(VcpuId(0)).unwrap();
    // Offered to someone else.
    assert_eq!(
        b.bind_interdomain(&mut a, for_c, &mut memory),
        Err(Errno::EINVAL)
    );
    // Not unbound, free, reserved, out of range.
    for port in [ipi, Port(3), Port(0), Port(4096), Port(u32::MAX)] {
        assert_eq!(
            b.bind_interdomain(&mut a, port, &mut memory),
            Err(Errno::EINVAL)
        );
    }
    // Already connected.
    let for_b = a.alloc_unbound(B).unwrap();
    let _ = b.bind_interdomain(&mut a, for_b, &mut memory).unwrap();
    assert_eq!(
        b.bind_interdomain(&mut a, for_b, &mut memory),
        Err(Errno::EINVAL)
    );
    // Nothing changed on failure.
    assert_eq!(a.state(for_c), Some(PortState::Unbound { remote: C }));
    assert_eq!(b.bound_ports().count(), 1);
}

#[test]
fn bind_interdomain_with_a_full_table_gives_enospc_first() {
    let mut a = table(A);
    let mut b = small_table(B, 2);
    let mut memory = FakeSharedInfo::new();
    b.alloc_unbound(C).unwrap();
    let for_b = a.alloc_unbound(B).unwrap();
    assert_eq!(
        b.bind_interdomain(&mut a, for_b, &mut memory),
        Err(Errno::ENOSPC)
    );
    // Xen allocates the local port before looking at the remote one.
    assert_eq!(
        b.bind_interdomain(&mut a, Port(4000), &mut memory),
        Err(Errno::ENOSPC)
    );
    assert_eq!(a.state(for_b), Some(PortState::Unbound { remote: B }));
}

#[test]
fn loopback_channels() {
    let mut a = table(A);
    let mut memory = FakeSharedInfo::new();
    let offered = a.alloc_unbound(A).unwrap();
    let (bound, delivery) = a.bind_loopback(offered, &mut memory).unwrap();
    assert_eq!(delivery.newly_pending, Some(bound));
    assert_eq!(
        a.state(offered),
        Some(PortState::Interdomain {
            remote: A,
            remote_port: bound
        })
    );
    assert_eq!(
        a.send(offered),
        Ok(Some(Notify {
            domain: A,
            port: bound
        }))
    );
    assert_eq!(a.bind_loopback(offered, &mut memory), Err(Errno::EINVAL));
    // Closing one end reverts the other here, with nothing to hand back.
    assert_eq!(a.close(bound, &mut memory), Ok(None));
    assert_eq!(a.state(offered), Some(PortState::Unbound { remote: A }));
    // A port offered to another domain cannot be looped back.
    let for_b = a.alloc_unbound(B).unwrap();
    assert_eq!(a.bind_loopback(for_b, &mut memory), Err(Errno::EINVAL));
}

#[test]
fn closing_a_connected_port_reverts_the_peer_and_its_sends_are_dropped() {
    let (mut a, a_port, mut b, b_port) = connected();
    let mut memory = FakeSharedInfo::new();
    let peer = a.close(a_port, &mut memory).unwrap().unwrap();
    assert_eq!(
        peer,
        PeerClosed {
            domain: B,
            port: b_port,
            closer: A,
            closer_port: a_port
        }
    );
    assert_eq!(a.state(a_port), Some(PortState::Free));
    assert!(b.peer_closed(peer));
    assert_eq!(b.state(b_port), Some(PortState::Unbound { remote: A }));
    // B's sends now go nowhere, successfully.
    assert_eq!(b.send(b_port), Ok(None));
    // A can connect again to the port B has left waiting.
    let (again, _) = a.bind_interdomain(&mut b, b_port, &mut memory).unwrap();
    assert_eq!(
        b.send(b_port),
        Ok(Some(Notify {
            domain: A,
            port: again
        }))
    );
}

#[test]
fn stale_peer_updates_are_ignored() {
    let (mut a, a_port, mut b, b_port) = connected();
    let mut memory = FakeSharedInfo::new();
    let peer = a.close(a_port, &mut memory).unwrap().unwrap();
    // B closed its end meanwhile, and reused the port.
    b.close(b_port, &mut memory).unwrap();
    assert_eq!(b.bind_ipi(VcpuId(0)), Ok(b_port));
    assert!(!b.peer_closed(peer));
    assert_eq!(b.state(b_port), Some(PortState::Ipi { vcpu: VcpuId(0) }));
    // Addressed to another table.
    let mut c = table(C);
    assert!(!c.peer_closed(peer));
}

#[test]
fn close_errors_and_pending_bit() {
    let mut a = table(A);
    let mut memory = FakeSharedInfo::new();
    assert_eq!(a.close(Port(5), &mut memory), Err(Errno::EINVAL));
    assert_eq!(a.close(Port(4096), &mut memory), Err(Errno::EINVAL));
    let port = a.bind_ipi(VcpuId(1)).unwrap();
    let _ = a.raise(port, &mut memory);
    assert!(memory.is_pending(port));
    assert_eq!(a.close(port, &mut memory), Ok(None));
    assert!(!memory.is_pending(port));
    assert_eq!(a.close(port, &mut memory), Err(Errno::EINVAL));
    // The notify vCPU goes back to 0 with the port.
    assert_eq!(a.notify_vcpu(port), Some(VcpuId(0)));
}

#[test]
fn send() {
    let (mut a, a_port, _b, b_port) = connected();
    assert_eq!(
        a.send(a_port),
        Ok(Some(Notify {
            domain: B,
            port: b_port
        }))
    );
    let ipi = a.bind_ipi(VcpuId(1)).unwrap();
    assert_eq!(
        a.send(ipi),
        Ok(Some(Notify {
            domain: A,
            port: ipi
        }))
    );
    let unbound = a.alloc_unbound(C).unwrap();
    assert_eq!(a.send(unbound), Ok(None));
    let virq = a.bind_virq(Virq::TIMER, VcpuId(0)).unwrap();
    assert_eq!(a.send(virq), Err(Errno::EINVAL));
    assert_eq!(a.send(Port(100)), Err(Errno::EINVAL));
    assert_eq!(a.send(Port(4096)), Err(Errno::EINVAL));
}

#[test]
fn status_reports_every_state() {
    let (mut a, a_port, _b, b_port) = connected();
    let unbound = a.alloc_unbound(C).unwrap();
    let ipi = a.bind_ipi(VcpuId(1)).unwrap();
    let virq = a.bind_virq(Virq::DEBUG, VcpuId(1)).unwrap();
    let status = |port| a.status(port).unwrap();
    assert_eq!(
        status(a_port).status,
        ChannelStatus::Interdomain {
            remote: B,
            remote_port: b_port
        }
    );
    assert_eq!(status(unbound).status, ChannelStatus::Unbound { remote: C });
    assert_eq!(
        status(ipi),
        Status {
            status: ChannelStatus::Ipi,
            vcpu: VcpuId(1)
        }
    );
    assert_eq!(
        status(virq),
        Status {
            status: ChannelStatus::Virq(Virq::DEBUG),
            vcpu: VcpuId(1)
        }
    );
    assert_eq!(status(Port(4095)).status, ChannelStatus::Closed);
    assert_eq!(ChannelStatus::Closed.code(), 0);
    assert_eq!(status(unbound).status.code(), 1);
    assert_eq!(status(a_port).status.code(), 2);
    assert_eq!(status(virq).status.code(), 4);
    assert_eq!(status(ipi).status.code(), 5);
}

#[test]
fn bind_vcpu() {
    let (mut a, a_port, _b, _b_port) = connected();
    let unbound = a.alloc_unbound(C).unwrap();
    let ipi = a.bind_ipi(VcpuId(0)).unwrap();
    let timer = a.bind_virq(Virq::TIMER, VcpuId(0)).unwrap();
    for port in [a_port, unbound] {
        assert_eq!(a.bind_vcpu(port, VcpuId(1)), Ok(()));
        assert_eq!(a.notify_vcpu(port), Some(VcpuId(1)));
    }
    assert_eq!(a.bind_vcpu(ipi, VcpuId(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(timer, VcpuId(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(Port(50), VcpuId(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(Port(4096), VcpuId(1)), Err(Errno::EINVAL));
    // The vCPU is checked before the port.
    assert_eq!(a.bind_vcpu(Port(4096), VcpuId(2)), Err(Errno::ENOENT));
    assert_eq!(a.bind_vcpu(a_port, VcpuId(2)), Err(Errno::ENOENT));
    assert_eq!(a.notify_vcpu(ipi), Some(VcpuId(0)));
    assert_eq!(a.notify_vcpu(timer), Some(VcpuId(0)));
}

#[test]
fn close_all_returns_every_remote_peer() {
    let (mut a, a_port, mut b, b_port) = connected();
    let offered = a.alloc_unbound(A).unwrap();
    let _ = a
        .bind_loopback(offered, &mut FakeSharedInfo::new())
        .unwrap();
    a.bind_virq(Virq::TIMER, VcpuId(1)).unwrap();
    a.bind_ipi(VcpuId(0)).unwrap();
    a.alloc_unbound(C).unwrap();
    let peers = a.close_all();
    assert_eq!(
        peers,
        vec![PeerClosed {
            domain: B,
            port: b_port,
            closer: A,
            closer_port: a_port
        }]
    );
    assert_eq!(a.bound_ports().count(), 0);
    assert_eq!(a.virq_port(Virq::TIMER, VcpuId(1)), None);
    assert!(b.peer_closed(peers[0]));
    assert_eq!(b.state(b_port), Some(PortState::Unbound { remote: A }));
}

#[test]
fn reset_closes_everything_and_clears_pending_bits() {
    let (mut a, _a_port, _b, _b_port) = connected();
    let mut memory = FakeSharedInfo::new();
    let ipi = a.bind_ipi(VcpuId(0)).unwrap();
    let _ = a.raise(ipi, &mut memory);
    let peers = a.reset(&mut memory);
    assert_eq!(peers.len(), 1);
    assert!(!memory.is_pending(ipi));
    assert_eq!(a.bound_ports().count(), 0);
}

#[test]
fn no_vcpus_means_no_virqs_or_ipis() {
    let mut a = EventChannels::new(A, Limits::new(0)).unwrap();
    assert_eq!(a.bind_virq(Virq::TIMER, VcpuId(0)), Err(Errno::ENOENT));
    assert_eq!(a.bind_ipi(VcpuId(0)), Err(Errno::ENOENT));
    assert_eq!(a.virq_port(Virq::TIMER, VcpuId(0)), None);
    assert!(a.alloc_unbound(B).is_ok());
}
