//! The two ways in: x2APIC MSRs (strict: reserved registers, read-only
//! writes, write-only reads and reserved bits fault) and xAPIC MMIO
//! (lenient: reserved offsets read zero and log an ESR error, read-only
//! writes are dropped). Both end in the same register semantics.
//!
//! MMIO access sizes, which the SDM leaves undefined except for aligned
//! 32-bit accesses:
//! - a read of 1, 2, 4 or 8 bytes inside one 16-byte register slot
//!   returns those bytes of the slot, the register zero-extended to 128
//!   bits (Xen does the same for 8- and 16-bit reads);
//! - a write takes effect only if it is 4 bytes at the start of a slot;
//!   any other write is dropped (as KVM does);
//! - any other size, or an access crossing a slot, reads zero and writes
//!   nothing;
//! - outside xAPIC mode or outside the page, reads are all ones and writes
//!   are dropped, as for unbacked memory.

use crate::memory::GuestPhysAddr;
use crate::time::SystemTime;

use super::icr::{self, Command};
use super::registers::Register;
use super::timer::TimerMode;
use super::{
    ApicMode, LVT_MASKED, LapicAction, LapicFault, Lvt, SOFTWARE_ENABLE, TriggerMode, Vector,
    VirtualLapic, error_status, is_x2apic_msr, registers::X2APIC_MSR_FIRST,
};

/// IA32_TSC_DEADLINE.
pub const TSC_DEADLINE_MSR: u32 = 0x6e0;

/// Size of an xAPIC register slot.
const SLOT_BYTES: u64 = 16;
/// Size of the APIC page.
const PAGE_BYTES: u64 = 4096;

impl VirtualLapic {
    /// RDMSR of x2APIC MSR `msr` at `now`.
    pub fn read_msr(&mut self, msr: u32, now: SystemTime) -> Result<u64, LapicFault> {
        let register = self.x2apic_register(msr)?;
        if register.is_xapic_only() {
            return Err(LapicFault::ReservedRegister);
        }
        if register.is_write_only() {
            return Err(LapicFault::WriteOnlyRegister);
        }
        self.poll(now);
        Ok(self.read_register(register, now))
    }

    /// WRMSR of `value` to x2APIC MSR `msr` at `now`.
    pub fn write_msr(
        &mut self,
        msr: u32,
        value: u64,
        now: SystemTime,
    ) -> Result<Option<LapicAction>, LapicFault> {
        let register = self.x2apic_register(msr)?;
        if register.is_xapic_only() {
            return Err(LapicFault::ReservedRegister);
        }
        if register.is_read_only(true) {
            return Err(LapicFault::ReadOnlyRegister);
        }
        let writable = register.writable_bits(true, self.config.tsc_deadline_offered);
        if value & !writable != 0 {
            return Err(LapicFault::ReservedBitsSet);
        }
        if register == Register::LocalVector(Lvt::Timer) && (value >> 17) & 0b11 == 0b11 {
            return Err(LapicFault::ReservedBitsSet);
        }
        self.poll(now);
        Ok(self.write_register(register, value, now))
    }

    /// The register behind x2APIC MSR `msr`, if the APIC is in x2APIC mode.
    fn x2apic_register(&self, msr: u32) -> Result<Register, LapicFault> {
        if !is_x2apic_msr(msr) {
            return Err(LapicFault::NotAnX2ApicMsr);
        }
        if self.mode != ApicMode::X2Apic {
            return Err(LapicFault::X2ApicModeOff);
        }
        Register::from_index(msr - X2APIC_MSR_FIRST).ok_or(LapicFault::ReservedRegister)
    }

    /// An MMIO read of `size` bytes at `address` (see the module notes for
    /// sizes and alignment). The value is zero-extended.
    pub fn mmio_read(&mut self, address: GuestPhysAddr, size: usize, now: SystemTime) -> u64 {
        let Some(offset) = self.page_offset(address) else {
            return all_ones(size);
        };
        let Some(size) = access_size(offset, size) else {
            return 0;
        };
        let slot_offset = offset % SLOT_BYTES;
        let Some(register) = Register::from_index((offset / SLOT_BYTES) as u32)
            .filter(|register| !register.is_x2apic_only())
        else {
            self.record_error(error_status::ILLEGAL_REGISTER_ADDRESS);
            return 0;
        };
        self.poll(now);
        let value = if register.is_write_only() {
            0
        } else {
            u128::from(self.read_register(register, now) as u32)
        };
        let shifted = value >> (slot_offset * 8);
        (shifted & ((1u128 << (size * 8)) - 1)) as u64
    }

    /// An MMIO write of the low `size` bytes of `value` at `address`.
    pub fn mmio_write(
        &mut self,
        address: GuestPhysAddr,
        size: usize,
        value: u64,
        now: SystemTime,
    ) -> Option<LapicAction> {
        let offset = self.page_offset(address)?;
        access_size(offset, size)?;
        let Some(register) = Register::from_index((offset / SLOT_BYTES) as u32)
            .filter(|register| !register.is_x2apic_only())
        else {
            self.record_error(error_status::ILLEGAL_REGISTER_ADDRESS);
            return None;
        };
        if size != 4 || offset % SLOT_BYTES != 0 || register.is_read_only(false) {
            return None;
        }
        let mut value = value & register.writable_bits(false, self.config.tsc_deadline_offered);
        if register == Register::LocalVector(Lvt::Timer) && (value >> 17) & 0b11 == 0b11 {
            value &= !(0b11 << 17);
        }
        self.poll(now);
        self.write_register(register, value, now)
    }

    /// `address`'s offset in the live APIC page.
    fn page_offset(&self, address: GuestPhysAddr) -> Option<u64> {
        self.claims(address).then_some(address.0 & (PAGE_BYTES - 1))
    }

    /// RDMSR of IA32_TSC_DEADLINE: the armed deadline, or zero.
    pub fn tsc_deadline(&mut self, now: SystemTime) -> u64 {
        self.poll(now);
        self.timer.tsc_deadline()
    }

    /// WRMSR of IA32_TSC_DEADLINE: `raw` is the guest's TSC value, `at` the
    /// system time the hypervisor converted it to (guest TSC − TSC offset,
    /// then the system clock; a deadline in the past fires at once). Zero
    /// disarms. Ignored unless the LVT timer is in TSC-deadline mode.
    pub fn write_tsc_deadline(&mut self, raw: u64, at: SystemTime, now: SystemTime) {
        self.poll(now);
        if self.mode == ApicMode::Disabled {
            return;
        }
        self.timer.set_tsc_deadline(raw, at);
        self.poll(now);
    }

    /// A register's value in the current mode (after the access checks).
    fn read_register(&self, register: Register, now: SystemTime) -> u64 {
        let registers = &self.registers;
        let x2apic = self.mode == ApicMode::X2Apic;
        let value = match register {
            Register::Id => self.id_register(),
            Register::Version => super::VERSION,
            Register::TaskPriority => u32::from(registers.task_priority),
            Register::ArbitrationPriority => u32::from(self.arbitration_priority()),
            Register::ProcessorPriority => u32::from(self.processor_priority()),
            Register::EndOfInterrupt | Register::RemoteRead | Register::SelfIpi => 0,
            Register::LogicalDestination if x2apic => self.x2apic_logical_destination(),
            Register::LogicalDestination => registers.logical_destination,
            Register::DestinationFormat => registers.destination_format,
            Register::SpuriousVector => registers.spurious_vector,
            Register::InServiceWord(index) => registers.in_service.word(index),
            Register::TriggerModeWord(index) => registers.trigger_mode.word(index),
            Register::RequestWord(index) => registers.requests.word(index),
            Register::ErrorStatus => registers.error_status,
            Register::InterruptCommand if x2apic => return registers.interrupt_command,
            Register::InterruptCommand => registers.interrupt_command as u32,
            Register::InterruptCommandHigh => (registers.interrupt_command >> 32) as u32,
            Register::LocalVector(lvt) => self.local_vector(lvt),
            Register::TimerInitialCount => self.timer.initial_count(),
            Register::TimerCurrentCount => self.timer.current_count(now),
            Register::TimerDivide => self.timer.divide_configuration(),
        };
        u64::from(value)
    }

    /// A write of `value`, already checked or masked to the writable bits.
    fn write_register(
        &mut self,
        register: Register,
        value: u64,
        now: SystemTime,
    ) -> Option<LapicAction> {
        let x2apic = self.mode == ApicMode::X2Apic;
        let low = value as u32;
        match register {
            Register::TaskPriority => self.registers.task_priority = low as u8,
            Register::EndOfInterrupt => return self.end_of_interrupt(),
            Register::LogicalDestination => self.registers.logical_destination = low,
            Register::DestinationFormat => {
                self.registers.destination_format = low | !0xf000_0000;
            }
            Register::SpuriousVector => {
                self.registers.spurious_vector = low;
                if low & SOFTWARE_ENABLE == 0 {
                    // SDM 11.4.7.2: software disable masks every LVT entry.
                    for entry in &mut self.registers.local_vectors {
                        *entry |= LVT_MASKED;
                    }
                }
            }
            Register::ErrorStatus => {
                self.registers.error_status = core::mem::take(&mut self.registers.pending_errors);
            }
            Register::InterruptCommand => {
                let destination = if x2apic {
                    self.registers.interrupt_command = value;
                    (value >> 32) as u32
                } else {
                    let command = &mut self.registers.interrupt_command;
                    *command = (*command & !0xffff_ffff) | u64::from(low);
                    (*command >> 56) as u32
                };
                return self.send_command(low, destination, x2apic);
            }
            Register::InterruptCommandHigh => {
                let command = &mut self.registers.interrupt_command;
                *command = (*command & 0xffff_ffff) | (u64::from(low) << 32);
            }
            Register::LocalVector(lvt) => {
                let mut entry = low;
                if !self.is_software_enabled() {
                    entry |= LVT_MASKED;
                }
                if lvt == Lvt::Timer {
                    self.timer.set_mode(TimerMode::from_entry(entry));
                }
                if let Some(slot) = self.registers.local_vectors.get_mut(lvt.index()) {
                    *slot = entry;
                }
            }
            Register::TimerInitialCount => self.timer.set_initial_count(low, now),
            Register::TimerDivide => self.timer.set_divide_configuration(low, now),
            Register::SelfIpi => {
                let vector = Vector(low as u8);
                if vector.is_legal() {
                    self.accept(vector, TriggerMode::Edge);
                } else {
                    self.record_error(error_status::SEND_ILLEGAL_VECTOR);
                }
            }
            Register::Id
            | Register::Version
            | Register::ArbitrationPriority
            | Register::ProcessorPriority
            | Register::RemoteRead
            | Register::InServiceWord(_)
            | Register::TriggerModeWord(_)
            | Register::RequestWord(_)
            | Register::TimerCurrentCount => {}
        }
        None
    }

    /// An ICR write: the IPI to send, or a send error.
    fn send_command(&mut self, low: u32, destination: u32, x2apic: bool) -> Option<LapicAction> {
        match icr::decode(low, destination, self.id(), x2apic) {
            Command::Send(ipi) => Some(LapicAction::SendIpi(ipi)),
            Command::IllegalVector => {
                self.record_error(error_status::SEND_ILLEGAL_VECTOR);
                None
            }
            Command::Nothing => None,
        }
    }
}

/// `size` if it is 1, 2, 4 or 8 and the access at `offset` stays inside
/// one register slot.
fn access_size(offset: u64, size: usize) -> Option<u64> {
    let size = u64::try_from(size).ok()?;
    let fits = matches!(size, 1 | 2 | 4 | 8) && offset % SLOT_BYTES + size <= SLOT_BYTES;
    fits.then_some(size)
}

/// What a read of `size` bytes of unbacked memory returns.
fn all_ones(size: usize) -> u64 {
    match size {
        0 => 0,
        1..=7 => (1u64 << (size * 8)) - 1,
        _ => u64::MAX,
    }
}
