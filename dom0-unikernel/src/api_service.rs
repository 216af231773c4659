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

/// One listening socket and the connection on it.
struct Slot {
    handle: SocketHandle,
    /// The server's id for the connection, while it has one.
    connection: Option<ConnectionId>,
    /// Answer bytes the socket had no room for yet.
    pending: VecDeque<u8>,
    /// Close once `pending` is written.
    closing: bool,
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
            moved |= flush(slot, sockets.get_mut::<tcp::Socket>(slot.handle));
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
                // TIME-WAIT would keep the socket from listening for ten
                // seconds: a fresh socket takes its place instead.
                if state == tcp::State::TimeWait {
                    sockets.remove(slot.handle);
                    slot.handle = sockets.add(new_socket());
                }
                if let Some(id) = slot.connection.take() {
                    self.server.peer_closed(id);
                }
                slot.pending.clear();
                slot.closing = false;
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

    /// When the server next needs [`ApiService::service`] without new
    /// bytes (milliseconds on Dom0's clock).
    pub fn next_deadline(&self) -> Option<u64> {
        self.server.next_deadline().map(|instant| instant.millis)
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
