//! The API server: a bounded set of [`Connection`]s sharing one
//! configuration and one set of counters. The caller owns the sockets and
//! the clock; the server only sees connection ids, bytes and instants.

use alloc::vec::Vec;

use crate::backend::Backend;
use crate::connection::{Connection, Output};
use crate::response::Response;
pub use crate::service::ServerConfig;
use crate::service::Service;
use crate::time::Instant;

/// Names one accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u32);

/// A connection the server had no room for: write `response` (a 503) and
/// close it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The bytes to write before closing.
    pub response: Vec<u8>,
}

/// The server.
#[derive(Debug)]
pub struct Server {
    service: Service,
    connections: Vec<(ConnectionId, Connection)>,
    next_id: u32,
}

impl Server {
    /// A server with no connections.
    pub fn new(config: ServerConfig) -> Server {
        Server {
            service: Service::new(config),
            connections: Vec::new(),
            next_id: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.service.config
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Takes a new connection, or refuses it when the server is full.
    pub fn accept(&mut self, now: Instant) -> Result<ConnectionId, Refused> {
        if self.connections.len() >= self.service.config.limits.max_connections {
            let statistics = &mut self.service.statistics;
            statistics.refused_connections = statistics.refused_connections.saturating_add(1);
            self.service.record(503);
            let response = Response::error(503, "too many connections; try again later");
            return Err(Refused {
                response: response.to_bytes(false),
            });
        }
        let id = ConnectionId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.connections.push((id, Connection::new(now)));
        self.update_open_count();
        Ok(id)
    }

    /// Bytes received on connection `id` at `now`. An unknown id (already
    /// closed) just gets [`Output::Close`].
    pub fn receive(
        &mut self,
        id: ConnectionId,
        bytes: &[u8],
        now: Instant,
        backend: &mut dyn Backend,
    ) -> Vec<Output> {
        let Some(index) = self.index(id) else {
            return alloc::vec![Output::Close];
        };
        let outputs = match self.connections.get_mut(index) {
            Some((_, connection)) => connection.receive(bytes, now, &mut self.service, backend),
            None => Vec::new(),
        };
        self.forget_closed();
        outputs
    }

    /// Timeouts and waiting console reads: call when
    /// [`Server::next_deadline`] passes and when a console has new output.
    pub fn poll(&mut self, now: Instant, backend: &mut dyn Backend) -> Vec<(ConnectionId, Output)> {
        let mut outputs = Vec::new();
        for (id, connection) in &mut self.connections {
            for output in connection.poll(now, &mut self.service, backend) {
                outputs.push((*id, output));
            }
        }
        self.forget_closed();
        outputs
    }

    /// The peer closed connection `id` (or the socket failed).
    pub fn peer_closed(&mut self, id: ConnectionId) {
        self.connections.retain(|(open, _)| *open != id);
        self.update_open_count();
    }

    /// The earliest time [`Server::poll`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .iter()
            .filter_map(|(_, connection)| connection.next_deadline(&self.service))
            .min()
    }

    fn index(&self, id: ConnectionId) -> Option<usize> {
        self.connections.iter().position(|(open, _)| *open == id)
    }

    fn forget_closed(&mut self) {
        self.connections
            .retain(|(_, connection)| !connection.is_closed());
        self.update_open_count();
    }

    fn update_open_count(&mut self) {
        self.service.statistics.open_connections =
            u64::try_from(self.connections.len()).unwrap_or(u64::MAX);
    }
}
