//! The `event_channel_op` hypercall (32): reads the argument struct from
//! the guest once, decodes it into a [`Request`], runs it against the
//! tables, and writes the struct back once with its output fields filled,
//! as Xen's `do_event_channel_op` does.

use arrayvec::ArrayVec;
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::event_channel::{
    self as abi, POLL_MAX_PORTS, Port, VcpuId, Virq, alloc_unbound, bind_interdomain, bind_ipi,
    bind_vcpu, bind_virq, port_only, reset, status,
};

use super::delivery::{Delivery, EventMemory};
use super::table::{ChannelStatus, EventChannels, Notify, PeerClosed, Status};
use crate::hypercall::GuestAccess;
use crate::memory::GuestVirtAddr;

/// The other domains' event-channel tables, as the hypervisor holds them.
///
/// Never asked for the caller's own domain: requests naming it (or
/// `DOMID_SELF`) use the caller's table directly. `bind_interdomain` runs
/// with the caller's table and the remote one borrowed at once, so the
/// hypervisor must lock them in a fixed order (or under one lock for all
/// event channels) to avoid deadlock.
pub trait Domains {
    /// Runs `f` on `domain`'s table; `None` if there is no such domain.
    fn with_channels<R>(
        &mut self,
        domain: DomainId,
        f: impl FnOnce(&mut EventChannels) -> R,
    ) -> Option<R>;
}

/// [`Domains`] for a machine where the caller is the only domain.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOtherDomains;

impl Domains for NoOtherDomains {
    fn with_channels<R>(
        &mut self,
        _domain: DomainId,
        _f: impl FnOnce(&mut EventChannels) -> R,
    ) -> Option<R> {
        None
    }
}

/// A decoded `EVTCHNOP_*` request. Domain ids are as the guest wrote them
/// (`DomainId::SELF` not yet resolved); ports, vCPUs and VIRQs are not yet
/// checked against the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    BindInterdomain {
        remote_domain: DomainId,
        remote_port: Port,
    },
    BindVirq {
        virq: Virq,
        vcpu: VcpuId,
    },
    Close {
        port: Port,
    },
    Send {
        port: Port,
    },
    Status {
        domain: DomainId,
        port: Port,
    },
    AllocUnbound {
        domain: DomainId,
        remote_domain: DomainId,
    },
    BindIpi {
        vcpu: VcpuId,
    },
    BindVcpu {
        port: Port,
        vcpu: VcpuId,
    },
    Unmask {
        port: Port,
    },
    /// `EVTCHNOP_reset` and `EVTCHNOP_reset_cont` (this implementation never
    /// needs a continuation).
    Reset {
        domain: DomainId,
    },
}

/// The largest argument struct (`evtchn_status`).
pub const MAX_ARGUMENT_SIZE: usize = status::SIZE;

/// The size of `command`'s argument struct. `ENOSYS` for commands this
/// implementation does not offer: `bind_pirq` (no physical IRQs yet), the
/// FIFO ABI (`init_control`, `expand_array`, `set_priority`; Linux then
/// stays with 2-level) and unknown numbers.
pub fn argument_size(command: u32) -> Result<usize, Errno> {
    Ok(match command {
        abi::EVTCHNOP_BIND_INTERDOMAIN => bind_interdomain::SIZE,
        abi::EVTCHNOP_BIND_VIRQ => bind_virq::SIZE,
        abi::EVTCHNOP_CLOSE | abi::EVTCHNOP_SEND | abi::EVTCHNOP_UNMASK => port_only::SIZE,
        abi::EVTCHNOP_STATUS => status::SIZE,
        abi::EVTCHNOP_ALLOC_UNBOUND => alloc_unbound::SIZE,
        abi::EVTCHNOP_BIND_IPI => bind_ipi::SIZE,
        abi::EVTCHNOP_BIND_VCPU => bind_vcpu::SIZE,
        abi::EVTCHNOP_RESET | abi::EVTCHNOP_RESET_CONT => reset::SIZE,
        _ => return Err(Errno::ENOSYS),
    })
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    match bytes.get(offset..offset + 2) {
        Some(&[low, high]) => u16::from_le_bytes([low, high]),
        _ => 0,
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    match bytes.get(offset..offset + 4) {
        Some(&[b0, b1, b2, b3]) => u32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    }
}

fn write_u16(bytes: &mut [u8], offset: usize, value: u16) {
    if let Some(field) = bytes.get_mut(offset..offset + 2) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

fn write_u32(bytes: &mut [u8], offset: usize, value: u32) {
    if let Some(field) = bytes.get_mut(offset..offset + 4) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

impl Request {
    /// Decodes `command`'s argument struct from `bytes`. `ENOSYS` as
    /// [`argument_size`]; `EFAULT` if `bytes` is shorter than the struct.
    pub fn decode(command: u32, bytes: &[u8]) -> Result<Self, Errno> {
        if bytes.len() < argument_size(command)? {
            return Err(Errno::EFAULT);
        }
        let domain = |offset| DomainId(read_u16(bytes, offset));
        let port = |offset| Port(read_u32(bytes, offset));
        let vcpu = |offset| VcpuId(read_u32(bytes, offset));
        Ok(match command {
            abi::EVTCHNOP_BIND_INTERDOMAIN => Self::BindInterdomain {
                remote_domain: domain(bind_interdomain::REMOTE_DOM),
                remote_port: port(bind_interdomain::REMOTE_PORT),
            },
            abi::EVTCHNOP_BIND_VIRQ => Self::BindVirq {
                virq: Virq(read_u32(bytes, bind_virq::VIRQ)),
                vcpu: vcpu(bind_virq::VCPU),
            },
            abi::EVTCHNOP_CLOSE => Self::Close {
                port: port(port_only::PORT),
            },
            abi::EVTCHNOP_SEND => Self::Send {
                port: port(port_only::PORT),
            },
            abi::EVTCHNOP_STATUS => Self::Status {
                domain: domain(status::DOM),
                port: port(status::PORT),
            },
            abi::EVTCHNOP_ALLOC_UNBOUND => Self::AllocUnbound {
                domain: domain(alloc_unbound::DOM),
                remote_domain: domain(alloc_unbound::REMOTE_DOM),
            },
            abi::EVTCHNOP_BIND_IPI => Self::BindIpi {
                vcpu: vcpu(bind_ipi::VCPU),
            },
            abi::EVTCHNOP_BIND_VCPU => Self::BindVcpu {
                port: port(bind_vcpu::PORT),
                vcpu: vcpu(bind_vcpu::VCPU),
            },
            abi::EVTCHNOP_UNMASK => Self::Unmask {
                port: port(port_only::PORT),
            },
            _ => Self::Reset {
                domain: domain(reset::DOM),
            },
        })
    }
}

/// The output fields of a successful request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// No output fields.
    Done,
    /// The allocated or bound port.
    Port(Port),
    /// `EVTCHNOP_status`'s answer.
    Status(Status),
}

impl Reply {
    /// Fills the output fields of `request`'s struct in `bytes`, leaving
    /// the rest as the guest wrote it (Xen copies the whole struct back).
    pub fn encode(self, request: &Request, bytes: &mut [u8]) {
        match (self, request) {
            (Self::Port(port), Request::BindInterdomain { .. }) => {
                write_u32(bytes, bind_interdomain::LOCAL_PORT, port.0);
            }
            (Self::Port(port), Request::BindVirq { .. }) => {
                write_u32(bytes, bind_virq::PORT, port.0);
            }
            (Self::Port(port), Request::AllocUnbound { .. }) => {
                write_u32(bytes, alloc_unbound::PORT, port.0);
            }
            (Self::Port(port), Request::BindIpi { .. }) => {
                write_u32(bytes, bind_ipi::PORT, port.0);
            }
            (Self::Status(answer), Request::Status { .. }) => {
                write_u32(bytes, status::STATUS, answer.status.code());
                write_u32(bytes, status::VCPU, answer.vcpu.0);
                match answer.status {
                    ChannelStatus::Unbound { remote } => {
                        write_u16(bytes, status::UNBOUND_DOM, remote.0);
                    }
                    ChannelStatus::Interdomain {
                        remote,
                        remote_port,
                    } => {
                        write_u16(bytes, status::INTERDOMAIN_DOM, remote.0);
                        write_u32(bytes, status::INTERDOMAIN_PORT, remote_port.0);
                    }
                    ChannelStatus::Virq(virq) => write_u32(bytes, status::VIRQ, virq.0),
                    ChannelStatus::Closed | ChannelStatus::Ipi => {}
                }
            }
            _ => {}
        }
    }

    /// Whether there is anything to write back.
    pub const fn has_output(&self) -> bool {
        !matches!(self, Self::Done)
    }
}

/// What the hypervisor must do besides returning to the guest.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Something became pending or was unmasked in the caller's own domain
    /// (IPI, loopback send, new interdomain port, unmask): kick and wake as
    /// the [`Delivery`] says.
    Local(Delivery),
    /// An interdomain send: raise the port in the other domain with its
    /// [`EventChannels::raise`] and shared memory, then act on that
    /// [`Delivery`] for that domain's vCPUs.
    Remote(Notify),
}

/// The result of `event_channel_op`.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub result: Result<(), Errno>,
    /// To carry out even when `result` is `EFAULT` from writing the
    /// outputs back: the state change has happened (Xen does the same).
    pub effect: Effect,
}

impl Response {
    fn error(errno: Errno) -> Self {
        Self {
            result: Err(errno),
            effect: Effect::None,
        }
    }

    /// The value for RAX: 0 or `-errno`.
    pub const fn return_value(&self) -> u64 {
        match self.result {
            Ok(()) => 0,
            Err(errno) => errno.as_return(),
        }
    }
}

/// Runs `event_channel_op(command, argument)` for the domain owning
/// `local`, whose shared memory is `memory`.
///
/// `command` is truncated to 32 bits as Xen's `int cmd` is. `privileged`
/// (the control domain) may allocate ports in, query and reset other
/// domains; anyone else gets `EPERM` there (`ESRCH` if the domain does not
/// exist). `DomainId::SELF` is resolved to `local.domain()` here.
pub fn event_channel_op(
    command: u64,
    argument: GuestVirtAddr,
    privileged: bool,
    local: &mut EventChannels,
    memory: &mut impl EventMemory,
    guest: &mut impl GuestAccess,
    domains: &mut impl Domains,
) -> Response {
    let command = command as u32;
    let size = match argument_size(command) {
        Ok(size) => size,
        Err(errno) => return Response::error(errno),
    };
    let mut buffer = [0u8; MAX_ARGUMENT_SIZE];
    let bytes = &mut buffer[..size];
    if guest.read(argument, bytes).is_err() {
        return Response::error(Errno::EFAULT);
    }
    let request = match Request::decode(command, bytes) {
        Ok(request) => request,
        Err(errno) => return Response::error(errno),
    };
    let (reply, effect) = match execute(request, privileged, local, memory, domains) {
        Ok(done) => done,
        Err(errno) => return Response::error(errno),
    };
    let mut result = Ok(());
    if reply.has_output() {
        reply.encode(&request, bytes);
        if guest.write(argument, bytes).is_err() {
            result = Err(Errno::EFAULT);
        }
    }
    Response { result, effect }
}

/// Runs a decoded request: [`event_channel_op`] without the guest copies.
pub fn execute(
    request: Request,
    privileged: bool,
    local: &mut EventChannels,
    memory: &mut impl EventMemory,
    domains: &mut impl Domains,
) -> Result<(Reply, Effect), Errno> {
    let caller = local.domain();
    let resolve = |domain: DomainId| {
        if domain == DomainId::SELF {
            caller
        } else {
            domain
        }
    };
    match request {
        Request::AllocUnbound {
            domain,
            remote_domain,
        } => {
            let remote = resolve(remote_domain);
            let port = on_target(resolve(domain), privileged, local, domains, |table| {
                table.alloc_unbound(remote)
            })?;
            Ok((Reply::Port(port), Effect::None))
        }
        Request::BindInterdomain {
            remote_domain,
            remote_port,
        } => {
            let remote = resolve(remote_domain);
            let (port, delivery) = if remote == caller {
                local.bind_loopback(remote_port, memory)?
            } else {
                domains
                    .with_channels(remote, |table| {
                        local.bind_interdomain(table, remote_port, memory)
                    })
                    .ok_or(Errno::ESRCH)??
            };
            Ok((Reply::Port(port), Effect::Local(delivery)))
        }
        Request::BindVirq { virq, vcpu } => {
            Ok((Reply::Port(local.bind_virq(virq, vcpu)?), Effect::None))
        }
        Request::BindIpi { vcpu } => Ok((Reply::Port(local.bind_ipi(vcpu)?), Effect::None)),
        Request::Close { port } => {
            if let Some(peer) = local.close(port, memory)? {
                apply_peer_closed(peer, local, domains);
            }
            Ok((Reply::Done, Effect::None))
        }
        Request::Send { port } => {
            let effect = match local.send(port)? {
                None => Effect::None,
                Some(notify) if notify.domain == caller => {
                    Effect::Local(local.raise(notify.port, memory))
                }
                Some(notify) => Effect::Remote(notify),
            };
            Ok((Reply::Done, effect))
        }
        Request::Status { domain, port } => {
            let answer = on_target(resolve(domain), privileged, local, domains, |table| {
                table.status(port)
            })?;
            Ok((Reply::Status(answer), Effect::None))
        }
        Request::BindVcpu { port, vcpu } => {
            local.bind_vcpu(port, vcpu)?;
            Ok((Reply::Done, Effect::None))
        }
        Request::Unmask { port } => Ok((Reply::Done, Effect::Local(local.unmask(port, memory)?))),
        Request::Reset { domain } => {
            let target = resolve(domain);
            // Another domain's memory is not at hand, so its pending bits
            // stay as they are; its guest is paused and reset anyway.
            let peers = if target == caller {
                local.reset(memory)
            } else {
                on_target(target, privileged, local, domains, |table| {
                    Ok(table.close_all())
                })?
            };
            for peer in peers {
                apply_peer_closed(peer, local, domains);
            }
            Ok((Reply::Done, Effect::None))
        }
    }
}

/// Runs `f` on `target`'s table: the caller's own, or another domain's if
/// the caller is privileged (`ESRCH` if absent, then `EPERM`, in Xen's
/// order).
fn on_target<R>(
    target: DomainId,
    privileged: bool,
    local: &mut EventChannels,
    domains: &mut impl Domains,
    f: impl FnOnce(&mut EventChannels) -> Result<R, Errno>,
) -> Result<R, Errno> {
    if target == local.domain() {
        return f(local);
    }
    domains
        .with_channels(target, |table| {
            if privileged {
                f(table)
            } else {
                Err(Errno::EPERM)
            }
        })
        .ok_or(Errno::ESRCH)?
}

/// Reverts the far end of a closed channel, wherever it lives. A peer
/// domain that is gone has nothing to update.
fn apply_peer_closed(peer: PeerClosed, local: &mut EventChannels, domains: &mut impl Domains) {
    if peer.domain == local.domain() {
        let _ = local.peer_closed(peer);
    } else {
        let _ = domains.with_channels(peer.domain, |table| table.peer_closed(peer));
    }
}

/// Reads the port list of `SCHEDOP_poll` (`nr_ports` u32 ports at
/// `ports`) for [`EventChannels::poll`]. `EINVAL` for more than 128 ports,
/// `EFAULT` if the list cannot be read.
pub fn read_poll_ports(
    guest: &impl GuestAccess,
    ports: GuestVirtAddr,
    count: u32,
) -> Result<ArrayVec<Port, { POLL_MAX_PORTS as usize }>, Errno> {
    if count > POLL_MAX_PORTS {
        return Err(Errno::EINVAL);
    }
    let mut raw = [0u8; POLL_MAX_PORTS as usize * 4];
    let bytes = &mut raw[..count as usize * 4];
    guest.read(ports, bytes).map_err(|_| Errno::EFAULT)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|chunk| Port(read_u32(chunk, 0)))
        .collect())
}
