//! Register read/write semantics through xAPIC MMIO and x2APIC MSRs.

use super::*;

#[test]
fn power_up_values_through_mmio() {
    let mut lapic = VirtualLapic::new(config(2, true));
    assert_eq!(lapic.mode(), ApicMode::XApic);
    assert!(!lapic.is_software_enabled());
    assert_eq!(mmio_read(&mut lapic, offset::ID), 0x0200_0000);
    assert_eq!(mmio_read(&mut lapic, offset::VERSION), 0x0005_0014);
    assert_eq!(mmio_read(&mut lapic, offset::TASK_PRIORITY), 0);
    assert_eq!(mmio_read(&mut lapic, offset::PROCESSOR_PRIORITY), 0);
    assert_eq!(mmio_read(&mut lapic, offset::ARBITRATION_PRIORITY), 0);
    assert_eq!(mmio_read(&mut lapic, offset::LOGICAL_DESTINATION), 0);
    assert_eq!(
        mmio_read(&mut lapic, offset::DESTINATION_FORMAT),
        0xffff_ffff
    );
    assert_eq!(mmio_read(&mut lapic, offset::SPURIOUS_VECTOR), 0xff);
    assert_eq!(mmio_read(&mut lapic, offset::ERROR_STATUS), 0);
    for lvt in [
        offset::LVT_TIMER,
        offset::LVT_THERMAL,
        offset::LVT_PERFORMANCE,
        offset::LVT_LINT0,
        offset::LVT_LINT1,
        offset::LVT_ERROR,
    ] {
        assert_eq!(mmio_read(&mut lapic, lvt), LVT_MASKED, "LVT at {lvt:#x}");
    }
    for register in [offset::IN_SERVICE, offset::TRIGGER_MODE, offset::REQUEST] {
        for word in 0..8 {
            assert_eq!(mmio_read(&mut lapic, register + 16 * word), 0);
        }
    }
    assert_eq!(mmio_read(&mut lapic, offset::TIMER_INITIAL), 0);
    assert_eq!(mmio_read(&mut lapic, offset::TIMER_CURRENT), 0);
    assert_eq!(mmio_read(&mut lapic, offset::TIMER_DIVIDE), 0);
    assert_eq!(lapic.apic_base(), 0xfee0_0900);
}

#[test]
fn xapic_read_only_registers_ignore_writes() {
    let mut lapic = xapic(3);
    for (register, value) in [
        (offset::ID, 0x0300_0000),
        (offset::VERSION, 0x0005_0014),
        (offset::PROCESSOR_PRIORITY, 0),
        (offset::ARBITRATION_PRIORITY, 0),
        (offset::IN_SERVICE, 0),
        (offset::REQUEST + 0x70, 0),
        (offset::TIMER_CURRENT, 0),
    ] {
        assert_eq!(mmio_write(&mut lapic, register, 0xdead_beef), None);
        assert_eq!(mmio_read(&mut lapic, register), value, "{register:#x}");
    }
    assert_eq!(lapic.error_status(), 0);
}

#[test]
fn xapic_writes_keep_only_writable_bits() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0xffff_ff45);
    assert_eq!(mmio_read(&mut lapic, offset::TASK_PRIORITY), 0x45);
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0xffff_ffff);
    assert_eq!(mmio_read(&mut lapic, offset::SPURIOUS_VECTOR), 0x3ff);
    mmio_write(&mut lapic, offset::LOGICAL_DESTINATION, 0xffff_ffff);
    assert_eq!(
        mmio_read(&mut lapic, offset::LOGICAL_DESTINATION),
        0xff00_0000
    );
    mmio_write(&mut lapic, offset::DESTINATION_FORMAT, 0);
    assert_eq!(
        mmio_read(&mut lapic, offset::DESTINATION_FORMAT),
        0x0fff_ffff
    );
    mmio_write(&mut lapic, offset::TIMER_DIVIDE, 0xffff_ffff);
    assert_eq!(mmio_read(&mut lapic, offset::TIMER_DIVIDE), 0b1011);
    mmio_write(&mut lapic, offset::COMMAND_HIGH, 0xffff_ffff);
    assert_eq!(mmio_read(&mut lapic, offset::COMMAND_HIGH), 0xff00_0000);
}

#[test]
fn lvt_entries_keep_their_own_fields() {
    let mut lapic = xapic(0);
    // Periodic timer: the delivery-status bit (12) is read-only.
    mmio_write(&mut lapic, offset::LVT_TIMER, 0x0002_10ef);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_TIMER), 0x0002_00ef);
    // Thermal and performance: delivery mode, no pin fields.
    mmio_write(&mut lapic, offset::LVT_THERMAL, 0xffff_ffff);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_THERMAL), 0x0001_07ff);
    mmio_write(&mut lapic, offset::LVT_PERFORMANCE, 0x0000_04fe);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_PERFORMANCE), 0x0000_04fe);
    // LINT0/1: polarity and trigger too; remote IRR (14) is read-only.
    mmio_write(&mut lapic, offset::LVT_LINT0, 0xffff_ffff);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_LINT0), 0x0001_a7ff);
    mmio_write(&mut lapic, offset::LVT_LINT1, 0x0000_0400);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_LINT1), 0x0000_0400);
    // Error: vector and mask only.
    mmio_write(&mut lapic, offset::LVT_ERROR, 0xffff_ffff);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_ERROR), 0x0001_00ff);
    assert_eq!(lapic.local_vector(Lvt::Error), 0x0001_00ff);
}

#[test]
fn software_disable_masks_every_lvt_and_keeps_them_masked() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::LVT_ERROR, 0xee);
    mmio_write(&mut lapic, offset::LVT_LINT0, 0x700);
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0xff);
    assert!(!lapic.is_software_enabled());
    assert_eq!(mmio_read(&mut lapic, offset::LVT_ERROR), 0x0001_00ee);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_LINT0), 0x0001_0700);
    // Unmasking is refused while disabled.
    mmio_write(&mut lapic, offset::LVT_ERROR, 0xee);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_ERROR), 0x0001_00ee);
    // Enabling does not unmask; software does.
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0x1ff);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_ERROR), 0x0001_00ee);
    mmio_write(&mut lapic, offset::LVT_ERROR, 0xee);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_ERROR), 0xee);
}

#[test]
fn error_status_write_latches_then_clears() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.accept(Vector(3), TriggerMode::Edge),
        Acceptance::IllegalVector
    );
    // Not visible until software writes the ESR.
    assert_eq!(mmio_read(&mut lapic, offset::ERROR_STATUS), 0);
    mmio_write(&mut lapic, offset::ERROR_STATUS, 0x1234);
    assert_eq!(
        mmio_read(&mut lapic, offset::ERROR_STATUS),
        error_status::RECEIVE_ILLEGAL_VECTOR
    );
    // Reading does not clear; the next write does.
    assert_eq!(
        mmio_read(&mut lapic, offset::ERROR_STATUS),
        error_status::RECEIVE_ILLEGAL_VECTOR
    );
    mmio_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(mmio_read(&mut lapic, offset::ERROR_STATUS), 0);
}

#[test]
fn error_status_in_x2apic_mode_takes_only_zero() {
    let mut lapic = x2apic(0);
    assert_eq!(msr_write(&mut lapic, offset::SELF_IPI, 5), None);
    assert!(lapic.requests().is_empty());
    assert_eq!(
        lapic.write_msr(msr(offset::ERROR_STATUS), 1, T0),
        Err(LapicFault::ReservedBitsSet)
    );
    msr_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(
        msr_read(&mut lapic, offset::ERROR_STATUS),
        u64::from(error_status::SEND_ILLEGAL_VECTOR)
    );
    msr_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(msr_read(&mut lapic, offset::ERROR_STATUS), 0);
}

#[test]
fn error_lvt_raises_its_vector() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::LVT_ERROR, 0xe3);
    mmio_write(&mut lapic, offset::COMMAND_HIGH, 0x0100_0000);
    // Fixed IPI with vector 2: not sent, send-illegal-vector, error interrupt.
    assert_eq!(
        mmio_write(&mut lapic, offset::COMMAND_LOW, 0x0000_0002),
        None
    );
    assert_eq!(inject(&mut lapic), Some(Vector(0xe3)));
    mmio_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(lapic.error_status(), error_status::SEND_ILLEGAL_VECTOR);
    // An illegal error vector does not recurse: it adds receive-illegal.
    mmio_write(&mut lapic, offset::LVT_ERROR, 0x05);
    lapic.accept(Vector(1), TriggerMode::Edge);
    mmio_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(lapic.error_status(), error_status::RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(lapic.highest_request(), None);
}

#[test]
fn x2apic_id_and_logical_destination_derive_from_the_id() {
    let mut lapic = x2apic(0x123);
    assert_eq!(msr_read(&mut lapic, offset::ID), 0x123);
    assert_eq!(msr_read(&mut lapic, offset::VERSION), 0x0005_0014);
    // Cluster 0x12, member bit 3.
    assert_eq!(
        msr_read(&mut lapic, offset::LOGICAL_DESTINATION),
        0x0012_0008
    );
}

#[test]
fn x2apic_reserved_registers_fault() {
    let mut lapic = x2apic(0);
    let reserved = [
        0x800, 0x801, 0x804, 0x807, 0x809, 0x80c, 0x80e, 0x829, 0x82e, 0x82f,
    ]
    .into_iter()
    .chain([0x831, 0x83a, 0x83b, 0x83c, 0x83d, 0x840, 0x8ff]);
    for index in reserved {
        assert_eq!(
            lapic.read_msr(index, T0),
            Err(LapicFault::ReservedRegister),
            "read {index:#x}"
        );
        assert_eq!(
            lapic.write_msr(index, 0, T0),
            Err(LapicFault::ReservedRegister),
            "write {index:#x}"
        );
    }
    for index in [0x7ff, 0x900, 0x1b, 0x6e0] {
        assert_eq!(lapic.read_msr(index, T0), Err(LapicFault::NotAnX2ApicMsr));
        assert_eq!(
            lapic.write_msr(index, 0, T0),
            Err(LapicFault::NotAnX2ApicMsr)
        );
    }
}

#[test]
fn x2apic_read_only_registers_fault_on_write() {
    let mut lapic = x2apic(0);
    for index in [
        0x802, 0x803, 0x80a, 0x80d, 0x810, 0x817, 0x818, 0x81f, 0x820, 0x827, 0x839,
    ] {
        assert!(lapic.read_msr(index, T0).is_ok(), "read {index:#x}");
        assert_eq!(
            lapic.write_msr(index, 0, T0),
            Err(LapicFault::ReadOnlyRegister),
            "write {index:#x}"
        );
    }
}

#[test]
fn x2apic_write_only_registers_fault_on_read() {
    let mut lapic = x2apic(0);
    for index in [0x80b, 0x83f] {
        assert_eq!(
            lapic.read_msr(index, T0),
            Err(LapicFault::WriteOnlyRegister)
        );
    }
}

#[test]
fn x2apic_end_of_interrupt_takes_only_zero() {
    let mut lapic = x2apic(0);
    lapic.accept(Vector(0x40), TriggerMode::Edge);
    inject(&mut lapic);
    assert_eq!(
        lapic.write_msr(msr(offset::END_OF_INTERRUPT), 1, T0),
        Err(LapicFault::ReservedBitsSet)
    );
    assert!(lapic.in_service().contains(Vector(0x40)));
    assert_eq!(
        msr_write(&mut lapic, offset::END_OF_INTERRUPT, 0),
        ended(0x40, TriggerMode::Edge)
    );
}

#[test]
fn x2apic_reserved_bits_fault() {
    let mut lapic = x2apic(0);
    for (register, value) in [
        (offset::TASK_PRIORITY, 0x100),
        (offset::TASK_PRIORITY, 1 << 32),
        (offset::SPURIOUS_VECTOR, 1 << 12),
        (offset::LVT_TIMER, 1 << 12),
        (offset::LVT_TIMER, 0b11 << 17),
        (offset::LVT_ERROR, 0x400),
        (offset::LVT_LINT0, 1 << 14),
        (offset::TIMER_DIVIDE, 0b100),
        (offset::TIMER_INITIAL, 1 << 32),
        (offset::COMMAND_LOW, 1 << 12),
        (offset::COMMAND_LOW, 1 << 13),
        (offset::COMMAND_LOW, 1 << 16),
        (offset::SELF_IPI, 0x100),
    ] {
        assert_eq!(
            lapic.write_msr(msr(register), value, T0),
            Err(LapicFault::ReservedBitsSet),
            "{register:#x} <- {value:#x}"
        );
    }
    assert_eq!(msr_read(&mut lapic, offset::TASK_PRIORITY), 0);
    assert_eq!(msr_write(&mut lapic, offset::TASK_PRIORITY, 0xff), None);
    assert_eq!(msr_read(&mut lapic, offset::TASK_PRIORITY), 0xff);
    msr_write(&mut lapic, offset::SPURIOUS_VECTOR, 0x3ff);
    assert_eq!(msr_read(&mut lapic, offset::SPURIOUS_VECTOR), 0x3ff);
}

#[test]
fn x2apic_msrs_fault_outside_x2apic_mode() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.read_msr(msr(offset::TASK_PRIORITY), T0),
        Err(LapicFault::X2ApicModeOff)
    );
    assert_eq!(
        lapic.write_msr(msr(offset::END_OF_INTERRUPT), 0, T0),
        Err(LapicFault::X2ApicModeOff)
    );
    lapic.write_apic_base(DEFAULT_BASE).unwrap();
    assert_eq!(
        lapic.read_msr(msr(offset::ID), T0),
        Err(LapicFault::X2ApicModeOff)
    );
}

#[test]
fn x2apic_command_register_is_one_64_bit_msr() {
    let mut lapic = x2apic(7);
    let value = (5 << 32) | 0x4031;
    let action = msr_write(&mut lapic, offset::COMMAND_LOW, value);
    assert_eq!(
        action,
        Some(LapicAction::SendIpi(Ipi {
            source: ApicId(7),
            destination: Destination::Physical(ApicId(5)),
            message: InterruptMessage {
                delivery_mode: DeliveryMode::Fixed,
                vector: Vector(0x31),
                trigger: TriggerMode::Edge,
            },
        }))
    );
    assert_eq!(msr_read(&mut lapic, offset::COMMAND_LOW), value);
}

#[test]
fn mmio_narrow_reads_return_the_register_bytes() {
    let mut lapic = xapic(0x12);
    let mut read = |offset: u64, size: usize| lapic.mmio_read(at(offset), size, T0);
    assert_eq!(read(offset::ID + 3, 1), 0x12);
    assert_eq!(read(offset::ID + 2, 2), 0x1200);
    assert_eq!(read(offset::ID, 8), 0x1200_0000);
    assert_eq!(
        read(offset::ID + 4, 4),
        0,
        "bits 127:32 of a slot read zero"
    );
    assert_eq!(read(offset::ID + 8, 8), 0);
    assert_eq!(read(offset::VERSION + 2, 1), 0x05);
    assert_eq!(read(offset::VERSION, 2), 0x0014);
}

#[test]
fn mmio_odd_sizes_and_misaligned_accesses_never_panic() {
    let mut lapic = xapic(0);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x20);
    for (offset, size) in [
        (offset::TASK_PRIORITY, 1),
        (offset::TASK_PRIORITY, 2),
        (offset::TASK_PRIORITY, 8),
        (offset::TASK_PRIORITY + 1, 4),
        (offset::TASK_PRIORITY + 12, 4),
        (offset::TASK_PRIORITY + 14, 4),
        (offset::TASK_PRIORITY, 3),
        (offset::TASK_PRIORITY, 0),
        (offset::TASK_PRIORITY, 16),
        (offset::TASK_PRIORITY, usize::MAX),
        (0xffe, 4),
        (0xfff, 8),
    ] {
        assert_eq!(lapic.mmio_write(at(offset), size, 0x70, T0), None);
        assert_eq!(
            lapic.task_priority(),
            0x20,
            "write of {size} at {offset:#x}"
        );
        let read = lapic.mmio_read(at(offset), size, T0);
        if !(1..=8).contains(&size) || size == 3 || offset % 16 + size as u64 > 16 {
            assert_eq!(read, 0, "read of {size} at {offset:#x}");
        }
    }
    assert_eq!(lapic.error_status(), 0);
}

#[test]
fn mmio_reserved_offsets_read_zero_and_record_an_error() {
    let mut lapic = xapic(0);
    for offset in [0x000, 0x010, 0x040, 0x2f0, 0x3a0, 0x3f0, 0x400, 0xff0] {
        assert_eq!(mmio_read(&mut lapic, offset), 0, "{offset:#x}");
        assert_eq!(mmio_write(&mut lapic, offset, 0xffff_ffff), None);
    }
    mmio_write(&mut lapic, offset::ERROR_STATUS, 0);
    assert_eq!(lapic.error_status(), error_status::ILLEGAL_REGISTER_ADDRESS);
    // The end-of-interrupt register is write-only: it reads zero.
    assert_eq!(mmio_read(&mut lapic, offset::END_OF_INTERRUPT), 0);
}

#[test]
fn mmio_outside_xapic_mode_is_unbacked_memory() {
    let mut lapic = x2apic(0);
    msr_write(&mut lapic, offset::TASK_PRIORITY, 0x30);
    assert!(!lapic.claims(at(offset::TASK_PRIORITY)));
    assert_eq!(
        lapic.mmio_read(at(offset::TASK_PRIORITY), 4, T0),
        0xffff_ffff
    );
    assert_eq!(lapic.mmio_read(at(offset::TASK_PRIORITY), 1, T0), 0xff);
    assert_eq!(lapic.mmio_read(at(offset::TASK_PRIORITY), 8, T0), u64::MAX);
    assert_eq!(lapic.mmio_write(at(offset::TASK_PRIORITY), 4, 0, T0), None);
    assert_eq!(lapic.task_priority(), 0x30);

    let mut lapic = xapic(0);
    assert!(lapic.claims(at(0xfff)));
    assert!(!lapic.claims(at(0x1000)));
    assert!(!lapic.claims(GuestPhysAddr(DEFAULT_BASE - 1)));
    assert_eq!(lapic.mmio_read(at(0x1000), 2, T0), 0xffff);
}

#[test]
fn divide_configuration_encodes_the_divisor() {
    let expected = [
        (0b0000, 2),
        (0b0001, 4),
        (0b0010, 8),
        (0b0011, 16),
        (0b1000, 32),
        (0b1001, 64),
        (0b1010, 128),
        (0b1011, 1),
    ];
    for (configuration, value) in expected {
        assert_eq!(divisor(configuration), value, "{configuration:#06b}");
    }
}
