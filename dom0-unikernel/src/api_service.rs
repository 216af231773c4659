//! The management API on Dom0's address: a fixed set of smoltcp TCP sockets
//! listening on `api_port`, each connection fed to one `mgmt_api::Server`
//! (the HTTP/JSON state machine) and its answers written back. The server
//! only sees connection ids, bytes and milliseconds; this module owns the
//! sockets, and the toolstack comes in as a `Backend` on every call.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use config::ApiConfig;
use log::warn;
use mgmt_api::{Access, Backend, ConnectionId, Limits, Output, Server, ServerConfig, Token};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

/// Connections served at once: each has a socket listening for it. A
/// client finding none listening is reset and may try again.
pub const SOCKETS: usize = 6;
/// Each socket's receive buffer (a request is read a part at a time).
const RECEIVE_BYTES: usize = 4 * 1024;
/// Each socket's send buffer; longer answers wait in `pending`.
const SEND_BYTES: usize = 16 * 1024;
/// A connection whose unsent answers reach this is not read until the
/// client takes them: a client that pipelines without reading holds its
/// own TCP window shut instead of Dom0's memory.
const PENDING_HIGH_WATER: usize = 64 * 1024;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 2048;
/// Reads per socket per pass (the rest waits for the next pass).
const READS_PER_PASS: usize = 8;
/// A peer that stops acknowledging is given up after this.
const SOCKET_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);
/// A connection the server ended is reset if it has not finished closing
/// this long after: a client that stops reading, or never closes its own
/// side, would otherwise hold a socket for good (Linux's `tcp_fin_timeout`).
pub const CLOSE_GRACE_MS: u64 = 30_000;

/// One listening socket and the connection on it.
struct Slot {
    handle: SocketHandle,
    /// The server's id for the connection, while it has one.
    connection: Option<ConnectionId>,
    /// Answer bytes the socket had no room for yet.
    pending: VecDeque<u8>,
    /// Close once `pending` is written.
    closing: bool,
    /// When `closing` was first seen (milliseconds).
    closing_since: Option<u64>,
}

/// The API's sockets and server.
pub struct ApiService {
    port: u16,
    server: Server,
    slots: Vec<Slot>,
}

fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; RECEIVE_BYTES]),
        tcp::SocketBuffer::new(vec![0; SEND_BYTES]),
    );
    socket.set_timeout(Some(SOCKET_TIMEOUT));
    socket
}

impl ApiService {
    /// Listens on `config.port` with [`SOCKETS`] sockets in `sockets`.
    pub fn new(config: &ApiConfig, sockets: &mut SocketSet<'static>) -> Self {
        let limits = Limits {
            max_connections: SOCKETS,
            ..Limits::DEFAULT
        };
        let server = Server::new(ServerConfig {
            access: Access::Token(Token::new(config.token.as_str())),
            limits,
        });
        let mut service = Self {
            port: config.port,
            server,
            slots: Vec::with_capacity(SOCKETS),
        };
        for _ in 0..SOCKETS {
            let handle = sockets.add(new_socket());
            service.slots.push(Slot {
                handle,
                connection: None,
                pending: VecDeque::new(),
                closing: false,
                closing_since: None,
            });
        }
        service
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves every socket at `now_ms` (Dom0's clock, milliseconds): takes
    /// new connections, feeds received bytes to the server, writes its
    /// answers, closes what it closed. True if anything moved.
    pub fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
        backend: &mut dyn Backend,
    ) -> bool {
        let now = mgmt_api::Instant::from_millis(now_ms);
        let mut moved = false;
        for index in 0..self.slots.len() {
            moved |= self.service_slot(index, sockets, now, backend);
        }
        // Timeouts, and console reads waiting for output.
        for (id, output) in self.server.poll(now, backend) {
            moved = true;
            if let Some(slot) = self
                .slots
                .iter_mut()
                .find(|slot| slot.connection == Some(id))
            {
                apply(slot, output);
            }
        }
        for slot in &mut self.slots {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            moved |= flush(slot, socket);
            if !slot.closing {
                continue;
            }
            let since = *slot.closing_since.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= CLOSE_GRACE_MS && socket.is_open() {
                socket.abort();
                moved = true;
            }
        }
        moved
    }

    fn service_slot(
        &mut self,
        index: usize,
        sockets: &mut SocketSet<'static>,
        now: mgmt_api::Instant,
        backend: &mut dyn Backend,
    ) -> bool {
        let port = self.port;
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        let state = sockets.get::<tcp::Socket>(slot.handle).state();
        match state {
            tcp::State::Closed | tcp::State::TimeWait => {
                // Listening again ends TIME-WAIT at once: with a few
                // sockets, ten seconds of it would turn clients away.
                if let Some(id) = slot.connection.take() {
                    self.server.peer_closed(id);
                }
                slot.pending.clear();
                slot.closing = false;
                slot.closing_since = None;
                if let Err(error) = sockets.get_mut::<tcp::Socket>(slot.handle).listen(port) {
                    warn!("dom0: api: cannot listen on port {port}: {error:?}");
                }
                return true;
            }
            tcp::State::Listen | tcp::State::SynReceived | tcp::State::SynSent => return false,
            _ => {}
        }
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        let mut moved = false;
        if slot.connection.is_none() && !slot.closing && state == tcp::State::Established {
            moved = true;
            match self.server.accept(now) {
                Ok(id) => slot.connection = Some(id),
                Err(refused) => {
                    slot.pending.extend(refused.response);
                    slot.closing = true;
                }
            }
        }
        if let Some(id) = slot.connection {
            let mut buffer = [0u8; READ_CHUNK];
            for _ in 0..READS_PER_PASS {
                if !socket.can_recv() || slot.pending.len() >= PENDING_HIGH_WATER {
                    break;
                }
                let Ok(count) = socket.recv_slice(&mut buffer) else {
                    break;
                };
                if count == 0 {
                    break;
                }
                moved = true;
                let received = buffer.get(..count).unwrap_or_default();
                for output in self.server.receive(id, received, now, backend) {
                    apply(slot, output);
                }
                if slot.connection.is_none() {
                    break;
                }
            }
            // The client sent all it will and has every answer: done.
            if slot.connection.is_some() && !socket.may_recv() && slot.pending.is_empty() {
                self.server.peer_closed(id);
                slot.connection = None;
                slot.closing = true;
                moved = true;
            }
        }
        moved | flush(slot, socket)
    }

    /// Answer bytes waiting for room in the sockets, over all connections.
    #[cfg(test)]
    fn pending_bytes(&self) -> usize {
        self.slots.iter().map(|slot| slot.pending.len()).sum()
    }

    /// When the server next needs [`ApiService::service`] without new
    /// bytes (milliseconds on Dom0's clock).
    pub fn next_deadline(&self) -> Option<u64> {
        let grace = self
            .slots
            .iter()
            .filter_map(|slot| slot.closing_since)
            .map(|since| since.saturating_add(CLOSE_GRACE_MS))
            .min();
        let server = self.server.next_deadline().map(|instant| instant.millis);
        match (server, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Takes one of the server's outputs for `slot`.
fn apply(slot: &mut Slot, output: Output) {
    match output {
        Output::Send(bytes) => slot.pending.extend(bytes),
        Output::Close => {
            // The server has forgotten the connection already.
            slot.connection = None;
            slot.closing = true;
        }
    }
}

/// Writes what the socket has room for; closes once all is written if the
/// connection is done. True if anything moved.
fn flush(slot: &mut Slot, socket: &mut tcp::Socket<'static>) -> bool {
    let mut moved = false;
    while socket.can_send() && !slot.pending.is_empty() {
        let (first, _) = slot.pending.as_slices();
        let Ok(count) = socket.send_slice(first) else {
            break;
        };
        if count == 0 {
            break;
        }
        slot.pending.drain(..count);
        moved = true;
    }
    if slot.closing && slot.pending.is_empty() && socket.is_open() {
        let closed = matches!(
            socket.state(),
            tcp::State::Established | tcp::State::CloseWait | tcp::State::SynReceived
        );
        if closed {
            socket.close();
            moved = true;
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dom0_ip::Dom0Ip;
    use config::ApplianceConfig;
    use core::net::Ipv4Addr;
    use mgmt_api::fake::FakeBackend;
    use smoltcp::time::Instant;

    const TOKEN: &str = "host-test-token-0123456789abcdef0123";
    const DOM0: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    /// Dom0's interface with the API, and a client interface, joined by a
    /// perfect wire; time advances a millisecond a step.
    struct Network {
        dom0: Dom0Ip,
        api: ApiService,
        client: Dom0Ip,
        backend: FakeBackend,
        now: u64,
        next_port: u16,
    }

    impl Network {
        fn new() -> Network {
            let dom0_config = ApplianceConfig::parse(&format!(
                "network = \"static\"\naddress = \"{DOM0}/24\"\napi_token = \"{TOKEN}\"\n"
            ))
            .unwrap();
            let client_config =
                ApplianceConfig::parse("network = \"static\"\naddress = \"10.0.0.2/24\"\n")
                    .unwrap();
            let start = Instant::from_millis(0);
            let mut dom0 = Dom0Ip::new(&dom0_config.network, [2, 0, 0, 0, 0, 1], 1, start);
            let api = ApiService::new(dom0_config.api.as_ref().unwrap(), &mut dom0.sockets);
            let client = Dom0Ip::new(&client_config.network, [2, 0, 0, 0, 0, 2], 2, start);
            Network {
                dom0,
                api,
                client,
                backend: FakeBackend::new(),
                now: 0,
                next_port: 40000,
            }
        }

        fn run(&mut self, milliseconds: u64) {
            for _ in 0..milliseconds {
                self.now += 1;
                let now = Instant::from_millis(self.now as i64);
                self.dom0.poll(now);
                self.api
                    .service(&mut self.dom0.sockets, self.now, &mut self.backend);
                self.dom0.poll(now);
                let to_client = self.dom0.take_outbound();
                self.client.push_inbound(to_client);
                self.client.poll(now);
                let to_dom0 = self.client.take_outbound();
                self.dom0.push_inbound(to_dom0);
            }
        }

        /// A client socket connecting to the API, with `receive` bytes of
        /// receive buffer.
        fn connect(&mut self, receive: usize) -> SocketHandle {
            let socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; receive]),
                tcp::SocketBuffer::new(vec![0; 128 * 1024]),
            );
            let handle = self.client.sockets.add(socket);
            self.next_port += 1;
            self.client
                .connect(handle, (DOM0, 8080), self.next_port)
                .unwrap();
            handle
        }

        fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
            self.client.sockets.get_mut::<tcp::Socket>(handle)
        }

        fn send(&mut self, handle: SocketHandle, bytes: &[u8]) {
            let sent = self.socket(handle).send_slice(bytes).unwrap();
            assert_eq!(sent, bytes.len());
        }

        fn read(&mut self, handle: SocketHandle) -> String {
            let mut text = Vec::new();
            let socket = self.socket(handle);
            while socket.can_recv() {
                let mut buffer = [0u8; 4096];
                let count = socket.recv_slice(&mut buffer).unwrap();
                text.extend_from_slice(&buffer[..count]);
            }
            String::from_utf8(text).unwrap()
        }
    }

    fn host_request(close: bool) -> String {
        format!(
            "GET /v1/host HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
    }

    #[test]
    fn every_socket_serves_a_client_at_once() {
        let mut network = Network::new();
        network.run(5);
        let clients: Vec<SocketHandle> = (0..SOCKETS).map(|_| network.connect(8192)).collect();
        network.run(20);
        for &client in &clients {
            assert_eq!(network.socket(client).state(), tcp::State::Established);
            network.send(client, host_request(true).as_bytes());
        }
        network.run(50);
        for &client in &clients {
            let answer = network.read(client);
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.contains("\"total_memory_mib\":4096"), "{answer}");
            // Dom0 closed after answering (Connection: close).
            assert!(!network.socket(client).may_recv());
        }
    }

    #[test]
    fn connections_in_a_row_outnumber_the_sockets() {
        // Dom0 closes first, so each of its sockets ends in TIME-WAIT and
        // must listen again at once.
        let mut network = Network::new();
        network.run(5);
        for round in 0..SOCKETS * 4 {
            let client = network.connect(8192);
            network.run(10);
            network.send(client, host_request(true).as_bytes());
            network.run(20);
            let answer = network.read(client);
            assert!(
                answer.starts_with("HTTP/1.1 200 OK\r\n"),
                "round {round}: {answer:?}"
            );
            network.socket(client).close();
            network.run(10);
            // Dom0 closed first: the client's side is done, Dom0's waits.
            assert_eq!(network.socket(client).state(), tcp::State::Closed);
            network.client.sockets.remove(client);
        }
        assert_eq!(network.api.server.connection_count(), 0);
    }

    #[test]
    fn a_client_that_does_not_read_holds_bounded_output_and_gets_all_later() {
        const REQUESTS: usize = 500;
        let mut network = Network::new();
        network.run(5);
        // A small receive window that the client does not empty.
        let client = network.connect(1024);
        network.run(10);
        let request = host_request(false);
        network.send(client, request.repeat(REQUESTS).as_bytes());
        let mut most_pending = 0;
        for _ in 0..200 {
            network.run(1);
            most_pending = most_pending.max(network.api.pending_bytes());
        }
        // Reading stops at the high-water mark: at most one read's answers
        // beyond it.
        assert!(most_pending >= PENDING_HIGH_WATER / 2, "{most_pending}");
        assert!(
            most_pending <= PENDING_HIGH_WATER + READS_PER_PASS * READ_CHUNK * 4,
            "{most_pending}"
        );
        let mut answers = String::new();
        for _ in 0..5000 {
            network.run(1);
            answers.push_str(&network.read(client));
            if answers.matches("HTTP/1.1 200 OK").count() == REQUESTS {
                break;
            }
        }
        assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), REQUESTS);
    }

    #[test]
    fn clients_that_never_close_or_read_lose_their_sockets_after_the_grace() {
        let mut network = Network::new();
        network.run(5);
        // Every socket taken: half by clients that read the answer but never
        // close their side, half by clients that never read at all.
        let holders: Vec<SocketHandle> = (0..SOCKETS)
            .map(|index| network.connect(if index % 2 == 0 { 8192 } else { 64 }))
            .collect();
        network.run(20);
        for (index, &holder) in holders.iter().enumerate() {
            let request = if index % 2 == 0 {
                host_request(true)
            } else {
                host_request(false).repeat(200)
            };
            network.send(holder, request.as_bytes());
        }
        network.run(50);
        let first = network.read(holders[0]);
        assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
        // A newcomer finds no socket listening.
        let early = network.connect(8192);
        network.run(50);
        assert_ne!(network.socket(early).state(), tcp::State::Established);
        // The server's idle timeout, then the grace, then every socket
        // listens again.
        network.run(100_000);
        let late: Vec<SocketHandle> = (0..SOCKETS).map(|_| network.connect(8192)).collect();
        network.run(20);
        for &client in &late {
            assert_eq!(network.socket(client).state(), tcp::State::Established);
            network.send(client, host_request(true).as_bytes());
        }
        network.run(50);
        for &client in &late {
            let answer = network.read(client);
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        }
    }

    #[test]
    fn a_wrong_token_is_refused_and_the_connection_stays_usable() {
        let mut network = Network::new();
        network.run(5);
        let client = network.connect(8192);
        network.run(10);
        network.send(
            client,
            b"GET /v1/host HTTP/1.1\r\nAuthorization: Bearer wrong-token-wrong-token-wrong-token\r\n\r\n",
        );
        network.run(20);
        let refused = network.read(client);
        assert!(refused.starts_with("HTTP/1.1 401 "), "{refused}");
        assert!(!refused.contains("total_memory_mib"));
        network.send(client, host_request(true).as_bytes());
        network.run(20);
        let answer = network.read(client);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}
