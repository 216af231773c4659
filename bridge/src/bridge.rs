//! The bridge proper: ports, forwarding decisions and their counters.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use crate::ethernet::{EthernetFrame, EthernetHeader, FrameError, MacAddress};
use crate::port::{PortConfig, PortCounters, PortId};
use crate::table::{MacTable, TableCounters};
use crate::time::Instant;

/// Limits and timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Learned MAC entries kept at most; the least recently seen one is
    /// evicted to make room.
    pub mac_capacity: usize,
    /// How long a learned entry lives without a frame from its address.
    pub aging: Duration,
    /// Ports at most (bounds the work and the list of a flood).
    pub max_ports: usize,
}

impl Default for BridgeConfig {
    /// Linux's bridge defaults for aging (300 s); room for a few thousand
    /// stations and 64 ports.
    fn default() -> Self {
        Self {
            mac_capacity: 4096,
            aging: Duration::from_secs(300),
            max_ports: 64,
        }
    }
}

/// A caller's mistake in using the bridge (never a frame's fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeError {
    /// No port has this id (never added, or removed).
    UnknownPort(PortId),
    /// The bridge already has `BridgeConfig::max_ports` ports.
    TooManyPorts {
        /// The limit.
        limit: usize,
    },
    /// A guarded port's address is multicast or zero.
    InvalidGuardedMac(MacAddress),
    /// A guarded port's address is already pinned to another port.
    MacPinnedElsewhere {
        /// The address.
        mac: MacAddress,
        /// The port that has it.
        port: PortId,
    },
}

/// Why a received frame goes nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt {
        /// Its length.
        length: usize,
    },
    /// A multicast or all-zero source address.
    InvalidSource(MacAddress),
    /// A guarded port sent from an address other than its own.
    Spoofed {
        /// The address it claimed.
        source: MacAddress,
    },
    /// An 802.1D link-local destination (STP, pause, LACP): never bridged.
    LinkLocal,
    /// The destination sits behind the ingress port, or no other port
    /// exists to flood to.
    NoDestination,
}

/// What to do with a received frame. The frame itself stays with the
/// caller: it sends the same bytes to every port named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send to the one port the destination is known to be behind.
    Unicast(PortId),
    /// Send to each of these ports (broadcast, multicast, or unknown
    /// unicast). Never empty, never the ingress port.
    Flood(Vec<PortId>),
    /// Send nowhere; the ingress port's counters say why.
    Drop(DropReason),
}

impl Decision {
    /// The destination ports (empty for a drop).
    pub fn ports(&self) -> &[PortId] {
        match self {
            Decision::Unicast(port) => core::slice::from_ref(port),
            Decision::Flood(ports) => ports,
            Decision::Drop(_) => &[],
        }
    }
}

#[derive(Debug)]
struct Port {
    config: PortConfig,
    counters: PortCounters,
}

/// An L2 learning bridge. Pure: frames and time come in, decisions go out.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    ports: BTreeMap<PortId, Port>,
    next_port: u32,
    table: MacTable,
}

impl Bridge {
    /// An empty bridge.
    pub fn new(config: BridgeConfig) -> Self {
        Self {
            config,
            ports: BTreeMap::new(),
            next_port: 0,
            table: MacTable::new(config.mac_capacity, config.aging),
        }
    }

    /// Adds a port; a guarded port's address is pinned to it at once, so
    /// frames for it are delivered before it has sent anything.
    pub fn add_port(&mut self, config: PortConfig, now: Instant) -> Result<PortId, BridgeError> {
        if self.ports.len() >= self.config.max_ports {
            return Err(BridgeError::TooManyPorts {
                limit: self.config.max_ports,
            });
        }
        // Ids are u32 and never reused; running out would take four billion
        // hot-plugs.
        let Some(following) = self.next_port.checked_add(1) else {
            return Err(BridgeError::TooManyPorts {
                limit: self.ports.len(),
            });
        };
        let id = PortId(self.next_port);
        if let Some(mac) = config.guarded_mac {
            if !mac.is_valid_source() {
                return Err(BridgeError::InvalidGuardedMac(mac));
            }
            self.table
                .pin(mac, id, now)
                .map_err(|port| BridgeError::MacPinnedElsewhere { mac, port })?;
        }
        self.next_port = following;
        self.ports.insert(
            id,
            Port {
                config,
                counters: PortCounters::default(),
            },
        );
        Ok(id)
    }

    /// Removes a port and forgets every address behind it. Returns its
    /// final counters.
    pub fn remove_port(&mut self, port: PortId) -> Result<PortCounters, BridgeError> {
        let removed = self
            .ports
            .remove(&port)
            .ok_or(BridgeError::UnknownPort(port))?;
        self.table.forget_port(port);
        Ok(removed.counters)
    }

    /// Decides where a frame that entered through `ingress` at `now` goes,
    /// learning its source on the way, and counts it.
    pub fn receive(
        &mut self,
        ingress: PortId,
        frame: &[u8],
        now: Instant,
    ) -> Result<Decision, BridgeError> {
        let length = u64::try_from(frame.len()).unwrap_or(u64::MAX);
        let port = self
            .ports
            .get_mut(&ingress)
            .ok_or(BridgeError::UnknownPort(ingress))?;
        let counters = &mut port.counters;
        counters.received_frames = counters.received_frames.saturating_add(1);
        counters.received_bytes = counters.received_bytes.saturating_add(length);
        let guarded_mac = port.config.guarded_mac;

        let header = match EthernetFrame::new_checked(frame).and_then(|f| EthernetHeader::parse(&f))
        {
            Ok(header) => header,
            Err(FrameError::TooShort { length }) => {
                return Ok(self.drop(ingress, DropReason::Runt { length }));
            }
            Err(FrameError::MulticastSource | FrameError::ZeroSource) => {
                let source = EthernetFrame::new_checked(frame)
                    .map(|f| f.source())
                    .unwrap_or_default();
                return Ok(self.drop(ingress, DropReason::InvalidSource(source)));
            }
        };
        if guarded_mac.is_some_and(|mac| mac != header.source) {
            return Ok(self.drop(
                ingress,
                DropReason::Spoofed {
                    source: header.source,
                },
            ));
        }

        self.table.expire(now);
        self.table.learn(header.source, ingress, now);

        let destination = header.destination;
        if destination.is_link_local() {
            return Ok(self.drop(ingress, DropReason::LinkLocal));
        }
        if !destination.is_multicast()
            && let Some(port) = self.table.lookup(destination, now)
        {
            if port == ingress {
                return Ok(self.drop(ingress, DropReason::NoDestination));
            }
            self.count_transmit(port, length);
            return Ok(Decision::Unicast(port));
        }
        // Broadcast and multicast reach every other port. Unknown unicast
        // skips guarded ports: they own only their pinned address, which is
        // never unknown, so flooding there would only leak traffic.
        let unknown_unicast = !destination.is_multicast();
        let targets: Vec<PortId> = self
            .ports
            .iter()
            .filter(|(id, port)| {
                **id != ingress && !(unknown_unicast && port.config.guarded_mac.is_some())
            })
            .map(|(id, _)| *id)
            .collect();
        if targets.is_empty() {
            return Ok(self.drop(ingress, DropReason::NoDestination));
        }
        for target in &targets {
            self.count_transmit(*target, length);
        }
        Ok(Decision::Flood(targets))
    }

    /// Counts a frame forwarded to `port` that its owner could not queue
    /// (a full vif RX ring or NIC queue).
    pub fn note_egress_drop(&mut self, port: PortId) -> Result<(), BridgeError> {
        let port = self
            .ports
            .get_mut(&port)
            .ok_or(BridgeError::UnknownPort(port))?;
        port.counters.dropped_egress = port.counters.dropped_egress.saturating_add(1);
        Ok(())
    }

    /// Forgets learned addresses unseen for the aging time (also done on
    /// every receive; call it from a timer to free memory on a quiet link).
    pub fn expire(&mut self, now: Instant) {
        self.table.expire(now);
    }

    /// The port `mac` is behind, if known at `now`.
    pub fn lookup(&self, mac: MacAddress, now: Instant) -> Option<PortId> {
        self.table.lookup(mac, now)
    }

    /// A port's counters.
    pub fn port_counters(&self, port: PortId) -> Option<&PortCounters> {
        self.ports.get(&port).map(|port| &port.counters)
    }

    /// A port's configuration.
    pub fn port_config(&self, port: PortId) -> Option<&PortConfig> {
        self.ports.get(&port).map(|port| &port.config)
    }

    /// The ports, in id order.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    /// The MAC table (entries and table-wide counters).
    pub fn mac_table(&self) -> &MacTable {
        &self.table
    }

    /// Table-wide counters.
    pub fn table_counters(&self) -> &TableCounters {
        self.table.counters()
    }

    fn drop(&mut self, ingress: PortId, reason: DropReason) -> Decision {
        if let Some(port) = self.ports.get_mut(&ingress) {
            let counters = &mut port.counters;
            let counter = match reason {
                DropReason::Runt { .. } => &mut counters.dropped_runt,
                DropReason::InvalidSource(_) => &mut counters.dropped_invalid_source,
                DropReason::Spoofed { .. } => &mut counters.dropped_spoofed,
                DropReason::LinkLocal => &mut counters.dropped_link_local,
                DropReason::NoDestination => &mut counters.dropped_no_destination,
            };
            *counter = counter.saturating_add(1);
        }
        Decision::Drop(reason)
    }

    fn count_transmit(&mut self, port: PortId, length: u64) {
        if let Some(port) = self.ports.get_mut(&port) {
            let counters = &mut port.counters;
            counters.transmitted_frames = counters.transmitted_frames.saturating_add(1);
            counters.transmitted_bytes = counters.transmitted_bytes.saturating_add(length);
        }
    }
}
