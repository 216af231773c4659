//! The blkif back end (`io/blkif.h`) as a pure state machine: the xenbus
//! handshake and keys, request validation, and reads, writes, flushes,
//! discards and indirect requests against a block device trait.
//!
//! # Shape
//!
//! [`Blkback`] serves one virtual disk. Dom0 feeds it [`Input`]s with the
//! time — [`Input::Start`] once, [`Input::FrontendChanged`] when the watch
//! on `<frontend>/state` fires, [`Input::Notified`] for an event on one of
//! its ports, [`Input::Completed`] for each device completion — and carries
//! out the [`Action`]s it returns (notify a port, log a refused request).
//! It reaches the world through traits Dom0 implements:
//!
//! - [`Grants`]: map the ring's pages, copy to and from granted pages;
//! - [`Events`]: bind and unbind inter-domain event channels;
//! - [`BlockDevice`]: asynchronous submission, completions fed back;
//! - [`Xenstore`]: read and write keys (passed to each `process` call).
//!
//! Fakes of all four ship in [`fake`] (feature `test-utils`), with a fake
//! blkfront that performs Linux's side of the handshake.
//!
//! # Protocol choices
//!
//! - Data moves by grant copy into owned buffers (`feature-persistent` is
//!   written as 0). Requests in flight are capped by
//!   [`Config::queue_depth`]; beyond it the ring is left unread
//!   (back-pressure) until completions free a slot.
//! - `FLUSH_DISKCACHE` waits until every write accepted before it has
//!   completed, writes its own data (if any), then flushes the device, and
//!   only then answers: Linux's FUA and pre-flush writes are both honoured.
//! - `DISCARD` (only when [`DiskInfo::discard`] is offered) goes to the
//!   device alone: it waits until every request accepted before it has
//!   completed, and no request is taken from the rings until it is done,
//!   so a device that frees and reuses space (a qcow2 image) never has a
//!   request in flight to a place the discard freed.
//! - `WRITE_BARRIER` is not advertised and answered `EOPNOTSUPP`, as are
//!   unknown operations, flushes and discards the disk does not offer, and
//!   indirect requests when indirect segments are disabled.
//! - Only the `x86_64-abi` protocol is served; a 32-bit front end is refused
//!   at connect time (error written, state Closing).
//! - A response carries the request's operation, or for an indirect
//!   request its inner operation (Linux blkfront checks this).
//! - A producer index out of range disconnects the device: potential
//!   malicious front end.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod backend;
mod config;
mod error;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
mod interfaces;
pub mod wire;
mod xenbus;

#[cfg(test)]
mod tests;

pub use backend::{Action, Blkback, Input, REPORTS_PER_SECOND, Statistics, Time};
pub use config::{Config, DiscardInfo, DiskInfo};
pub use error::{ConnectError, RequestError};
pub use interfaces::{
    BlockDevice, Completion, DeviceError, DeviceOperation, DeviceTag, Events, GrantError, Grants,
    GuestPiece, Sector, Xenstore, XenstoreError,
};
pub use xenbus::{FrontendKeys, QueueKeys, XenbusState};
pub use xenolith_abi::domain::DomainId;
pub use xenolith_abi::event_channel::Port;
pub use xenolith_abi::grant_table::GrantRef;
