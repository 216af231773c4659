//! `sched_op` (hypercall 29): yield, block, poll event channels with a
//! timeout, and shut the domain down.

use crate::error::XenError;
use crate::raw::{self, GuestHandle, ValueCall};
use crate::types::{Port, SystemTime};

pub use xenolith_abi::sched::{
    SCHEDOP_BLOCK, SCHEDOP_POLL, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, ShutdownReason,
};

/// Most ports [`poll`] passes in one call (Xen allows 128).
pub const POLL_PORTS_MAX: usize = 128;

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    pub reason: u32,
}

/// `struct sched_poll`: ports to wait on and an absolute timeout (system
/// time in ns; 0 means none).
#[repr(C)]
#[derive(Debug)]
pub struct SchedPoll<'a> {
    ports: GuestHandle<'a, u32>,
    nr_ports: u32,
    _pad: u32,
    timeout: u64,
}

impl<'a> SchedPoll<'a> {
    pub fn new(ports: &'a mut [u32], timeout: SystemTime) -> Self {
        Self {
            nr_ports: ports.len() as u32,
            ports: GuestHandle::from_mut_slice(ports),
            _pad: 0,
            timeout: timeout.nanoseconds(),
        }
    }
}

const _: () = assert!(core::mem::size_of::<SchedShutdown>() == 4);
const _: () = assert!(core::mem::size_of::<SchedPoll<'static>>() == 24);

/// `SCHEDOP_yield`: lets other vCPUs run.
pub fn yield_now() -> Result<(), XenError> {
    XenError::check(raw::call_with_values(ValueCall::Yield)).map(drop)
}

/// `SCHEDOP_block`: sleeps until an event is pending for this vCPU. Only
/// safe to call with a wake-up source armed (a timer, a peer).
pub fn block() -> Result<(), XenError> {
    XenError::check(raw::call_with_values(ValueCall::Block)).map(drop)
}

/// `SCHEDOP_poll`: returns once one of `ports` is pending (even masked) or
/// at `timeout`. A zero timeout waits forever; pass a real deadline.
/// More than [`POLL_PORTS_MAX`] ports is refused with `E2BIG` locally.
pub fn poll(ports: &[Port], timeout: SystemTime) -> Result<(), XenError> {
    let mut raw_ports = [0u32; POLL_PORTS_MAX];
    let Some(slots) = raw_ports.get_mut(..ports.len()) else {
        return Err(XenError::E2BIG);
    };
    for (slot, port) in slots.iter_mut().zip(ports) {
        *slot = port.raw();
    }
    let mut argument = SchedPoll::new(slots, timeout);
    XenError::check(raw::call(&raw::POLL, &mut argument)).map(drop)
}

/// `SCHEDOP_shutdown`: returns only if the hypervisor refuses.
pub fn shutdown(reason: ShutdownReason) -> Result<(), XenError> {
    shutdown_with_code(reason.as_raw())
}

/// `SCHEDOP_shutdown` with a raw reason (unknown ones must be refused).
pub fn shutdown_with_code(reason: u32) -> Result<(), XenError> {
    let mut argument = SchedShutdown { reason };
    XenError::check(raw::call(&raw::SHUTDOWN, &mut argument)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn poll_layout_matches_xen() {
        assert_eq!(offset_of!(SchedPoll<'static>, ports), 0);
        assert_eq!(offset_of!(SchedPoll<'static>, nr_ports), 8);
        assert_eq!(offset_of!(SchedPoll<'static>, timeout), 16);
        let mut ports = [3u32, 4];
        let poll = SchedPoll::new(&mut ports, SystemTime(99));
        assert_eq!(poll.nr_ports, 2);
        assert_eq!(poll.timeout, 99);
        assert_ne!(poll.ports.address(), 0);
    }

    #[test]
    fn too_many_ports_are_refused_before_any_hypercall() {
        let ports = [Port(1); POLL_PORTS_MAX + 1];
        assert_eq!(poll(&ports, SystemTime(1)), Err(XenError::E2BIG));
    }
}
