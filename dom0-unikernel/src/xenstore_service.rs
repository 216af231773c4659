//! xenstored in Dom0: the `xenstore` crate's state machine, fed from and
//! answering into each guest's ring page, with an event channel per guest.
//! A guest gets a bounded share of each pass (requests per round), so one
//! flooding its ring cannot starve the others; a guest that corrupts its
//! ring indices or breaks the protocol loses its connection, nothing more.

use alloc::collections::BTreeMap;

use dom0::ring::{SharedPage, XENSTORE_REQUESTS, XENSTORE_RESPONSES, XENSTORE_SERVER_FEATURES};
use log::warn;
use xen_guest::event_channel;
use xenstore::{Action, ConnectionId, DomainId, Port, Xenstored};

use crate::guest_page::GuestPage;

/// Offset of the ring page's `error` word, and its values.
const RING_ERROR: usize = 2072;
const ERROR_RING_INDEX: u32 = 2;
const ERROR_PROTOCOL: u32 = 3;

/// Requests each connection may have processed per round.
const REQUESTS_PER_ROUND: usize = 8;
/// Rounds per pass before Dom0 looks at its other work again.
const ROUNDS_PER_PASS: usize = 16;

/// One guest's ring.
struct Ring {
    connection: ConnectionId,
    page: GuestPage,
    /// Dom0's end of the guest's xenstore event channel.
    port: Port,
    /// Stopped serving (bad indices or protocol): until re-introduced.
    broken: bool,
}

impl Ring {
    /// Stops serving a guest that misbehaved: says why, once, and tells
    /// the guest through the ring's `error` word.
    fn cut_off(&mut self, domain: DomainId, error: u32, why: core::fmt::Arguments<'_>) {
        warn!("dom0: xenstore: domain {} {why}; not serving it", domain.0);
        self.page.store(RING_ERROR, error);
        self.broken = true;
    }
}

/// xenstored and its rings.
pub struct XenstoreService {
    store: Xenstored,
    /// Dom0's own connection (the toolstack's).
    toolstack: ConnectionId,
    rings: BTreeMap<DomainId, Ring>,
}

impl XenstoreService {
    pub fn new() -> Self {
        let mut store = Xenstored::default();
        let toolstack = store.open_local();
        Self {
            store,
            toolstack,
            rings: BTreeMap::new(),
        }
    }

    /// The store and the toolstack's connection to it.
    pub fn store(&mut self) -> (&mut Xenstored, ConnectionId) {
        (&mut self.store, self.toolstack)
    }

    /// Dom0's ports of every ring (to wait on).
    pub fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.rings.values().map(|ring| ring.port)
    }

    /// Serves every ring: takes requests, runs rounds, returns replies and
    /// watch events, and carries out connects and disconnects.
    pub fn service(&mut self) {
        for _ in 0..ROUNDS_PER_PASS {
            self.carry_out_actions();
            let received = self.receive_all();
            let round = self.store.process_round(REQUESTS_PER_ROUND);
            self.carry_out_actions();
            let sent = self.send_all();
            if !received && !sent && !round.more && round.processed == 0 {
                break;
            }
        }
    }

    fn carry_out_actions(&mut self) {
        for action in self.store.take_actions() {
            match action {
                Action::ConnectRing {
                    domain,
                    connection,
                    frame,
                    port,
                } => self.connect(domain, connection, frame.0, port),
                Action::DisconnectRing { domain } => self.disconnect(domain),
                // Rings are flushed on every pass; local connections read
                // their events when they want them.
                Action::OutputReady(_) => {}
            }
        }
    }

    fn connect(
        &mut self,
        domain: DomainId,
        connection: ConnectionId,
        frame: u64,
        guest_port: Port,
    ) {
        self.disconnect(domain);
        let page = match GuestPage::map(domain, frame) {
            Ok(page) => page,
            Err(code) => {
                warn!(
                    "dom0: xenstore: cannot map domain {}'s ring (frame {frame:#x}): error {code}",
                    domain.0
                );
                return;
            }
        };
        let port = match event_channel::bind_interdomain(domain, guest_port) {
            Ok(port) => port,
            Err(error) => {
                warn!(
                    "dom0: xenstore: cannot bind domain {}'s port {}: {error:?}",
                    domain.0, guest_port.0
                );
                return;
            }
        };
        // What this server offers the guest (the `error` word, watch depth;
        // no reconnection yet).
        let mut page = page;
        page.store(
            XENSTORE_SERVER_FEATURES,
            self.store.config().server_features,
        );
        self.rings.insert(
            domain,
            Ring {
                connection,
                page,
                port,
                broken: false,
            },
        );
    }

    fn disconnect(&mut self, domain: DomainId) {
        if let Some(ring) = self.rings.remove(&domain) {
            let _ = event_channel::close(ring.port);
        }
    }

    /// Moves request bytes from the rings into the store; true if any moved.
    fn receive_all(&mut self) -> bool {
        let mut moved = false;
        for (domain, ring) in &mut self.rings {
            if ring.broken {
                continue;
            }
            let bytes = match XENSTORE_REQUESTS.peek(&ring.page, usize::MAX) {
                Ok(bytes) => bytes,
                Err(bad) => {
                    ring.cut_off(
                        *domain,
                        ERROR_RING_INDEX,
                        format_args!("corrupted its ring indices ({bad:?})"),
                    );
                    continue;
                }
            };
            if bytes.is_empty() {
                continue;
            }
            match self.store.receive(ring.connection, &bytes) {
                Ok(0) => {}
                Ok(taken) => {
                    XENSTORE_REQUESTS.consume(&mut ring.page, taken);
                    let _ = event_channel::send(ring.port);
                    moved = true;
                }
                Err(error) => ring.cut_off(
                    *domain,
                    ERROR_PROTOCOL,
                    format_args!("broke the protocol ({error:?})"),
                ),
            }
        }
        moved
    }

    /// Copies waiting output into the rings that have room; true if any.
    fn send_all(&mut self) -> bool {
        let mut moved = false;
        let mut buffer = [0u8; 1024];
        for (domain, ring) in &mut self.rings {
            if ring.broken {
                continue;
            }
            let space = match XENSTORE_RESPONSES.space(&ring.page) {
                Ok(space) => space,
                Err(bad) => {
                    ring.cut_off(
                        *domain,
                        ERROR_RING_INDEX,
                        format_args!("corrupted its ring indices ({bad:?})"),
                    );
                    continue;
                }
            };
            if space == 0 {
                continue;
            }
            let count = self
                .store
                .read_output(ring.connection, &mut buffer[..space]);
            if count == 0 {
                continue;
            }
            // The bytes are out of the store now: all of them must go in.
            // Room only grows while the guest reads, so anything else is a
            // guest that moved rsp_cons back or scribbled the indices.
            match XENSTORE_RESPONSES.produce(&mut ring.page, &buffer[..count]) {
                Ok(written) if written == count => {
                    let _ = event_channel::send(ring.port);
                    moved = true;
                }
                Ok(written) => ring.cut_off(
                    *domain,
                    ERROR_RING_INDEX,
                    format_args!("took back ring space ({written} of {count} reply bytes fit)"),
                ),
                Err(bad) => ring.cut_off(
                    *domain,
                    ERROR_RING_INDEX,
                    format_args!("corrupted its ring indices ({bad:?})"),
                ),
            }
        }
        moved
    }
}
