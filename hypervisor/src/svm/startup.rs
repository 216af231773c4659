//! The state an application processor starts in when a start-up IPI wakes
//! it (after INIT), written into its VMCB: real mode at
//! `CS:IP = vector·0x100 : 0`, as the SDM's INIT state gives it and Xen's
//! `hvm_vcpu_reset_state` loads it for HVM and PVH guests.

use super::GuestRegisters;
use super::vmcb::{Segment, Vmcb, control, save};
use crate::vcpu::msr::EFER_SVME;
use crate::vlapic::{
    INIT_DR6, INIT_DR7, INIT_RFLAGS, REAL_MODE_CODE_ATTRIBUTES, REAL_MODE_DATA_ATTRIBUTES,
    REAL_MODE_SEGMENT_LIMIT, RealModeEntry,
};

/// CR0 the application processor starts with: only ET. The SDM's INIT
/// value also sets CD and NW; Xen leaves caching on for HVM vCPUs, and so
/// does Xenolith (Linux's trampoline rewrites CR0 a few instructions on).
pub const STARTUP_CR0: u64 = 0x10;

/// Page attribute table at INIT.
const INIT_PAT: u64 = 0x0007_0406_0007_0406;

/// LDTR attributes: present system segment of type LDT (0x82).
const LDT_ATTRIBUTES: u16 = 0x0082;
/// TR attributes: present busy 32-bit TSS (0x8B), as VMRUN requires.
const TSS_ATTRIBUTES: u16 = 0x008b;

/// Loads the start-up state for `entry` into `vmcb` and `registers`:
/// real mode at the trampoline page, flat 64 KiB data segments, paging
/// and protection off, EFER clear (but SVME, which VMRUN needs and the
/// guest never sees), general registers zero but RDX = `cpu_signature`
/// (CPUID.1 EAX, what a processor holds after reset), and no event
/// pending. Everything a previous life of the vCPU left (system-call
/// MSRs, FS/GS bases, debug registers) is cleared.
pub fn load_startup_state(
    vmcb: &mut Vmcb,
    registers: &mut GuestRegisters,
    entry: &RealModeEntry,
    cpu_signature: u32,
) {
    let data = Segment {
        selector: 0,
        attributes: REAL_MODE_DATA_ATTRIBUTES,
        limit: REAL_MODE_SEGMENT_LIMIT,
        base: 0,
    };
    vmcb.set_segment(
        save::CS,
        Segment {
            selector: entry.code_selector,
            attributes: REAL_MODE_CODE_ATTRIBUTES,
            limit: REAL_MODE_SEGMENT_LIMIT,
            base: entry.code_base.0,
        },
    );
    for segment in [save::DS, save::ES, save::SS, save::FS, save::GS] {
        vmcb.set_segment(segment, data);
    }
    let table = |attributes| Segment {
        selector: 0,
        attributes,
        limit: REAL_MODE_SEGMENT_LIMIT,
        base: 0,
    };
    vmcb.set_segment(save::LDTR, table(LDT_ATTRIBUTES));
    vmcb.set_segment(save::TR, table(TSS_ATTRIBUTES));
    vmcb.set_segment(save::GDTR, table(0));
    vmcb.set_segment(save::IDTR, table(0));
    vmcb.write_u8(save::CPL, 0);
    vmcb.write_u64(save::CR0, STARTUP_CR0);
    vmcb.write_u64(save::CR2, 0);
    vmcb.write_u64(save::CR3, 0);
    vmcb.write_u64(save::CR4, 0);
    vmcb.write_u64(save::EFER, EFER_SVME);
    vmcb.write_u64(save::RFLAGS, INIT_RFLAGS);
    vmcb.write_u64(save::DR6, INIT_DR6);
    vmcb.write_u64(save::DR7, INIT_DR7);
    vmcb.write_u64(save::GUEST_PAT, INIT_PAT);
    for msr in [
        save::STAR,
        save::LSTAR,
        save::CSTAR,
        save::SFMASK,
        save::KERNEL_GS_BASE,
        save::SYSENTER_CS,
        save::SYSENTER_ESP,
        save::SYSENTER_EIP,
    ] {
        vmcb.write_u64(msr, 0);
    }
    vmcb.set_rip(entry.instruction_pointer);
    vmcb.write_u64(save::RSP, 0);
    vmcb.set_rax(0);
    vmcb.write_u64(control::EVENT_INJECTION, 0);
    vmcb.write_u64(control::INTERRUPT_SHADOW, 0);
    *registers = GuestRegisters {
        rdx: u64::from(cpu_signature),
        ..GuestRegisters::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestPhysAddr;

    fn used_vmcb() -> (Vmcb, GuestRegisters) {
        let mut vmcb = Vmcb::default();
        // What a vCPU that ran Linux in long mode leaves behind.
        vmcb.write_u64(save::CR0, 0x8005_0033);
        vmcb.write_u64(save::CR3, 0x1234_5000);
        vmcb.write_u64(save::CR4, 0x3506f0);
        vmcb.write_u64(save::EFER, 0xd01);
        vmcb.write_u64(save::LSTAR, 0xffff_ffff_8100_0000);
        vmcb.write_u64(save::RFLAGS, 0x246);
        vmcb.write_u64(save::RSP, 0xffff_c900_0000_0000);
        vmcb.write_u8(save::CPL, 3);
        vmcb.write_u64(control::EVENT_INJECTION, 0x8000_0b0d);
        vmcb.set_segment(
            save::CS,
            Segment {
                selector: 0x10,
                attributes: 0xa9b,
                limit: 0xffff_ffff,
                base: 0,
            },
        );
        let registers = GuestRegisters {
            rbx: 1,
            rsi: 2,
            r15: 3,
            ..GuestRegisters::default()
        };
        (vmcb, registers)
    }

    #[test]
    fn a_sipi_starts_real_mode_at_the_vector_page() {
        let (mut vmcb, mut registers) = used_vmcb();
        let entry = RealModeEntry::for_vector(0x9a);
        load_startup_state(&mut vmcb, &mut registers, &entry, 0x0083_0f10);
        assert_eq!(
            vmcb.segment(save::CS),
            Segment {
                selector: 0x9a00,
                attributes: 0x9b,
                limit: 0xffff,
                base: 0x9a000,
            }
        );
        assert_eq!(entry.code_base, GuestPhysAddr(0x9a000));
        assert_eq!(vmcb.rip(), 0);
        for segment in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            assert_eq!(
                vmcb.segment(segment),
                Segment {
                    selector: 0,
                    attributes: 0x93,
                    limit: 0xffff,
                    base: 0,
                }
            );
        }
        assert_eq!(vmcb.segment(save::TR).attributes, 0x8b);
        assert_eq!(vmcb.segment(save::LDTR).attributes, 0x82);
        assert_eq!(vmcb.segment(save::IDTR).limit, 0xffff);
        assert_eq!(vmcb.segment(save::GDTR).base, 0);
    }

    #[test]
    fn protection_paging_and_the_old_life_are_gone() {
        let (mut vmcb, mut registers) = used_vmcb();
        load_startup_state(
            &mut vmcb,
            &mut registers,
            &RealModeEntry::for_vector(0x10),
            0x0083_0f10,
        );
        // Real mode: PE and PG clear; long mode off, but VMRUN's SVME.
        assert_eq!(vmcb.read_u64(save::CR0) & 0x8000_0001, 0);
        assert_eq!(vmcb.read_u64(save::CR0), STARTUP_CR0);
        assert_eq!(vmcb.read_u64(save::CR3), 0);
        assert_eq!(vmcb.read_u64(save::CR4), 0);
        assert_eq!(vmcb.read_u64(save::EFER), EFER_SVME);
        assert_eq!(vmcb.rflags(), 0x2, "interrupts off");
        assert_eq!(vmcb.cpl(), 0);
        assert_eq!(vmcb.read_u64(save::LSTAR), 0);
        assert_eq!(vmcb.read_u64(save::RSP), 0);
        assert_eq!(vmcb.read_u64(save::DR7), 0x400);
        assert_eq!(vmcb.read_u64(control::EVENT_INJECTION), 0);
        assert_eq!(
            registers,
            GuestRegisters {
                rdx: 0x0083_0f10,
                ..GuestRegisters::default()
            }
        );
    }
}
