//! IA32_APIC_BASE: mode transitions, legal and illegal, and what each does
//! to the registers.

use super::*;

const ENABLE: u64 = DEFAULT_BASE | APIC_BASE_ENABLE;
const X2APIC: u64 = DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_X2APIC;

#[test]
fn power_up_is_enabled_xapic_with_the_bsp_flag_on_vcpu_zero() {
    let bootstrap = VirtualLapic::new(LapicConfig::for_vcpu(VcpuId(0), true, true));
    let application = VirtualLapic::new(LapicConfig::for_vcpu(VcpuId(3), true, true));
    assert_eq!(bootstrap.apic_base(), 0xfee0_0900);
    assert_eq!(application.apic_base(), 0xfee0_0800);
    assert_eq!(application.id(), ApicId(6));
    assert_eq!(bootstrap.mode(), ApicMode::XApic);
}

#[test]
fn legal_transitions_cycle_through_every_mode() {
    let mut lapic = xapic(1);
    assert_eq!(
        lapic.write_apic_base(X2APIC),
        Ok(Some(LapicAction::ModeChanged(ApicMode::X2Apic)))
    );
    assert_eq!(lapic.apic_base(), X2APIC);
    assert_eq!(
        lapic.write_apic_base(DEFAULT_BASE),
        Ok(Some(LapicAction::ModeChanged(ApicMode::Disabled)))
    );
    assert_eq!(lapic.apic_base(), DEFAULT_BASE);
    assert_eq!(
        lapic.write_apic_base(ENABLE),
        Ok(Some(LapicAction::ModeChanged(ApicMode::XApic)))
    );
    assert_eq!(
        lapic.write_apic_base(DEFAULT_BASE),
        Ok(Some(LapicAction::ModeChanged(ApicMode::Disabled)))
    );
    assert_eq!(
        lapic.write_apic_base(ENABLE),
        Ok(Some(LapicAction::ModeChanged(ApicMode::XApic)))
    );
    assert_eq!(lapic.write_apic_base(ENABLE), Ok(None), "no change");
}

#[test]
fn x2apic_to_xapic_is_illegal() {
    let mut lapic = x2apic(0);
    assert_eq!(
        lapic.write_apic_base(ENABLE),
        Err(LapicFault::IllegalModeTransition)
    );
    assert_eq!(lapic.mode(), ApicMode::X2Apic);
}

#[test]
fn disabled_to_x2apic_is_illegal() {
    let mut lapic = xapic(0);
    lapic.write_apic_base(DEFAULT_BASE).unwrap();
    assert_eq!(
        lapic.write_apic_base(X2APIC),
        Err(LapicFault::IllegalModeTransition)
    );
    assert_eq!(lapic.mode(), ApicMode::Disabled);
}

#[test]
fn x2apic_without_enable_is_an_invalid_state() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.write_apic_base(DEFAULT_BASE | APIC_BASE_X2APIC),
        Err(LapicFault::IllegalModeTransition)
    );
    assert_eq!(lapic.mode(), ApicMode::XApic);
}

#[test]
fn x2apic_needs_cpuid_to_offer_it() {
    let mut lapic = VirtualLapic::new(LapicConfig {
        x2apic_offered: false,
        ..config(0, true)
    });
    assert_eq!(
        lapic.write_apic_base(X2APIC),
        Err(LapicFault::X2ApicNotOffered)
    );
    assert_eq!(lapic.mode(), ApicMode::XApic);
}

#[test]
fn relocation_and_reserved_bits_fault() {
    let mut lapic = xapic(0);
    assert_eq!(
        lapic.write_apic_base(0xfed0_0000 | APIC_BASE_ENABLE),
        Err(LapicFault::ApicBaseRelocation)
    );
    assert_eq!(
        lapic.write_apic_base(ENABLE | (1 << 52)),
        Err(LapicFault::ApicBaseRelocation)
    );
    assert_eq!(
        lapic.write_apic_base(ENABLE | 1),
        Err(LapicFault::ApicBaseReservedBits)
    );
    assert_eq!(
        lapic.write_apic_base(ENABLE | (1 << 9)),
        Err(LapicFault::ApicBaseReservedBits)
    );
    assert_eq!(lapic.apic_base(), ENABLE | APIC_BASE_BOOTSTRAP);
}

#[test]
fn the_bsp_flag_follows_the_vcpu_not_the_write() {
    let mut application = xapic(2);
    assert_eq!(
        application.write_apic_base(ENABLE | APIC_BASE_BOOTSTRAP),
        Ok(None)
    );
    assert_eq!(application.apic_base(), ENABLE);
    let mut bootstrap = xapic(0);
    assert_eq!(bootstrap.write_apic_base(ENABLE), Ok(None));
    assert_eq!(bootstrap.apic_base(), ENABLE | APIC_BASE_BOOTSTRAP);
}

#[test]
fn global_disable_resets_every_register_but_the_id() {
    let mut lapic = xapic(4);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x20);
    mmio_write(&mut lapic, offset::LVT_TIMER, 0x30);
    mmio_write(&mut lapic, offset::TIMER_INITIAL, 1000);
    lapic.accept(Vector(0x50), TriggerMode::Level);
    inject(&mut lapic);
    lapic.accept(Vector(0x60), TriggerMode::Edge);

    lapic.write_apic_base(DEFAULT_BASE).unwrap();
    assert_eq!(
        lapic.accept(Vector(0x70), TriggerMode::Edge),
        Acceptance::ApicDisabled
    );
    let nmi = InterruptMessage {
        delivery_mode: DeliveryMode::Nmi,
        vector: Vector(0),
        trigger: TriggerMode::Edge,
    };
    assert_eq!(lapic.receive(nmi), Received::Ignored);
    assert_eq!(lapic.highest_deliverable(true, false), None);
    assert_eq!(lapic.next_timer_deadline(), None);

    lapic.write_apic_base(ENABLE).unwrap();
    assert_eq!(mmio_read(&mut lapic, offset::ID), 0x0400_0000);
    assert_eq!(mmio_read(&mut lapic, offset::TASK_PRIORITY), 0);
    assert_eq!(mmio_read(&mut lapic, offset::SPURIOUS_VECTOR), 0xff);
    assert_eq!(mmio_read(&mut lapic, offset::LVT_TIMER), LVT_MASKED);
    assert_eq!(mmio_read(&mut lapic, offset::TIMER_INITIAL), 0);
    assert!(lapic.requests().is_empty());
    assert!(lapic.in_service().is_empty());
    assert!(lapic.trigger_modes().is_empty());
}

#[test]
fn entering_x2apic_keeps_state_and_switches_id_formats() {
    let mut lapic = xapic(0x21);
    mmio_write(&mut lapic, offset::TASK_PRIORITY, 0x20);
    mmio_write(&mut lapic, offset::LOGICAL_DESTINATION, 0x0100_0000);
    mmio_write(&mut lapic, offset::COMMAND_HIGH, 0x0300_0000);
    lapic.accept(Vector(0x41), TriggerMode::Edge);

    lapic.write_apic_base(X2APIC).unwrap();
    assert_eq!(msr_read(&mut lapic, offset::TASK_PRIORITY), 0x20);
    assert_eq!(msr_read(&mut lapic, offset::SPURIOUS_VECTOR), 0x1ff);
    assert_eq!(msr_read(&mut lapic, offset::REQUEST + 0x20), 1 << 1);
    assert_eq!(msr_read(&mut lapic, offset::ID), 0x21);
    assert_eq!(
        msr_read(&mut lapic, offset::LOGICAL_DESTINATION),
        0x0002_0002
    );
    assert_eq!(msr_read(&mut lapic, offset::COMMAND_LOW), 0);
    assert_eq!(
        lapic.write_msr(msr(offset::LOGICAL_DESTINATION), 0x0002_0002, T0),
        Err(LapicFault::ReadOnlyRegister)
    );
    assert_eq!(inject(&mut lapic), Some(Vector(0x41)));
}
