//! The netif back end (`xen/include/public/io/netif.h`) as a pure state
//! machine: the xenbus handshake, TX and RX rings, validation, checksums,
//! GSO and per-vif counters.
//!
//! # Shape
//!
//! - [`Handshake`] turns the front end's state changes into
//!   [`HandshakeAction`]s (keys to write, states to switch to, connect,
//!   disconnect); [`FrontendConfig::read`] reads and checks the front end's
//!   keys through [`FrontendKeys`].
//! - [`Vif`] is one connected vif over rings reached through
//!   [`xen_ring::RingMemory`] and the front end's pages reached through
//!   [`Grants`] (grant copies; Dom0 implements them with `GNTTABOP_copy`).
//!   [`Vif::poll`] takes TX packets off the ring (returned to Dom0 for the
//!   bridge) and fills RX pages with packets handed to [`Vif::deliver`];
//!   it returns the event channels to notify.
//! - [`checksum`] fills or verifies TCP/UDP checksums over IPv4/IPv6;
//!   [`gso`] segments TCP GSO packets.
//!
//! # Guest faults
//!
//! Every bad TX packet (bad grant reference, too many slots, sizes that do
//! not add up, a slot crossing its page, malformed extra info, a blank
//! checksum on unreadable headers) is answered `XEN_NETIF_RSP_ERROR` on
//! each of its slots (`NULL` on extra-info slots), dropped and counted.
//! More than [`AbusePolicy::bad_packets`] within [`AbusePolicy::window`],
//! ring indices out of range, or one packet running to more slots than
//! the ring holds, disconnect the vif
//! ([`VifActions::disconnect`]). Nothing a guest writes can panic, loop
//! without bound or allocate without a cap.
//!
//! # Differences from Linux's netback
//!
//! - TX data is grant-copied whole (Linux maps the fragments after the
//!   first 128 bytes).
//! - A packet whose slots are only partly published waits for the rest
//!   (Linux treats it as fatal).
//! - Over-long slot chains are answered as they arrive and dropped, not
//!   fatal (Linux disconnects beyond 20 slots); abuse is judged by the
//!   rate of bad packets, and a chain longer than the ring is fatal.
//! - Multicast control and hash extra-info are accepted and ignored (the
//!   bridge floods multicast); `feature-ctrl-ring`, XDP headroom and
//!   multi-page rings are not offered.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod checksum;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
pub mod grants;
pub mod gso;
pub mod packet;
mod rx;
mod tx;
mod vif;
pub mod wire;
pub mod xenbus;

#[cfg(test)]
mod tests;

pub use grants::{GrantCopyError, GrantSegment, GrantStatus, Grants};
pub use packet::{ChecksumState, Offload, Packet};
pub use rx::{MAX_FRAME_WITHOUT_SG, RxDrop};
pub use tx::{MAX_EXTRA_INFO, TxFault};
pub use vif::{
    AbusePolicy, ConnectError, DisconnectReason, QueueResources, Vif, VifActions, VifConfig,
    VifCounters,
};
pub use xenbus::{
    BackendFeatures, EventChannels, FrontendConfig, FrontendFeatures, FrontendKeys, Handshake,
    HandshakeAction, HandshakeError, QueueKeys, XenbusState,
};
