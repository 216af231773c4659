//! `event_channel_op` (hypercall 32): the 2-level event-channel commands
//! (bind, send, close, unmask, status, ...) and the FIFO `init_control`
//! probe. Commands and status values come from `xenolith_abi`; the
//! argument structures are the guest's `repr(C)` copies of them.

use crate::error::XenError;
use crate::raw::{self, FrameSlot};
use crate::types::{DomainId, Port, VcpuId, Virq};

pub use xenolith_abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_PIRQ,
    EVTCHNOP_BIND_VCPU, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_INIT_CONTROL, EVTCHNOP_RESET,
    EVTCHNOP_SEND, EVTCHNOP_STATUS, EVTCHNOP_UNMASK, EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN,
    EVTCHNSTAT_IPI, EVTCHNSTAT_PIRQ, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ, MAX_PORTS_2_LEVEL,
};

/// `struct evtchn_bind_interdomain` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindInterdomain {
    pub remote_dom: u16,
    pub _pad: u16,
    pub remote_port: u32,
    pub local_port: u32,
}

/// `struct evtchn_bind_virq` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindVirq {
    pub virq: u32,
    pub vcpu: u32,
    pub port: u32,
}

/// `struct evtchn_bind_pirq` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindPirq {
    pub pirq: u32,
    pub flags: u32,
    pub port: u32,
}

/// `struct evtchn_close`, `evtchn_send`, `evtchn_unmask` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortArgument {
    pub port: u32,
}

/// `struct evtchn_status` (24 bytes); the union at 16 is two words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusArgument {
    pub dom: u16,
    pub _pad: u16,
    pub port: u32,
    pub status: u32,
    pub vcpu: u32,
    /// `unbound.dom`, `interdomain.dom` (low 16 bits), `pirq` or `virq`.
    pub union_first: u32,
    /// `interdomain.port`.
    pub union_second: u32,
}

/// `struct evtchn_alloc_unbound` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    pub port: u32,
}

/// `struct evtchn_bind_ipi` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindIpi {
    pub vcpu: u32,
    pub port: u32,
}

/// `struct evtchn_bind_vcpu` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindVcpu {
    pub port: u32,
    pub vcpu: u32,
}

/// `struct evtchn_reset` (2 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetArgument {
    pub dom: u16,
}

/// `struct evtchn_init_control` (24 bytes): FIFO ABI set-up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitControl {
    control_gfn: u64,
    offset: u32,
    vcpu: u32,
    link_bits: u8,
    _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<BindInterdomain>() == 12);
const _: () = assert!(core::mem::size_of::<BindVirq>() == 12);
const _: () = assert!(core::mem::size_of::<BindPirq>() == 12);
const _: () = assert!(core::mem::size_of::<PortArgument>() == 4);
const _: () = assert!(core::mem::size_of::<StatusArgument>() == 24);
const _: () = assert!(core::mem::size_of::<AllocUnbound>() == 8);
const _: () = assert!(core::mem::size_of::<BindIpi>() == 8);
const _: () = assert!(core::mem::size_of::<BindVcpu>() == 8);
const _: () = assert!(core::mem::size_of::<ResetArgument>() == 2);
const _: () = assert!(core::mem::size_of::<InitControl>() == 24);

/// What a port is bound to (`EVTCHNSTAT_*` and its union).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    Closed,
    /// Waiting for `remote` to bind it.
    Unbound {
        remote: DomainId,
    },
    Interdomain {
        remote: DomainId,
        port: Port,
    },
    Pirq(u32),
    Virq(Virq),
    Ipi,
    /// A status value this crate does not know.
    Unknown(u32),
}

/// `EVTCHNOP_status` decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    pub state: ChannelState,
    /// The vCPU notified when the port is raised.
    pub vcpu: VcpuId,
}

impl ChannelStatus {
    /// Decodes the structure the hypervisor filled in.
    pub fn decode(raw: &StatusArgument) -> Self {
        let state = match raw.status {
            EVTCHNSTAT_CLOSED => ChannelState::Closed,
            EVTCHNSTAT_UNBOUND => ChannelState::Unbound {
                remote: DomainId(raw.union_first as u16),
            },
            EVTCHNSTAT_INTERDOMAIN => ChannelState::Interdomain {
                remote: DomainId(raw.union_first as u16),
                port: Port(raw.union_second),
            },
            EVTCHNSTAT_PIRQ => ChannelState::Pirq(raw.union_first),
            EVTCHNSTAT_VIRQ => ChannelState::Virq(Virq(raw.union_first)),
            EVTCHNSTAT_IPI => ChannelState::Ipi,
            other => ChannelState::Unknown(other),
        };
        Self {
            state,
            vcpu: VcpuId(raw.vcpu),
        }
    }
}

/// `EVTCHNOP_alloc_unbound`: a port of `dom` (DOMID_SELF unless
/// privileged) that `remote` may bind.
pub fn alloc_unbound(dom: DomainId, remote: DomainId) -> Result<Port, XenError> {
    let mut argument = AllocUnbound {
        dom: dom.0,
        remote_dom: remote.0,
        port: 0,
    };
    XenError::check(raw::call(&raw::ALLOC_UNBOUND, &mut argument))?;
    Ok(Port(argument.port))
}

/// `EVTCHNOP_bind_interdomain`: connects a new local port to
/// `remote_port` of `remote` (which must be unbound for us).
pub fn bind_interdomain(remote: DomainId, remote_port: Port) -> Result<Port, XenError> {
    let mut argument = BindInterdomain {
        remote_dom: remote.0,
        _pad: 0,
        remote_port: remote_port.raw(),
        local_port: 0,
    };
    XenError::check(raw::call(&raw::BIND_INTERDOMAIN, &mut argument))?;
    Ok(Port(argument.local_port))
}

/// `EVTCHNOP_bind_virq`.
pub fn bind_virq(virq: Virq, vcpu: VcpuId) -> Result<Port, XenError> {
    let mut argument = BindVirq {
        virq: virq.raw(),
        vcpu: vcpu.raw(),
        port: 0,
    };
    XenError::check(raw::call(&raw::BIND_VIRQ, &mut argument))?;
    Ok(Port(argument.port))
}

/// `EVTCHNOP_bind_pirq` (not for PVH guests; here for completeness).
pub fn bind_pirq(pirq: u32, flags: u32) -> Result<Port, XenError> {
    let mut argument = BindPirq {
        pirq,
        flags,
        port: 0,
    };
    XenError::check(raw::call(&raw::BIND_PIRQ, &mut argument))?;
    Ok(Port(argument.port))
}

/// `EVTCHNOP_bind_ipi`: a port that raises itself on `vcpu`.
pub fn bind_ipi(vcpu: VcpuId) -> Result<Port, XenError> {
    let mut argument = BindIpi {
        vcpu: vcpu.raw(),
        port: 0,
    };
    XenError::check(raw::call(&raw::BIND_IPI, &mut argument))?;
    Ok(Port(argument.port))
}

fn port_command(command: &raw::Command<PortArgument>, port: Port) -> Result<(), XenError> {
    let mut argument = PortArgument { port: port.raw() };
    XenError::check(raw::call(command, &mut argument)).map(drop)
}

/// `EVTCHNOP_close`.
pub fn close(port: Port) -> Result<(), XenError> {
    port_command(&raw::CLOSE, port)
}

/// `EVTCHNOP_send`.
pub fn send(port: Port) -> Result<(), XenError> {
    port_command(&raw::SEND, port)
}

/// `EVTCHNOP_unmask`: clears the mask bit and re-raises a pending event.
pub fn unmask(port: Port) -> Result<(), XenError> {
    port_command(&raw::UNMASK, port)
}

/// `EVTCHNOP_status` of `port` in `dom`.
pub fn status(dom: DomainId, port: Port) -> Result<ChannelStatus, XenError> {
    let mut argument = StatusArgument {
        dom: dom.0,
        port: port.raw(),
        ..StatusArgument::default()
    };
    XenError::check(raw::call(&raw::STATUS, &mut argument))?;
    Ok(ChannelStatus::decode(&argument))
}

/// `EVTCHNOP_bind_vcpu`: notify `vcpu` for `port` from now on.
pub fn bind_vcpu(port: Port, vcpu: VcpuId) -> Result<(), XenError> {
    let mut argument = BindVcpu {
        port: port.raw(),
        vcpu: vcpu.raw(),
    };
    XenError::check(raw::call(&raw::BIND_VCPU, &mut argument)).map(drop)
}

/// `EVTCHNOP_reset`: closes every port of `dom`.
pub fn reset(dom: DomainId) -> Result<(), XenError> {
    let mut argument = ResetArgument { dom: dom.0 };
    XenError::check(raw::call(&raw::RESET, &mut argument)).map(drop)
}

/// `EVTCHNOP_init_control`: switch to the FIFO ABI with its control block
/// at `offset` in `slot`; returns the link bits. Xenolith, like a guest
/// that wants 2-level, expects `ENOSYS`.
pub fn init_control(slot: &FrameSlot, offset: u32, vcpu: VcpuId) -> Result<u8, XenError> {
    let mut argument = InitControl {
        control_gfn: slot.frame().0,
        offset,
        vcpu: vcpu.raw(),
        link_bits: 0,
        _pad: [0; 7],
    };
    XenError::check(raw::call(&raw::INIT_CONTROL, &mut argument))?;
    Ok(argument.link_bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_xen() {
        use xenolith_abi::event_channel::{alloc_unbound, bind_interdomain, status};
        assert_eq!(
            offset_of!(BindInterdomain, remote_dom),
            bind_interdomain::REMOTE_DOM
        );
        assert_eq!(
            offset_of!(BindInterdomain, remote_port),
            bind_interdomain::REMOTE_PORT
        );
        assert_eq!(
            offset_of!(BindInterdomain, local_port),
            bind_interdomain::LOCAL_PORT
        );
        assert_eq!(offset_of!(BindVirq, vcpu), 4);
        assert_eq!(offset_of!(BindVirq, port), 8);
        assert_eq!(offset_of!(StatusArgument, port), status::PORT);
        assert_eq!(offset_of!(StatusArgument, status), status::STATUS);
        assert_eq!(offset_of!(StatusArgument, vcpu), status::VCPU);
        assert_eq!(offset_of!(StatusArgument, union_first), status::UNBOUND_DOM);
        assert_eq!(
            offset_of!(StatusArgument, union_second),
            status::INTERDOMAIN_PORT
        );
        assert_eq!(
            offset_of!(AllocUnbound, remote_dom),
            alloc_unbound::REMOTE_DOM
        );
        assert_eq!(offset_of!(AllocUnbound, port), alloc_unbound::PORT);
        assert_eq!(offset_of!(BindIpi, port), 4);
        assert_eq!(offset_of!(BindVcpu, vcpu), 4);
        assert_eq!(offset_of!(InitControl, offset), 8);
        assert_eq!(offset_of!(InitControl, vcpu), 12);
        assert_eq!(offset_of!(InitControl, link_bits), 16);
    }

    #[test]
    fn status_decodes_every_kind() {
        let raw = |status, first, second| StatusArgument {
            status,
            vcpu: 2,
            union_first: first,
            union_second: second,
            ..StatusArgument::default()
        };
        assert_eq!(
            ChannelStatus::decode(&raw(EVTCHNSTAT_UNBOUND, 7, 0)),
            ChannelStatus {
                state: ChannelState::Unbound {
                    remote: DomainId(7)
                },
                vcpu: VcpuId(2)
            }
        );
        assert_eq!(
            ChannelStatus::decode(&raw(EVTCHNSTAT_INTERDOMAIN, 0xffff_0003, 9)).state,
            ChannelState::Interdomain {
                remote: DomainId(3),
                port: Port(9)
            }
        );
        assert_eq!(
            ChannelStatus::decode(&raw(EVTCHNSTAT_VIRQ, 0, 0)).state,
            ChannelState::Virq(Virq::TIMER)
        );
        assert_eq!(
            ChannelStatus::decode(&raw(EVTCHNSTAT_IPI, 0, 0)).state,
            ChannelState::Ipi
        );
        assert_eq!(
            ChannelStatus::decode(&raw(EVTCHNSTAT_CLOSED, 0, 0)).state,
            ChannelState::Closed
        );
        assert_eq!(
            ChannelStatus::decode(&raw(EVTCHNSTAT_PIRQ, 5, 0)).state,
            ChannelState::Pirq(5)
        );
        assert_eq!(
            ChannelStatus::decode(&raw(42, 0, 0)).state,
            ChannelState::Unknown(42)
        );
    }
}
