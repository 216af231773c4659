//! INIT/SIPI: application-processor start-up as Linux does it.

use alloc::vec::Vec;

use super::*;

fn message(delivery_mode: DeliveryMode, vector: u8) -> InterruptMessage {
    InterruptMessage {
        delivery_mode,
        vector: Vector(vector),
        trigger: TriggerMode::Edge,
    }
}

fn init() -> InterruptMessage {
    message(DeliveryMode::Init, 0)
}

fn startup(vector: u8) -> InterruptMessage {
    message(DeliveryMode::Startup, vector)
}

#[test]
fn application_processors_wait_and_the_bootstrap_processor_runs() {
    let bootstrap = VirtualLapic::new(config(0, true));
    let application = VirtualLapic::new(config(2, false));
    assert_eq!(bootstrap.init_sipi().state(), InitSipiState::Running);
    assert!(application.init_sipi().is_waiting_for_startup());
}

#[test]
fn init_then_sipi_starts_in_real_mode_at_vector_pages() {
    let mut lapic = VirtualLapic::new(config(2, false));
    assert_eq!(lapic.receive(init()), Received::WaitForStartup);
    assert!(lapic.init_sipi().is_waiting_for_startup());
    let entry = RealModeEntry {
        vector: 0x9a,
        code_selector: 0x9a00,
        code_base: GuestPhysAddr(0x9a000),
        instruction_pointer: 0,
    };
    assert_eq!(lapic.receive(startup(0x9a)), Received::Start(entry));
    assert_eq!(lapic.init_sipi().state(), InitSipiState::Running);
    assert_eq!(
        RealModeEntry::for_vector(0xff).code_base,
        GuestPhysAddr(0xff000)
    );
    assert_eq!(RealModeEntry::for_vector(0xff).code_selector, 0xff00);
}

#[test]
fn the_second_sipi_is_ignored() {
    let mut lapic = VirtualLapic::new(config(2, false));
    lapic.receive(init());
    assert!(matches!(lapic.receive(startup(0x10)), Received::Start(_)));
    assert_eq!(lapic.receive(startup(0x10)), Received::Ignored);
    assert_eq!(lapic.receive(startup(0x20)), Received::Ignored);
}

#[test]
fn a_sipi_without_init_is_ignored() {
    let mut lapic = xapic(0);
    assert_eq!(lapic.receive(startup(0x9a)), Received::Ignored);
    assert_eq!(lapic.init_sipi().state(), InitSipiState::Running);
    // A running AP needs a fresh INIT before it starts again.
    let mut application = VirtualLapic::new(config(2, false));
    assert!(matches!(
        application.receive(startup(0x9a)),
        Received::Start(_)
    ));
    assert_eq!(application.receive(startup(0x9b)), Received::Ignored);
    application.receive(init());
    assert_eq!(
        application.receive(startup(0x9b)),
        Received::Start(RealModeEntry::for_vector(0x9b))
    );
}

#[test]
fn init_resets_the_apic_but_keeps_its_id_and_mode() {
    let mut lapic = x2apic(6);
    msr_write(&mut lapic, offset::TASK_PRIORITY, 0x20);
    msr_write(&mut lapic, offset::LVT_TIMER, 0x30);
    msr_write(&mut lapic, offset::TIMER_INITIAL, 500);
    lapic.accept(Vector(0x70), TriggerMode::Level);
    inject(&mut lapic);
    lapic.accept(Vector(0x80), TriggerMode::Edge);
    lapic.receive(message(DeliveryMode::Nmi, 0));

    assert_eq!(lapic.receive(init()), Received::WaitForStartup);
    assert_eq!(lapic.mode(), ApicMode::X2Apic);
    assert_eq!(msr_read(&mut lapic, offset::ID), 6);
    assert_eq!(msr_read(&mut lapic, offset::TASK_PRIORITY), 0);
    assert_eq!(msr_read(&mut lapic, offset::SPURIOUS_VECTOR), 0xff);
    assert_eq!(
        msr_read(&mut lapic, offset::LVT_TIMER),
        u64::from(LVT_MASKED)
    );
    assert_eq!(msr_read(&mut lapic, offset::TIMER_INITIAL), 0);
    assert!(lapic.requests().is_empty());
    assert!(lapic.in_service().is_empty());
    assert!(lapic.trigger_modes().is_empty());
    assert!(!lapic.has_pending_nmi());
    assert_eq!(lapic.next_timer_deadline(), None);
}

#[test]
fn linux_brings_up_an_application_processor() {
    // vCPU 0 (BSP) and vCPU 1 (APIC id 2), as Linux's wakeup_secondary_cpu_via_init.
    let mut lapics = [
        VirtualLapic::new(LapicConfig::for_vcpu(VcpuId(0), false, false)),
        VirtualLapic::new(LapicConfig::for_vcpu(VcpuId(1), false, false)),
    ];
    mmio_write(&mut lapics[0], offset::SPURIOUS_VECTOR, 0x1ff);
    let commands = [
        0x0000_c500, // INIT, level, assert
        0x0000_8500, // INIT, level, de-assert
        0x0000_069a, // STARTUP, page 0x9A
        0x0000_069a, // STARTUP again
    ];
    let mut outcomes = Vec::new();
    for low in commands {
        mmio_write(&mut lapics[0], offset::COMMAND_HIGH, 0x0200_0000);
        let Some(LapicAction::SendIpi(ipi)) = mmio_write(&mut lapics[0], offset::COMMAND_LOW, low)
        else {
            continue;
        };
        for target in route(&ipi, lapics.iter().enumerate()) {
            outcomes.push((target, lapics[target].receive(ipi.message)));
        }
    }
    assert_eq!(
        outcomes,
        [
            (1, Received::WaitForStartup),
            (1, Received::Start(RealModeEntry::for_vector(0x9a))),
            (1, Received::Ignored),
        ]
    );
    assert_eq!(lapics[0].init_sipi().state(), InitSipiState::Running);
    assert_eq!(lapics[1].init_sipi().state(), InitSipiState::Running);
}
