//! `hvm_op`: the callback route (set, read back, restore), parameters a
//! DomU may only read or not touch at all, and the per-vCPU upcall vector.

use xen_guest::hvm::{self, HvmParamIndex, callback_via_vector};
use xen_guest::{DomainId, VcpuId, XenError};

use super::Context;
use crate::report::{Outcome, ensure, expect_error, ok};

/// Linux's callback vector.
const CALLBACK_VECTOR: u8 = 0xf3;

pub fn callback_irq(_context: &mut Context) -> Outcome {
    let before = ok(
        "get_param(CALLBACK_IRQ)",
        hvm::get_param(DomainId::SELF, HvmParamIndex::CALLBACK_IRQ),
    )?;
    let via = callback_via_vector(CALLBACK_VECTOR);
    ok(
        "set_param(CALLBACK_IRQ, vector 0xf3)",
        hvm::set_param(DomainId::SELF, HvmParamIndex::CALLBACK_IRQ, via),
    )?;
    let read = ok(
        "get_param(CALLBACK_IRQ) after set",
        hvm::get_param(DomainId::SELF, HvmParamIndex::CALLBACK_IRQ),
    )?;
    // Interrupts stay off in this guest; put the route back anyway.
    let restored = ok(
        "set_param(CALLBACK_IRQ) back",
        hvm::set_param(DomainId::SELF, HvmParamIndex::CALLBACK_IRQ, before),
    );
    ensure!(read == via, "read back {read:#x}, set {via:#x}");
    restored
}

pub fn store_pfn(_context: &mut Context) -> Outcome {
    let pfn = ok(
        "get_param(STORE_PFN)",
        hvm::get_param(DomainId::SELF, HvmParamIndex::STORE_PFN),
    )?;
    expect_error(
        "set_param(STORE_PFN)",
        hvm::set_param(DomainId::SELF, HvmParamIndex::STORE_PFN, pfn ^ 1),
        &[XenError::EPERM],
    )?;
    expect_error(
        "set_param(CONSOLE_PFN)",
        hvm::set_param(DomainId::SELF, HvmParamIndex::CONSOLE_PFN, 1),
        &[XenError::EPERM],
    )
}

pub fn param_range(_context: &mut Context) -> Outcome {
    for index in [
        HvmParamIndex::COUNT,
        HvmParamIndex(1000),
        HvmParamIndex(u32::MAX),
    ] {
        expect_error(
            "get_param(out of range)",
            hvm::get_param(DomainId::SELF, index),
            &[XenError::EINVAL],
        )?;
    }
    expect_error(
        "get_param(TRIPLE_FAULT_REASON)",
        hvm::get_param(DomainId::SELF, HvmParamIndex::TRIPLE_FAULT_REASON),
        &[XenError::EPERM],
    )
}

pub fn upcall_vector(_context: &mut Context) -> Outcome {
    expect_error(
        "set_evtchn_upcall_vector(vector 0x0f)",
        hvm::set_evtchn_upcall_vector(VcpuId::BOOT, 0x0f),
        &[XenError::EINVAL],
    )?;
    expect_error(
        "set_evtchn_upcall_vector(vcpu 4096)",
        hvm::set_evtchn_upcall_vector(VcpuId(4096), CALLBACK_VECTOR),
        &[XenError::ENOENT],
    )?;
    ok(
        "set_evtchn_upcall_vector(vcpu 0, 0xf3)",
        hvm::set_evtchn_upcall_vector(VcpuId::BOOT, CALLBACK_VECTOR),
    )
}
