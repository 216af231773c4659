//! Tests of the virtual local APIC: register semantics in both access
//! paths, mode changes, priority and EOI, IPIs, INIT/SIPI, the timer, and
//! a seeded random access sequence.

use super::*;
use crate::memory::GuestPhysAddr;

mod delivery;
mod init_sipi;
mod ipi;
mod modes;
mod random;
mod registers;
mod timer;

/// Time zero.
const T0: SystemTime = SystemTime::ZERO;

/// xAPIC register offsets in the MMIO page.
mod offset {
    pub const ID: u64 = 0x020;
    pub const VERSION: u64 = 0x030;
    pub const TASK_PRIORITY: u64 = 0x080;
    pub const ARBITRATION_PRIORITY: u64 = 0x090;
    pub const PROCESSOR_PRIORITY: u64 = 0x0a0;
    pub const END_OF_INTERRUPT: u64 = 0x0b0;
    pub const LOGICAL_DESTINATION: u64 = 0x0d0;
    pub const DESTINATION_FORMAT: u64 = 0x0e0;
    pub const SPURIOUS_VECTOR: u64 = 0x0f0;
    pub const IN_SERVICE: u64 = 0x100;
    pub const TRIGGER_MODE: u64 = 0x180;
    pub const REQUEST: u64 = 0x200;
    pub const ERROR_STATUS: u64 = 0x280;
    pub const COMMAND_LOW: u64 = 0x300;
    pub const COMMAND_HIGH: u64 = 0x310;
    pub const LVT_TIMER: u64 = 0x320;
    pub const LVT_THERMAL: u64 = 0x330;
    pub const LVT_PERFORMANCE: u64 = 0x340;
    pub const LVT_LINT0: u64 = 0x350;
    pub const LVT_LINT1: u64 = 0x360;
    pub const LVT_ERROR: u64 = 0x370;
    pub const TIMER_INITIAL: u64 = 0x380;
    pub const TIMER_CURRENT: u64 = 0x390;
    pub const TIMER_DIVIDE: u64 = 0x3e0;
    pub const SELF_IPI: u64 = 0x3f0;
}

/// The x2APIC MSR of the register at MMIO `offset`.
const fn msr(offset: u64) -> u32 {
    X2APIC_MSR_FIRST + (offset / 16) as u32
}

fn config(id: u32, bootstrap: bool) -> LapicConfig {
    LapicConfig {
        apic_id: ApicId(id),
        bootstrap_processor: bootstrap,
        x2apic_offered: true,
        tsc_deadline_offered: true,
    }
}

/// A software-enabled xAPIC (spurious vector 0xFF).
fn xapic(id: u32) -> VirtualLapic {
    let mut lapic = VirtualLapic::new(config(id, id == 0));
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0x1ff);
    lapic
}

/// A software-enabled APIC in x2APIC mode.
fn x2apic(id: u32) -> VirtualLapic {
    let mut lapic = xapic(id);
    let base = lapic.apic_base() | APIC_BASE_X2APIC;
    assert_eq!(
        lapic.write_apic_base(base),
        Ok(Some(LapicAction::ModeChanged(ApicMode::X2Apic)))
    );
    lapic
}

fn at(offset: u64) -> GuestPhysAddr {
    GuestPhysAddr(DEFAULT_BASE + offset)
}

fn mmio_read(lapic: &mut VirtualLapic, offset: u64) -> u32 {
    lapic.mmio_read(at(offset), 4, T0) as u32
}

fn mmio_write(lapic: &mut VirtualLapic, offset: u64, value: u32) -> Option<LapicAction> {
    lapic.mmio_write(at(offset), 4, u64::from(value), T0)
}

fn msr_read(lapic: &mut VirtualLapic, offset: u64) -> u64 {
    lapic.read_msr(msr(offset), T0).unwrap()
}

fn msr_write(lapic: &mut VirtualLapic, offset: u64, value: u64) -> Option<LapicAction> {
    lapic.write_msr(msr(offset), value, T0).unwrap()
}

/// Injects what the APIC presents (IF set, no shadow), as the hypervisor
/// would before VMRUN.
fn inject(lapic: &mut VirtualLapic) -> Option<Vector> {
    let vector = lapic.highest_deliverable(true, false)?;
    assert_eq!(lapic.acknowledge(vector), Acknowledged::Interrupt(vector));
    Some(vector)
}

/// The guest's EOI, through whichever path its mode uses.
fn end_of_interrupt(lapic: &mut VirtualLapic) -> Option<LapicAction> {
    match lapic.mode() {
        ApicMode::X2Apic => msr_write(lapic, offset::END_OF_INTERRUPT, 0),
        _ => mmio_write(lapic, offset::END_OF_INTERRUPT, 0),
    }
}

fn ended(vector: u8, trigger: TriggerMode) -> Option<LapicAction> {
    Some(LapicAction::EndOfInterrupt {
        vector: Vector(vector),
        trigger,
    })
}
