//! Typed console input raising VIRQ_CONSOLE in Dom0 (the serial-input half
//! of `console::input`), against the fake shared_info page.

use xenolith_abi::domain::DomainId;

use super::FakeSharedInfo;
use crate::console::input::{INPUT_CAPACITY, InputBuffer, listening, receive};
use crate::event_channel::*;

fn dom0() -> EventChannels {
    EventChannels::new(
        DomainId::DOM0,
        Limits {
            global_virq_handler: true,
            ..Limits::new(1)
        },
    )
    .unwrap()
}

#[test]
fn typed_bytes_raise_virq_console_on_a_dom0_that_bound_it() {
    let mut events = dom0();
    let mut memory = FakeSharedInfo::new();
    let mut input = InputBuffer::new();
    assert!(!listening(&events));
    let port = events.bind_virq(Virq::CONSOLE, VcpuId(0)).unwrap();
    assert!(listening(&events));

    let (pushed, delivery) = receive(&mut input, b"x", &events, &mut memory);
    assert_eq!(pushed.accepted, 1);
    assert_eq!(
        delivery,
        Delivery {
            newly_pending: Some(port),
            upcall: Some(VcpuId(0)),
        }
    );
    assert!(memory.upcall_pending(VcpuId(0)));
    assert_eq!(memory.guest_handle_upcall(VcpuId(0)), vec![port]);
    assert_eq!(input.len(), 1);

    // Once Dom0 handled the event, more typing raises it again.
    let (_, delivery) = receive(&mut input, b"yz", &events, &mut memory);
    assert_eq!(delivery.upcall, Some(VcpuId(0)));
    assert_eq!(input.len(), 3);
}

#[test]
fn without_a_binding_input_is_kept_but_nothing_is_raised() {
    let events = dom0();
    let mut memory = FakeSharedInfo::new();
    let mut input = InputBuffer::new();
    let (pushed, delivery) = receive(&mut input, b"ls\r", &events, &mut memory);
    assert_eq!(pushed.accepted, 3);
    assert_eq!(delivery, Delivery::NONE);
    assert!(!memory.upcall_pending(VcpuId(0)));
}

#[test]
fn a_full_buffer_still_tells_dom0_and_an_empty_batch_does_not() {
    let mut events = dom0();
    let mut memory = FakeSharedInfo::new();
    let mut input = InputBuffer::new();
    let port = events.bind_virq(Virq::CONSOLE, VcpuId(0)).unwrap();
    assert_eq!(
        receive(&mut input, &[], &events, &mut memory).1,
        Delivery::NONE
    );
    input.push(&vec![b'a'; INPUT_CAPACITY]);
    let (pushed, delivery) = receive(&mut input, b"b", &events, &mut memory);
    assert_eq!((pushed.accepted, pushed.dropped), (0, 1));
    assert_eq!(delivery.newly_pending, Some(port));
}
