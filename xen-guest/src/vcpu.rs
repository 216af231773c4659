//! `vcpu_op` (hypercall 24): registering where the hypervisor writes this
//! vCPU's vcpu_info and runstate, and the per-vCPU timers.

use crate::error::XenError;
use crate::raw::{self, FrameSlot, RunstateArea, TimeArea, ValueCall};
use crate::shared::{VCPU_INFO_SIZE, VcpuInfo};
use crate::types::{PAGE_SIZE, SystemTime, VcpuId};

pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;

/// `VCPU_SSHOTTMR_future`: ask for `-ETIME` if the deadline has passed
/// (a hypervisor may ignore it and fire at once, as Xen 4.18+ does).
pub const SINGLESHOT_FUTURE: u32 = 1;

/// Runstate values (`RUNSTATE_*`).
pub const RUNSTATE_RUNNING: i32 = 0;
pub const RUNSTATE_RUNNABLE: i32 = 1;
pub const RUNSTATE_BLOCKED: i32 = 2;
pub const RUNSTATE_OFFLINE: i32 = 3;

/// `struct vcpu_register_vcpu_info` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterVcpuInfo {
    mfn: u64,
    offset: u32,
    reserved: u32,
}

/// `struct vcpu_set_singleshot_timer` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleshotTimer {
    pub timeout_abs_ns: u64,
    pub flags: u32,
}

/// `struct vcpu_set_periodic_timer` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodicTimer {
    pub period_ns: u64,
}

/// `struct vcpu_register_runstate_memory_area` and
/// `struct vcpu_register_time_memory_area` (8 bytes each): the guest-virtual
/// address of a `vcpu_runstate_info` or a `vcpu_time_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterArea {
    address: u64,
}

/// `struct vcpu_runstate_info` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunstateInfo {
    pub state: i32,
    pub _pad: u32,
    /// System time of the last change; bit 63 is `XEN_RUNSTATE_UPDATE`.
    pub state_entry_time: u64,
    /// Nanoseconds spent in each state.
    pub time: [u64; 4],
}

impl RunstateInfo {
    /// What a [`RunstateArea`] holds before the hypervisor writes it.
    pub const UNWRITTEN: Self = Self {
        state: -1,
        _pad: 0,
        state_entry_time: u64::MAX,
        time: [u64::MAX; 4],
    };

    /// Whether the hypervisor has written this copy.
    pub fn is_written(&self) -> bool {
        *self != Self::UNWRITTEN
    }
}

const _: () = assert!(core::mem::size_of::<RegisterVcpuInfo>() == 16);
const _: () = assert!(core::mem::size_of::<SingleshotTimer>() == 16);
const _: () = assert!(core::mem::size_of::<PeriodicTimer>() == 8);
const _: () = assert!(core::mem::size_of::<RegisterArea>() == 8);
const _: () = assert!(core::mem::size_of::<RunstateInfo>() == 48);

/// `VCPUOP_register_vcpu_info`: from now on the hypervisor keeps `vcpu`'s
/// vcpu_info at `offset` in `slot` (and no longer in shared_info). The
/// 64 bytes must fit in the page (`EINVAL` locally otherwise).
pub fn register_vcpu_info(
    vcpu: VcpuId,
    slot: FrameSlot,
    offset: u32,
) -> Result<VcpuInfo, XenError> {
    let fits = (offset as usize)
        .checked_add(VCPU_INFO_SIZE)
        .is_some_and(|end| end <= PAGE_SIZE);
    if !fits {
        return Err(XenError::EINVAL);
    }
    let mut argument = RegisterVcpuInfo {
        mfn: slot.frame().0,
        offset,
        reserved: 0,
    };
    XenError::check(raw::call_for_vcpu(
        &raw::REGISTER_VCPU_INFO,
        vcpu.raw(),
        &mut argument,
    ))?;
    Ok(VcpuInfo::new(slot, offset as usize))
}

/// `VCPUOP_register_runstate_memory_area`: the hypervisor writes `vcpu`'s
/// runstate into `area` from now on.
pub fn register_runstate_memory_area(
    vcpu: VcpuId,
    area: &'static RunstateArea,
) -> Result<(), XenError> {
    let mut argument = RegisterArea {
        address: area.address(),
    };
    XenError::check(raw::call_for_vcpu(
        &raw::REGISTER_RUNSTATE,
        vcpu.raw(),
        &mut argument,
    ))
    .map(drop)
}

/// `VCPUOP_register_vcpu_time_memory_area`: have the hypervisor keep a
/// copy of `vcpu`'s time record in `area` too (Linux maps it into its
/// vDSO).
pub fn register_time_memory_area(vcpu: VcpuId, area: &'static TimeArea) -> Result<(), XenError> {
    let mut argument = RegisterArea {
        address: area.address(),
    };
    XenError::check(raw::call_for_vcpu(
        &raw::REGISTER_TIME_AREA,
        vcpu.raw(),
        &mut argument,
    ))
    .map(drop)
}

/// `VCPUOP_set_singleshot_timer`: raise `VIRQ_TIMER` on `vcpu` (which must
/// be the caller) at `deadline`; `flags` may hold [`SINGLESHOT_FUTURE`].
pub fn set_singleshot_timer(
    vcpu: VcpuId,
    deadline: SystemTime,
    flags: u32,
) -> Result<(), XenError> {
    let mut argument = SingleshotTimer {
        timeout_abs_ns: deadline.nanoseconds(),
        flags,
    };
    XenError::check(raw::call_for_vcpu(
        &raw::SET_SINGLESHOT_TIMER,
        vcpu.raw(),
        &mut argument,
    ))
    .map(drop)
}

/// `VCPUOP_stop_singleshot_timer`.
pub fn stop_singleshot_timer(vcpu: VcpuId) -> Result<(), XenError> {
    XenError::check(raw::call_with_values(ValueCall::StopSingleshotTimer {
        vcpu: vcpu.raw(),
    }))
    .map(drop)
}

/// `VCPUOP_set_periodic_timer`: `VIRQ_TIMER` every `period_ns` (Xen
/// refuses periods under 1 ms).
pub fn set_periodic_timer(vcpu: VcpuId, period_ns: u64) -> Result<(), XenError> {
    let mut argument = PeriodicTimer { period_ns };
    XenError::check(raw::call_for_vcpu(
        &raw::SET_PERIODIC_TIMER,
        vcpu.raw(),
        &mut argument,
    ))
    .map(drop)
}

/// `VCPUOP_stop_periodic_timer`.
pub fn stop_periodic_timer(vcpu: VcpuId) -> Result<(), XenError> {
    XenError::check(raw::call_with_values(ValueCall::StopPeriodicTimer {
        vcpu: vcpu.raw(),
    }))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_xen() {
        assert_eq!(offset_of!(RegisterVcpuInfo, mfn), 0);
        assert_eq!(offset_of!(RegisterVcpuInfo, offset), 8);
        assert_eq!(offset_of!(RegisterVcpuInfo, reserved), 12);
        assert_eq!(offset_of!(SingleshotTimer, flags), 8);
        assert_eq!(offset_of!(RunstateInfo, state), 0);
        assert_eq!(offset_of!(RunstateInfo, state_entry_time), 8);
        assert_eq!(offset_of!(RunstateInfo, time), 16);
    }

    #[test]
    fn unwritten_runstate_is_recognised() {
        static AREA: RunstateArea = RunstateArea::new();
        assert!(!AREA.read().is_written());
        assert!(RunstateInfo::default().is_written());
        assert_eq!(AREA.address() % 64, 0);
    }
}
