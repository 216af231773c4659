//! Guests on the network: a netif back end (`netback`) per `vif` entry,
//! joined by one L2 bridge (`xenbr0`) to the appliance's virtio NIC. Dom0's
//! side of netback's traits: grant copies (`grants`, rings too, so no guest
//! page is ever mapped), inter-domain event channels and xenstore through
//! Dom0's own local connection. Each pass takes the NIC's frames, the
//! front ends' state changes and every vif's rings, and forwards what the
//! bridge decides. Dom0's own IP stack (`dom0_ip`) is one more port, like
//! a Linux bridge's own interface: frames for it wait in a bounded inbox.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use blkback::GuestPiece;
use bridge::{Bridge, BridgeConfig, Instant, MacAddress, PortConfig, PortCounters, PortId};
use config::Vif as VifEntry;
use dom0::domain_nodes::{self, VirtualNic};
use log::{info, warn};
use netback::{
    BackendFeatures, EventChannels, FrontendConfig, FrontendKeys, GrantCopyError, GrantSegment,
    GrantStatus, Handshake, HandshakeAction, Packet, QueueResources, Vif, VifConfig, VifCounters,
    XenbusState,
};
use xen_guest::event_channel;
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenstore::{ConnectionId, Xenstored};

use crate::devices;
use crate::devices::net::{NetDevice, NetError};
use crate::grants::{self, GrantedRing};
use crate::xenstore_service::XenstoreService;

/// The one bridge there is.
pub const BRIDGE_NAME: &str = "xenbr0";
/// Poll rounds per vif per pass when it says TX work remains: bounds what
/// one guest can take of a pass.
const TX_ROUNDS: usize = 4;
/// Forwarding rounds per pass (a vif's packets for another vif are
/// delivered by polling that one again).
const FORWARD_ROUNDS: usize = 4;
/// Frames waiting for Dom0's own stack; more are dropped (and counted on
/// its port) until it catches up.
const LOCAL_INBOX_FRAMES: usize = 128;

/// Checks a config's `vif` entry: what this step can serve.
pub fn check_vif(vif: &VifEntry) -> Result<(), String> {
    if let Some(bridge) = &vif.bridge
        && bridge != BRIDGE_NAME
    {
        return Err(format!(
            "vif bridge {bridge:?}: only {BRIDGE_NAME:?} (the appliance's NIC) exists"
        ));
    }
    if let Some(backend) = &vif.backend
        && backend != "0"
        && backend != "Domain-0"
    {
        return Err(format!("vif backend {backend:?}: only Dom0 serves vifs"));
    }
    Ok(())
}

/// [`netback::Grants`] by `GNTTABOP_copy` (one batch per packet).
#[derive(Debug, Default)]
struct CopyGrants;

fn pieces(segments: &[GrantSegment]) -> Vec<GuestPiece> {
    segments
        .iter()
        .map(|segment| GuestPiece {
            grant: segment.reference(),
            offset: segment.offset(),
            length: segment.length(),
        })
        .collect()
}

fn copy_error(segments: &[GrantSegment], error: blkback::GrantError) -> GrantCopyError {
    GrantCopyError {
        segment: segments
            .iter()
            .position(|segment| segment.reference() == error.grant)
            .unwrap_or(0),
        status: GrantStatus::BAD_GRANT_REF,
    }
}

impl netback::Grants for CopyGrants {
    fn copy_from_guest(
        &mut self,
        domain: DomainId,
        segments: &[GrantSegment],
        destination: &mut [u8],
    ) -> Result<(), GrantCopyError> {
        grants::copy_from_guest(domain, &pieces(segments), destination)
            .map_err(|error| copy_error(segments, error))
    }

    fn copy_to_guest(
        &mut self,
        domain: DomainId,
        source: &[u8],
        segments: &[GrantSegment],
    ) -> Result<(), GrantCopyError> {
        grants::copy_to_guest(domain, &pieces(segments), source)
            .map_err(|error| copy_error(segments, error))
    }
}

/// Reads the front end's keys through Dom0's connection.
struct Keys<'a> {
    store: RefCell<&'a mut Xenstored>,
    connection: ConnectionId,
    frontend: &'a str,
}

impl FrontendKeys for Keys<'_> {
    fn read(&self, key: &str) -> Option<String> {
        let mut store = self.store.try_borrow_mut().ok()?;
        let value = store
            .session(self.connection, None)
            .read(&format!("{}/{key}", self.frontend))
            .ok()?;
        String::from_utf8(value).ok()
    }
}

fn state_from(value: &[u8]) -> XenbusState {
    let number = core::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim_end_matches('\0').trim().parse::<u32>().ok());
    match number {
        Some(1) => XenbusState::Initialising,
        Some(2) => XenbusState::InitWait,
        Some(3) => XenbusState::Initialised,
        Some(4) => XenbusState::Connected,
        Some(5) => XenbusState::Closing,
        Some(6) => XenbusState::Closed,
        Some(7) => XenbusState::Reconfiguring,
        Some(8) => XenbusState::Reconfigured,
        _ => XenbusState::Unknown,
    }
}

/// One guest network interface.
struct GuestVif {
    domain: DomainId,
    device_id: u32,
    mac: [u8; 6],
    frontend: String,
    backend: String,
    /// The watch on `<frontend>/state`: path and token.
    watch: (String, Vec<u8>),
    port: PortId,
    handshake: Handshake,
    /// While connected.
    vif: Option<Vif<GrantedRing>>,
    /// Local ports bound for the connected rings.
    bound: Vec<Port>,
    /// The counters of the last connection, kept when it ends.
    last_counters: Option<VifCounters>,
}

impl GuestVif {
    fn name(&self) -> String {
        format!(
            "domain {}: vif{}.{}",
            self.domain.0, self.domain.0, self.device_id
        )
    }

    fn unbind(&mut self) {
        for port in self.bound.drain(..) {
            let _ = event_channel::close(port);
        }
        if let Some(vif) = self.vif.take() {
            self.last_counters = Some(*vif.counters());
        }
    }
}

impl Drop for GuestVif {
    fn drop(&mut self) {
        self.unbind();
    }
}

/// Guests' vifs, the bridge and the NIC behind it.
pub struct NetService {
    nic: Option<NetDevice>,
    bridge: Bridge,
    nic_port: Option<PortId>,
    /// Dom0's xenstore connection for the back ends (their watches).
    connection: Option<ConnectionId>,
    /// By serial number (never reused).
    vifs: BTreeMap<u64, GuestVif>,
    next_serial: u64,
    /// Vifs made so far (for generated MAC addresses).
    made: u32,
    /// Frames the NIC could not take.
    nic_drops: u64,
    /// Vif polls so far (each reads its rings: a few hypercalls).
    vif_polls: u64,
    /// Dom0's own port and the frames the bridge sent it.
    local: Option<LocalPort>,
}

/// Dom0's own port on the bridge.
struct LocalPort {
    port: PortId,
    inbox: VecDeque<Vec<u8>>,
}

impl Default for NetService {
    fn default() -> Self {
        Self {
            nic: None,
            bridge: Bridge::new(BridgeConfig::default()),
            nic_port: None,
            connection: None,
            vifs: BTreeMap::new(),
            next_serial: 0,
            made: 0,
            nic_drops: 0,
            vif_polls: 0,
            local: None,
        }
    }
}

/// Dom0's monotonic time from the TSC.
pub fn now() -> Duration {
    let khz =
        u128::from(baremetal::cpu::cpuid(xenolith_abi::cpuid::XEN_CPUID_BASE + 3, 0)[2].max(1));
    let nanoseconds = u128::from(baremetal::cpu::rdtsc()) * 1_000_000 / khz;
    Duration::from_nanos(u64::try_from(nanoseconds).unwrap_or(u64::MAX))
}

impl NetService {
    /// Takes the NIC brought up at boot (if any) as the bridge's uplink.
    pub fn set_nic(&mut self, nic: Option<NetDevice>) {
        if let Some(device) = &nic {
            let [a, b, c, d, e, f] = device.mac();
            match self.bridge.add_port(PortConfig::open(), Instant::ZERO) {
                Ok(port) => {
                    self.nic_port = Some(port);
                    info!(
                        "dom0: nic: virtio-net {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x} on bridge {BRIDGE_NAME}"
                    );
                }
                Err(error) => warn!("dom0: nic: the bridge refused it: {error:?}"),
            }
        }
        self.nic = nic;
    }

    /// The NIC's MAC address.
    pub fn nic_mac(&self) -> Option<[u8; 6]> {
        self.nic.as_ref().map(NetDevice::mac)
    }

    /// Puts Dom0's own interface on the bridge with MAC `mac` (which it
    /// alone may send from).
    pub fn attach_local(&mut self, mac: [u8; 6]) -> Result<(), String> {
        if self.local.is_some() {
            return Err(String::from("Dom0 already has a port"));
        }
        let port = self
            .bridge
            .add_port(
                PortConfig::guarded(MacAddress(mac)),
                Instant::from_duration(now()),
            )
            .map_err(|error| format!("the bridge refused Dom0's port: {error:?}"))?;
        self.local = Some(LocalPort {
            port,
            inbox: VecDeque::new(),
        });
        Ok(())
    }

    /// Takes the frames the bridge sent Dom0's own port, oldest first.
    pub fn take_local_frames(&mut self) -> VecDeque<Vec<u8>> {
        self.local
            .as_mut()
            .map(|local| core::mem::take(&mut local.inbox))
            .unwrap_or_default()
    }

    /// Sends a frame from Dom0's own port into the bridge.
    pub fn send_local(&mut self, frame: Vec<u8>) {
        if let Some(port) = self.local.as_ref().map(|local| local.port) {
            self.forward(port, Packet::plain(frame), now());
        }
    }

    /// Every bridge port's counters with its name: `nic`, `dom0`, and
    /// `vifD.N` for guests' vifs.
    pub fn port_counters(&self) -> Vec<(String, PortCounters)> {
        let mut ports: Vec<(String, PortId)> = Vec::new();
        ports.extend(self.nic_port.map(|port| (String::from("nic"), port)));
        ports.extend(
            self.local
                .as_ref()
                .map(|local| (String::from("dom0"), local.port)),
        );
        ports.extend(
            self.vifs
                .values()
                .map(|vif| (format!("vif{}.{}", vif.domain.0, vif.device_id), vif.port)),
        );
        ports
            .into_iter()
            .filter_map(|(name, port)| Some((name, *self.bridge.port_counters(port)?)))
            .collect()
    }

    /// The NIC's frames received and sent, and those it could not take
    /// (its transmit queue full), or `None` without a NIC.
    pub fn nic_counters(&self) -> Option<(u64, u64, u64)> {
        self.nic
            .as_ref()
            .map(|nic| (nic.received, nic.sent, self.nic_drops))
    }

    /// Vif polls so far, and the grant copies their rings made (each a
    /// hypercall; packet data not included).
    pub fn poll_counters(&self) -> (u64, u64) {
        let ring_copies = self
            .vifs
            .values()
            .filter_map(|vif| vif.vif.as_ref())
            .flat_map(Vif::ring_memories)
            .map(GrantedRing::copies)
            .sum();
        (self.vif_polls, ring_copies)
    }

    /// Every guest vif's netback counters (those of its last connection
    /// when it is not connected now), by name `vifD.N`, with whether it is
    /// connected.
    pub fn vif_counters(&self) -> Vec<(String, bool, VifCounters)> {
        self.vifs
            .values()
            .map(|vif| {
                let counters = vif
                    .vif
                    .as_ref()
                    .map(|connected| *connected.counters())
                    .or(vif.last_counters)
                    .unwrap_or_default();
                (
                    format!("vif{}.{}", vif.domain.0, vif.device_id),
                    vif.vif.is_some(),
                    counters,
                )
            })
            .collect()
    }

    /// Hands the vifs what was forwarded to them since their last poll
    /// (Dom0's own frames), and takes what they sent meanwhile.
    pub fn deliver_pending(&mut self, xenstore: &mut XenstoreService) {
        if !self.vifs.is_empty() {
            self.poll_vifs(xenstore, now());
        }
    }

    /// The local ports of every connected ring.
    pub fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.vifs.values().flat_map(|vif| vif.bound.iter().copied())
    }

    /// Writes a vif's xenstore nodes, puts it on the bridge and starts its
    /// back end (the guest is not running yet).
    pub fn attach(
        &mut self,
        xenstore: &mut XenstoreService,
        domain: DomainId,
        index: usize,
        entry: &VifEntry,
    ) -> Result<(), String> {
        check_vif(entry)?;
        let device_id = entry
            .devid
            .unwrap_or_else(|| u32::try_from(index).unwrap_or(u32::MAX));
        let mac = match entry.mac {
            Some(mac) => mac.0,
            None => domain_nodes::generated_mac(self.made),
        };
        self.made = self.made.wrapping_add(1);
        let guarded = PortConfig::guarded(MacAddress(mac));
        let port = self
            .bridge
            .add_port(guarded, Instant::from_duration(now()))
            .map_err(|error| format!("the bridge refused the vif: {error:?}"))?;
        let (store, _) = xenstore.store();
        let connection = *self.connection.get_or_insert_with(|| store.open_local());
        let nodes = VirtualNic {
            domain,
            device_id,
            mac,
            bridge: BRIDGE_NAME,
        };
        let written = domain_nodes::add_vif(store, connection, &nodes);
        let serial = self.next_serial;
        self.next_serial += 1;
        let watch_path = format!("{}/state", nodes.frontend_path());
        let token = format!("vif/{serial}").into_bytes();
        let watched =
            written.and_then(|()| store.session(connection, None).watch(&watch_path, &token));
        if let Err(error) = watched {
            let _ = self.bridge.remove_port(port);
            return Err(format!("writing the vif nodes failed: {error:?}"));
        }
        let mut vif = GuestVif {
            domain,
            device_id,
            mac,
            frontend: nodes.frontend_path(),
            backend: nodes.backend_path(),
            watch: (watch_path, token),
            port,
            // GSO offered: a guest's TSO packets are cut into segments
            // (checksums filled) before the NIC and Dom0's stack
            // (`Packet::wire_frames`), and go whole to vifs that take GSO.
            handshake: Handshake::new(BackendFeatures::default()),
            vif: None,
            bound: Vec::new(),
            last_counters: None,
        };
        let actions = vif.handshake.probe();
        let mut keys = Keys {
            store: RefCell::new(store),
            connection,
            frontend: &vif.frontend.clone(),
        };
        carry_out(&mut vif, actions, &mut keys);
        self.vifs.insert(serial, vif);
        Ok(())
    }

    /// Stops serving `domain`'s vifs (before it is destroyed): closes
    /// their event channels, takes them off the bridge and removes their
    /// xenstore nodes.
    pub fn detach(&mut self, xenstore: &mut XenstoreService, domain: DomainId) {
        let serials: Vec<u64> = self
            .vifs
            .iter()
            .filter(|(_, vif)| vif.domain == domain)
            .map(|(&serial, _)| serial)
            .collect();
        if serials.is_empty() {
            return;
        }
        let (store, _) = xenstore.store();
        for serial in serials {
            let Some(mut vif) = self.vifs.remove(&serial) else {
                continue;
            };
            let counters = vif
                .vif
                .as_ref()
                .map(|connected| *connected.counters())
                .or(vif.last_counters);
            vif.unbind();
            let _ = self.bridge.remove_port(vif.port);
            if let Some(connection) = self.connection {
                let _ = store
                    .session(connection, None)
                    .unwatch(&vif.watch.0, &vif.watch.1);
                let nodes = VirtualNic {
                    domain,
                    device_id: vif.device_id,
                    mac: vif.mac,
                    bridge: BRIDGE_NAME,
                };
                let _ = domain_nodes::remove_vif(store, connection, &nodes);
            }
            let counters = counters.unwrap_or_default();
            info!("dom0: {} detached ({counters})", vif.name());
        }
    }

    /// One pass: the NIC's frames, front-end state changes, then every
    /// vif's rings with forwarding. True if anything was done (the caller
    /// flushes xenstore output then).
    pub fn service(&mut self, xenstore: &mut XenstoreService) -> bool {
        if self.vifs.is_empty() && self.local.is_none() {
            // Nobody to hand frames to: drain the NIC so it keeps room.
            if let Some(nic) = &mut self.nic {
                nic.reclaim();
                nic.receive(|_| {});
            }
            return false;
        }
        devices::take_interrupts();
        let now = now();
        let mut busy = false;

        let mut arrived: Vec<Vec<u8>> = Vec::new();
        if let Some(nic) = &mut self.nic {
            nic.reclaim();
            nic.receive(|frame| arrived.push(frame.to_vec()));
        }
        if let Some(ingress) = self.nic_port {
            for frame in arrived {
                busy = true;
                self.forward(ingress, Packet::plain(frame), now);
            }
        }

        if let Some(connection) = self.connection {
            let (store, _) = xenstore.store();
            for event in store.take_watch_events(connection) {
                let Some(vif) = self
                    .vifs
                    .values_mut()
                    .find(|vif| vif.watch.1 == event.token)
                else {
                    continue;
                };
                busy = true;
                let state = store
                    .session(connection, None)
                    .read(&vif.watch.0)
                    .map_or(XenbusState::Unknown, |value| state_from(&value));
                let frontend = vif.frontend.clone();
                let mut keys = Keys {
                    store: RefCell::new(&mut *store),
                    connection,
                    frontend: &frontend,
                };
                let actions = vif.handshake.frontend_changed(state, &keys);
                carry_out(vif, actions, &mut keys);
            }
        }

        // Dom0's loop takes every pending port before the services run, so
        // every connected vif is polled on every pass.
        for _ in 0..FORWARD_ROUNDS {
            let moved = self.poll_vifs(xenstore, now);
            busy |= moved;
            if !moved {
                break;
            }
        }
        busy
    }

    /// Polls every connected vif once (more while it has TX work, up to
    /// [`TX_ROUNDS`]) and forwards its packets; true if any moved.
    fn poll_vifs(&mut self, xenstore: &mut XenstoreService, now: Duration) -> bool {
        let mut moved = false;
        let serials: Vec<u64> = self.vifs.keys().copied().collect();
        for serial in serials {
            for _ in 0..TX_ROUNDS {
                let Some(guest) = self.vifs.get_mut(&serial) else {
                    break;
                };
                let Some(vif) = guest.vif.as_mut() else {
                    break;
                };
                self.vif_polls += 1;
                let actions = vif.poll(&mut CopyGrants, now);
                for port in &actions.notify {
                    let _ = event_channel::send(*port);
                }
                if let Some(reason) = actions.disconnect {
                    let counters = *vif.counters();
                    warn!(
                        "dom0: {}: disconnected: {reason:?}; {counters}",
                        guest.name()
                    );
                    let steps = guest.handshake.fail(&format!("{reason:?}"));
                    if let Some(connection) = self.connection {
                        let (store, _) = xenstore.store();
                        let frontend = guest.frontend.clone();
                        let mut keys = Keys {
                            store: RefCell::new(store),
                            connection,
                            frontend: &frontend,
                        };
                        carry_out(guest, steps, &mut keys);
                    } else {
                        guest.unbind();
                    }
                    moved = true;
                    break;
                }
                let ingress = guest.port;
                let again = actions.more_tx_work;
                moved |= !actions.packets.is_empty();
                for packet in actions.packets {
                    self.forward(ingress, packet, now);
                }
                if !again {
                    break;
                }
            }
        }
        moved
    }

    /// Hands a packet that entered through `ingress` to where the bridge
    /// says.
    fn forward(&mut self, ingress: PortId, packet: Packet, now: Duration) {
        let decision =
            match self
                .bridge
                .receive(ingress, &packet.frame, Instant::from_duration(now))
            {
                Ok(decision) => decision,
                Err(_) => return,
            };
        let ports = decision.ports();
        // The last vif takes the packet itself: a unicast frame between
        // guests (a GSO packet of up to 64 KiB) is not copied once more.
        let mut packet = Some(packet);
        for (index, &port) in ports.iter().enumerate() {
            let last = index + 1 == ports.len();
            let Some(current) = packet.as_ref() else {
                break;
            };
            if let Some(local) = self.local.as_mut().filter(|local| local.port == port) {
                // Dom0's stack checks every checksum: a guest's offloads
                // are done here, as for the NIC.
                let (frames, complete) = current.wire_frames();
                let mut dropped = !complete;
                for frame in frames {
                    if local.inbox.len() < LOCAL_INBOX_FRAMES {
                        local.inbox.push_back(frame);
                    } else {
                        dropped = true;
                    }
                }
                if dropped {
                    let _ = self.bridge.note_egress_drop(port);
                }
                continue;
            }
            if Some(port) == self.nic_port {
                if !self.send_to_nic(current) {
                    let _ = self.bridge.note_egress_drop(port);
                }
                continue;
            }
            let Some(target) = self.vifs.values_mut().find(|vif| vif.port == port) else {
                continue;
            };
            let Some(vif) = target.vif.as_mut() else {
                let _ = self.bridge.note_egress_drop(port);
                continue;
            };
            let copy = if last { packet.take() } else { packet.clone() };
            let delivered = copy.is_some_and(|copy| vif.deliver(copy).is_ok());
            if !delivered {
                let _ = self.bridge.note_egress_drop(port);
            }
        }
    }

    /// Sends a packet out of the NIC, segmenting and filling checksums
    /// first (the NIC is driven without offloads). False if dropped.
    fn send_to_nic(&mut self, packet: &Packet) -> bool {
        let Some(nic) = &mut self.nic else {
            return false;
        };
        let (frames, mut sent) = packet.wire_frames();
        for frame in frames {
            let mut result = nic.send(&frame);
            if result == Err(NetError::QueueFull) {
                nic.reclaim();
                result = nic.send(&frame);
            }
            if result.is_err() {
                self.nic_drops += 1;
                sent = false;
            }
        }
        sent
    }
}

/// Carries out a vif's handshake actions in xenstore and on its rings.
fn carry_out(guest: &mut GuestVif, actions: Vec<HandshakeAction>, keys: &mut Keys<'_>) {
    let mut pending = actions;
    // A failed connect adds the fail's actions once; bounded either way.
    for _ in 0..2 {
        let mut follow_up = Vec::new();
        for action in pending {
            match action {
                HandshakeAction::WriteBackendKey { key, value } => {
                    write(keys, &format!("{}/{key}", guest.backend), &value);
                }
                HandshakeAction::SwitchState(state) => {
                    write(
                        keys,
                        &format!("{}/state", guest.backend),
                        &format!("{}", state.as_raw()),
                    );
                    if matches!(state, XenbusState::Connected | XenbusState::Closed) {
                        info!(
                            "dom0: {} {}",
                            guest.name(),
                            if state == XenbusState::Connected {
                                "connected"
                            } else {
                                "closed"
                            }
                        );
                    }
                }
                HandshakeAction::Connect(config) => {
                    if let Err(why) = connect(guest, config) {
                        warn!("dom0: {}: connecting failed: {why}", guest.name());
                        guest.unbind();
                        follow_up.extend(guest.handshake.fail(&why));
                        // What followed the connect (the switch to
                        // Connected) must not happen: the front end would
                        // see a back end that is not there.
                        break;
                    }
                }
                HandshakeAction::Disconnect => guest.unbind(),
                HandshakeAction::ReportError(why) => {
                    warn!("dom0: {}: {why}", guest.name());
                    let path = format!(
                        "/local/domain/0/error/backend/vif/{}/{}/error",
                        guest.domain.0, guest.device_id
                    );
                    write(keys, &path, &why);
                }
            }
        }
        if follow_up.is_empty() {
            return;
        }
        pending = follow_up;
    }
}

fn write(keys: &mut Keys<'_>, path: &str, value: &str) {
    let connection = keys.connection;
    let store = keys.store.get_mut();
    if let Err(error) = store
        .session(connection, None)
        .write(path, value.as_bytes())
    {
        warn!("dom0: writing {path} failed: {error:?}");
    }
}

/// Reaches each queue's rings by grant copy, binds its event channels and
/// connects the vif.
fn connect(guest: &mut GuestVif, config: FrontendConfig) -> Result<(), String> {
    let domain = guest.domain;
    let mut resources = Vec::with_capacity(config.queues.len());
    for (index, queue) in config.queues.iter().enumerate() {
        let tx_ring = GrantedRing::new(domain, &[queue.tx_ring_ref])
            .map_err(|error| format!("queue {index}: TX ring grant {}", error.grant.0))?;
        let rx_ring = GrantedRing::new(domain, &[queue.rx_ring_ref])
            .map_err(|error| format!("queue {index}: RX ring grant {}", error.grant.0))?;
        let mut bind = |remote: Port| {
            event_channel::bind_interdomain(domain, remote)
                .inspect(|&port| guest.bound.push(port))
                .map_err(|error| format!("queue {index}: binding port {}: {error:?}", remote.0))
        };
        let (tx_port, rx_port) = match queue.event_channels {
            EventChannels::Shared(remote) => {
                let port = bind(remote)?;
                (port, port)
            }
            EventChannels::Split { tx, rx } => (bind(tx)?, bind(rx)?),
        };
        resources.push(QueueResources {
            tx_ring,
            rx_ring,
            tx_port,
            rx_port,
        });
    }
    let vif = Vif::connect(VifConfig::new(domain), config.features, resources)
        .map_err(|error| format!("{error:?}"))?;
    guest.vif = Some(vif);
    Ok(())
}

impl core::fmt::Debug for NetService {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("NetService")
            .field("nic", &self.nic.is_some())
            .field("vifs", &self.vifs.len())
            .field("nic_drops", &self.nic_drops)
            .finish()
    }
}
