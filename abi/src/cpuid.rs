//! The Xen CPUID leaves (`arch-x86/cpuid.h`) a guest uses to find the
//! hypervisor, its version and its features.

/// First Xen leaf (moves to 0x40000100 when Viridian leaves sit here).
pub const XEN_CPUID_BASE: u32 = 0x4000_0000;
/// Highest Xen leaf Xenolith answers (base + 5, as Xen does).
pub const XEN_CPUID_LAST: u32 = XEN_CPUID_BASE + 5;
/// "XenVMMXenVMM" as EBX, ECX, EDX.
pub const SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// MSR index a guest writes to have the hypercall page installed.
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;

/// Leaf base+4 EAX bits (HVM features).
pub mod hvm_feature {
    pub const X2APIC_VIRT: u32 = 1 << 1;
    pub const VCPU_ID_PRESENT: u32 = 1 << 3;
    pub const DOMID_PRESENT: u32 = 1 << 4;
    pub const UPCALL_VECTOR: u32 = 1 << 6;
}
