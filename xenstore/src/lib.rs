//! xenstored's core as pure logic, for Dom0 to host: the wire format
//! (`xs_wire.h`), the node tree with Xen's permissions, optimistic
//! transactions, watches (including `@introduceDomain`/`@releaseDomain`),
//! domain introduction and release, per-domain quotas, bounded
//! per-connection queues and fair request processing. Rings, event channels
//! and page mappings stay in Dom0's glue, which this crate tells what to do
//! through [`Action`]s.
//!
//! The authority is Xen's `docs/misc/xenstore.txt` and C xenstored
//! (`tools/xenstored`). Deliberate differences:
//!
//! - Quota errors are `EQUOTA` (as oxenstored), not C's `ENOSPC`; a value
//!   over `node-size` is `E2BIG`. Defaults are higher than C's.
//! - Payloads are parsed strictly: bytes after the last NUL, non-decimal
//!   numbers (C's `strtol(.., 0)` takes `0x5`) and negative gfns are `EINVAL`.
//! - Memory is bounded per connection by queue limits, not a memory quota;
//!   unread watch events beyond the bound are dropped and counted, and no
//!   timeout closes a slow reader.
//! - A transaction conflicts if any node it touched changed, not only nodes
//!   it read: more `EAGAIN`, never a lost update.
//! - Permission entries naming a released domain are removed (C marks them
//!   ignored); `DOMID_ANY` may not own a node.
//! - A request's reply is queued before the watch events it causes.
//! - Not here: `SET_FEATURE` (`ENOSYS`), `CONTROL` beyond `check`/`help`,
//!   live update, persistence, logging.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod connection;
pub mod domain;
mod error;
pub mod local;
mod operations;
pub mod path;
pub mod permissions;
pub mod request;
pub mod server;
pub mod transaction;
pub mod tree;
pub mod watch;
pub mod wire;

pub use config::{BufferLimits, Config, Quotas};
pub use connection::{Connection, ConnectionId, ConnectionKind};
pub use domain::{DomainInfo, GuestFrame};
pub use error::Error;
pub use local::Session;
pub use permissions::{Access, Caller, Permission, Permissions};
pub use request::{Request, Response};
pub use server::{Action, ReceiveError, Round, Xenstored};
pub use transaction::TransactionId;
pub use watch::WatchEvent;
pub use xenolith_abi::domain::DomainId;
pub use xenolith_abi::event_channel::Port;
