//! One domain's event-channel port table for the 2-level ABI: what each
//! port is bound to and which vCPU it notifies. Binding, closing and
//! sending follow Xen's `xen/common/event_channel.c`, error codes included.

use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
    MAX_PORTS_2_LEVEL, NR_VIRQS, Port, VcpuId, Virq, VirqClass,
};

use super::delivery::{Delivery, EventMemory};

/// What a port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Not in use; the lowest free port is handed out next.
    Free,
    /// Port 0: never allocated, never usable.
    Reserved,
    /// Offered to `remote`, which may connect with `bind_interdomain`.
    Unbound { remote: DomainId },
    /// Connected to `remote_port` of `remote` (which may be this domain).
    Interdomain { remote: DomainId, remote_port: Port },
    /// Raised by the hypervisor for `virq`. `vcpu` is the vCPU whose VIRQ
    /// slot holds the port: the bound vCPU for per-vCPU VIRQs, vCPU 0 for
    /// the others (whose notify vCPU `bind_vcpu` may move).
    Virq { virq: Virq, vcpu: VcpuId },
    /// An inter-processor interrupt for `vcpu`; its notify vCPU is fixed.
    Ipi { vcpu: VcpuId },
}

impl PortState {
    /// Whether the port is bound to something (Xen's `evtchn_usable`):
    /// only such ports are raised, polled, unmasked or closed.
    pub const fn is_bound(self) -> bool {
        !matches!(self, Self::Free | Self::Reserved)
    }
}

/// A port's state as `EVTCHNOP_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Free or reserved.
    Closed,
    Unbound {
        remote: DomainId,
    },
    Interdomain {
        remote: DomainId,
        remote_port: Port,
    },
    Virq(Virq),
    Ipi,
}

impl ChannelStatus {
    /// The `EVTCHNSTAT_*` value.
    pub const fn code(self) -> u32 {
        match self {
            Self::Closed => EVTCHNSTAT_CLOSED,
            Self::Unbound { .. } => EVTCHNSTAT_UNBOUND,
            Self::Interdomain { .. } => EVTCHNSTAT_INTERDOMAIN,
            Self::Virq(_) => EVTCHNSTAT_VIRQ,
            Self::Ipi => EVTCHNSTAT_IPI,
        }
    }
}

/// The answer to `EVTCHNOP_status`: the fields of `struct evtchn_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub status: ChannelStatus,
    /// The notify vCPU.
    pub vcpu: VcpuId,
}

/// An event the caller must raise: `port` of `domain`, through that
/// domain's [`EventChannels::raise`] and its own shared memory.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notify {
    pub domain: DomainId,
    pub port: Port,
}

/// The other end of a closed interdomain channel. The caller applies it to
/// `domain`'s table with [`EventChannels::peer_closed`], which turns `port`
/// back into `Unbound { remote: closer }` (Xen does not raise an event).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerClosed {
    pub domain: DomainId,
    pub port: Port,
    pub closer: DomainId,
    pub closer_port: Port,
}

/// How big one domain's table may get; chosen by the hypervisor at domain
/// creation, never by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Ports 0..max_ports exist (Xen's `max_evtchn_port + 1`); clamped to
    /// 1..=4096, the 2-level ABI's reach.
    pub max_ports: u32,
    /// vCPUs 0..vcpu_count exist; other ids get `ENOENT`.
    pub vcpu_count: u32,
    /// Whether this domain handles the global VIRQs (Dom0 in Xen); others
    /// get `EBUSY` when binding one.
    pub global_virq_handler: bool,
}

impl Limits {
    /// All 4096 ports, `vcpu_count` vCPUs, no global VIRQs.
    pub const fn new(vcpu_count: u32) -> Self {
        Self {
            max_ports: MAX_PORTS_2_LEVEL,
            vcpu_count,
            global_virq_handler: false,
        }
    }
}

/// One port's entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Channel {
    pub(super) state: PortState,
    pub(super) notify: VcpuId,
}

impl Channel {
    /// Xen resets the notify vCPU to 0 when a port is freed.
    const FREE: Self = Self {
        state: PortState::Free,
        notify: VcpuId::BOOT,
    };
}

const VIRQ_SLOTS: usize = NR_VIRQS as usize;

/// One domain's event channels.
///
/// Every operation takes ids already resolved: `DomainId::SELF` in a
/// guest's argument is turned into a real id by
/// [`event_channel_op`](super::event_channel_op) before it gets here.
#[derive(Debug)]
pub struct EventChannels {
    domain: DomainId,
    max_ports: u32,
    vcpu_count: u32,
    global_virq_handler: bool,
    /// Indexed by port; grows on demand up to `max_ports`, and ports past
    /// its end are free. Entry 0 is the reserved port.
    channels: Vec<Channel>,
    /// Per vCPU, the port bound to each VIRQ (`Port::RESERVED` if none), as
    /// Xen's `virq_to_evtchn`. Non-per-vCPU VIRQs live in vCPU 0's slots.
    virq_ports: Vec<[Port; VIRQ_SLOTS]>,
}

impl EventChannels {
    /// An empty table for `domain`. `ENOMEM` if the per-vCPU VIRQ slots
    /// cannot be allocated.
    pub fn new(domain: DomainId, limits: Limits) -> Result<Self, Errno> {
        let max_ports = limits.max_ports.clamp(1, MAX_PORTS_2_LEVEL);
        let mut virq_ports = Vec::new();
        virq_ports
            .try_reserve_exact(limits.vcpu_count as usize)
            .map_err(|_| Errno::ENOMEM)?;
        virq_ports.resize(limits.vcpu_count as usize, [Port::RESERVED; VIRQ_SLOTS]);
        let mut channels = Vec::new();
        channels.try_reserve_exact(1).map_err(|_| Errno::ENOMEM)?;
        channels.push(Channel {
            state: PortState::Reserved,
            notify: VcpuId::BOOT,
        });
        Ok(Self {
            domain,
            max_ports,
            vcpu_count: limits.vcpu_count,
            global_virq_handler: limits.global_virq_handler,
            channels,
            virq_ports,
        })
    }

    /// The domain this table belongs to.
    pub const fn domain(&self) -> DomainId {
        self.domain
    }

    /// Ports 0..max_ports exist.
    pub const fn max_ports(&self) -> u32 {
        self.max_ports
    }

    /// vCPUs 0..vcpu_count exist.
    pub const fn vcpu_count(&self) -> u32 {
        self.vcpu_count
    }

    /// The state of `port`, or `None` if it is past `max_ports`.
    pub fn state(&self, port: Port) -> Option<PortState> {
        self.channel(port).ok().map(|channel| channel.state)
    }

    /// The vCPU `port` notifies, or `None` if it is past `max_ports`.
    pub fn notify_vcpu(&self, port: Port) -> Option<VcpuId> {
        self.channel(port).ok().map(|channel| channel.notify)
    }

    /// Every bound port with its state and notify vCPU, lowest first.
    pub fn bound_ports(&self) -> impl Iterator<Item = (Port, PortState, VcpuId)> + '_ {
        self.channels
            .iter()
            .enumerate()
            .filter(|(_, channel)| channel.state.is_bound())
            .map(|(index, channel)| (Port(index as u32), channel.state, channel.notify))
    }

    /// The port bound to `virq` for `vcpu`. Global and domain VIRQs are
    /// found whatever `vcpu` says, as Xen keeps them on vCPU 0.
    pub fn virq_port(&self, virq: Virq, vcpu: VcpuId) -> Option<Port> {
        let slot_vcpu = match virq.class()? {
            VirqClass::PerVcpu => vcpu,
            VirqClass::Domain | VirqClass::Global => VcpuId::BOOT,
        };
        let port = self.virq_ports.get(slot_vcpu.0 as usize)?[virq.0 as usize];
        (port != Port::RESERVED).then_some(port)
    }

    /// EVTCHNOP_alloc_unbound: offers the lowest free port to `remote`.
    /// `ENOSPC` when the table is full.
    pub fn alloc_unbound(&mut self, remote: DomainId) -> Result<Port, Errno> {
        let port = self.reserve_free_port()?;
        self.install(port, PortState::Unbound { remote }, VcpuId::BOOT);
        Ok(port)
    }

    /// EVTCHNOP_bind_virq. `EINVAL` for a VIRQ ≥ 24 or a non-per-vCPU VIRQ
    /// on a vCPU other than 0, `ENOENT` for a vCPU that does not exist,
    /// `EBUSY` for a global VIRQ this domain does not handle, `EEXIST` if
    /// already bound there.
    pub fn bind_virq(&mut self, virq: Virq, vcpu: VcpuId) -> Result<Port, Errno> {
        let class = virq.class().ok_or(Errno::EINVAL)?;
        if class != VirqClass::PerVcpu && vcpu != VcpuId::BOOT {
            return Err(Errno::EINVAL);
        }
        self.check_vcpu(vcpu)?;
        if class == VirqClass::Global && !self.global_virq_handler {
            return Err(Errno::EBUSY);
        }
        if self.virq_port(virq, vcpu).is_some() {
            return Err(Errno::EEXIST);
        }
        let port = self.reserve_free_port()?;
        self.install(port, PortState::Virq { virq, vcpu }, vcpu);
        self.set_virq_slot(virq, vcpu, port);
        Ok(port)
    }

    /// EVTCHNOP_bind_ipi: a port that notifies `vcpu` (`ENOENT` if absent).
    pub fn bind_ipi(&mut self, vcpu: VcpuId) -> Result<Port, Errno> {
        self.check_vcpu(vcpu)?;
        let port = self.reserve_free_port()?;
        self.install(port, PortState::Ipi { vcpu }, vcpu);
        Ok(port)
    }

    /// EVTCHNOP_bind_interdomain with another domain's table: connects a
    /// new local port to `remote_port` of `remote`, which must be
    /// `Unbound { remote: <this domain> }` (`EINVAL` otherwise; `ENOSPC` if
    /// this table is full). Like Xen, the new port is then raised, since
    /// events sent while the remote port was unbound were dropped; the
    /// returned [`Delivery`] says whom to kick.
    pub fn bind_interdomain(
        &mut self,
        remote: &mut EventChannels,
        remote_port: Port,
        memory: &mut impl EventMemory,
    ) -> Result<(Port, Delivery), Errno> {
        let local_port = self.reserve_free_port()?;
        remote.check_offered(remote_port, self.domain)?;
        remote.set_state(
            remote_port,
            PortState::Interdomain {
                remote: self.domain,
                remote_port: local_port,
            },
        );
        let state = PortState::Interdomain {
            remote: remote.domain,
            remote_port,
        };
        self.install(local_port, state, VcpuId::BOOT);
        Ok((local_port, self.raise(local_port, memory)))
    }

    /// EVTCHNOP_bind_interdomain with `remote_dom` naming this domain: both
    /// ends live in this table. Same rules as
    /// [`bind_interdomain`](Self::bind_interdomain).
    pub fn bind_loopback(
        &mut self,
        remote_port: Port,
        memory: &mut impl EventMemory,
    ) -> Result<(Port, Delivery), Errno> {
        let local_port = self.reserve_free_port()?;
        self.check_offered(remote_port, self.domain)?;
        self.set_state(
            remote_port,
            PortState::Interdomain {
                remote: self.domain,
                remote_port: local_port,
            },
        );
        let state = PortState::Interdomain {
            remote: self.domain,
            remote_port,
        };
        self.install(local_port, state, VcpuId::BOOT);
        Ok((local_port, self.raise(local_port, memory)))
    }

    /// EVTCHNOP_close: frees a bound port and clears its pending bit.
    /// `EINVAL` for a port out of range, free or reserved. A connected peer
    /// in another domain comes back as [`PeerClosed`] for the caller to
    /// apply; a peer in this table is updated here.
    pub fn close(
        &mut self,
        port: Port,
        memory: &mut impl EventMemory,
    ) -> Result<Option<PeerClosed>, Errno> {
        let peer = self.release(port)?;
        memory.clear_pending(port);
        Ok(peer)
    }

    /// Closes every bound port without touching guest memory, for a domain
    /// being destroyed. Returns the peers in other domains to update.
    pub fn close_all(&mut self) -> Vec<PeerClosed> {
        let mut peers = Vec::new();
        for index in 1..self.channels.len() {
            if let Ok(Some(peer)) = self.release(Port(index as u32)) {
                peers.push(peer);
            }
        }
        peers
    }

    /// EVTCHNOP_reset on this domain: closes every bound port as
    /// [`close`](Self::close) would. Returns the peers in other domains to
    /// update.
    pub fn reset(&mut self, memory: &mut impl EventMemory) -> Vec<PeerClosed> {
        let mut peers = Vec::new();
        for index in 1..self.channels.len() {
            if let Ok(Some(peer)) = self.close(Port(index as u32), memory) {
                peers.push(peer);
            }
        }
        peers
    }

    /// Applies a [`PeerClosed`] from the other end: if `update.port` is
    /// still connected to the closed port it becomes `Unbound { remote:
    /// closer }`, keeping its notify vCPU. Returns whether it was; a stale
    /// update (the port was closed or rebound meanwhile) changes nothing.
    pub fn peer_closed(&mut self, update: PeerClosed) -> bool {
        let connected = PortState::Interdomain {
            remote: update.closer,
            remote_port: update.closer_port,
        };
        if update.domain != self.domain || self.state(update.port) != Some(connected) {
            return false;
        }
        self.set_state(
            update.port,
            PortState::Unbound {
                remote: update.closer,
            },
        );
        true
    }

    /// EVTCHNOP_send: what to raise. Interdomain → the remote end; IPI →
    /// this port; unbound → nothing (dropped, as Xen does). `EINVAL` for a
    /// port out of range, free, reserved or bound to a VIRQ.
    pub fn send(&self, port: Port) -> Result<Option<Notify>, Errno> {
        match self.channel(port)?.state {
            PortState::Interdomain {
                remote,
                remote_port,
            } => Ok(Some(Notify {
                domain: remote,
                port: remote_port,
            })),
            PortState::Ipi { .. } => Ok(Some(Notify {
                domain: self.domain,
                port,
            })),
            PortState::Unbound { .. } => Ok(None),
            PortState::Free | PortState::Reserved | PortState::Virq { .. } => Err(Errno::EINVAL),
        }
    }

    /// EVTCHNOP_status. `EINVAL` only for a port out of range; free and
    /// reserved ports are `Closed`.
    pub fn status(&self, port: Port) -> Result<Status, Errno> {
        let channel = self.channel(port)?;
        let status = match channel.state {
            PortState::Free | PortState::Reserved => ChannelStatus::Closed,
            PortState::Unbound { remote } => ChannelStatus::Unbound { remote },
            PortState::Interdomain {
                remote,
                remote_port,
            } => ChannelStatus::Interdomain {
                remote,
                remote_port,
            },
            PortState::Virq { virq, .. } => ChannelStatus::Virq(virq),
            PortState::Ipi { .. } => ChannelStatus::Ipi,
        };
        Ok(Status {
            status,
            vcpu: channel.notify,
        })
    }

    /// EVTCHNOP_bind_vcpu: moves the notify vCPU of an unbound,
    /// interdomain or non-per-vCPU VIRQ port. `ENOENT` for a vCPU that does
    /// not exist (checked first, as Xen does); `EINVAL` for a port out of
    /// range or in any other state.
    pub fn bind_vcpu(&mut self, port: Port, vcpu: VcpuId) -> Result<(), Errno> {
        self.check_vcpu(vcpu)?;
        let movable = match self.channel(port)?.state {
            PortState::Unbound { .. } | PortState::Interdomain { .. } => true,
            PortState::Virq { virq, .. } => virq.class() != Some(VirqClass::PerVcpu),
            PortState::Free | PortState::Reserved | PortState::Ipi { .. } => false,
        };
        if !movable {
            return Err(Errno::EINVAL);
        }
        if let Some(channel) = self.channels.get_mut(port.0 as usize) {
            channel.notify = vcpu;
        }
        Ok(())
    }

    /// The channel for `port`; `EINVAL` past `max_ports`.
    pub(super) fn channel(&self, port: Port) -> Result<Channel, Errno> {
        if port.0 >= self.max_ports {
            return Err(Errno::EINVAL);
        }
        Ok(self
            .channels
            .get(port.0 as usize)
            .copied()
            .unwrap_or(Channel::FREE))
    }

    fn check_vcpu(&self, vcpu: VcpuId) -> Result<(), Errno> {
        if vcpu.0 < self.vcpu_count {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// `EINVAL` unless `port` is offered to `domain`.
    fn check_offered(&self, port: Port, domain: DomainId) -> Result<(), Errno> {
        match self.channel(port)?.state {
            PortState::Unbound { remote } if remote == domain => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Finds the lowest free port and makes sure [`install`](Self::install)
    /// can store it without allocating. `ENOSPC` when all ports are in use,
    /// `ENOMEM` if the table cannot grow.
    fn reserve_free_port(&mut self) -> Result<Port, Errno> {
        if let Some(index) = self
            .channels
            .iter()
            .position(|channel| channel.state == PortState::Free)
        {
            return Ok(Port(index as u32));
        }
        let length = self.channels.len();
        let max_ports = self.max_ports as usize;
        if length >= max_ports {
            return Err(Errno::ENOSPC);
        }
        if self.channels.capacity() == length {
            // Grow geometrically, but never past the cap.
            let additional = length.clamp(1, max_ports - length);
            self.channels
                .try_reserve_exact(additional)
                .map_err(|_| Errno::ENOMEM)?;
        }
        Ok(Port(length as u32))
    }

    /// Stores a port returned by [`reserve_free_port`](Self::reserve_free_port).
    fn install(&mut self, port: Port, state: PortState, notify: VcpuId) {
        let channel = Channel { state, notify };
        let index = port.0 as usize;
        let length = self.channels.len();
        match self.channels.get_mut(index) {
            Some(slot) => *slot = channel,
            None if index == length => self.channels.push(channel),
            None => debug_assert!(false, "port {index} was not reserved"),
        }
    }

    fn set_state(&mut self, port: Port, state: PortState) {
        if let Some(channel) = self.channels.get_mut(port.0 as usize) {
            channel.state = state;
        }
    }

    fn set_virq_slot(&mut self, virq: Virq, vcpu: VcpuId, port: Port) {
        if let Some(slots) = self.virq_ports.get_mut(vcpu.0 as usize)
            && let Some(slot) = slots.get_mut(virq.0 as usize)
        {
            *slot = port;
        }
    }

    /// Frees a bound port: Xen's `evtchn_close` minus the guest memory.
    fn release(&mut self, port: Port) -> Result<Option<PeerClosed>, Errno> {
        let state = self.channel(port)?.state;
        let peer = match state {
            PortState::Free | PortState::Reserved => return Err(Errno::EINVAL),
            PortState::Unbound { .. } | PortState::Ipi { .. } => None,
            PortState::Virq { virq, vcpu } => {
                self.set_virq_slot(virq, vcpu, Port::RESERVED);
                None
            }
            PortState::Interdomain {
                remote,
                remote_port,
            } => Some(PeerClosed {
                domain: remote,
                port: remote_port,
                closer: self.domain,
                closer_port: port,
            }),
        };
        if let Some(channel) = self.channels.get_mut(port.0 as usize) {
            *channel = Channel::FREE;
        }
        match peer {
            Some(peer) if peer.domain == self.domain => {
                // A loopback channel: both ends are here.
                let _ = self.peer_closed(peer);
                Ok(None)
            }
            peer => Ok(peer),
        }
    }
}
