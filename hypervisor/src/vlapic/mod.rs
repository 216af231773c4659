//! The virtual local APIC of one vCPU, the one device a PVH guest gets
//! emulated (XEN-ABI.md §2.6): a pure state machine. Time comes in as
//! [`SystemTime`]; IPIs, EOIs, mode changes and INIT/SIPI come out as
//! values the hypervisor carries out. Nothing here touches hardware.
//!
//! References: Intel SDM vol. 3A ch. 11 (APIC), AMD APM vol. 2 ch. 16;
//! where they leave room, Xen's `vlapic.c` (whose guests these are).
//!
//! How the hypervisor wires one [`VirtualLapic`] per vCPU:
//! - **RDMSR/WRMSR** 0x800–0x8FF → [`VirtualLapic::read_msr`] /
//!   [`VirtualLapic::write_msr`]; 0x1B → [`VirtualLapic::apic_base`] /
//!   [`VirtualLapic::write_apic_base`]; 0x6E0 →
//!   [`VirtualLapic::tsc_deadline`] / [`VirtualLapic::write_tsc_deadline`].
//!   `Err(LapicFault)` means inject #GP(0) without advancing RIP.
//! - **Nested page fault** on the APIC page (kept not-present) while
//!   [`VirtualLapic::claims`] → decode the access, then
//!   [`VirtualLapic::mmio_read`] / [`VirtualLapic::mmio_write`].
//! - A returned [`LapicAction::SendIpi`] → [`route`] over every vCPU's APIC
//!   (the sender included), [`VirtualLapic::receive`] on each target,
//!   then kick targets that now have something ([`Received`]).
//! - **Before VMRUN**: [`VirtualLapic::poll`] with the current time; if
//!   [`VirtualLapic::take_pending_nmi`], inject an NMI; else if
//!   [`VirtualLapic::highest_deliverable`] gives a vector,
//!   [`VirtualLapic::acknowledge`] it and inject what that returns through
//!   EVENTINJ (type 0, external interrupt); else if
//!   [`VirtualLapic::pending_vector`] is `Some` (IF=0 or shadow), request
//!   a VINTR exit. Keep VMCB V_TPR = [`VirtualLapic::cr8`] and after each
//!   exit give V_TPR back through [`VirtualLapic::write_cr8`].
//! - **Host timer**: arm it for [`VirtualLapic::next_timer_deadline`]
//!   (re-read after every call that takes `now`).

mod access;
mod apic_base;
mod error;
mod icr;
mod init_sipi;
mod registers;
#[cfg(test)]
mod tests;
mod timer;
mod vector;

pub use access::TSC_DEADLINE_MSR;
pub use apic_base::{
    APIC_BASE_BOOTSTRAP, APIC_BASE_ENABLE, APIC_BASE_MSR, APIC_BASE_X2APIC, ApicMode, DEFAULT_BASE,
};
pub use error::{LapicFault, error_status};
pub use icr::{DeliveryMode, Destination, InterruptMessage, Ipi, route};
pub use init_sipi::{
    INIT_CR0, INIT_DR6, INIT_DR7, INIT_RFLAGS, InitSipi, InitSipiState, REAL_MODE_CODE_ATTRIBUTES,
    REAL_MODE_DATA_ATTRIBUTES, REAL_MODE_SEGMENT_LIMIT, RealModeEntry,
};
pub use registers::{LVT_MASKED, Lvt, X2APIC_MSR_FIRST, X2APIC_MSR_LAST, is_x2apic_msr};
pub use timer::{BUS_CYCLE_NS, TimerMode, divisor};
pub use vector::{TriggerMode, Vector, VectorSet};

use core::fmt;

use xenolith_abi::event_channel::VcpuId;

use crate::time::SystemTime;
use timer::Timer;

/// The version register: APIC version 0x14 (integrated, as on every
/// x86-64 CPU), six LVT entries (max LVT index 5), no EOI-broadcast
/// suppression, no AMD extended register space. Xen reports the same.
pub const VERSION: u32 = 0x0005_0014;

/// SVR bit 8: APIC software enable.
pub const SOFTWARE_ENABLE: u32 = 1 << 8;

/// SVR at reset: software-disabled, spurious vector 0xFF.
const SPURIOUS_VECTOR_RESET: u32 = 0xff;

/// DFR at reset: flat model, reserved bits read as ones.
const DESTINATION_FORMAT_RESET: u32 = 0xffff_ffff;

/// A local APIC id: 8 bits in xAPIC mode, 32 in x2APIC mode.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ApicId(pub u32);

impl ApicId {
    /// The id of vCPU `vcpu`: `2 · vcpu`, as the MADT (XEN-ABI.md §2.6)
    /// and CPUID leaf 1 say.
    pub const fn for_vcpu(vcpu: VcpuId) -> Self {
        Self(vcpu.0.saturating_mul(2))
    }

    /// The raw id.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for ApicId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "ApicId({})", self.0)
    }
}

/// What the vCPU's CPUID and topology say about its APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapicConfig {
    /// The APIC id ([`ApicId::for_vcpu`]).
    pub apic_id: ApicId,
    /// IA32_APIC_BASE.BSP: the vCPU that runs from power-up; the others
    /// start waiting for a SIPI.
    pub bootstrap_processor: bool,
    /// CPUID.1:ECX[21]: whether x2APIC mode may be entered.
    pub x2apic_offered: bool,
    /// CPUID.1:ECX[24]: whether the LVT timer has TSC-deadline mode.
    pub tsc_deadline_offered: bool,
}

impl LapicConfig {
    /// vCPU `vcpu` of a guest (vCPU 0 is the bootstrap processor).
    pub const fn for_vcpu(vcpu: VcpuId, x2apic_offered: bool, tsc_deadline_offered: bool) -> Self {
        Self {
            apic_id: ApicId::for_vcpu(vcpu),
            bootstrap_processor: vcpu.0 == VcpuId::BOOT.0,
            x2apic_offered,
            tsc_deadline_offered,
        }
    }
}

/// Something a register write asks the hypervisor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicAction {
    /// Send this IPI ([`route`], then [`VirtualLapic::receive`]).
    SendIpi(Ipi),
    /// The guest ended interrupt `vector`. Nothing is required; the
    /// hypervisor may re-raise a level-like source (the Xen callback vector
    /// while `evtchn_upcall_pending` is still set).
    EndOfInterrupt {
        /// The vector whose ISR bit was cleared.
        vector: Vector,
        /// Its trigger mode (from the TMR).
        trigger: TriggerMode,
    },
    /// IA32_APIC_BASE changed the mode.
    ModeChanged(ApicMode),
}

/// What [`VirtualLapic::accept`] did with an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// The IRR bit was set.
    Accepted,
    /// The IRR bit was already set: the two interrupts merge into one.
    Coalesced,
    /// Vector below 16: refused, receive-illegal-vector recorded in the ESR.
    IllegalVector,
    /// The APIC is globally disabled (IA32_APIC_BASE.EN clear): dropped.
    ApicDisabled,
}

/// What the hypervisor injects after [`VirtualLapic::acknowledge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledged {
    /// The interrupt: it moved from IRR to ISR.
    Interrupt(Vector),
    /// The interrupt is no longer deliverable (TPR raised, APIC disabled,
    /// IRR changed since the decision): inject the SVR's spurious vector,
    /// which touches no ISR bit and must not be EOI'd (SDM 11.9).
    Spurious(Vector),
}

/// What a target's [`VirtualLapic::receive`] means for its vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Nothing changed (dropped, coalesced, ignored SIPI, SMI, ExtINT).
    Ignored,
    /// An interrupt is in the IRR: wake the vCPU if halted, kick it if it
    /// runs elsewhere.
    Interrupt,
    /// An NMI is pending: wake or kick the vCPU.
    Nmi,
    /// INIT: stop the vCPU, reset its architectural state, and do not run
    /// it until [`Received::Start`]. The APIC itself has been reset.
    WaitForStartup,
    /// SIPI accepted: load this real-mode state into the VMCB and make the
    /// vCPU runnable.
    Start(RealModeEntry),
}

/// The registers INIT and a global disable return to their power-up
/// values (everything but the id, the mode and the base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RegisterFile {
    task_priority: u8,
    /// xAPIC LDR (bits 31:24); x2APIC derives its LDR from the id.
    logical_destination: u32,
    destination_format: u32,
    spurious_vector: u32,
    in_service: VectorSet,
    trigger_mode: VectorSet,
    requests: VectorSet,
    /// The ESR as read: errors up to the last ESR write.
    error_status: u32,
    /// Errors since the last ESR write (SDM 11.5.3: a write latches them).
    pending_errors: u32,
    /// xAPIC: low half as written, destination in bits 63:56; x2APIC: the
    /// 64-bit register as written.
    interrupt_command: u64,
    local_vectors: [u32; 6],
}

impl RegisterFile {
    const POWER_UP: Self = Self {
        task_priority: 0,
        logical_destination: 0,
        destination_format: DESTINATION_FORMAT_RESET,
        spurious_vector: SPURIOUS_VECTOR_RESET,
        in_service: VectorSet::EMPTY,
        trigger_mode: VectorSet::EMPTY,
        requests: VectorSet::EMPTY,
        error_status: 0,
        pending_errors: 0,
        interrupt_command: 0,
        local_vectors: [LVT_MASKED; 6],
    };
}

/// One vCPU's local APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualLapic {
    config: LapicConfig,
    mode: ApicMode,
    registers: RegisterFile,
    timer: Timer,
    init_sipi: InitSipi,
    nmi_pending: bool,
}

impl VirtualLapic {
    /// The APIC at power-up: xAPIC mode at [`DEFAULT_BASE`], software-
    /// disabled, every LVT masked. The bootstrap processor runs; the others
    /// wait for a SIPI.
    pub const fn new(config: LapicConfig) -> Self {
        Self {
            config,
            mode: ApicMode::XApic,
            registers: RegisterFile::POWER_UP,
            timer: Timer::new(),
            init_sipi: if config.bootstrap_processor {
                InitSipi::running()
            } else {
                InitSipi::waiting_for_startup()
            },
            nmi_pending: false,
        }
    }

    /// The APIC id.
    pub const fn id(&self) -> ApicId {
        self.config.apic_id
    }

    /// The configuration it was built with.
    pub const fn config(&self) -> &LapicConfig {
        &self.config
    }

    /// The current mode.
    pub const fn mode(&self) -> ApicMode {
        self.mode
    }

    /// SVR bit 8.
    pub const fn is_software_enabled(&self) -> bool {
        self.registers.spurious_vector & SOFTWARE_ENABLE != 0
    }

    /// The vector a spurious interrupt is delivered with (SVR bits 7:0).
    pub const fn spurious_vector(&self) -> Vector {
        Vector(self.registers.spurious_vector as u8)
    }

    /// The TPR.
    pub const fn task_priority(&self) -> u8 {
        self.registers.task_priority
    }

    /// CR8 as the guest reads it: TPR bits 7:4. The VMCB's V_TPR.
    pub const fn cr8(&self) -> u64 {
        (self.registers.task_priority >> 4) as u64
    }

    /// A CR8 write (or V_TPR after an exit): TPR = `value[3:0] << 4`.
    /// Bits above 3 are the caller's to fault (#GP on MOV to CR8).
    pub fn write_cr8(&mut self, value: u64) {
        self.registers.task_priority = ((value & 0xf) as u8) << 4;
    }

    /// PPR: the TPR, or the in-service class if that is higher (SDM 11.8.3.1).
    pub fn processor_priority(&self) -> u8 {
        let task = self.registers.task_priority;
        let in_service = self.registers.in_service.highest().map_or(0, Vector::raw);
        if task >> 4 >= in_service >> 4 {
            task
        } else {
            in_service & 0xf0
        }
    }

    /// APR: the priority this APIC bids with for lowest-priority delivery.
    pub fn arbitration_priority(&self) -> u8 {
        let task = self.registers.task_priority;
        let in_service = self.registers.in_service.highest().map_or(0, Vector::raw);
        let request = self.registers.requests.highest().map_or(0, Vector::raw);
        if task >> 4 >= request >> 4 && task >> 4 > in_service >> 4 {
            task
        } else {
            (task & 0xf0).max(in_service & 0xf0).max(request & 0xf0)
        }
    }

    /// The IRR.
    pub const fn requests(&self) -> &VectorSet {
        &self.registers.requests
    }

    /// The ISR.
    pub const fn in_service(&self) -> &VectorSet {
        &self.registers.in_service
    }

    /// The TMR.
    pub const fn trigger_modes(&self) -> &VectorSet {
        &self.registers.trigger_mode
    }

    /// The ESR as the guest would read it.
    pub const fn error_status(&self) -> u32 {
        self.registers.error_status
    }

    /// An LVT entry.
    pub const fn local_vector(&self, lvt: Lvt) -> u32 {
        self.registers.local_vectors[lvt.index()]
    }

    /// The INIT/SIPI state: a vCPU waiting for a SIPI must not run.
    pub const fn init_sipi(&self) -> &InitSipi {
        &self.init_sipi
    }

    /// An interrupt for this vCPU (a fixed IPI, the Xen callback vector, a
    /// local source): sets its IRR bit, and its TMR bit for level. Held
    /// while the APIC is software-disabled (as Xen does), delivered once
    /// the guest enables it.
    pub fn accept(&mut self, vector: Vector, trigger: TriggerMode) -> Acceptance {
        if self.mode == ApicMode::Disabled {
            return Acceptance::ApicDisabled;
        }
        if !vector.is_legal() {
            self.record_error(error_status::RECEIVE_ILLEGAL_VECTOR);
            return Acceptance::IllegalVector;
        }
        match trigger {
            TriggerMode::Level => self.registers.trigger_mode.insert(vector),
            TriggerMode::Edge => self.registers.trigger_mode.remove(vector),
        };
        if self.registers.requests.insert(vector) {
            Acceptance::Accepted
        } else {
            Acceptance::Coalesced
        }
    }

    /// The highest IRR vector, deliverable or not (for a TPR-threshold
    /// exit: V_IRQ with V_INTR_PRIO = its class, or a CR8 write intercept).
    pub fn highest_request(&self) -> Option<Vector> {
        self.registers.requests.highest()
    }

    /// The vector the APIC presents to the CPU: the highest IRR vector if
    /// its class beats the PPR and the APIC is enabled (globally and in the
    /// SVR). The CPU takes it once RFLAGS.IF allows.
    pub fn pending_vector(&self) -> Option<Vector> {
        if self.mode == ApicMode::Disabled || !self.is_software_enabled() {
            return None;
        }
        let vector = self.registers.requests.highest()?;
        (vector.priority_class() > self.processor_priority() >> 4).then_some(vector)
    }

    /// The vector to inject now: [`Self::pending_vector`] when RFLAGS.IF is
    /// set and no STI/MOV-SS interrupt shadow is in effect.
    pub fn highest_deliverable(&self, rflags_if: bool, interrupt_shadow: bool) -> Option<Vector> {
        if !rflags_if || interrupt_shadow {
            return None;
        }
        self.pending_vector()
    }

    /// The hypervisor injects `vector`: IRR → ISR. If `vector` is no
    /// longer what the APIC presents, the CPU gets the spurious vector.
    pub fn acknowledge(&mut self, vector: Vector) -> Acknowledged {
        if self.pending_vector() != Some(vector) {
            return Acknowledged::Spurious(self.spurious_vector());
        }
        self.registers.requests.remove(vector);
        self.registers.in_service.insert(vector);
        Acknowledged::Interrupt(vector)
    }

    /// Whether an NMI is waiting to be injected.
    pub const fn has_pending_nmi(&self) -> bool {
        self.nmi_pending
    }

    /// Takes the pending NMI, if any, for injection (the hypervisor tracks
    /// NMI blocking until IRET).
    pub fn take_pending_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi_pending)
    }

    /// An IPI message for this APIC (one of [`route`]'s targets).
    /// SMI and ExtINT are dropped: there is no SMM and no 8259.
    pub fn receive(&mut self, message: InterruptMessage) -> Received {
        if self.mode == ApicMode::Disabled {
            return Received::Ignored;
        }
        match message.delivery_mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                match self.accept(message.vector, message.trigger) {
                    Acceptance::Accepted | Acceptance::Coalesced => Received::Interrupt,
                    Acceptance::IllegalVector | Acceptance::ApicDisabled => Received::Ignored,
                }
            }
            DeliveryMode::Nmi => {
                self.nmi_pending = true;
                Received::Nmi
            }
            DeliveryMode::Init => {
                self.reset_registers();
                self.nmi_pending = false;
                self.init_sipi.init();
                Received::WaitForStartup
            }
            DeliveryMode::Startup => match self.init_sipi.startup(message.vector.raw()) {
                Some(entry) => Received::Start(entry),
                None => Received::Ignored,
            },
            DeliveryMode::Smi | DeliveryMode::ExtInt => Received::Ignored,
        }
    }

    /// Brings the timer to `now`; true if it expired and raised its vector.
    /// Call before choosing what to inject and when the host timer armed
    /// for [`Self::next_timer_deadline`] fires. Time must not go backwards
    /// (an earlier `now` is treated as no time passing).
    pub fn poll(&mut self, now: SystemTime) -> bool {
        if !self.timer.poll(now) {
            return false;
        }
        let entry = self.local_vector(Lvt::Timer);
        if entry & LVT_MASKED != 0 {
            return false;
        }
        matches!(
            self.accept(Vector(entry as u8), TriggerMode::Edge),
            Acceptance::Accepted | Acceptance::Coalesced
        )
    }

    /// When the timer next raises an interrupt, if it will: `None` when
    /// stopped or masked (a masked timer keeps counting, and the next call
    /// that takes `now` catches up with it).
    pub fn next_timer_deadline(&self) -> Option<SystemTime> {
        if self.local_vector(Lvt::Timer) & LVT_MASKED != 0 {
            return None;
        }
        self.timer.deadline()
    }

    /// The guest wrote EOI: the highest in-service vector is done.
    fn end_of_interrupt(&mut self) -> Option<LapicAction> {
        let vector = self.registers.in_service.highest()?;
        self.registers.in_service.remove(vector);
        let trigger = if self.registers.trigger_mode.remove(vector) {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        };
        Some(LapicAction::EndOfInterrupt { vector, trigger })
    }

    /// Records ESR error `bits` and raises the error LVT if unmasked. An
    /// error vector below 16 only adds receive-illegal-vector: an error
    /// never raises another error interrupt.
    fn record_error(&mut self, bits: u32) {
        self.registers.pending_errors |= bits;
        let entry = self.local_vector(Lvt::Error);
        if entry & LVT_MASKED != 0 {
            return;
        }
        let vector = Vector(entry as u8);
        if vector.is_legal() {
            self.registers.trigger_mode.remove(vector);
            self.registers.requests.insert(vector);
        } else {
            self.registers.pending_errors |= error_status::RECEIVE_ILLEGAL_VECTOR;
        }
    }

    /// Power-up register values and a stopped timer (INIT, global disable).
    fn reset_registers(&mut self) {
        self.registers = RegisterFile::POWER_UP;
        self.timer = Timer::new();
    }

    /// The x2APIC LDR: cluster (id[19:4]) in 31:16, one member bit
    /// (1 << id[3:0]) in 15:0 (SDM 11.12.10.2).
    const fn x2apic_logical_destination(&self) -> u32 {
        let id = self.config.apic_id.0;
        ((id >> 4) << 16) | (1 << (id & 0xf))
    }

    /// xAPIC LDR bits 31:24.
    const fn xapic_logical_id(&self) -> u32 {
        self.registers.logical_destination >> 24
    }

    /// xAPIC DFR model, bits 31:28.
    const fn xapic_destination_model(&self) -> u32 {
        self.registers.destination_format >> 28
    }
}
