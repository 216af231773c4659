//! A test harness speaking the wire protocol to a `Xenstored`: clients send
//! encoded requests, rounds run, and replies and watch events are decoded
//! from each connection's output stream.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use xenstore::wire::{Message, MessageType, Reassembler};
use xenstore::{
    Access, Action, Config, ConnectionId, ConnectionKind, DomainId, GuestFrame, Permissions, Port,
    Request, Xenstored,
};

/// One decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub kind: u32,
    pub request_id: u32,
    pub transaction_id: u32,
    pub payload: Vec<u8>,
}

impl Reply {
    /// The errno name of an ERROR reply.
    pub fn error(&self) -> Option<String> {
        (self.kind == MessageType::Error.raw()).then(|| {
            String::from_utf8_lossy(self.payload.strip_suffix(b"\0").unwrap_or(&self.payload))
                .into_owned()
        })
    }

    /// Asserts success and returns the payload.
    pub fn expect_ok(&self) -> &[u8] {
        assert_ne!(
            self.kind,
            MessageType::Error.raw(),
            "unexpected error {:?}",
            self.error()
        );
        &self.payload
    }

    /// The payload as NUL-separated strings (trailing NUL dropped).
    pub fn strings(&self) -> Vec<String> {
        let body = self.payload.strip_suffix(b"\0").unwrap_or(&self.payload);
        if body.is_empty() {
            return Vec::new();
        }
        body.split(|&byte| byte == 0)
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect()
    }
}

#[derive(Default)]
struct Inbox {
    reassembler: Reassembler,
    replies: VecDeque<Reply>,
    events: VecDeque<(String, String)>,
}

pub struct Harness {
    pub store: Xenstored,
    next_request: u32,
    inboxes: BTreeMap<ConnectionId, Inbox>,
    pub actions: Vec<Action>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Harness {
    pub fn new(config: Config) -> Self {
        Self {
            store: Xenstored::new(config),
            next_request: 1,
            inboxes: BTreeMap::new(),
            actions: Vec::new(),
        }
    }

    /// A privileged byte-stream connection.
    pub fn dom0(&mut self) -> ConnectionId {
        self.store.open_stream()
    }

    /// Introduces `domain` and sets up `/local/domain/<id>` as libxl does:
    /// owned by Dom0, readable by the guest, with a guest-owned `data`.
    pub fn guest(&mut self, domain: u16) -> ConnectionId {
        let base = format!("/local/domain/{domain}");
        let local = self.store.open_local();
        {
            let mut session = self.store.session(local, None);
            session.mkdir(&base).unwrap();
            let readable =
                Permissions::new(DomainId(0), Access::None).with(DomainId(domain), Access::Read);
            session.set_permissions(&base, readable).unwrap();
            session.mkdir(&format!("{base}/data")).unwrap();
            session
                .set_permissions(
                    &format!("{base}/data"),
                    Permissions::new(DomainId(domain), Access::None),
                )
                .unwrap();
        }
        self.store.close(local).unwrap();
        let connection = self
            .store
            .introduce_domain(
                DomainId(domain),
                GuestFrame(0x1000 + u64::from(domain)),
                Port(1),
            )
            .unwrap();
        self.pump();
        connection
    }

    /// Sends raw bytes (all of them must be consumed).
    pub fn send_bytes(&mut self, connection: ConnectionId, bytes: &[u8]) {
        let consumed = self.store.receive(connection, bytes).expect("receive");
        assert_eq!(consumed, bytes.len(), "request queue full");
    }

    /// Sends one message; returns its request id.
    pub fn send_raw(
        &mut self,
        connection: ConnectionId,
        kind: u32,
        transaction: u32,
        payload: &[u8],
    ) -> u32 {
        let request_id = self.next_request;
        self.next_request += 1;
        let message = Message::new(kind, request_id, transaction, payload.to_vec()).unwrap();
        self.send_bytes(connection, &message.to_bytes());
        request_id
    }

    /// Runs rounds until idle, then collects every connection's output.
    pub fn pump(&mut self) {
        loop {
            let round = self.store.process_round(4);
            self.collect();
            if !round.more {
                break;
            }
        }
    }

    fn collect(&mut self) {
        self.actions.extend(self.store.take_actions());
        // Local connections are read with take_watch_events, not as bytes.
        let ids: Vec<ConnectionId> = self
            .store
            .connections()
            .filter(|connection| connection.kind() != ConnectionKind::Local)
            .map(|connection| connection.id())
            .collect();
        for id in ids {
            let inbox = self.inboxes.entry(id).or_default();
            let mut buffer = [0u8; 1024];
            loop {
                let count = self.store.read_output(id, &mut buffer);
                if count == 0 {
                    break;
                }
                let mut bytes = &buffer[..count];
                while !bytes.is_empty() {
                    let (taken, message) = inbox.reassembler.feed(bytes).unwrap();
                    bytes = &bytes[taken..];
                    let Some(message) = message else { continue };
                    let header = message.header();
                    if header.message_type == MessageType::WatchEvent.raw() {
                        assert_eq!((header.request_id, header.transaction_id), (0, 0));
                        let parts: Vec<&[u8]> =
                            message.payload().split(|&byte| byte == 0).collect();
                        assert_eq!(parts.len(), 3, "event payload {:?}", message.payload());
                        inbox.events.push_back((
                            String::from_utf8(parts[0].to_vec()).unwrap(),
                            String::from_utf8(parts[1].to_vec()).unwrap(),
                        ));
                    } else {
                        inbox.replies.push_back(Reply {
                            kind: header.message_type,
                            request_id: header.request_id,
                            transaction_id: header.transaction_id,
                            payload: message.payload().to_vec(),
                        });
                    }
                }
            }
        }
    }

    /// Sends a raw message and returns its reply.
    pub fn call_raw(
        &mut self,
        connection: ConnectionId,
        kind: u32,
        transaction: u32,
        payload: &[u8],
    ) -> Reply {
        let request_id = self.send_raw(connection, kind, transaction, payload);
        self.pump();
        let inbox = self.inboxes.entry(connection).or_default();
        let position = inbox
            .replies
            .iter()
            .position(|reply| reply.request_id == request_id)
            .expect("no reply");
        let reply = inbox.replies.remove(position).unwrap();
        assert_eq!(reply.transaction_id, transaction);
        reply
    }

    /// Sends a request in `transaction` (0: none) and returns its reply.
    pub fn call_in(
        &mut self,
        connection: ConnectionId,
        transaction: u32,
        request: Request<'_>,
    ) -> Reply {
        let kind = request.message_type().raw();
        self.call_raw(connection, kind, transaction, &request.to_payload())
    }

    pub fn call(&mut self, connection: ConnectionId, request: Request<'_>) -> Reply {
        self.call_in(connection, 0, request)
    }

    /// The error name a request fails with (panics on success).
    pub fn error(&mut self, connection: ConnectionId, request: Request<'_>) -> String {
        let reply = self.call(connection, request);
        reply
            .error()
            .unwrap_or_else(|| panic!("expected an error, got {:?}", reply.payload))
    }

    pub fn read(&mut self, connection: ConnectionId, path: &str) -> Result<Vec<u8>, String> {
        let reply = self.call(connection, Request::Read { path });
        match reply.error() {
            Some(error) => Err(error),
            None => Ok(reply.payload),
        }
    }

    pub fn write(
        &mut self,
        connection: ConnectionId,
        path: &str,
        value: &[u8],
    ) -> Result<(), String> {
        let reply = self.call(connection, Request::Write { path, value });
        match reply.error() {
            Some(error) => Err(error),
            None => {
                assert_eq!(reply.payload, b"OK\0");
                Ok(())
            }
        }
    }

    pub fn directory(
        &mut self,
        connection: ConnectionId,
        path: &str,
    ) -> Result<Vec<String>, String> {
        let reply = self.call(connection, Request::Directory { path });
        match reply.error() {
            Some(error) => Err(error),
            None => Ok(reply.strings()),
        }
    }

    pub fn watch(&mut self, connection: ConnectionId, path: &str, token: &str) {
        let reply = self.call(
            connection,
            Request::Watch {
                path,
                token: token.as_bytes(),
                depth: None,
            },
        );
        assert_eq!(reply.expect_ok(), b"OK\0");
    }

    pub fn start(&mut self, connection: ConnectionId) -> u32 {
        let reply = self.call(connection, Request::TransactionStart);
        reply.strings()[0].parse().unwrap()
    }

    pub fn end(
        &mut self,
        connection: ConnectionId,
        transaction: u32,
        commit: bool,
    ) -> Option<String> {
        self.call_in(connection, transaction, Request::TransactionEnd { commit })
            .error()
    }

    /// Takes the watch events received so far.
    pub fn events(&mut self, connection: ConnectionId) -> Vec<(String, String)> {
        self.pump();
        self.inboxes
            .entry(connection)
            .or_default()
            .events
            .drain(..)
            .collect()
    }

    /// Replies received but not claimed by `call`.
    pub fn unclaimed_replies(&mut self, connection: ConnectionId) -> Vec<Reply> {
        self.inboxes
            .entry(connection)
            .or_default()
            .replies
            .drain(..)
            .collect()
    }

    pub fn check(&self) {
        self.store.check().unwrap();
    }
}

pub fn event(path: &str, token: &str) -> (String, String) {
    (path.to_string(), token.to_string())
}
