//! What the guest did wrong: accesses the hypervisor answers with #GP(0),
//! and the error bits the APIC itself records in its ESR.

use core::fmt;

/// An access refused with #GP(0): the hypervisor injects the fault and
/// does not advance RIP. Every variant is the guest's own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicFault {
    /// RDMSR/WRMSR of an MSR outside 0x800–0x8FF passed to the x2APIC
    /// handlers (a hypervisor routing slip, still answered with #GP).
    NotAnX2ApicMsr,
    /// An x2APIC MSR touched while the APIC is not in x2APIC mode.
    X2ApicModeOff,
    /// An x2APIC MSR with no register behind it (including the xAPIC-only
    /// APR, DFR and ICR-high slots, and the absent CMCI LVT).
    ReservedRegister,
    /// WRMSR to a read-only x2APIC register (ID, version, PPR, LDR,
    /// ISR/TMR/IRR, current count).
    ReadOnlyRegister,
    /// RDMSR of a write-only x2APIC register (EOI, SELF IPI).
    WriteOnlyRegister,
    /// WRMSR with reserved bits set, including a non-zero write to EOI or
    /// ESR and any bit in the upper half of a 32-bit register.
    ReservedBitsSet,
    /// IA32_APIC_BASE written with reserved bits (0–7, 9) set.
    ApicBaseReservedBits,
    /// IA32_APIC_BASE written with another base address: Xenolith keeps
    /// the APIC at 0xFEE00000.
    ApicBaseRelocation,
    /// IA32_APIC_BASE asked for x2APIC mode, which CPUID did not offer.
    X2ApicNotOffered,
    /// IA32_APIC_BASE asked for an illegal mode change (x2APIC → xAPIC,
    /// disabled → x2APIC) or the invalid state EXTD without EN.
    IllegalModeTransition,
}

impl fmt::Display for LapicFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::NotAnX2ApicMsr => "MSR is not in the x2APIC range",
            Self::X2ApicModeOff => "x2APIC MSR accessed outside x2APIC mode",
            Self::ReservedRegister => "reserved x2APIC register",
            Self::ReadOnlyRegister => "write to a read-only x2APIC register",
            Self::WriteOnlyRegister => "read of a write-only x2APIC register",
            Self::ReservedBitsSet => "reserved bits set in an x2APIC register write",
            Self::ApicBaseReservedBits => "reserved bits set in IA32_APIC_BASE",
            Self::ApicBaseRelocation => "APIC base relocation is not supported",
            Self::X2ApicNotOffered => "x2APIC mode requested but not offered in CPUID",
            Self::IllegalModeTransition => "illegal APIC mode transition",
        })
    }
}

/// ESR bits the virtual APIC can record (the checksum and bus errors of
/// the old serial APIC bus cannot happen here).
pub mod error_status {
    /// A fixed or lowest-priority IPI, or a SELF IPI, named a vector below 16.
    pub const SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
    /// An interrupt with a vector below 16 arrived.
    pub const RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
    /// An xAPIC MMIO access to an offset with no register behind it.
    pub const ILLEGAL_REGISTER_ADDRESS: u32 = 1 << 7;
}
