//! The MSRs a guest reaches through the hypervisor. Those the VMCB holds
//! (segment bases, SYSCALL and SYSENTER targets, PAT) pass straight
//! through; EFER is filtered (SVME must stay on in the VMCB, hidden from
//! the guest); the Xen hypercall-page MSR installs the page; TSC_AUX is
//! kept per vCPU ([`GuestMsrs`]); the rest raise #GP, as Xen does for MSRs
//! it does not know.

use xenolith_abi::cpuid::HYPERCALL_PAGE_MSR;

pub const EFER: u32 = 0xc000_0080;
pub const APIC_BASE: u32 = 0x1b;
pub const TSC: u32 = 0x10;
pub const MTRR_CAPABILITIES: u32 = 0xfe;
pub const MTRR_DEFAULT_TYPE: u32 = 0x2ff;
/// TSC_AUX (RDTSCP/RDPID's processor id): each vCPU has its own, loaded
/// into the CPU before it runs (RDTSCP and RDPID do not exit), read and
/// written by RDMSR/WRMSR through [`GuestMsrs`]. Linux stores its CPU
/// number there for the vDSO's getcpu.
pub const TSC_AUX: u32 = 0xc000_0103;
/// AMD NB_CFG: Linux reads it and sets "extended PCI config space" with a
/// plain RDMSR/WRMSR (a #GP prints a call trace); guests see 0 and their
/// writes are ignored, as on Xen.
pub const NB_CFG: u32 = 0xc001_001f;
/// AMD DE_CFG: reads say LFENCE is dispatch-serialising (bit 1), as Xen
/// reports; writes are ignored.
pub const DE_CFG: u32 = 0xc001_1029;
const DE_CFG_LFENCE_SERIALISING: u64 = 1 << 1;

/// MSRs the guest reads and writes without an exit: all are loaded and
/// saved per guest by VMRUN/#VMEXIT or VMLOAD/VMSAVE.
pub const PASS_THROUGH: &[u32] = &[
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT (the VMCB's guest PAT under nested paging)
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS base
    0xc000_0101, // GS base
    0xc000_0102, // kernel GS base
];

/// EFER bits a guest may set: SCE, LME, LMA, NXE, LMSLE, FFXSR, TCE.
const EFER_GUEST_BITS: u64 =
    (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 15);
/// EFER.SVME: must be set in the VMCB for VMRUN to accept it.
pub const EFER_SVME: u64 = 1 << 12;

/// The MSRs a vCPU owns that neither the VMCB nor the APIC holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestMsrs {
    /// What RDTSCP returns in ECX and RDPID returns (0 at reset).
    pub tsc_aux: u32,
}

/// What an intercepted RDMSR or WRMSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrOutcome {
    /// The read's value (EDX:EAX), or a write that took effect.
    Done(u64),
    /// Write this to the VMCB's EFER.
    SetEfer(u64),
    /// Install the hypercall page at this guest-physical address.
    InstallHypercallPage(u64),
    /// Raise #GP in the guest.
    Fault,
}

/// Handles RDMSR of `msr`; `vmcb_efer` is the VMCB's EFER.
pub fn read(msr: u32, vmcb_efer: u64, guest: &GuestMsrs) -> MsrOutcome {
    match msr {
        TSC_AUX => MsrOutcome::Done(u64::from(guest.tsc_aux)),
        EFER => MsrOutcome::Done(vmcb_efer & !EFER_SVME),
        // xAPIC at its architectural base, enabled, this is the boot CPU.
        APIC_BASE => MsrOutcome::Done(0xfee0_0000 | (1 << 11) | (1 << 8)),
        // No variable MTRRs, write-back by default: the memory type comes
        // from the nested tables.
        MTRR_CAPABILITIES => MsrOutcome::Done(0),
        MTRR_DEFAULT_TYPE => MsrOutcome::Done((1 << 11) | 6),
        NB_CFG => MsrOutcome::Done(0),
        DE_CFG => MsrOutcome::Done(DE_CFG_LFENCE_SERIALISING),
        _ => MsrOutcome::Fault,
    }
}

/// Handles WRMSR of `value` to `msr`.
pub fn write(msr: u32, value: u64, guest: &mut GuestMsrs) -> MsrOutcome {
    match msr {
        // The upper half is reserved: #GP, as on hardware and Xen.
        TSC_AUX => match u32::try_from(value) {
            Ok(value) => {
                guest.tsc_aux = value;
                MsrOutcome::Done(0)
            }
            Err(_) => MsrOutcome::Fault,
        },
        EFER if value & !EFER_GUEST_BITS == 0 => MsrOutcome::SetEfer(value | EFER_SVME),
        HYPERCALL_PAGE_MSR if value & 0xfff == 0 => MsrOutcome::InstallHypercallPage(value),
        // Writes the hypervisor owns and a guest may harmlessly try.
        APIC_BASE | TSC | MTRR_DEFAULT_TYPE | NB_CFG | DE_CFG => MsrOutcome::Done(0),
        _ => MsrOutcome::Fault,
    }
}

/// The hypercall page: for each hypercall `i`, at `32 * i`, `mov eax, i;
/// vmmcall; ret`; entry 23 (`iret`, PV-only) is `ud2`; the rest `int3`.
pub fn hypercall_page() -> [u8; 4096] {
    let mut page = [0xcc; 4096];
    for (index, stub) in page.chunks_exact_mut(32).enumerate() {
        if index == 23 {
            stub[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(index as u32).to_le_bytes());
        stub[5..8].copy_from_slice(&xenolith_abi::hypercall::VMMCALL_BYTES);
        stub[8] = 0xc3;
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efer_keeps_svme_hidden_and_set() {
        assert_eq!(
            read(EFER, EFER_SVME | 0x500, &GuestMsrs::default()),
            MsrOutcome::Done(0x500)
        );
        assert_eq!(
            write(EFER, 0x100, &mut GuestMsrs::default()),
            MsrOutcome::SetEfer(0x100 | EFER_SVME)
        );
        assert_eq!(
            write(EFER, EFER_SVME, &mut GuestMsrs::default()),
            MsrOutcome::Fault,
            "no nested SVM"
        );
        assert_eq!(
            write(EFER, 1 << 20, &mut GuestMsrs::default()),
            MsrOutcome::Fault,
            "reserved bit"
        );
    }

    #[test]
    fn amd_northbridge_and_decode_config_read_as_xen_reports_them() {
        assert_eq!(read(NB_CFG, 0, &GuestMsrs::default()), MsrOutcome::Done(0));
        assert_eq!(
            write(NB_CFG, 1 << 46, &mut GuestMsrs::default()),
            MsrOutcome::Done(0)
        );
        assert_eq!(read(DE_CFG, 0, &GuestMsrs::default()), MsrOutcome::Done(2));
        assert_eq!(
            write(DE_CFG, 2, &mut GuestMsrs::default()),
            MsrOutcome::Done(0)
        );
    }

    #[test]
    fn tsc_aux_is_each_vcpus_own_and_32_bits_wide() {
        let mut first = GuestMsrs::default();
        let mut second = GuestMsrs::default();
        assert_eq!(read(TSC_AUX, 0, &first), MsrOutcome::Done(0));
        assert_eq!(write(TSC_AUX, 0x1003, &mut first), MsrOutcome::Done(0));
        assert_eq!(write(TSC_AUX, 7, &mut second), MsrOutcome::Done(0));
        assert_eq!(read(TSC_AUX, 0, &first), MsrOutcome::Done(0x1003));
        assert_eq!(read(TSC_AUX, 0, &second), MsrOutcome::Done(7));
        assert_eq!(write(TSC_AUX, 1 << 32, &mut first), MsrOutcome::Fault);
        assert_eq!(first.tsc_aux, 0x1003, "a refused write changes nothing");
    }

    #[test]
    fn unknown_msrs_fault_and_hypercall_page_needs_alignment() {
        assert_eq!(read(0x1234, 0, &GuestMsrs::default()), MsrOutcome::Fault);
        assert_eq!(
            write(HYPERCALL_PAGE_MSR, 0x5000, &mut GuestMsrs::default()),
            MsrOutcome::InstallHypercallPage(0x5000)
        );
        assert_eq!(
            write(HYPERCALL_PAGE_MSR, 0x5001, &mut GuestMsrs::default()),
            MsrOutcome::Fault
        );
    }

    #[test]
    fn hypercall_page_stubs_call_vmmcall_with_their_number() {
        let page = hypercall_page();
        let console_io = &page[18 * 32..18 * 32 + 9];
        assert_eq!(console_io, &[0xb8, 18, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&page[23 * 32..23 * 32 + 2], &[0x0f, 0x0b]);
        assert_eq!(page[9], 0xcc);
    }
}
