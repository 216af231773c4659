//! Bridge ports: their identifiers, configuration and counters.

use crate::ethernet::MacAddress;

/// A bridge port's identifier. Ids are never reused while the bridge lives,
/// so a stale id names no port rather than a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u32);

/// How a port is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortConfig {
    /// The only source address this port may send from (a vif with a
    /// configured `mac`, or Dom0's own interface). The address is pinned to
    /// the port in the MAC table: it never ages, is never evicted and is
    /// never learned elsewhere. Unknown unicast is not flooded to such a
    /// port, since it cannot own any other address. `None` (the NIC, or a
    /// vif without a configured MAC) learns whatever it sends from.
    pub guarded_mac: Option<MacAddress>,
}

impl PortConfig {
    /// A port that may send from any valid address (the NIC).
    pub const fn open() -> Self {
        Self { guarded_mac: None }
    }

    /// A port that may send only from `mac`.
    pub const fn guarded(mac: MacAddress) -> Self {
        Self {
            guarded_mac: Some(mac),
        }
    }
}

/// One port's counters. "Received" is what entered the bridge through the
/// port, "transmitted" what the bridge handed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Frames that entered through this port, dropped ones included.
    pub received_frames: u64,
    /// Bytes of those frames.
    pub received_bytes: u64,
    /// Frames forwarded out of this port (flooded ones included).
    pub transmitted_frames: u64,
    /// Bytes of those frames.
    pub transmitted_bytes: u64,
    /// Received frames shorter than an Ethernet header.
    pub dropped_runt: u64,
    /// Received frames with a multicast or all-zero source address.
    pub dropped_invalid_source: u64,
    /// Received frames whose source was not the port's guarded address.
    pub dropped_spoofed: u64,
    /// Received frames to an 802.1D link-local address (STP, pause, LACP).
    pub dropped_link_local: u64,
    /// Received frames with no port to go to: the destination sits behind
    /// the ingress port itself, or there is no other port to flood to.
    pub dropped_no_destination: u64,
    /// Frames the bridge forwarded here that the port's owner could not
    /// queue (reported through [`crate::Bridge::note_egress_drop`]).
    pub dropped_egress: u64,
}

impl PortCounters {
    /// All frames dropped on the way in.
    pub fn dropped_on_receive(&self) -> u64 {
        self.dropped_runt
            .saturating_add(self.dropped_invalid_source)
            .saturating_add(self.dropped_spoofed)
            .saturating_add(self.dropped_link_local)
            .saturating_add(self.dropped_no_destination)
    }
}
