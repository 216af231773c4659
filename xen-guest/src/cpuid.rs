//! Finding the hypervisor through its CPUID leaves (`arch-x86/cpuid.h`),
//! as Linux's `hypervisor_cpuid_base("XenVMMXenVMM", 2)` does.

use xenolith_abi::cpuid::{SIGNATURE, XEN_CPUID_BASE, hvm_feature};

use crate::types::{DomainId, VcpuId};
use crate::version::XenVersion;

/// Where the Xen leaves start and the highest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenLeaves {
    pub base: u32,
    pub max_leaf: u32,
}

/// What leaf base+4 says about this vCPU and domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvmFeatures {
    /// EAX: `XEN_HVM_CPUID_*` bits.
    pub flags: u32,
    /// EBX, when `VCPU_ID_PRESENT`.
    pub vcpu: Option<VcpuId>,
    /// ECX, when `DOMID_PRESENT`.
    pub domain: Option<DomainId>,
}

fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [result.eax, result.ebx, result.ecx, result.edx]
}

/// Scans 0x40000000..0x40010000 in steps of 0x100 for "XenVMMXenVMM"
/// with at least two leaves after the base.
pub fn find() -> Option<XenLeaves> {
    (0..0x100u32)
        .map(|step| XEN_CPUID_BASE + step * 0x100)
        .find_map(|base| {
            let [max_leaf, ebx, ecx, edx] = cpuid(base, 0);
            (SIGNATURE == [ebx, ecx, edx] && max_leaf.wrapping_sub(base) >= 2 && max_leaf >= base)
                .then_some(XenLeaves { base, max_leaf })
        })
}

/// Leaf base+1: the version, major in EAX[31:16].
pub fn version(leaves: XenLeaves) -> XenVersion {
    XenVersion::from_packed(cpuid(leaves.base + 1, 0)[0])
}

/// Leaf base+4 for the calling vCPU, if the hypervisor has it.
pub fn hvm_features(leaves: XenLeaves) -> Option<HvmFeatures> {
    if leaves.max_leaf < leaves.base + 4 {
        return None;
    }
    let [flags, ebx, ecx, _] = cpuid(leaves.base + 4, 0);
    Some(HvmFeatures {
        flags,
        vcpu: (flags & hvm_feature::VCPU_ID_PRESENT != 0).then_some(VcpuId(ebx)),
        domain: (flags & hvm_feature::DOMID_PRESENT != 0).then_some(DomainId(ecx as u16)),
    })
}
