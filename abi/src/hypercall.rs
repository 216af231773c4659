//! Hypercall numbers (`xen.h`, `__HYPERVISOR_*`) and the 64-bit calling
//! convention: number in RAX, arguments in RDI, RSI, RDX, R10, R8, result in RAX.

/// A hypercall number as the guest puts it in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HypercallNumber(pub u64);

impl HypercallNumber {
    pub const MEMORY_OP: Self = Self(12);
    pub const SET_TIMER_OP: Self = Self(15);
    pub const XEN_VERSION: Self = Self(17);
    pub const CONSOLE_IO: Self = Self(18);
    pub const GRANT_TABLE_OP: Self = Self(20);
    pub const VM_ASSIST: Self = Self(21);
    pub const VCPU_OP: Self = Self(24);
    pub const SCHED_OP: Self = Self(29);
    pub const EVENT_CHANNEL_OP: Self = Self(32);
    pub const PHYSDEV_OP: Self = Self(33);
    pub const HVM_OP: Self = Self(34);
    pub const SYSCTL: Self = Self(35);
    pub const DOMCTL: Self = Self(36);

    /// Number of entries in a hypercall page (each stub is 32 bytes).
    pub const PAGE_ENTRIES: u64 = 128;
}

/// The five argument registers of a 64-bit hypercall, in ABI order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallArgs {
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub r10: u64,
    pub r8: u64,
}

/// `VMMCALL` (AMD), the instruction Linux uses on an AuthenticAMD vendor.
pub const VMMCALL_BYTES: [u8; 3] = [0x0f, 0x01, 0xd9];
/// `VMCALL` (Intel).
pub const VMCALL_BYTES: [u8; 3] = [0x0f, 0x01, 0xc1];
