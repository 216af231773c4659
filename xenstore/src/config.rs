//! Configuration: per-domain quotas (adjustable at run time with
//! `SET_QUOTA`, per domain or as the default for new domains) and the
//! bounds on the buffers each connection may fill.

use crate::Error;
use crate::wire::{FEATURE_ERROR, FEATURE_WATCH_DEPTH, RELATIVE_PATH_MAX};

/// Per-domain quotas for unprivileged domains; 0 disables a quota, as in
/// Xen. Exceeding a count answers `EQUOTA`, an over-long value `E2BIG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own (`nodes`).
    pub nodes: u32,
    /// Bytes in one value (`node-size`).
    pub value_size: u32,
    /// Watches per connection (`watches`).
    pub watches: u32,
    /// Open transactions per connection (`transactions`).
    pub transactions: u32,
    /// Nodes one transaction may touch (`transaction-nodes`).
    pub transaction_nodes: u32,
    /// Entries in one permission list (`node-permissions`).
    pub permissions: u32,
    /// Bytes of a path after `/local/domain/<id>/` (`path-max`); paths are
    /// never longer than `XENSTORE_ABS_PATH_MAX` whatever this says.
    pub path_max: u32,
}

impl Default for Quotas {
    /// Generous defaults: above C xenstored's (1000 nodes, 128 watches,
    /// 10 transactions, 5 permissions) so busy guests never hit them.
    fn default() -> Self {
        Self {
            nodes: 2048,
            value_size: 2048,
            watches: 512,
            transactions: 64,
            transaction_nodes: 1024,
            permissions: 16,
            path_max: RELATIVE_PATH_MAX as u32,
        }
    }
}

impl Quotas {
    /// The quota names `GET_QUOTA`/`SET_QUOTA` accept (C xenstored's).
    pub const NAMES: [&'static str; 7] = [
        "nodes",
        "node-size",
        "watches",
        "transactions",
        "transaction-nodes",
        "node-permissions",
        "path-max",
    ];

    /// A quota as a limit: `None` when disabled (0).
    pub const fn limit(value: u32) -> Option<u64> {
        if value == 0 { None } else { Some(value as u64) }
    }

    /// The value of a named quota.
    pub fn get(&self, name: &str) -> Result<u32, Error> {
        Ok(match name {
            "nodes" => self.nodes,
            "node-size" => self.value_size,
            "watches" => self.watches,
            "transactions" => self.transactions,
            "transaction-nodes" => self.transaction_nodes,
            "node-permissions" => self.permissions,
            "path-max" => self.path_max,
            _ => return Err(Error::InvalidArgument),
        })
    }

    /// Sets a named quota.
    pub fn set(&mut self, name: &str, value: u32) -> Result<(), Error> {
        let field = match name {
            "nodes" => &mut self.nodes,
            "node-size" => &mut self.value_size,
            "watches" => &mut self.watches,
            "transactions" => &mut self.transactions,
            "transaction-nodes" => &mut self.transaction_nodes,
            "node-permissions" => &mut self.permissions,
            "path-max" => &mut self.path_max,
            _ => return Err(Error::InvalidArgument),
        };
        *field = value;
        Ok(())
    }
}

/// Bounds on what one connection may have queued; these protect Dom0's
/// memory and are not quotas (0 is not "unlimited" here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    /// Whole requests waiting to be processed. When full, `receive`
    /// consumes no more bytes: the rest stays in the ring (back-pressure).
    pub queued_requests: usize,
    /// Reply bytes waiting for the client. Past this, the connection's
    /// requests wait until it reads its replies (back-pressure again).
    pub reply_bytes: usize,
    /// Watch events waiting for the client. Past this (or the byte bound)
    /// new events for the connection are dropped and counted.
    pub queued_watch_events: usize,
    /// Bytes of watch events waiting for the client.
    pub watch_event_bytes: usize,
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self {
            queued_requests: 64,
            reply_bytes: 16 * 1024,
            queued_watch_events: 1024,
            watch_event_bytes: 256 * 1024,
        }
    }
}

/// Everything configurable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Quotas a newly introduced domain starts with.
    pub quotas: Quotas,
    /// Per-connection buffer bounds.
    pub buffers: BufferLimits,
    /// What `GET_FEATURE` reports and Dom0 writes into each ring page's
    /// `server_features`. `FEATURE_ERROR` promises that Dom0 sets the
    /// ring's `error` field when `receive` reports a protocol error.
    pub server_features: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            quotas: Quotas::default(),
            buffers: BufferLimits::default(),
            server_features: FEATURE_ERROR | FEATURE_WATCH_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_and_set() {
        let mut quotas = Quotas::default();
        for name in Quotas::NAMES {
            quotas.set(name, 7).unwrap();
            assert_eq!(quotas.get(name), Ok(7));
        }
        assert_eq!(quotas.get("memory"), Err(Error::InvalidArgument));
        assert_eq!(Quotas::limit(0), None);
        assert_eq!(Quotas::limit(3), Some(3));
    }

    #[test]
    fn defaults_are_generous() {
        let quotas = Quotas::default();
        assert!(quotas.nodes >= 1000 && quotas.watches >= 512 && quotas.transactions >= 64);
        assert_eq!(quotas.value_size, 2048);
    }
}
