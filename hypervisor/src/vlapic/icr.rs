//! Inter-processor interrupts: decoding an ICR write into an [`Ipi`] the
//! hypervisor carries out, deciding whether an APIC is one of its
//! destinations, and choosing the targets of a whole IPI.

use alloc::vec::Vec;

use super::{ApicId, ApicMode, TriggerMode, Vector, VirtualLapic};

/// ICR / LVT delivery mode, bits 10:8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// The vector, to every destination.
    Fixed,
    /// The vector, to the destination with the lowest arbitration priority.
    LowestPriority,
    /// System management interrupt (no SMM is emulated: dropped).
    Smi,
    /// Non-maskable interrupt; the vector is ignored.
    Nmi,
    /// INIT: reset and wait for SIPI; the vector is ignored.
    Init,
    /// Start-up IPI: the vector is the real-mode start page.
    Startup,
    /// External interrupt from an 8259 (there is none in a PVH guest:
    /// dropped).
    ExtInt,
}

impl DeliveryMode {
    /// Decodes bits 10:8 of an ICR or LVT entry; `None` for the reserved 0b011.
    pub const fn from_bits(entry: u32) -> Option<Self> {
        Some(match (entry >> 8) & 0b111 {
            0b000 => Self::Fixed,
            0b001 => Self::LowestPriority,
            0b010 => Self::Smi,
            0b100 => Self::Nmi,
            0b101 => Self::Init,
            0b110 => Self::Startup,
            0b111 => Self::ExtInt,
            _ => return None,
        })
    }
}

/// What an IPI delivers to each of its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptMessage {
    /// What kind of interrupt.
    pub delivery_mode: DeliveryMode,
    /// The vector (fixed, lowest priority), start page (SIPI), or unused.
    pub vector: Vector,
    /// Edge or level (matters for fixed and lowest-priority only).
    pub trigger: TriggerMode,
}

/// Whom an IPI is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The APIC with this id (xAPIC senders name 8-bit ids).
    Physical(ApicId),
    /// Every APIC whose logical destination matches this mask: an 8-bit
    /// MDA from an xAPIC sender (flat or cluster, per the target's DFR),
    /// `cluster << 16 | members` from an x2APIC sender.
    Logical(u32),
    /// The sender only (shorthand 01).
    SelfOnly,
    /// Everyone (shorthand 10, or the physical broadcast id 0xFF /
    /// 0xFFFF_FFFF).
    AllIncludingSelf,
    /// Everyone but the sender (shorthand 11).
    AllExcludingSelf,
}

/// An IPI the sender's ICR write asks for. The hypervisor hands
/// `message` to [`VirtualLapic::receive`] of each target [`route`] picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// The sender's APIC id (for the self / all-but-self shorthands).
    pub source: ApicId,
    /// Whom it is for.
    pub destination: Destination,
    /// What they receive.
    pub message: InterruptMessage,
}

/// What an ICR write turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Command {
    /// An IPI to carry out.
    Send(Ipi),
    /// A fixed or lowest-priority IPI with a vector below 16: not sent,
    /// recorded as a send error.
    IllegalVector,
    /// Nothing to do: an INIT level de-assert, or a reserved delivery mode.
    Nothing,
}

/// ICR bit 11: logical destination mode.
const LOGICAL: u32 = 1 << 11;
/// ICR bit 14: level assert (0 = de-assert).
const LEVEL_ASSERT: u32 = 1 << 14;
/// ICR bit 15: level-triggered.
const LEVEL_TRIGGERED: u32 = 1 << 15;

/// Decodes an ICR write from APIC `source`: `low` is ICR bits 31:0,
/// `destination` the destination field (8 bits in xAPIC, 32 in x2APIC).
pub(super) fn decode(low: u32, destination: u32, source: ApicId, x2apic: bool) -> Command {
    let Some(delivery_mode) = DeliveryMode::from_bits(low) else {
        return Command::Nothing;
    };
    let trigger = if low & LEVEL_TRIGGERED != 0 {
        TriggerMode::Level
    } else {
        TriggerMode::Edge
    };
    // INIT level de-assert only resynchronised arbitration ids on the P6
    // bus; Linux still sends it after INIT.
    if delivery_mode == DeliveryMode::Init
        && trigger == TriggerMode::Level
        && low & LEVEL_ASSERT == 0
    {
        return Command::Nothing;
    }
    let vector = Vector(low as u8);
    if matches!(
        delivery_mode,
        DeliveryMode::Fixed | DeliveryMode::LowestPriority
    ) && !vector.is_legal()
    {
        return Command::IllegalVector;
    }
    let broadcast = if x2apic { u32::MAX } else { 0xff };
    let destination = match (low >> 18) & 0b11 {
        0b01 => Destination::SelfOnly,
        0b10 => Destination::AllIncludingSelf,
        0b11 => Destination::AllExcludingSelf,
        _ if low & LOGICAL != 0 => Destination::Logical(destination),
        _ if destination == broadcast => Destination::AllIncludingSelf,
        _ => Destination::Physical(ApicId(destination)),
    };
    Command::Send(Ipi {
        source,
        destination,
        message: InterruptMessage {
            delivery_mode,
            vector,
            trigger,
        },
    })
}

impl VirtualLapic {
    /// Whether this APIC is one of `destination`'s targets when `source`
    /// sends. A globally disabled APIC is nobody's target. Logical
    /// destinations match as the target's mode says: x2APIC cluster and
    /// member bits against the LDR it derives from its id; xAPIC flat
    /// (DFR model 0xF, any common LDR bit) or cluster (model 0x0, same
    /// cluster, common member bit); MDA 0xFF reaches everyone; other DFR
    /// models match nothing.
    pub fn is_destination(&self, destination: Destination, source: ApicId) -> bool {
        let id = self.id();
        match (self.mode(), destination) {
            (ApicMode::Disabled, _) => false,
            (_, Destination::SelfOnly) => id == source,
            (_, Destination::AllIncludingSelf) => true,
            (_, Destination::AllExcludingSelf) => id != source,
            (ApicMode::X2Apic, Destination::Physical(target)) => target == id,
            (ApicMode::XApic, Destination::Physical(target)) => target.0 == id.0 & 0xff,
            (ApicMode::X2Apic, Destination::Logical(mask)) => {
                let logical = self.x2apic_logical_destination();
                mask == u32::MAX || (mask >> 16 == logical >> 16 && mask & logical & 0xffff != 0)
            }
            (ApicMode::XApic, Destination::Logical(mask)) => {
                let mask = mask & 0xff;
                let logical = self.xapic_logical_id();
                mask == 0xff
                    || match self.xapic_destination_model() {
                        0xf => logical & mask != 0,
                        0x0 => logical >> 4 == mask >> 4 && logical & mask & 0xf != 0,
                        _ => false,
                    }
            }
        }
    }
}

/// The targets of `ipi` among `lapics` (each with the caller's key, for
/// example its vCPU id): every matching APIC, or for lowest priority the
/// one matching APIC with the lowest arbitration priority (the first on a
/// tie). Keys come back in `lapics` order.
pub fn route<'a, Key>(
    ipi: &Ipi,
    lapics: impl IntoIterator<Item = (Key, &'a VirtualLapic)>,
) -> Vec<Key> {
    let matching = lapics
        .into_iter()
        .filter(|(_, lapic)| lapic.is_destination(ipi.destination, ipi.source));
    if ipi.message.delivery_mode == DeliveryMode::LowestPriority {
        let mut lowest: Option<(Key, u8)> = None;
        for (key, lapic) in matching {
            let priority = lapic.arbitration_priority();
            if lowest.as_ref().is_none_or(|(_, best)| priority < *best) {
                lowest = Some((key, priority));
            }
        }
        lowest.into_iter().map(|(key, _)| key).collect()
    } else {
        matching.map(|(key, _)| key).collect()
    }
}
