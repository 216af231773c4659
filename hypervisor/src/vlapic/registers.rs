//! The APIC register map shared by both access paths: xAPIC MMIO offset
//! `16 · i` and x2APIC MSR `0x800 + i` name the same register `i`. Which
//! registers each mode has, and which bits a write may set.

/// The first x2APIC MSR.
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// The last x2APIC MSR.
pub const X2APIC_MSR_LAST: u32 = 0x8ff;

/// Whether `msr` is one of the x2APIC MSRs the virtual APIC answers.
pub const fn is_x2apic_msr(msr: u32) -> bool {
    msr >= X2APIC_MSR_FIRST && msr <= X2APIC_MSR_LAST
}

/// LVT mask bit (16), set at reset and while the APIC is software-disabled.
pub const LVT_MASKED: u32 = 1 << 16;

/// One entry of the local vector table (the CMCI entry is not offered:
/// the version register reports six entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lvt {
    /// The APIC timer.
    Timer,
    /// The thermal sensor (never fires: no sensor is emulated).
    Thermal,
    /// Performance-counter overflow (never fires: no counters are emulated).
    PerformanceCounter,
    /// The LINT0 pin (nothing is wired to it in a PVH guest).
    Lint0,
    /// The LINT1 pin (nothing is wired to it in a PVH guest).
    Lint1,
    /// APIC errors recorded in the ESR.
    Error,
}

impl Lvt {
    /// Every entry, in register order.
    pub const ALL: [Self; 6] = [
        Self::Timer,
        Self::Thermal,
        Self::PerformanceCounter,
        Self::Lint0,
        Self::Lint1,
        Self::Error,
    ];

    /// Position in the table (register index − 0x32).
    pub const fn index(self) -> usize {
        match self {
            Self::Timer => 0,
            Self::Thermal => 1,
            Self::PerformanceCounter => 2,
            Self::Lint0 => 3,
            Self::Lint1 => 4,
            Self::Error => 5,
        }
    }

    /// Bits software may write: vector (7:0), delivery mode (10:8) where the
    /// entry has one, pin polarity (13) and trigger (15) for LINT0/1, mask
    /// (16), timer mode (17, and 18 when TSC-deadline is offered).
    /// Delivery status (12) and remote IRR (14) are read-only.
    pub const fn writable_bits(self, tsc_deadline_offered: bool) -> u32 {
        const VECTOR: u32 = 0xff;
        const DELIVERY_MODE: u32 = 0x700;
        match self {
            Self::Timer if tsc_deadline_offered => VECTOR | LVT_MASKED | (0b11 << 17),
            Self::Timer => VECTOR | LVT_MASKED | (1 << 17),
            Self::Thermal | Self::PerformanceCounter => VECTOR | DELIVERY_MODE | LVT_MASKED,
            Self::Lint0 | Self::Lint1 => {
                VECTOR | DELIVERY_MODE | (1 << 13) | (1 << 15) | LVT_MASKED
            }
            Self::Error => VECTOR | LVT_MASKED,
        }
    }
}

/// A register of the APIC page, by index (`offset / 16`, `msr − 0x800`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Register {
    Id,
    Version,
    TaskPriority,
    /// xAPIC only.
    ArbitrationPriority,
    ProcessorPriority,
    EndOfInterrupt,
    /// Remote read (xAPIC only, obsolete): reads 0.
    RemoteRead,
    LogicalDestination,
    /// xAPIC only.
    DestinationFormat,
    SpuriousVector,
    /// ISR word 0–7.
    InServiceWord(usize),
    /// TMR word 0–7.
    TriggerModeWord(usize),
    /// IRR word 0–7.
    RequestWord(usize),
    ErrorStatus,
    /// ICR bits 31:0 (xAPIC), the whole 64-bit ICR (x2APIC).
    InterruptCommand,
    /// ICR bits 63:32 (xAPIC only).
    InterruptCommandHigh,
    LocalVector(Lvt),
    TimerInitialCount,
    TimerCurrentCount,
    TimerDivide,
    /// x2APIC only.
    SelfIpi,
}

impl Register {
    /// The register at `index`, or `None` for a reserved slot.
    pub(super) const fn from_index(index: u32) -> Option<Self> {
        Some(match index {
            0x02 => Self::Id,
            0x03 => Self::Version,
            0x08 => Self::TaskPriority,
            0x09 => Self::ArbitrationPriority,
            0x0a => Self::ProcessorPriority,
            0x0b => Self::EndOfInterrupt,
            0x0c => Self::RemoteRead,
            0x0d => Self::LogicalDestination,
            0x0e => Self::DestinationFormat,
            0x0f => Self::SpuriousVector,
            0x10..=0x17 => Self::InServiceWord((index - 0x10) as usize),
            0x18..=0x1f => Self::TriggerModeWord((index - 0x18) as usize),
            0x20..=0x27 => Self::RequestWord((index - 0x20) as usize),
            0x28 => Self::ErrorStatus,
            0x30 => Self::InterruptCommand,
            0x31 => Self::InterruptCommandHigh,
            0x32 => Self::LocalVector(Lvt::Timer),
            0x33 => Self::LocalVector(Lvt::Thermal),
            0x34 => Self::LocalVector(Lvt::PerformanceCounter),
            0x35 => Self::LocalVector(Lvt::Lint0),
            0x36 => Self::LocalVector(Lvt::Lint1),
            0x37 => Self::LocalVector(Lvt::Error),
            0x38 => Self::TimerInitialCount,
            0x39 => Self::TimerCurrentCount,
            0x3e => Self::TimerDivide,
            0x3f => Self::SelfIpi,
            _ => return None,
        })
    }

    /// Registers the xAPIC page has and x2APIC mode does not.
    pub(super) const fn is_xapic_only(self) -> bool {
        matches!(
            self,
            Self::ArbitrationPriority
                | Self::RemoteRead
                | Self::DestinationFormat
                | Self::InterruptCommandHigh
        )
    }

    /// Registers only x2APIC mode has.
    pub(super) const fn is_x2apic_only(self) -> bool {
        matches!(self, Self::SelfIpi)
    }

    /// Registers a write cannot change (in x2APIC mode LDR joins them).
    pub(super) const fn is_read_only(self, x2apic: bool) -> bool {
        match self {
            Self::Id
            | Self::Version
            | Self::ArbitrationPriority
            | Self::ProcessorPriority
            | Self::RemoteRead
            | Self::InServiceWord(_)
            | Self::TriggerModeWord(_)
            | Self::RequestWord(_)
            | Self::TimerCurrentCount => true,
            Self::LogicalDestination => x2apic,
            _ => false,
        }
    }

    /// Registers whose reads mean nothing (x2APIC faults them; xAPIC
    /// reads 0).
    pub(super) const fn is_write_only(self) -> bool {
        matches!(self, Self::EndOfInterrupt | Self::SelfIpi)
    }

    /// Bits a write may set. In x2APIC mode a write with any other bit set
    /// faults (SDM 11.12.1.3: EOI and ESR accept only zero, the upper half
    /// of every register but the ICR is reserved); in xAPIC mode the
    /// other bits are dropped (EOI and ESR take any value).
    pub(super) const fn writable_bits(self, x2apic: bool, tsc_deadline_offered: bool) -> u64 {
        const ICR_LOW: u64 = 0xfff | (1 << 14) | (1 << 15) | (0b11 << 18);
        match self {
            Self::TaskPriority | Self::SelfIpi => 0xff,
            Self::EndOfInterrupt | Self::ErrorStatus if x2apic => 0,
            Self::EndOfInterrupt | Self::ErrorStatus => 0xffff_ffff,
            Self::LogicalDestination | Self::InterruptCommandHigh => 0xff00_0000,
            Self::DestinationFormat => 0xf000_0000,
            // Vector, software enable, focus-check disable; no EOI-broadcast
            // suppression (the version register does not offer it).
            Self::SpuriousVector => 0x3ff,
            Self::InterruptCommand if x2apic => 0xffff_ffff_0000_0000 | ICR_LOW,
            Self::InterruptCommand => ICR_LOW,
            Self::LocalVector(lvt) => lvt.writable_bits(tsc_deadline_offered) as u64,
            Self::TimerInitialCount => 0xffff_ffff,
            Self::TimerDivide => 0b1011,
            _ => 0,
        }
    }
}
