//! `vm_assist` (hypercall 21): asks the hypervisor to turn an assist on or
//! off. A PVH guest may be refused; Linux ignores the failure.

use crate::error::XenError;
use crate::raw::{self, ValueCall};

pub const VMASST_CMD_ENABLE: u32 = 0;
pub const VMASST_CMD_DISABLE: u32 = 1;
/// PV-only segment assist; refused for HVM/PVH guests.
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// Set `XEN_RUNSTATE_UPDATE` while the runstate area is rewritten.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;

/// `vm_assist(command, kind)`.
pub fn vm_assist(command: u32, kind: u32) -> Result<(), XenError> {
    XenError::check(raw::call_with_values(ValueCall::VmAssist { command, kind })).map(drop)
}
