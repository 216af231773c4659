//! 2-level delivery: which bits are set, and when a vCPU needs an upcall.

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::event_channel::layout;

use super::FakeSharedInfo;
use crate::event_channel::*;

const A: DomainId = DomainId(1);

fn table() -> EventChannels {
    EventChannels::new(A, Limits::new(64)).unwrap()
}

fn upcall(port: Port, vcpu: u32) -> Delivery {
    Delivery {
        newly_pending: Some(port),
        upcall: Some(VcpuId(vcpu)),
    }
}

#[test]
fn raise_sets_the_bits_at_xen_offsets() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    for _ in 0..64 {
        a.alloc_unbound(A).unwrap();
    }
    let port = a.bind_ipi(VcpuId(3)).unwrap();
    assert_eq!(port, Port(65));
    assert_eq!(a.raise(port, &mut memory), upcall(port, 3));
    // Word 1 of evtchn_pending, bit 1.
    let pending = layout::SHARED_INFO_EVTCHN_PENDING as usize + 8;
    assert_eq!(memory.page[pending], 0b10);
    // vCPU 3's vcpu_info: selector bit 1 and the upcall flag.
    let info = 3 * layout::VCPU_INFO_SIZE as usize;
    assert_eq!(
        memory.page[info + layout::VCPU_INFO_PENDING_SEL as usize],
        0b10
    );
    assert_eq!(
        memory.page[info + layout::VCPU_INFO_UPCALL_PENDING as usize],
        1
    );
    // Nothing else in the page changed.
    let set_bytes = memory.page.iter().filter(|&&byte| byte != 0).count();
    assert_eq!(set_bytes, 3);
}

#[test]
fn a_second_raise_while_pending_does_nothing() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let port = a.bind_ipi(VcpuId(0)).unwrap();
    assert_eq!(a.raise(port, &mut memory), upcall(port, 0));
    assert_eq!(a.raise(port, &mut memory), Delivery::NONE);
    assert!(Delivery::NONE.is_none());
    // Once the guest has consumed it, it raises again.
    assert_eq!(memory.guest_handle_upcall(VcpuId(0)), vec![port]);
    assert_eq!(a.raise(port, &mut memory), upcall(port, 0));
}

#[test]
fn a_masked_port_does_not_kick() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let port = a.bind_ipi(VcpuId(1)).unwrap();
    memory.set_masked(port, true);
    let delivery = a.raise(port, &mut memory);
    assert_eq!(
        delivery,
        Delivery {
            newly_pending: Some(port),
            upcall: None
        }
    );
    assert!(!delivery.is_none());
    assert!(memory.is_pending(port));
    assert_eq!(memory.selector(VcpuId(1)), 0);
    assert!(!memory.upcall_pending(VcpuId(1)));
}

#[test]
fn an_outstanding_upcall_is_not_kicked_twice() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let first = a.bind_ipi(VcpuId(0)).unwrap();
    let second = a.alloc_unbound(A).unwrap();
    for _ in 0..70 {
        a.alloc_unbound(A).unwrap();
    }
    let other_word = a.alloc_unbound(A).unwrap();
    assert_ne!(other_word.word(), first.word());
    assert_eq!(a.raise(first, &mut memory), upcall(first, 0));
    // Same word: the selector bit is already set.
    assert_eq!(
        a.raise(second, &mut memory),
        Delivery {
            newly_pending: Some(second),
            upcall: None
        }
    );
    // Another word: selector newly set, but the upcall is outstanding.
    assert_eq!(
        a.raise(other_word, &mut memory),
        Delivery {
            newly_pending: Some(other_word),
            upcall: None
        }
    );
    assert_eq!(memory.selector(VcpuId(0)), 0b11);
}

#[test]
fn raise_goes_to_the_notify_vcpu() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let port = a.alloc_unbound(A).unwrap();
    a.bind_vcpu(port, VcpuId(40)).unwrap();
    assert_eq!(a.raise(port, &mut memory), upcall(port, 40));
    assert!(memory.upcall_pending(VcpuId(40)));
    assert_eq!(memory.selector(VcpuId(40)), 1);
    assert!(!memory.upcall_pending(VcpuId(0)));
}

#[test]
fn raising_a_port_that_is_not_bound_is_ignored() {
    let a = table();
    let mut memory = FakeSharedInfo::new();
    for port in [Port(0), Port(7), Port(4096), Port(u32::MAX)] {
        assert_eq!(a.raise(port, &mut memory), Delivery::NONE);
    }
    assert!(memory.page.iter().all(|&byte| byte == 0));
}

#[test]
fn raise_virq() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let timer = a.bind_virq(Virq::TIMER, VcpuId(2)).unwrap();
    assert_eq!(
        a.raise_virq(Virq::TIMER, VcpuId(1), &mut memory),
        Delivery::NONE
    );
    assert_eq!(
        a.raise_virq(Virq::TIMER, VcpuId(2), &mut memory),
        upcall(timer, 2)
    );
    let argo = a.bind_virq(Virq::ARGO, VcpuId(0)).unwrap();
    a.bind_vcpu(argo, VcpuId(5)).unwrap();
    // Non-per-vCPU VIRQs go to their notify vCPU whatever vCPU is named.
    assert_eq!(
        a.raise_virq(Virq::ARGO, VcpuId(9), &mut memory),
        upcall(argo, 5)
    );
    assert_eq!(
        a.raise_virq(Virq(30), VcpuId(0), &mut memory),
        Delivery::NONE
    );
}

#[test]
fn unmask_of_a_pending_port_kicks() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let port = a.bind_ipi(VcpuId(2)).unwrap();
    memory.set_masked(port, true);
    let _ = a.raise(port, &mut memory);
    assert_eq!(
        a.unmask(port, &mut memory),
        Ok(Delivery {
            newly_pending: None,
            upcall: Some(VcpuId(2))
        })
    );
    assert!(!memory.is_masked(port));
    assert!(memory.upcall_pending(VcpuId(2)));
    assert_eq!(memory.selector(VcpuId(2)), 1);
}

#[test]
fn unmask_without_a_pending_event_only_clears_the_mask() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let port = a.bind_ipi(VcpuId(0)).unwrap();
    memory.set_masked(port, true);
    assert_eq!(a.unmask(port, &mut memory), Ok(Delivery::NONE));
    assert!(!memory.is_masked(port));
    // Pending but never masked: the raise already notified.
    let _ = a.raise(port, &mut memory);
    memory.guest_handle_upcall(VcpuId(0));
    let _ = a.raise(port, &mut memory);
    assert_eq!(a.unmask(port, &mut memory), Ok(Delivery::NONE));
}

#[test]
fn unmask_with_an_outstanding_upcall_does_not_kick() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let first = a.bind_ipi(VcpuId(0)).unwrap();
    let masked = a.bind_ipi(VcpuId(0)).unwrap();
    memory.set_masked(masked, true);
    let _ = a.raise(masked, &mut memory);
    let _ = a.raise(first, &mut memory);
    assert_eq!(a.unmask(masked, &mut memory), Ok(Delivery::NONE));
}

#[test]
fn unmask_of_ports_that_are_not_bound() {
    let a = table();
    let mut memory = FakeSharedInfo::new();
    memory.set_masked(Port(9), true);
    // Xen leaves unusable ports alone and succeeds.
    assert_eq!(a.unmask(Port(9), &mut memory), Ok(Delivery::NONE));
    assert!(memory.is_masked(Port(9)));
    assert_eq!(a.unmask(Port(0), &mut memory), Ok(Delivery::NONE));
    assert_eq!(a.unmask(Port(4096), &mut memory), Err(Errno::EINVAL));
}

#[test]
fn poll() {
    let mut a = table();
    let mut memory = FakeSharedInfo::new();
    let quiet = a.bind_ipi(VcpuId(0)).unwrap();
    let busy = a.bind_ipi(VcpuId(0)).unwrap();
    assert_eq!(a.poll(&[quiet, busy], &memory), Ok(false));
    assert_eq!(a.poll(&[], &memory), Ok(false));
    memory.set_masked(busy, true);
    let _ = a.raise(busy, &mut memory);
    // Masked still counts.
    assert_eq!(a.poll(&[quiet, busy], &memory), Ok(true));
    // Ports are checked in order, as Xen does.
    assert_eq!(a.poll(&[busy, Port(99)], &memory), Ok(true));
    assert_eq!(a.poll(&[Port(99), busy], &memory), Err(Errno::EINVAL));
    assert_eq!(a.poll(&[Port(0)], &memory), Err(Errno::EINVAL));
    assert_eq!(a.poll(&[Port(5000)], &memory), Err(Errno::EINVAL));
    assert_eq!(a.poll(&[quiet; 128], &memory), Ok(false));
    assert_eq!(a.poll(&[busy; 129], &memory), Err(Errno::EINVAL));
}
