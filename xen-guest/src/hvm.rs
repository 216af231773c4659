//! `hvm_op` (hypercall 34): HVM parameters (callback route, xenstore and
//! console rings) and the per-vCPU event upcall vector.

use crate::error::XenError;
use crate::raw;
use crate::types::{DomainId, VcpuId};

pub const HVMOP_SET_PARAM: u64 = 0;
pub const HVMOP_GET_PARAM: u64 = 1;
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;

/// An HVM parameter index (`HVM_PARAM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvmParamIndex(pub u32);

impl HvmParamIndex {
    /// How events reach the guest; guest may set and get.
    pub const CALLBACK_IRQ: Self = Self(0);
    /// Xenstore ring frame; guest may only get.
    pub const STORE_PFN: Self = Self(1);
    /// Xenstore event channel; guest may set and get.
    pub const STORE_EVTCHN: Self = Self(2);
    /// Console ring frame; guest may only get.
    pub const CONSOLE_PFN: Self = Self(17);
    /// Console event channel; guest may set and get.
    pub const CONSOLE_EVTCHN: Self = Self(18);
    /// What a triple fault does; not the guest's to read or write.
    pub const TRIPLE_FAULT_REASON: Self = Self(31);
    /// One past the last parameter (`HVM_NR_PARAMS`).
    pub const COUNT: Self = Self(39);
}

/// `CALLBACK_IRQ` type 2: deliver events as `vector` (bits 63:56 = 2).
pub const fn callback_via_vector(vector: u8) -> u64 {
    (2 << 56) | vector as u64
}

/// `struct xen_hvm_param` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmParam {
    pub domid: u16,
    pub _pad: u16,
    pub index: u32,
    pub value: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpcallVector {
    pub vcpu: u32,
    pub vector: u8,
}

const _: () = assert!(core::mem::size_of::<HvmParam>() == 16);
const _: () = assert!(core::mem::size_of::<UpcallVector>() == 8);

/// `HVMOP_set_param`.
pub fn set_param(domain: DomainId, index: HvmParamIndex, value: u64) -> Result<(), XenError> {
    let mut argument = HvmParam {
        domid: domain.0,
        _pad: 0,
        index: index.0,
        value,
    };
    XenError::check(raw::call(&raw::SET_PARAM, &mut argument)).map(drop)
}

/// `HVMOP_get_param`.
pub fn get_param(domain: DomainId, index: HvmParamIndex) -> Result<u64, XenError> {
    let mut argument = HvmParam {
        domid: domain.0,
        _pad: 0,
        index: index.0,
        value: 0,
    };
    XenError::check(raw::call(&raw::GET_PARAM, &mut argument))?;
    Ok(argument.value)
}

/// `HVMOP_set_evtchn_upcall_vector`: events for `vcpu` arrive as LAPIC
/// interrupt `vector` (at least 0x10).
pub fn set_evtchn_upcall_vector(vcpu: VcpuId, vector: u8) -> Result<(), XenError> {
    let mut argument = UpcallVector {
        vcpu: vcpu.raw(),
        vector,
    };
    XenError::check(raw::call(&raw::SET_UPCALL_VECTOR, &mut argument)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_xen() {
        assert_eq!(offset_of!(HvmParam, domid), 0);
        assert_eq!(offset_of!(HvmParam, index), 4);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(offset_of!(UpcallVector, vcpu), 0);
        assert_eq!(offset_of!(UpcallVector, vector), 4);
    }

    #[test]
    fn callback_vector_encoding() {
        assert_eq!(callback_via_vector(0xf3), 0x0200_0000_0000_00f3);
    }
}
