//! The CPUID a guest sees: the host's answers with virtualization hidden,
//! the hypervisor bit set, and the Xen leaves that let Linux find us.

use xenolith_abi::cpuid::{
    HYPERCALL_PAGE_MSR, SIGNATURE, XEN_CPUID_BASE, XEN_CPUID_LAST, hvm_feature,
};
use xenolith_abi::version::packed_version;

/// CPUID output registers EAX, EBX, ECX, EDX.
pub type Registers = [u32; 4];

/// What the answers depend on besides the host.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuidContext {
    pub vcpu_id: u32,
    pub domain_id: u16,
    /// The guest's CR4, for the OS-enabled feature bits.
    pub guest_cr4: u64,
    /// The guest's TSC frequency in kHz.
    pub tsc_khz: u32,
    /// Whether the vCPU has a virtual x2APIC.
    pub x2apic: bool,
}

const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

/// Answers CPUID `leaf`/`subleaf` for a guest; `host` executes the real one.
pub fn guest_cpuid(
    leaf: u32,
    subleaf: u32,
    context: &CpuidContext,
    host: impl Fn(u32, u32) -> Registers,
) -> Registers {
    match leaf {
        XEN_CPUID_BASE..=0x4000_ffff => xen_leaf(leaf, subleaf, context),
        0x1 => {
            let [eax, ebx, mut ecx, edx] = host(leaf, subleaf);
            ecx |= 1 << 31; // a hypervisor is present
            ecx &= !(1 << 5); // no VMX
            ecx &= !(1 << 3); // no MONITOR/MWAIT: halt with HLT (TCG bug)
            set_bit(&mut ecx, 21, context.x2apic);
            set_bit(&mut ecx, 27, context.guest_cr4 & CR4_OSXSAVE != 0);
            // No machine-check architecture: its MSRs are not virtualized.
            let edx = edx & !((1 << 7) | (1 << 14));
            // Initial APIC id in EBX[31:24], as the MADT will say.
            let ebx = (ebx & 0x00ff_ffff) | ((context.vcpu_id * 2) << 24);
            [eax, ebx, ecx, edx]
        }
        0x7 if subleaf == 0 => {
            let [eax, ebx, mut ecx, edx] = host(leaf, subleaf);
            set_bit(&mut ecx, 4, context.guest_cr4 & CR4_PKE != 0);
            [eax, ebx, ecx, edx]
        }
        0x8000_0001 => {
            let [eax, ebx, mut ecx, edx] = host(leaf, subleaf);
            ecx &= !(1 << 2); // no SVM: nested virtualization is not offered
            [eax, ebx, ecx, edx]
        }
        0x8000_000a => [0; 4], // SVM features
        // Topology: the x2APIC id each vCPU's APIC reports (`2 · vcpu`),
        // not the host CPU's, so that Linux's APs agree with the MADT.
        0xb | 0x1f => {
            let [eax, ebx, ecx, _] = host(leaf, subleaf);
            [eax, ebx, ecx, context.vcpu_id * 2]
        }
        0x8000_001e => {
            let [_, ebx, ecx, edx] = host(leaf, subleaf);
            [context.vcpu_id * 2, ebx, ecx, edx]
        }
        _ => host(leaf, subleaf),
    }
}

fn set_bit(register: &mut u32, bit: u32, value: bool) {
    if value {
        *register |= 1 << bit;
    } else {
        *register &= !(1 << bit);
    }
}

fn xen_leaf(leaf: u32, subleaf: u32, context: &CpuidContext) -> Registers {
    match leaf - XEN_CPUID_BASE {
        0 => [XEN_CPUID_LAST, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]],
        1 => [packed_version() as u32, 0, 0, 0],
        // One hypercall page, installed through this MSR.
        2 => [1, HYPERCALL_PAGE_MSR, 0, 0],
        // TSC: native mode, frequency in sub-leaf 0 ECX and sub-leaf 2 EAX.
        3 => match subleaf {
            0 => [0, 0, context.tsc_khz, 0],
            2 => [context.tsc_khz, 0, 0, 0],
            _ => [0; 4],
        },
        4 => [
            hvm_feature::VCPU_ID_PRESENT | hvm_feature::DOMID_PRESENT,
            context.vcpu_id,
            u32::from(context.domain_id),
            0,
        ],
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epyc(leaf: u32, _subleaf: u32) -> Registers {
        match leaf {
            0x1 => [0x830f10, 0x0080_0800, 0x7ed8_320b, 0x178b_fbff],
            0x8000_0001 => [0x830f10, 0, 0x75c2_37ff, 0x2fd3_fbff],
            0x8000_000a => [1, 16, 0, 1],
            _ => [0x1111, 0x2222, 0x3333, 0x4444],
        }
    }

    fn context() -> CpuidContext {
        CpuidContext {
            vcpu_id: 3,
            domain_id: 7,
            guest_cr4: 0,
            tsc_khz: 2_000_000,
            x2apic: false,
        }
    }

    #[test]
    fn linux_finds_xen_at_the_base_leaf() {
        let [max, ebx, ecx, edx] = guest_cpuid(0x4000_0000, 0, &context(), epyc);
        assert!(max >= 0x4000_0004, "Linux reads up to base+4");
        let mut signature = [0u8; 12];
        signature[..4].copy_from_slice(&ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&ecx.to_le_bytes());
        signature[8..].copy_from_slice(&edx.to_le_bytes());
        assert_eq!(&signature, b"XenVMMXenVMM");
        let [version, ..] = guest_cpuid(0x4000_0001, 0, &context(), epyc);
        assert!(version >> 16 >= 4, "xenbus needs major >= 4");
    }

    #[test]
    fn base_plus_four_names_the_vcpu_and_domain() {
        let [flags, vcpu, domain, _] = guest_cpuid(0x4000_0004, 0, &context(), epyc);
        assert_ne!(flags & hvm_feature::VCPU_ID_PRESENT, 0);
        assert_eq!((vcpu, domain), (3, 7));
        assert_eq!(guest_cpuid(0x4000_0003, 0, &context(), epyc)[2], 2_000_000);
    }

    #[test]
    fn topology_leaves_give_each_vcpu_its_apic_id() {
        assert_eq!(guest_cpuid(0xb, 0, &context(), epyc)[3], 6);
        assert_eq!(guest_cpuid(0xb, 1, &context(), epyc)[3], 6);
        assert_eq!(guest_cpuid(0x1f, 0, &context(), epyc)[3], 6);
        assert_eq!(guest_cpuid(0x8000_001e, 0, &context(), epyc)[0], 6);
        // The rest of the leaf is the host's.
        assert_eq!(guest_cpuid(0xb, 0, &context(), epyc)[1], 0x2222);
    }

    #[test]
    fn virtualization_is_hidden_and_the_hypervisor_bit_set() {
        let [_, ebx, ecx, _] = guest_cpuid(1, 0, &context(), epyc);
        assert_ne!(ecx & (1 << 31), 0);
        assert_eq!(ecx & ((1 << 3) | (1 << 5) | (1 << 21) | (1 << 27)), 0);
        assert_eq!(ebx >> 24, 6);
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, &context(), epyc)[2] & (1 << 2),
            0
        );
        assert_eq!(guest_cpuid(0x8000_000a, 0, &context(), epyc), [0; 4]);
    }

    #[test]
    fn osxsave_follows_the_guest_cr4() {
        let mut context = context();
        context.guest_cr4 = CR4_OSXSAVE;
        assert_ne!(guest_cpuid(1, 0, &context, epyc)[2] & (1 << 27), 0);
    }

    #[test]
    fn x2apic_is_offered_only_with_a_virtual_apic() {
        let mut context = context();
        context.x2apic = true;
        assert_ne!(guest_cpuid(1, 0, &context, epyc)[2] & (1 << 21), 0);
        context.x2apic = false;
        assert_eq!(guest_cpuid(1, 0, &context, epyc)[2] & (1 << 21), 0);
    }
}
