//! A fixed-seed random sequence of requests from several connections,
//! delivered in random byte chunks, checking invariants after every step:
//! the tree's structure and owner counts, one reply per request in order,
//! reads only of readable nodes, quotas and queue bounds held, events only
//! for registered tokens.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use xenstore::wire::{Message, MessageType, Reassembler};
use xenstore::{
    Access, BufferLimits, Caller, Config, ConnectionId, DomainId, Error, GuestFrame, Permission,
    Permissions, Port, Quotas, Request, Xenstored,
};

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct Outgoing {
    raw_type: u32,
    transaction: u32,
    payload: Vec<u8>,
    read_path: Option<String>,
}

struct Client {
    connection: ConnectionId,
    caller: Caller,
    pending: VecDeque<(u32, MessageType, Option<String>)>,
    reassembler: Reassembler,
    tokens: BTreeSet<String>,
    transactions: Vec<u32>,
    events: usize,
}

const PATHS: &[&str] = &[
    "data",
    "data/a",
    "data/a/b",
    "data/a/b/c",
    "data/b",
    "data/c/d/e",
    "/local/domain/1/data/a",
    "/local/domain/2/data",
    "/local/domain/2/data/x/y",
    "/local/domain/3/data/a",
    "/tool/x",
    "/shared",
    "/shared/a",
    "/shared/a/b",
    "/shared/c",
    "/",
    "/local",
    "bad//path",
    "",
    "/x y",
    "@releaseDomain",
    "@introduceDomain",
    "device/vbd/51712/state",
];

fn quotas() -> Quotas {
    Quotas {
        nodes: 30,
        watches: 6,
        transactions: 3,
        transaction_nodes: 40,
        ..Quotas::default()
    }
}

fn random_permissions(random: &mut Random, owner: DomainId) -> Permissions {
    let accesses = [Access::None, Access::Read, Access::Write, Access::Both];
    let mut entries = vec![Permission {
        domain: owner,
        access: *random.pick(&accesses),
    }];
    for _ in 0..random.below(3) {
        entries.push(Permission {
            domain: DomainId(random.below(5) as u16),
            access: *random.pick(&accesses),
        });
    }
    Permissions::from_entries(entries).unwrap()
}

struct World {
    store: Xenstored,
    clients: Vec<Client>,
    random: Random,
    next_request: u32,
    replies: BTreeMap<&'static str, usize>,
}

impl World {
    fn new(seed: u64) -> Self {
        let config = Config {
            quotas: quotas(),
            buffers: BufferLimits {
                queued_requests: 8,
                reply_bytes: 8 * 1024,
                queued_watch_events: 32,
                watch_event_bytes: 8 * 1024,
            },
            ..Config::default()
        };
        let mut store = Xenstored::new(config);
        let mut clients = Vec::new();
        let dom0 = store.open_stream();
        clients.push(Client::new(dom0, Caller::PRIVILEGED));
        let setup = store.open_local();
        for domain in 1..=3u16 {
            let base = format!("/local/domain/{domain}");
            let mut session = store.session(setup, None);
            session.mkdir(&format!("{base}/data")).unwrap();
            session
                .set_permissions(
                    &base,
                    Permissions::new(DomainId(0), Access::None)
                        .with(DomainId(domain), Access::Read),
                )
                .unwrap();
            session
                .set_permissions(
                    &format!("{base}/data"),
                    Permissions::new(DomainId(domain), Access::None),
                )
                .unwrap();
            let connection = store
                .introduce_domain(DomainId(domain), GuestFrame(u64::from(domain)), Port(1))
                .unwrap();
            clients.push(Client::new(connection, Caller::guest(DomainId(domain))));
        }
        store.close(setup).unwrap();
        Self {
            store,
            clients,
            random: Random(seed),
            next_request: 1,
            replies: BTreeMap::new(),
        }
    }

    fn random_request(&mut self, index: usize) -> Outgoing {
        let random = &mut self.random;
        let client = &self.clients[index];
        let path = *random.pick(PATHS);
        let transaction = if !client.transactions.is_empty() && random.chance(40) {
            *random.pick(&client.transactions)
        } else if random.chance(2) {
            random.next() as u32
        } else {
            0
        };
        let value = format!("v{}", random.below(1000));
        let token = format!("t{}", random.below(8));
        let owner = if random.chance(70) {
            client.caller.domain
        } else {
            DomainId(random.below(4) as u16)
        };
        let permissions = random_permissions(random, owner);
        let request = match random.below(17) {
            0..=2 => Request::Write {
                path,
                value: value.as_bytes(),
            },
            3 => Request::Mkdir { path },
            4 => Request::Remove { path },
            5..=6 => Request::Read { path },
            7 => Request::Directory { path },
            8 => Request::DirectoryPart {
                path,
                offset: random.below(8) as u32,
            },
            9 => Request::GetPermissions { path },
            10 => Request::SetPermissions { path, permissions },
            11 => Request::Watch {
                path,
                token: token.as_bytes(),
                depth: random.chance(20).then_some(1),
            },
            12 => Request::Unwatch {
                path,
                token: token.as_bytes(),
            },
            13 => Request::TransactionStart,
            14 => Request::TransactionEnd {
                commit: random.chance(70),
            },
            15 => Request::ResetWatches,
            _ => {
                let length = random.below(12);
                let raw_type = random.below(30) as u32;
                let payload: Vec<u8> = (0..length).map(|_| *random.pick(b"ab/\x0019T@")).collect();
                if raw_type == MessageType::Watch.raw() {
                    // Garbage can be a valid watch: any string may be its token.
                    for part in payload.split(|&byte| byte == 0) {
                        self.clients[index]
                            .tokens
                            .insert(String::from_utf8_lossy(part).into_owned());
                    }
                }
                return Outgoing {
                    raw_type,
                    transaction,
                    payload,
                    read_path: None,
                };
            }
        };
        let read_path = matches!(request, Request::Read { .. }).then(|| path.to_string());
        if let Request::Watch { token, .. } = &request {
            self.clients[index]
                .tokens
                .insert(String::from_utf8(token.to_vec()).unwrap());
        }
        Outgoing {
            raw_type: request.message_type().raw(),
            transaction,
            payload: request.to_payload(),
            read_path,
        }
    }

    fn step(&mut self) {
        if self.random.chance(3) {
            self.domain_event();
            return;
        }
        let index = self.random.below(self.clients.len());
        let outgoing = self.random_request(index);
        let request_id = self.next_request;
        self.next_request += 1;
        let message = Message::new(
            outgoing.raw_type,
            request_id,
            outgoing.transaction,
            outgoing.payload,
        )
        .unwrap()
        .to_bytes();
        let client = &mut self.clients[index];
        let kind = MessageType::from_raw(outgoing.raw_type).unwrap_or(MessageType::Error);
        client
            .pending
            .push_back((request_id, kind, outgoing.read_path));
        let connection = client.connection;
        let domain = client.caller.domain;
        let privileged = client.caller.privileged;
        let owned_before = self.store.tree().owned_by(domain);
        let mut offset = 0;
        while offset < message.len() {
            let chunk = 1 + self.random.below(message.len() - offset);
            // Garbage may be a valid RELEASE from Dom0: that guest is gone.
            let Ok(consumed) = self
                .store
                .receive(connection, &message[offset..offset + chunk])
            else {
                assert!(self.store.connection(connection).is_none());
                self.clients
                    .retain(|client| client.connection != connection);
                return;
            };
            offset += consumed;
            self.run_round();
        }
        self.run_round();
        // A guest's own request never takes it past its node quota (Dom0
        // may give it nodes beyond; that is Dom0's business).
        let owned_after = self.store.tree().owned_by(domain);
        if !privileged && owned_after > owned_before {
            assert!(
                owned_after <= u64::from(quotas().nodes),
                "{domain:?} over its node quota"
            );
        }
        self.check();
    }

    fn domain_event(&mut self) {
        let domain = DomainId(4);
        match self.random.below(3) {
            0 => {
                let connection = self
                    .store
                    .introduce_domain(domain, GuestFrame(4), Port(1))
                    .unwrap();
                if !self
                    .clients
                    .iter()
                    .any(|client| client.connection == connection)
                {
                    self.clients
                        .push(Client::new(connection, Caller::guest(domain)));
                } else if let Some(client) = self
                    .clients
                    .iter_mut()
                    .find(|client| client.connection == connection)
                {
                    // Re-introduction resets the connection.
                    client.pending.clear();
                    client.transactions.clear();
                    client.reassembler = Reassembler::new();
                }
            }
            1 => {
                if self.store.release_domain(domain).is_ok() {
                    self.clients.retain(|client| client.caller.domain != domain);
                }
            }
            _ => {
                self.store
                    .domain_shut_down(DomainId(self.random.below(5) as u16));
            }
        }
        self.run_round();
        self.check();
    }

    fn run_round(&mut self) {
        let per_connection = 1 + self.random.below(3);
        self.store.process_round(per_connection);
        self.store.take_actions();
        // Garbage may be a valid RELEASE from Dom0: forget released guests.
        let store = &self.store;
        self.clients
            .retain(|client| store.connection(client.connection).is_some());
        for index in 0..self.clients.len() {
            self.drain(index);
        }
    }

    fn drain(&mut self, index: usize) {
        let connection = self.clients[index].connection;
        let mut buffer = [0u8; 700];
        loop {
            let size = 1 + self.random.below(buffer.len());
            let count = self.store.read_output(connection, &mut buffer[..size]);
            if count == 0 {
                break;
            }
            let mut bytes = &buffer[..count];
            while !bytes.is_empty() {
                let (taken, message) = self.clients[index].reassembler.feed(bytes).unwrap();
                bytes = &bytes[taken..];
                if let Some(message) = message {
                    self.on_message(index, &message);
                }
            }
        }
    }

    fn on_message(&mut self, index: usize, message: &Message) {
        let header = message.header();
        let client = &mut self.clients[index];
        if header.message_type == MessageType::WatchEvent.raw() {
            let parts: Vec<&[u8]> = message.payload().split(|&byte| byte == 0).collect();
            assert_eq!(parts.len(), 3);
            let token = String::from_utf8(parts[1].to_vec()).unwrap();
            assert!(
                client.tokens.contains(&token),
                "event for unknown token {token}"
            );
            client.events += 1;
            return;
        }
        let (request_id, kind, read_path) = client.pending.pop_front().expect("unrequested reply");
        assert_eq!(header.request_id, request_id, "replies out of order");
        let error = (header.message_type == MessageType::Error.raw()).then(|| {
            let name = message.payload().strip_suffix(b"\0").unwrap();
            Error::from_name(name).unwrap_or_else(|| panic!("unknown error {name:?}"))
        });
        *self
            .replies
            .entry(error.map_or("OK", Error::name))
            .or_default() += 1;
        if error.is_none() {
            assert_eq!(header.message_type, kind.raw());
        }
        match (kind, error) {
            (MessageType::TransactionStart, None) => {
                let id: u32 = std::str::from_utf8(message.payload().strip_suffix(b"\0").unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                client.transactions.push(id);
            }
            (MessageType::TransactionEnd, _) => {
                client
                    .transactions
                    .retain(|&id| id != header.transaction_id);
            }
            (MessageType::ResetWatches, None) => client.transactions.clear(),
            _ => {}
        }
        // A successful read outside a transaction returned what the tree
        // holds, and the caller may read it.
        if let (Some(path), None, 0) = (read_path, error, header.transaction_id) {
            let caller = client.caller;
            let absolute = xenstore::path::canonicalize(&path, caller.domain, None, false)
                .unwrap()
                .absolute;
            let node = self
                .store
                .tree()
                .node(&absolute)
                .expect("read of a missing node succeeded");
            assert!(
                node.permissions.rights(&caller).read,
                "{caller:?} read {absolute}"
            );
            assert_eq!(node.value, message.payload());
        }
    }

    fn check(&self) {
        self.store.check().unwrap();
        let limits = quotas();
        for client in &self.clients {
            let connection = self.store.connection(client.connection).unwrap();
            assert!(connection.queued_requests() <= 8);
            if client.caller.privileged {
                continue;
            }
            assert!(connection.watch_count() <= limits.watches as usize);
            assert!(
                self.store.transaction_count(client.connection) <= limits.transactions as usize
            );
        }
    }

    fn finish(mut self) {
        for _ in 0..4 {
            self.run_round();
        }
        for client in &self.clients {
            assert!(client.pending.is_empty(), "unanswered requests");
        }
        for domain in 1..=4 {
            if self.store.release_domain(DomainId(domain)).is_ok() {
                assert_eq!(self.store.tree().owned_by(DomainId(domain)), 0);
            }
        }
        self.store.check().unwrap();
        let total: usize = self.replies.values().sum();
        assert!(
            self.replies.get("OK").copied().unwrap_or(0) > total / 5,
            "{:?}",
            self.replies
        );
        for expected in [
            "EINVAL", "EACCES", "ENOENT", "EQUOTA", "ENOSYS", "EAGAIN", "EBUSY",
        ] {
            assert!(
                self.replies.contains_key(expected),
                "never saw {expected}: {:?}",
                self.replies
            );
        }
    }
}

impl Client {
    fn new(connection: ConnectionId, caller: Caller) -> Self {
        Self {
            connection,
            caller,
            pending: VecDeque::new(),
            reassembler: Reassembler::new(),
            tokens: BTreeSet::new(),
            transactions: Vec::new(),
            events: 0,
        }
    }
}

#[test]
fn random_sequences_keep_invariants() {
    for seed in [0x5eed_0001, 0xdead_beef_cafe, 42] {
        let mut world = World::new(seed);
        for _ in 0..3000 {
            world.step();
        }
        let events: usize = world.clients.iter().map(|client| client.events).sum();
        assert!(events > 0);
        world.finish();
    }
}
