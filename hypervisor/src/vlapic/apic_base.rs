//! IA32_APIC_BASE (MSR 0x1B): the global enable, x2APIC mode, the BSP
//! flag and the base address, with the mode transitions of SDM 11.12.5.
//!
//! The base stays at 0xFEE00000: a write naming another address faults
//! (#GP) rather than moving the page, so the hypervisor's nested page
//! tables never have to follow it. Linux never relocates the APIC. The
//! BSP flag is fixed by the vCPU's role; writes to it are ignored.

use crate::memory::GuestPhysAddr;

use super::{ApicId, LapicAction, LapicFault, VirtualLapic};

/// The IA32_APIC_BASE MSR.
pub const APIC_BASE_MSR: u32 = 0x1b;
/// Bit 8: this is the bootstrap processor.
pub const APIC_BASE_BOOTSTRAP: u64 = 1 << 8;
/// Bit 10: x2APIC mode (EXTD).
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
/// Bit 11: APIC global enable (EN).
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// The architectural APIC base, the only one Xenolith supports.
pub const DEFAULT_BASE: u64 = 0xfee0_0000;
/// Bits 0–7 and 9 are reserved.
const RESERVED: u64 = 0xff | (1 << 9);
/// Bits 12 and up hold the base address.
const BASE_MASK: u64 = !0xfff;

/// The APIC's operating mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// Globally disabled (EN = 0): no registers, no interrupts.
    Disabled,
    /// xAPIC: registers in the MMIO page at the base.
    XApic,
    /// x2APIC: registers in MSRs 0x800–0x8FF; the MMIO page is gone.
    X2Apic,
}

impl VirtualLapic {
    /// IA32_APIC_BASE as the guest reads it.
    pub const fn apic_base(&self) -> u64 {
        let bootstrap = if self.config.bootstrap_processor {
            APIC_BASE_BOOTSTRAP
        } else {
            0
        };
        let mode = match self.mode {
            ApicMode::Disabled => 0,
            ApicMode::XApic => APIC_BASE_ENABLE,
            ApicMode::X2Apic => APIC_BASE_ENABLE | APIC_BASE_X2APIC,
        };
        DEFAULT_BASE | bootstrap | mode
    }

    /// A WRMSR of IA32_APIC_BASE. Legal changes: disabled ↔ xAPIC, xAPIC →
    /// x2APIC, x2APIC → disabled. Disabling resets every register but the
    /// id (SDM 11.4.3); entering x2APIC keeps them, clears the ICR and
    /// switches ID and LDR to their x2APIC forms.
    pub fn write_apic_base(&mut self, value: u64) -> Result<Option<LapicAction>, LapicFault> {
        if value & RESERVED != 0 {
            return Err(LapicFault::ApicBaseReservedBits);
        }
        if value & BASE_MASK != DEFAULT_BASE {
            return Err(LapicFault::ApicBaseRelocation);
        }
        let mode = match (value & APIC_BASE_ENABLE != 0, value & APIC_BASE_X2APIC != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return Err(LapicFault::IllegalModeTransition),
        };
        if mode == ApicMode::X2Apic && !self.config.x2apic_offered {
            return Err(LapicFault::X2ApicNotOffered);
        }
        match (self.mode, mode) {
            (old, new) if old == new => return Ok(None),
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(LapicFault::IllegalModeTransition);
            }
            (_, ApicMode::Disabled) => {
                self.reset_registers();
                self.nmi_pending = false;
            }
            (_, ApicMode::X2Apic) => self.registers.interrupt_command = 0,
            (_, ApicMode::XApic) => {}
        }
        self.mode = mode;
        Ok(Some(LapicAction::ModeChanged(mode)))
    }

    /// Whether the guest-physical `address` is in this APIC's MMIO page
    /// and the page is live (xAPIC mode). Otherwise the address is
    /// ordinary unbacked guest memory.
    pub const fn claims(&self, address: GuestPhysAddr) -> bool {
        matches!(self.mode, ApicMode::XApic) && address.0 & BASE_MASK == DEFAULT_BASE
    }

    /// The id register as the current mode shows it.
    pub(super) const fn id_register(&self) -> u32 {
        let ApicId(id) = self.config.apic_id;
        match self.mode {
            ApicMode::X2Apic => id,
            _ => (id & 0xff) << 24,
        }
    }
}
