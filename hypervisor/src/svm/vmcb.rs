//! The VMCB (AMD APM vol. 2, appendix B): one 4 KiB page, a control area
//! then the guest's state-save area. Kept as bytes with named offsets so
//! the layout is visible in one place and every access is bounds-checked
//! by construction.

/// Offsets into the control area.
pub mod control {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_DR: usize = 0x004;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00c;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const TSC_OFFSET: usize = 0x050;
    pub const GUEST_ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    pub const VIRTUAL_INTERRUPT: usize = 0x060;
    pub const INTERRUPT_SHADOW: usize = 0x068;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INTERRUPT_INFO: usize = 0x088;
    pub const NESTED_CONTROL: usize = 0x090;
    pub const EVENT_INJECTION: usize = 0x0a8;
    pub const NESTED_CR3: usize = 0x0b0;
    pub const CLEAN_BITS: usize = 0x0c0;
    pub const NEXT_RIP: usize = 0x0c8;
}

/// Offsets into the state-save area.
pub mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const STAR: usize = 0x600;
    pub const LSTAR: usize = 0x608;
    pub const CSTAR: usize = 0x610;
    pub const SFMASK: usize = 0x618;
    pub const KERNEL_GS_BASE: usize = 0x620;
    pub const SYSENTER_CS: usize = 0x628;
    pub const SYSENTER_ESP: usize = 0x630;
    pub const SYSENTER_EIP: usize = 0x638;
    pub const CR2: usize = 0x640;
    pub const GUEST_PAT: usize = 0x668;
}

/// Intercept bits in `INTERCEPT_MISC1`.
pub mod misc1 {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    pub const INIT: u32 = 1 << 3;
    pub const CPUID: u32 = 1 << 18;
    /// IRET: the end of an NMI handler, which unblocks NMIs.
    pub const IRET: u32 = 1 << 20;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept bits in `INTERCEPT_MISC2`.
pub mod misc2 {
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const ICEBP: u32 = 1 << 8;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const XSETBV: u32 = 1 << 13;
}

/// `TLB_CONTROL`: flush every ASID's entries on the next VMRUN (the only
/// flush QEMU's TCG offers: it lacks flush-by-ASID).
pub const TLB_FLUSH_ALL: u8 = 1;
/// `NESTED_CONTROL` bit 0: nested paging on.
pub const NESTED_PAGING: u64 = 1;

/// A segment register as the VMCB holds it: selector, the 12-bit packed
/// attributes (type, S, DPL, P, AVL, L, D/B, G), limit and base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub attributes: u16,
    pub limit: u32,
    pub base: u64,
}

/// One VMCB page.
#[repr(C, align(4096))]
pub struct Vmcb {
    bytes: [u8; 4096],
}

impl Default for Vmcb {
    fn default() -> Self {
        Self { bytes: [0; 4096] }
    }
}

impl Vmcb {
    /// Reads the `u64` at `offset`.
    pub fn read_u64(&self, offset: usize) -> u64 {
        let mut value = [0; 8];
        if let Some(bytes) = self.bytes.get(offset..offset + 8) {
            value.copy_from_slice(bytes);
        }
        u64::from_le_bytes(value)
    }

    /// Writes the `u64` at `offset`.
    pub fn write_u64(&mut self, offset: usize, value: u64) {
        if let Some(bytes) = self.bytes.get_mut(offset..offset + 8) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Reads the `u32` at `offset`.
    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut value = [0; 4];
        if let Some(bytes) = self.bytes.get(offset..offset + 4) {
            value.copy_from_slice(bytes);
        }
        u32::from_le_bytes(value)
    }

    /// Writes the `u32` at `offset`.
    pub fn write_u32(&mut self, offset: usize, value: u32) {
        if let Some(bytes) = self.bytes.get_mut(offset..offset + 4) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Reads the byte at `offset`.
    pub fn read_u8(&self, offset: usize) -> u8 {
        self.bytes.get(offset).copied().unwrap_or(0)
    }

    /// Writes the byte at `offset`.
    pub fn write_u8(&mut self, offset: usize, value: u8) {
        if let Some(byte) = self.bytes.get_mut(offset) {
            *byte = value;
        }
    }

    /// Reads the segment register at `offset` (one of the `save` offsets).
    pub fn segment(&self, offset: usize) -> Segment {
        let head = self.read_u64(offset);
        Segment {
            selector: head as u16,
            attributes: (head >> 16) as u16,
            limit: (head >> 32) as u32,
            base: self.read_u64(offset + 8),
        }
    }

    /// Writes the segment register at `offset`.
    pub fn set_segment(&mut self, offset: usize, segment: Segment) {
        let head = u64::from(segment.selector)
            | (u64::from(segment.attributes) << 16)
            | (u64::from(segment.limit) << 32);
        self.write_u64(offset, head);
        self.write_u64(offset + 8, segment.base);
    }

    /// Sets bits in a 32-bit intercept vector.
    pub fn intercept(&mut self, offset: usize, bits: u32) {
        let value = self.read_u32(offset) | bits;
        self.write_u32(offset, value);
    }

    pub fn rip(&self) -> u64 {
        self.read_u64(save::RIP)
    }

    pub fn set_rip(&mut self, rip: u64) {
        self.write_u64(save::RIP, rip);
    }

    pub fn rax(&self) -> u64 {
        self.read_u64(save::RAX)
    }

    pub fn set_rax(&mut self, rax: u64) {
        self.write_u64(save::RAX, rax);
    }

    pub fn rflags(&self) -> u64 {
        self.read_u64(save::RFLAGS)
    }

    pub fn cpl(&self) -> u8 {
        self.read_u8(save::CPL)
    }

    /// Queues an event for delivery on the next VMRUN (`EVENTINJ`).
    pub fn inject(&mut self, event: Event) {
        self.write_u64(control::EVENT_INJECTION, event.encode());
    }

    /// Clears bits in a 32-bit intercept vector.
    pub fn stop_intercepting(&mut self, offset: usize, bits: u32) {
        let value = self.read_u32(offset) & !bits;
        self.write_u32(offset, value);
    }

    /// Whether an event waits in `EVENTINJ` for the next VMRUN.
    pub fn event_queued(&self) -> bool {
        self.read_u64(control::EVENT_INJECTION) & EVENT_VALID != 0
    }

    /// Whether the guest is in an interrupt shadow (after STI or MOV SS):
    /// nothing may be delivered before its next instruction.
    pub fn in_interrupt_shadow(&self) -> bool {
        self.read_u64(control::INTERRUPT_SHADOW) & 1 != 0
    }

    /// After an exit: an event whose delivery the exit interrupted
    /// (`EXITINTINFO`, for example a nested page fault on the guest's
    /// stack while an NMI or interrupt was being delivered) is queued
    /// again, or it would be lost. Software interrupts and INT3/INTO are
    /// not: RIP still points at the instruction, which runs again.
    /// Returns the event re-queued, if any.
    pub fn requeue_interrupted_event(&mut self) -> Option<u64> {
        let info = self.read_u64(control::EXIT_INTERRUPT_INFO);
        let event = requeued_event(info)?;
        self.write_u64(control::EVENT_INJECTION, event);
        Some(event)
    }
}

/// `EVENTINJ`/`EXITINTINFO` bit 31: the event is valid.
pub const EVENT_VALID: u64 = 1 << 31;
/// Event types (bits 10:8).
const EVENT_TYPE_EXCEPTION: u64 = 3;
const EVENT_TYPE_SOFTWARE_INTERRUPT: u64 = 4;

/// The `EVENTINJ` value that re-delivers the event an `EXITINTINFO` of
/// `info` describes, or `None` when there is none or it must not be
/// re-delivered (see [`Vmcb::requeue_interrupted_event`]).
pub fn requeued_event(info: u64) -> Option<u64> {
    if info & EVENT_VALID == 0 {
        return None;
    }
    let kind = (info >> 8) & 0b111;
    let vector = info & 0xff;
    let software = kind == EVENT_TYPE_SOFTWARE_INTERRUPT
        || (kind == EVENT_TYPE_EXCEPTION && matches!(vector, 3 | 4));
    (!software).then_some(info)
}

/// An event to inject into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A hardware exception, with its error code when the vector has one.
    Exception { vector: u8, error_code: Option<u32> },
    /// A non-maskable interrupt (vector 2, type NMI).
    Nmi,
}

impl Event {
    /// A general-protection fault with error code 0.
    pub const GENERAL_PROTECTION: Self = Self::Exception {
        vector: 13,
        error_code: Some(0),
    };
    /// An invalid-opcode fault.
    pub const INVALID_OPCODE: Self = Self::Exception {
        vector: 6,
        error_code: None,
    };

    /// The `EVENTINJ` encoding: vector, type, error-code-valid, valid.
    pub fn encode(self) -> u64 {
        match self {
            Self::Exception { vector, error_code } => {
                let mut value = u64::from(vector) | (3 << 8) | (1 << 31);
                if let Some(code) = error_code {
                    value |= (1 << 11) | (u64::from(code) << 32);
                }
                value
            }
            Self::Nmi => 2 | (2 << 8) | EVENT_VALID,
        }
    }
}

const _: () = assert!(core::mem::size_of::<Vmcb>() == 4096);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_round_trips_through_the_packed_layout() {
        let mut vmcb = Vmcb::default();
        let code = Segment {
            selector: 0x08,
            attributes: 0xc9b,
            limit: 0xffff_ffff,
            base: 0,
        };
        vmcb.set_segment(save::CS, code);
        assert_eq!(vmcb.segment(save::CS), code);
        assert_eq!(vmcb.read_u32(save::CS + 4), 0xffff_ffff);
        assert_eq!(vmcb.read_u8(save::CS + 2), 0x9b);
    }

    #[test]
    fn general_protection_injection_carries_its_error_code() {
        assert_eq!(Event::GENERAL_PROTECTION.encode(), 0x8000_0b0d);
        assert_eq!(Event::INVALID_OPCODE.encode(), 0x8000_0306);
    }

    #[test]
    fn nmi_injection_is_vector_2_of_type_nmi() {
        assert_eq!(Event::Nmi.encode(), 0x8000_0202);
        let mut vmcb = Vmcb::default();
        assert!(!vmcb.event_queued());
        vmcb.inject(Event::Nmi);
        assert!(vmcb.event_queued());
    }

    #[test]
    fn interrupted_deliveries_are_requeued_but_software_interrupts_rerun() {
        assert_eq!(requeued_event(0), None);
        // An NMI, an external interrupt and a #PF with its error code.
        assert_eq!(requeued_event(0x8000_0202), Some(0x8000_0202));
        assert_eq!(requeued_event(0x8000_00f3), Some(0x8000_00f3));
        let page_fault = (2 << 32) | 0x8000_0b0e;
        assert_eq!(requeued_event(page_fault), Some(page_fault));
        // INT 0x80, INT3, INTO: the instruction runs again instead.
        assert_eq!(requeued_event(0x8000_0480), None);
        assert_eq!(requeued_event(0x8000_0303), None);
        assert_eq!(requeued_event(0x8000_0304), None);
        let mut vmcb = Vmcb::default();
        vmcb.write_u64(control::EXIT_INTERRUPT_INFO, 0x8000_0202);
        assert_eq!(vmcb.requeue_interrupted_event(), Some(0x8000_0202));
        assert!(vmcb.event_queued());
    }

    #[test]
    fn out_of_range_offsets_read_zero_and_write_nothing() {
        let mut vmcb = Vmcb::default();
        vmcb.write_u64(4093, u64::MAX);
        assert_eq!(vmcb.read_u64(4093), 0);
    }
}
