//! Dom0's L2 bridge: MAC learning with aging, flooding, per-port counters
//! and a spoofing guard.
//!
//! One port per participant: the NIC, each vif, Dom0's own interface. The
//! caller hands each received frame to [`Bridge::receive`] with the time,
//! and gets a [`Decision`]: the destination ports, or a drop with its
//! reason. Frames are never copied here; the caller sends the same bytes to
//! each port named.
//!
//! Behaviour, and where it follows Linux's bridge:
//!
//! - Frames shorter than 14 bytes, and frames from a multicast or all-zero
//!   source, are dropped and counted (`br_handle_frame`).
//! - A guarded port (a vif with a configured MAC) may send only from that
//!   address; its address is pinned to it, so no other port can learn it
//!   and unknown unicast is not flooded to it.
//! - Learned addresses age out (300 s by default) and the table is bounded:
//!   a new address evicts the least recently seen one.
//! - Broadcast, multicast and unknown unicast are flooded to every other
//!   port; 802.1D link-local destinations (STP, pause, LACP) are not
//!   bridged; nothing goes back out of its ingress port.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod bridge;
pub mod ethernet;
pub mod port;
pub mod table;
pub mod time;

pub use bridge::{Bridge, BridgeConfig, BridgeError, Decision, DropReason};
pub use ethernet::{EtherType, EthernetFrame, EthernetHeader, FrameError, MacAddress};
pub use port::{PortConfig, PortCounters, PortId};
pub use table::{EntryKind, Learning, MacEntry, MacTable, TableCounters};
pub use time::Instant;

#[cfg(test)]
mod tests;
