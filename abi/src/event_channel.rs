//! Event channels (`event_channel.h`, `xen.h`): port, vCPU and VIRQ ids,
//! `EVTCHNOP_*` commands and their argument layouts, and where the 2-level
//! ABI keeps its bits in `shared_info` and `vcpu_info` (x86_64 layout).

use core::fmt;

/// An event-channel port (`evtchn_port_t`). Port 0 is never allocated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Port(pub u32);

impl Port {
    /// The reserved port: never bound, "no port" in Xen's own tables.
    pub const RESERVED: Self = Self(0);

    /// The raw port number.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The index of the 64-bit word of `evtchn_pending`/`evtchn_mask` that
    /// holds this port, which is also its bit in `evtchn_pending_sel`.
    pub const fn word(self) -> u32 {
        self.0 / BITS_PER_WORD
    }

    /// The bit inside that word.
    pub const fn bit(self) -> u32 {
        self.0 % BITS_PER_WORD
    }
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Port({})", self.0)
    }
}

/// A virtual CPU of a domain, numbered from 0 (Xen's `vcpu_id`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VcpuId(pub u32);

impl VcpuId {
    /// The boot vCPU; global VIRQs are bound here.
    pub const BOOT: Self = Self(0);

    /// The raw id.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for VcpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VcpuId({})", self.0)
    }
}

/// A virtual IRQ number (`VIRQ_*`), as a guest passes it: it may be out of
/// range until [`Virq::class`] says otherwise.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Virq(pub u32);

/// How a VIRQ is bound (Xen's `enum virq_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirqClass {
    /// One port per vCPU, fixed to that vCPU (`VIRQ_TIMER`, `VIRQ_DEBUG`…).
    PerVcpu,
    /// Bound on vCPU 0 by any domain; may be moved with `bind_vcpu`.
    Domain,
    /// Bound on vCPU 0 by the one domain that handles it (Dom0 unless
    /// changed); may be moved with `bind_vcpu`.
    Global,
}

impl Virq {
    pub const TIMER: Self = Self(0);
    pub const DEBUG: Self = Self(1);
    pub const CONSOLE: Self = Self(2);
    pub const DOM_EXC: Self = Self(3);
    pub const TBUF: Self = Self(4);
    pub const DEBUGGER: Self = Self(6);
    pub const XENOPROF: Self = Self(7);
    pub const CON_RING: Self = Self(8);
    pub const PCPU_STATE: Self = Self(9);
    pub const MEM_EVENT: Self = Self(10);
    pub const ARGO: Self = Self(11);
    pub const ENOMEM: Self = Self(12);
    pub const XENPMU: Self = Self(13);
    /// First architecture-specific VIRQ (x86: `VIRQ_MCA`); 16..=23 are all
    /// global on x86.
    pub const ARCH_0: Self = Self(16);

    /// The raw number.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// How this VIRQ binds, or `None` if it is not below [`NR_VIRQS`].
    pub const fn class(self) -> Option<VirqClass> {
        match self.0 {
            0 | 1 | 7 | 13 => Some(VirqClass::PerVcpu),
            11 => Some(VirqClass::Domain),
            number if number < NR_VIRQS => Some(VirqClass::Global),
            _ => None,
        }
    }
}

impl fmt::Debug for Virq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Virq({})", self.0)
    }
}

/// Number of VIRQs (`NR_VIRQS`).
pub const NR_VIRQS: u32 = 24;

/// Bits in one word of the 2-level bitmaps (`BITS_PER_EVTCHN_WORD`, x86_64).
pub const BITS_PER_WORD: u32 = 64;
/// Ports the 2-level ABI can address: 64 words of 64 bits.
pub const MAX_PORTS_2_LEVEL: u32 = BITS_PER_WORD * BITS_PER_WORD;

/// `EVTCHNOP_*` commands: the first argument of `event_channel_op` (32).
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_BIND_IPI: u32 = 7;
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
pub const EVTCHNOP_UNMASK: u32 = 9;
pub const EVTCHNOP_RESET: u32 = 10;
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// Xen's continuation of `EVTCHNOP_RESET` (same argument).
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// `EVTCHNSTAT_*`: the `status` field of `struct evtchn_status`.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `struct evtchn_bind_interdomain`: `remote_dom` u16 @0, `remote_port`
/// @4, `local_port` (out) @8.
pub mod bind_interdomain {
    pub const SIZE: usize = 12;
    pub const REMOTE_DOM: usize = 0;
    pub const REMOTE_PORT: usize = 4;
    pub const LOCAL_PORT: usize = 8;
}

/// `struct evtchn_bind_virq`: `virq` @0, `vcpu` @4, `port` (out) @8.
pub mod bind_virq {
    pub const SIZE: usize = 12;
    pub const VIRQ: usize = 0;
    pub const VCPU: usize = 4;
    pub const PORT: usize = 8;
}

/// `struct evtchn_bind_pirq`: `pirq` @0, `flags` @4, `port` (out) @8.
pub mod bind_pirq {
    pub const SIZE: usize = 12;
    pub const PIRQ: usize = 0;
    pub const FLAGS: usize = 4;
    pub const PORT: usize = 8;
}

/// `struct evtchn_close`, `evtchn_send` and `evtchn_unmask`: `port` @0.
pub mod port_only {
    pub const SIZE: usize = 4;
    pub const PORT: usize = 0;
}

/// `struct evtchn_status`: `dom` u16 @0, `port` @4, `status` (out) @8,
/// `vcpu` (out) @12, and the union (out) @16: `unbound.dom` u16 @16,
/// `interdomain.dom` u16 @16 and `.port` @20, `pirq` @16, `virq` @16.
pub mod status {
    pub const SIZE: usize = 24;
    pub const DOM: usize = 0;
    pub const PORT: usize = 4;
    pub const STATUS: usize = 8;
    pub const VCPU: usize = 12;
    pub const UNBOUND_DOM: usize = 16;
    pub const INTERDOMAIN_DOM: usize = 16;
    pub const INTERDOMAIN_PORT: usize = 20;
    pub const PIRQ: usize = 16;
    pub const VIRQ: usize = 16;
}

/// `struct evtchn_alloc_unbound`: `dom` u16 @0, `remote_dom` u16 @2,
/// `port` (out) @4.
pub mod alloc_unbound {
    pub const SIZE: usize = 8;
    pub const DOM: usize = 0;
    pub const REMOTE_DOM: usize = 2;
    pub const PORT: usize = 4;
}

/// `struct evtchn_bind_ipi`: `vcpu` @0, `port` (out) @4.
pub mod bind_ipi {
    pub const SIZE: usize = 8;
    pub const VCPU: usize = 0;
    pub const PORT: usize = 4;
}

/// `struct evtchn_bind_vcpu`: `port` @0, `vcpu` @4.
pub mod bind_vcpu {
    pub const SIZE: usize = 8;
    pub const PORT: usize = 0;
    pub const VCPU: usize = 4;
}

/// `struct evtchn_reset`: `dom` u16 @0.
pub mod reset {
    pub const SIZE: usize = 2;
    pub const DOM: usize = 0;
}

/// Where the 2-level ABI's bits live (`struct shared_info`, `struct
/// vcpu_info`; x86_64 offsets in bytes).
pub mod layout {
    /// `shared_info.vcpu_info[XEN_LEGACY_MAX_VCPUS]` starts the page.
    pub const SHARED_INFO_VCPU_INFO: u64 = 0;
    /// vCPUs with a slot in `shared_info`; others must register a
    /// `vcpu_info` before events can reach them.
    pub const LEGACY_MAX_VCPUS: u32 = 32;
    /// `shared_info.evtchn_pending[64]` (u64 words, bit `port % 64` of word
    /// `port / 64`).
    pub const SHARED_INFO_EVTCHN_PENDING: u64 = 2048;
    /// `shared_info.evtchn_mask[64]`.
    pub const SHARED_INFO_EVTCHN_MASK: u64 = 2560;
    /// Size of `struct vcpu_info`.
    pub const VCPU_INFO_SIZE: u64 = 64;
    /// `vcpu_info.evtchn_upcall_pending` (u8).
    pub const VCPU_INFO_UPCALL_PENDING: u64 = 0;
    /// `vcpu_info.evtchn_upcall_mask` (u8; PV only, ignored for HVM/PVH).
    pub const VCPU_INFO_UPCALL_MASK: u64 = 1;
    /// `vcpu_info.evtchn_pending_sel` (u64, one bit per pending word).
    pub const VCPU_INFO_PENDING_SEL: u64 = 8;
}

/// `SCHEDOP_poll` refuses more ports than this (Xen's "fairly arbitrary
/// limit").
pub const POLL_MAX_PORTS: u32 = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virq_classes_follow_xen() {
        assert_eq!(Virq::TIMER.class(), Some(VirqClass::PerVcpu));
        assert_eq!(Virq::DEBUG.class(), Some(VirqClass::PerVcpu));
        assert_eq!(Virq::XENOPROF.class(), Some(VirqClass::PerVcpu));
        assert_eq!(Virq::XENPMU.class(), Some(VirqClass::PerVcpu));
        assert_eq!(Virq::ARGO.class(), Some(VirqClass::Domain));
        assert_eq!(Virq::CONSOLE.class(), Some(VirqClass::Global));
        assert_eq!(Virq::DOM_EXC.class(), Some(VirqClass::Global));
        assert_eq!(Virq(23).class(), Some(VirqClass::Global));
        assert_eq!(Virq(NR_VIRQS).class(), None);
        assert_eq!(Virq(u32::MAX).class(), None);
    }

    #[test]
    fn bitmaps_fit_the_shared_info_page() {
        let bitmap_bytes = u64::from(MAX_PORTS_2_LEVEL / 8);
        assert_eq!(
            layout::SHARED_INFO_EVTCHN_PENDING + bitmap_bytes,
            layout::SHARED_INFO_EVTCHN_MASK
        );
        assert_eq!(layout::SHARED_INFO_EVTCHN_MASK + bitmap_bytes, 3072);
        assert_eq!(
            u64::from(layout::LEGACY_MAX_VCPUS) * layout::VCPU_INFO_SIZE,
            layout::SHARED_INFO_EVTCHN_PENDING
        );
        assert_eq!(Port(4095).word(), 63);
        assert_eq!(Port(4095).bit(), 63);
        assert_eq!(Port(65).word(), 1);
        assert_eq!(Port(65).bit(), 1);
    }
}
