//! One client connection: the reassembly of its byte stream into requests,
//! the bounded queues of requests waiting and of replies and watch events
//! waiting to be read, and its watches.
//!
//! Queue policy. Requests: at most `queued_requests` wait; beyond that
//! [`Connection::receive`] stops consuming and the bytes stay in the ring.
//! Replies: a connection's requests are not processed while more than
//! `reply_bytes` of replies wait, so replies are never dropped. Watch
//! events cannot push back on the writer that caused them, so an event
//! identical to one still waiting is coalesced (as C xenstored does), and
//! past `queued_watch_events` or `watch_event_bytes` new events are dropped
//! and counted in [`Connection::dropped_watch_events`].

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use xenolith_abi::domain::DomainId;

use crate::config::BufferLimits;
use crate::permissions::Caller;
use crate::watch::{Watch, WatchEvent};
use crate::wire::{HEADER_SIZE, Message, MessageType, ProtocolError, Reassembler};

/// Names one connection for as long as it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u32);

impl fmt::Display for ConnectionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "connection {}", self.0)
    }
}

/// How a connection reaches its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// An introduced domain's shared ring (bytes both ways).
    Ring,
    /// A privileged byte stream in Dom0 (as xenstored's Unix socket).
    Stream,
    /// A Dom0 service calling in-process: no bytes, typed calls.
    Local,
}

#[derive(Clone, Debug)]
enum Outgoing {
    Reply(Message),
    Event(WatchEvent),
}

/// One client.
#[derive(Clone, Debug)]
pub struct Connection {
    id: ConnectionId,
    kind: ConnectionKind,
    domain: DomainId,
    target: Option<DomainId>,
    limits: BufferLimits,
    reassembler: Reassembler,
    inbound: VecDeque<Message>,
    outbound: VecDeque<Outgoing>,
    sending: Vec<u8>,
    sent: usize,
    reply_bytes: usize,
    event_count: usize,
    event_bytes: usize,
    dropped_events: u64,
    broken: Option<ProtocolError>,
    pub(crate) watches: Vec<Watch>,
    pub(crate) next_transaction: u32,
}

impl Connection {
    /// A connection for `domain`.
    pub fn new(
        id: ConnectionId,
        kind: ConnectionKind,
        domain: DomainId,
        limits: BufferLimits,
    ) -> Self {
        Self {
            id,
            kind,
            domain,
            target: None,
            limits,
            reassembler: Reassembler::new(),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
            sending: Vec::new(),
            sent: 0,
            reply_bytes: 0,
            event_count: 0,
            event_bytes: 0,
            dropped_events: 0,
            broken: None,
            watches: Vec::new(),
            next_transaction: 1,
        }
    }

    /// Its id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// How it reaches its client.
    pub fn kind(&self) -> ConnectionKind {
        self.kind
    }

    /// The domain it speaks for.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// The identity its requests are checked with. Dom0 is privileged.
    pub fn caller(&self) -> Caller {
        Caller {
            domain: self.domain,
            privileged: self.domain == DomainId::DOM0,
            target: self.target,
        }
    }

    pub(crate) fn set_target(&mut self, target: DomainId) {
        self.target = Some(target);
    }

    /// Forgets a target that no longer exists (its id may be reused).
    pub(crate) fn forget_target(&mut self, target: DomainId) {
        if self.target == Some(target) {
            self.target = None;
        }
    }

    /// The protocol error that stopped this connection, if any.
    pub fn broken(&self) -> Option<ProtocolError> {
        self.broken
    }

    /// Watch events dropped because the queue was full.
    pub fn dropped_watch_events(&self) -> u64 {
        self.dropped_events
    }

    /// Requests waiting to be processed.
    pub fn queued_requests(&self) -> usize {
        self.inbound.len()
    }

    /// Watches registered.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// Takes bytes from the client's stream and queues the requests they
    /// complete. Returns how many bytes were consumed: fewer than given when
    /// the request queue is full (leave the rest in the ring and call again
    /// after processing). A header announcing more than `PAYLOAD_MAX` bytes
    /// breaks the connection; Dom0 then sets the ring's `error` field to
    /// `XENSTORE_ERROR_PROTO` and the connection ignores further input until
    /// the domain is introduced again.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<usize, ProtocolError> {
        if let Some(error) = self.broken {
            return Err(error);
        }
        let mut consumed = 0;
        while consumed < bytes.len() && self.inbound.len() < self.limits.queued_requests {
            let rest = bytes.get(consumed..).unwrap_or_default();
            match self.reassembler.feed(rest) {
                Ok((taken, message)) => {
                    consumed += taken;
                    self.inbound.extend(message);
                    if taken == 0 {
                        break;
                    }
                }
                Err(error) => {
                    self.break_with(error);
                    return Err(error);
                }
            }
        }
        Ok(consumed)
    }

    fn break_with(&mut self, error: ProtocolError) {
        self.broken = Some(error);
        self.inbound.clear();
        self.reassembler.reset();
    }

    /// The next request to process, if the client has room for its reply.
    pub(crate) fn next_request(&mut self) -> Option<Message> {
        if self.broken.is_some() || self.reply_bytes >= self.limits.reply_bytes {
            return None;
        }
        self.inbound.pop_front()
    }

    /// Whether requests wait that `next_request` would hand out.
    pub(crate) fn ready(&self) -> bool {
        self.broken.is_none()
            && self.reply_bytes < self.limits.reply_bytes
            && !self.inbound.is_empty()
    }

    pub(crate) fn push_reply(&mut self, reply: Message) {
        self.reply_bytes += reply.encoded_len();
        self.outbound.push_back(Outgoing::Reply(reply));
    }

    /// Queues a watch event; false if it was coalesced or dropped.
    pub(crate) fn push_event(&mut self, event: WatchEvent) -> bool {
        if !event.fits() || self.broken.is_some() {
            return false;
        }
        let special = event.path.starts_with('@');
        let duplicate = !special
            && self
                .outbound
                .iter()
                .any(|queued| matches!(queued, Outgoing::Event(queued) if *queued == event));
        if duplicate {
            return false;
        }
        let bytes = HEADER_SIZE + event.wire_len();
        if self.event_count >= self.limits.queued_watch_events
            || self.event_bytes + bytes > self.limits.watch_event_bytes
        {
            self.dropped_events += 1;
            return false;
        }
        self.event_count += 1;
        self.event_bytes += bytes;
        self.outbound.push_back(Outgoing::Event(event));
        true
    }

    /// Whether replies or events wait to be read.
    pub fn has_output(&self) -> bool {
        self.sent < self.sending.len() || !self.outbound.is_empty()
    }

    fn pop_outgoing(&mut self) -> Option<Outgoing> {
        let outgoing = self.outbound.pop_front()?;
        match &outgoing {
            Outgoing::Reply(reply) => {
                self.reply_bytes = self.reply_bytes.saturating_sub(reply.encoded_len());
            }
            Outgoing::Event(event) => {
                self.event_count = self.event_count.saturating_sub(1);
                self.event_bytes = self
                    .event_bytes
                    .saturating_sub(HEADER_SIZE + event.wire_len());
            }
        }
        Some(outgoing)
    }

    /// Copies waiting output bytes (replies and WATCH_EVENT messages, in
    /// order) into `buffer`, as much as fits; returns the bytes written.
    /// Messages may be split across calls, as the ring requires.
    pub fn read_output(&mut self, buffer: &mut [u8]) -> usize {
        let mut written = 0;
        while written < buffer.len() {
            if self.sent == self.sending.len() {
                self.sending.clear();
                self.sent = 0;
                match self.pop_outgoing() {
                    Some(Outgoing::Reply(reply)) => self.sending = reply.to_bytes(),
                    Some(Outgoing::Event(event)) => {
                        let payload = event.to_payload();
                        match Message::new(MessageType::WatchEvent.raw(), 0, 0, payload) {
                            Ok(message) => self.sending = message.to_bytes(),
                            Err(_) => continue,
                        }
                    }
                    None => break,
                }
            }
            let pending = self.sending.get(self.sent..).unwrap_or_default();
            let room = buffer.get_mut(written..).unwrap_or_default();
            let count = pending.len().min(room.len());
            if let (Some(target), Some(source)) = (room.get_mut(..count), pending.get(..count)) {
                target.copy_from_slice(source);
            }
            self.sent += count;
            written += count;
        }
        written
    }

    /// Takes the waiting watch events (for in-process clients, which have
    /// no byte stream).
    pub(crate) fn take_events(&mut self) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        while let Some(outgoing) = self.pop_outgoing() {
            if let Outgoing::Event(event) = outgoing {
                events.push(event);
            }
        }
        events
    }

    /// Forgets everything but identity: watches, queues, partial input, a
    /// protocol error (re-introduction of the domain).
    pub(crate) fn reset(&mut self) {
        let fresh = Self::new(self.id, self.kind, self.domain, self.limits);
        *self = Self {
            target: self.target,
            ..fresh
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    fn connection(limits: BufferLimits) -> Connection {
        Connection::new(ConnectionId(1), ConnectionKind::Ring, DomainId(3), limits)
    }

    fn event(path: &str) -> WatchEvent {
        WatchEvent {
            path: String::from(path),
            token: b"t".to_vec(),
        }
    }

    #[test]
    fn full_request_queue_pushes_back() {
        let limits = BufferLimits {
            queued_requests: 2,
            ..BufferLimits::default()
        };
        let mut connection = connection(limits);
        let one = Message::new(2, 1, 0, b"a\0".to_vec()).unwrap().to_bytes();
        let stream: Vec<u8> = one.iter().chain(&one).chain(&one).copied().collect();
        assert_eq!(connection.receive(&stream), Ok(2 * one.len()));
        assert_eq!(connection.queued_requests(), 2);
        assert!(connection.next_request().is_some());
        assert_eq!(connection.receive(&stream[2 * one.len()..]), Ok(one.len()));
    }

    #[test]
    fn protocol_error_sticks() {
        let mut connection = connection(BufferLimits::default());
        let mut header = Message::new(2, 1, 0, Vec::new()).unwrap().to_bytes();
        header[12..16].copy_from_slice(&4097u32.to_le_bytes());
        let error = connection.receive(&header).unwrap_err();
        assert_eq!(error, ProtocolError::PayloadTooLong { length: 4097 });
        assert_eq!(connection.receive(b"x"), Err(error));
        connection.reset();
        assert_eq!(connection.receive(b"x"), Ok(1));
    }

    #[test]
    fn events_coalesce_and_drop_when_full() {
        let limits = BufferLimits {
            queued_watch_events: 2,
            ..BufferLimits::default()
        };
        let mut connection = connection(limits);
        assert!(connection.push_event(event("/a")));
        assert!(!connection.push_event(event("/a")));
        assert!(connection.push_event(event("@releaseDomain")));
        assert!(!connection.push_event(event("/b")));
        assert_eq!(connection.dropped_watch_events(), 1);
        let too_long = WatchEvent {
            path: "/a".repeat(2100),
            token: Vec::new(),
        };
        assert!(!connection.push_event(too_long));
    }

    #[test]
    fn output_is_read_in_pieces() {
        let mut connection = connection(BufferLimits::default());
        connection.push_reply(Message::new(2, 9, 0, b"value".to_vec()).unwrap());
        connection.push_event(event("/x"));
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 7];
        loop {
            let count = connection.read_output(&mut buffer);
            if count == 0 {
                break;
            }
            bytes.extend_from_slice(&buffer[..count]);
        }
        assert!(!connection.has_output());
        let mut expected = Message::new(2, 9, 0, b"value".to_vec()).unwrap().to_bytes();
        expected.extend(
            Message::new(15, 0, 0, b"/x\0t\0".to_vec())
                .unwrap()
                .to_bytes(),
        );
        assert_eq!(bytes, expected);
        let mut empty = vec![0u8; 4];
        assert_eq!(connection.read_output(&mut empty), 0);
    }

    #[test]
    fn replies_push_back_on_requests() {
        let limits = BufferLimits {
            reply_bytes: 20,
            ..BufferLimits::default()
        };
        let mut connection = connection(limits);
        let request = Message::new(2, 1, 0, b"a\0".to_vec()).unwrap().to_bytes();
        connection.receive(&request).unwrap();
        connection.push_reply(Message::new(2, 1, 0, b"0123456789".to_vec()).unwrap());
        assert!(!connection.ready());
        assert!(connection.next_request().is_none());
        let mut sink = [0u8; 64];
        connection.read_output(&mut sink);
        assert!(connection.ready());
    }
}
