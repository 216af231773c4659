//! AMD SVM: the VMCB layout, exit decoding, the permission maps that
//! decide which ports and MSRs a guest touches directly, and the guest
//! registers the VMCB does not hold.

pub mod exit;
pub mod permissions;
pub mod startup;
pub mod vmcb;

use core::fmt;

use vmcb::{Vmcb, save};

/// The guest's general-purpose registers that VMRUN does not switch (RAX
/// and RSP live in the VMCB). The layout is shared with the VMRUN stub.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegisters {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// A guest's full register state, for crash reports.
pub struct GuestReport<'a> {
    pub vmcb: &'a Vmcb,
    pub registers: &'a GuestRegisters,
}

impl fmt::Display for GuestReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.vmcb;
        let r = self.registers;
        let cs = v.segment(save::CS);
        writeln!(
            f,
            "RIP={:#018x} RSP={:#018x} RFLAGS={:#010x} CPL={}",
            v.rip(),
            v.read_u64(save::RSP),
            v.rflags(),
            v.cpl()
        )?;
        baremetal::exceptions::write_general_registers(
            f,
            [
                v.rax(),
                r.rbx,
                r.rcx,
                r.rdx,
                r.rsi,
                r.rdi,
                r.rbp,
                r.r8,
                r.r9,
                r.r10,
                r.r11,
                r.r12,
                r.r13,
                r.r14,
                r.r15,
            ],
        )?;
        writeln!(
            f,
            "CR0={:#010x} CR2={:#018x} CR3={:#018x} CR4={:#010x}",
            v.read_u64(save::CR0),
            v.read_u64(save::CR2),
            v.read_u64(save::CR3),
            v.read_u64(save::CR4)
        )?;
        write!(
            f,
            "EFER={:#x} CS={:#06x} (attributes {:#05x}) exit code {:#x} info {:#x} {:#x}",
            v.read_u64(save::EFER),
            cs.selector,
            cs.attributes,
            v.read_u64(vmcb::control::EXIT_CODE),
            v.read_u64(vmcb::control::EXIT_INFO1),
            v.read_u64(vmcb::control::EXIT_INFO2)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_rip_and_every_register() {
        let mut vmcb = Vmcb::default();
        vmcb.set_rip(0x100_0042);
        let registers = GuestRegisters {
            r15: 0x1515,
            ..GuestRegisters::default()
        };
        let text = GuestReport {
            vmcb: &vmcb,
            registers: &registers,
        }
        .to_string();
        assert!(text.contains("RIP=0x0000000001000042"));
        assert!(text.contains("R15=0x0000000000001515"));
        assert!(text.contains("CR3="));
    }
}
