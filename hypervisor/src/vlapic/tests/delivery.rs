//! Accepting, prioritising, acknowledging and ending interrupts.

use super::*;

#[test]
fn accept_then_acknowledge_moves_the_vector_from_irr_to_isr() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.accept(Vector(0x41), TriggerMode::Edge),
        Acceptance::Accepted
    );
    assert_eq!(mmio_read(&mut lapic, offset::REQUEST + 0x20), 1 << 1);
    assert_eq!(lapic.pending_vector(), Some(Vector(0x41)));
    assert_eq!(
        lapic.acknowledge(Vector(0x41)),
        Acknowledged::Interrupt(Vector(0x41))
    );
    assert_eq!(mmio_read(&mut lapic, offset::REQUEST + 0x20), 0);
    assert_eq!(mmio_read(&mut lapic, offset::IN_SERVICE + 0x20), 1 << 1);
    assert_eq!(mmio_read(&mut lapic, offset::PROCESSOR_PRIORITY), 0x40);
    assert_eq!(lapic.pending_vector(), None);
    assert_eq!(end_of_interrupt(&mut lapic), ended(0x41, TriggerMode::Edge));
    assert_eq!(mmio_read(&mut lapic, offset::IN_SERVICE + 0x20), 0);
    assert_eq!(mmio_read(&mut lapic, offset::PROCESSOR_PRIORITY), 0);
}

#[test]
fn nested_interrupts_end_highest_first() {
    let mut lapic = xapic(0);
    lapic.accept(Vector(0x31), TriggerMode::Edge);
    assert_eq!(inject(&mut lapic), Some(Vector(0x31)));

    // Same class as the one in service: waits.
    lapic.accept(Vector(0x35), TriggerMode::Edge);
    assert_eq!(lapic.pending_vector(), None);
    // A higher class nests.
    lapic.accept(Vector(0x61), TriggerMode::Edge);
    assert_eq!(inject(&mut lapic), Some(Vector(0x61)));
    assert_eq!(lapic.processor_priority(), 0x60);
    // Lower than everything in service: waits too.
    lapic.accept(Vector(0x20), TriggerMode::Edge);
    assert_eq!(lapic.pending_vector(), None);

    assert_eq!(end_of_interrupt(&mut lapic), ended(0x61, TriggerMode::Edge));
    assert_eq!(lapic.processor_priority(), 0x30);
    assert_eq!(lapic.pending_vector(), None, "0x35 still waits for 0x31");
    assert_eq!(end_of_interrupt(&mut lapic), ended(0x31, TriggerMode::Edge));
    assert_eq!(inject(&mut lapic), Some(Vector(0x35)));
    assert_eq!(end_of_interrupt(&mut lapic), ended(0x35, TriggerMode::Edge));
    assert_eq!(inject(&mut lapic), Some(Vector(0x20)));
    assert_eq!(end_of_interrupt(&mut lapic), ended(0x20, TriggerMode::Edge));
    assert_eq!(end_of_interrupt(&mut lapic), None, "nothing in service");
}

#[test]
fn highest_vector_goes_first() {
    let mut lapic = x2apic(0);
    for vector in [0x40, 0xe0, 0x81, 0x80] {
        lapic.accept(Vector(vector), TriggerMode::Edge);
    }
    assert_eq!(inject(&mut lapic), Some(Vector(0xe0)));
    end_of_interrupt(&mut lapic);
    assert_eq!(inject(&mut lapic), Some(Vector(0x81)));
    // 0x80 is in 0x81's class: it waits for the EOI.
    assert_eq!(lapic.pending_vector(), None);
    end_of_interrupt(&mut lapic);
    assert_eq!(inject(&mut lapic), Some(Vector(0x80)));
    end_of_interrupt(&mut lapic);
    assert_eq!(inject(&mut lapic), Some(Vector(0x40)));
}

#[test]
fn task_priority_masks_its_class_and_below() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x50);
    lapic.accept(Vector(0x51), TriggerMode::Edge);
    lapic.accept(Vector(0x4f), TriggerMode::Edge);
    assert_eq!(lapic.pending_vector(), None);
    assert_eq!(lapic.highest_request(), Some(Vector(0x51)));
    // The sub-class bits of the TPR do not matter.
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x5f);
    assert_eq!(lapic.pending_vector(), None);
    lapic.accept(Vector(0x60), TriggerMode::Edge);
    assert_eq!(inject(&mut lapic), Some(Vector(0x60)));
    end_of_interrupt(&mut lapic);
    // CR8 is TPR[7:4].
    assert_eq!(lapic.cr8(), 5);
    lapic.write_cr8(4);
    assert_eq!(lapic.task_priority(), 0x40);
    assert_eq!(inject(&mut lapic), Some(Vector(0x51)));
    end_of_interrupt(&mut lapic);
    assert_eq!(lapic.pending_vector(), None, "0x4f is in class 4");
    lapic.write_cr8(0);
    assert_eq!(inject(&mut lapic), Some(Vector(0x4f)));
}

#[test]
fn processor_priority_is_the_higher_of_tpr_and_isr_class() {
    let mut lapic = xapic(0);
    lapic.accept(Vector(0x41), TriggerMode::Edge);
    inject(&mut lapic);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x25);
    assert_eq!(mmio_read(&mut lapic, offset::PROCESSOR_PRIORITY), 0x40);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x45);
    assert_eq!(mmio_read(&mut lapic, offset::PROCESSOR_PRIORITY), 0x45);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x75);
    assert_eq!(mmio_read(&mut lapic, offset::PROCESSOR_PRIORITY), 0x75);
}

#[test]
fn arbitration_priority_follows_the_sdm() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x30);
    assert_eq!(mmio_read(&mut lapic, offset::ARBITRATION_PRIORITY), 0x30);
    lapic.accept(Vector(0x45), TriggerMode::Edge);
    assert_eq!(mmio_read(&mut lapic, offset::ARBITRATION_PRIORITY), 0x40);
    inject(&mut lapic);
    assert_eq!(lapic.arbitration_priority(), 0x40);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x55);
    assert_eq!(lapic.arbitration_priority(), 0x55);
}

#[test]
fn interrupt_flag_and_shadow_hold_delivery_back() {
    let mut lapic = xapic(0);
    lapic.accept(Vector(0x80), TriggerMode::Edge);
    assert_eq!(lapic.pending_vector(), Some(Vector(0x80)));
    assert_eq!(lapic.highest_deliverable(false, false), None);
    assert_eq!(lapic.highest_deliverable(true, true), None);
    assert_eq!(lapic.highest_deliverable(false, true), None);
    assert_eq!(lapic.highest_deliverable(true, false), Some(Vector(0x80)));
}

#[test]
fn vectors_below_16_are_refused_and_logged() {
    let mut lapic = xapic(0);
    for vector in 0..16 {
        assert_eq!(
            lapic.accept(Vector(vector), TriggerMode::Edge),
            Acceptance::IllegalVector
        );
    }
    assert!(lapic.requests().is_empty());
    assert_eq!(lapic.pending_vector(), None);
    mmio_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(lapic.error_status(), error_status::RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(
        lapic.accept(Vector::FIRST_LEGAL, TriggerMode::Edge),
        Acceptance::Accepted
    );
}

#[test]
fn software_disabled_apic_holds_interrupts_and_answers_spurious() {
    let mut lapic = VirtualLapic::new(config(0, true));
    assert_eq!(
        lapic.accept(Vector(0x40), TriggerMode::Edge),
        Acceptance::Accepted
    );
    assert_eq!(lapic.pending_vector(), None);
    assert_eq!(lapic.highest_deliverable(true, false), None);
    // A decision taken before the guest disabled it gets the spurious vector.
    assert_eq!(
        lapic.acknowledge(Vector(0x40)),
        Acknowledged::Spurious(Vector(0xff))
    );
    assert!(lapic.in_service().is_empty());
    assert!(lapic.requests().contains(Vector(0x40)));
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0x1ef);
    assert_eq!(inject(&mut lapic), Some(Vector(0x40)));
}

#[test]
fn raising_tpr_after_the_decision_gives_the_spurious_vector() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0x1ef);
    lapic.accept(Vector(0x41), TriggerMode::Edge);
    let decided = lapic.highest_deliverable(true, false).unwrap();
    lapic.write_cr8(0xf);
    assert_eq!(
        lapic.acknowledge(decided),
        Acknowledged::Spurious(Vector(0xef))
    );
    assert!(lapic.in_service().is_empty());
    assert!(lapic.requests().contains(Vector(0x41)));
    // Nor may the hypervisor acknowledge something the APIC does not present.
    lapic.write_cr8(0);
    assert_eq!(
        lapic.acknowledge(Vector(0x40)),
        Acknowledged::Spurious(Vector(0xef))
    );
    assert_eq!(
        lapic.acknowledge(Vector(0x41)),
        Acknowledged::Interrupt(Vector(0x41))
    );
}

#[test]
fn level_triggered_vectors_report_their_eoi() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.accept(Vector(0x93), TriggerMode::Level),
        Acceptance::Accepted
    );
    assert_eq!(mmio_read(&mut lapic, offset::TRIGGER_MODE + 0x40), 1 << 19);
    inject(&mut lapic);
    assert!(lapic.trigger_modes().contains(Vector(0x93)));
    assert_eq!(
        end_of_interrupt(&mut lapic),
        ended(0x93, TriggerMode::Level)
    );
    assert!(lapic.trigger_modes().is_empty());
}

#[test]
fn a_pending_vector_coalesces_and_may_be_pending_while_in_service() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.accept(Vector(0xf3), TriggerMode::Edge),
        Acceptance::Accepted
    );
    assert_eq!(
        lapic.accept(Vector(0xf3), TriggerMode::Edge),
        Acceptance::Coalesced
    );
    inject(&mut lapic);
    assert_eq!(
        lapic.accept(Vector(0xf3), TriggerMode::Edge),
        Acceptance::Accepted
    );
    assert_eq!(lapic.pending_vector(), None, "its class is in service");
    end_of_interrupt(&mut lapic);
    assert_eq!(inject(&mut lapic), Some(Vector(0xf3)));
}

#[test]
fn nmi_is_pending_until_taken() {
    let mut lapic = xapic(0);
    let nmi = InterruptMessage {
        delivery_mode: DeliveryMode::Nmi,
        vector: Vector(0),
        trigger: TriggerMode::Edge,
    };
    assert!(!lapic.has_pending_nmi());
    assert_eq!(lapic.receive(nmi), Received::Nmi);
    assert!(lapic.has_pending_nmi());
    assert!(lapic.take_pending_nmi());
    assert!(!lapic.take_pending_nmi());
    assert!(lapic.requests().is_empty(), "NMIs bypass the IRR");
}

#[test]
fn smi_and_external_interrupts_are_dropped() {
    let mut lapic = xapic(0);
    for delivery_mode in [DeliveryMode::Smi, DeliveryMode::ExtInt] {
        let message = InterruptMessage {
            delivery_mode,
            vector: Vector(0x40),
            trigger: TriggerMode::Edge,
        };
        assert_eq!(lapic.receive(message), Received::Ignored);
    }
    assert!(lapic.requests().is_empty());
    let fixed = InterruptMessage {
        delivery_mode: DeliveryMode::Fixed,
        vector: Vector(0x40),
        trigger: TriggerMode::Edge,
    };
    assert_eq!(lapic.receive(fixed), Received::Interrupt);
    let illegal = InterruptMessage {
        vector: Vector(2),
        ..fixed
    };
    assert_eq!(lapic.receive(illegal), Received::Ignored);
}
