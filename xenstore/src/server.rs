//! The daemon's state machine: connections, domains, the tree and open
//! transactions, driven by Dom0's glue. Bytes come in with
//! [`Xenstored::receive`], requests run in fair rounds with
//! [`Xenstored::process_round`], bytes go out with
//! [`Xenstored::read_output`], and [`Xenstored::take_actions`] says which
//! rings to map, unmap or notify. Nothing here touches a ring, a page or a
//! hypercall.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;

use crate::Error;
use crate::config::{Config, Quotas};
use crate::connection::{Connection, ConnectionId, ConnectionKind};
use crate::domain::{DomainInfo, GuestFrame, is_introducible};
use crate::operations::{self, Change};
use crate::path::{self, CanonicalPath};
use crate::permissions::Caller;
use crate::request::{Request, Response};
use crate::transaction::{Transaction, TransactionId};
use crate::tree::{NodeAccess, Tree};
use crate::watch::{Watch, WatchEvent};
use crate::wire::{Message, MessageType, MessageView, ProtocolError};

/// Something Dom0's glue must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Map the domain's ring page, bind its event channel, write the server
    /// features into the page, then feed its bytes to
    /// [`Xenstored::receive`]. Also sent when a domain is introduced again
    /// (its connection has been reset).
    ConnectRing {
        /// The domain.
        domain: DomainId,
        /// Its connection.
        connection: ConnectionId,
        /// Its ring page.
        frame: GuestFrame,
        /// Its event channel.
        port: Port,
    },
    /// Unbind and unmap: the domain was released.
    DisconnectRing {
        /// The domain.
        domain: DomainId,
    },
    /// Output waits: copy [`Xenstored::read_output`] into the ring and
    /// notify (ring and stream connections), or call
    /// [`Xenstored::take_watch_events`] (local connections).
    OutputReady(ConnectionId),
}

/// What one [`Xenstored::process_round`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Round {
    /// Requests processed.
    pub processed: usize,
    /// Whether requests wait that can run now (run another round). Requests
    /// of a connection held back by unread replies do not count: run a
    /// round again after its client has read output.
    pub more: bool,
}

/// Why [`Xenstored::receive`] consumed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveError {
    /// No connection has this id (released or closed).
    UnknownConnection,
    /// The client broke the protocol; its connection is dead until the
    /// domain is introduced again.
    Protocol(ProtocolError),
}

/// xenstored.
#[derive(Clone, Debug)]
pub struct Xenstored {
    config: Config,
    tree: Tree,
    connections: BTreeMap<ConnectionId, Connection>,
    next_connection: u32,
    domains: BTreeMap<DomainId, DomainInfo>,
    transactions: BTreeMap<(ConnectionId, TransactionId), Transaction>,
    actions: VecDeque<Action>,
    output_ready: BTreeSet<ConnectionId>,
    /// Events to queue after the reply being built (WATCH's first event).
    deferred_events: Vec<(ConnectionId, WatchEvent)>,
}

impl Default for Xenstored {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Xenstored {
    /// A fresh store with the initial nodes and no connections.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            tree: Tree::new(),
            connections: BTreeMap::new(),
            next_connection: 1,
            domains: BTreeMap::new(),
            transactions: BTreeMap::new(),
            actions: VecDeque::new(),
            output_ready: BTreeSet::new(),
            deferred_events: Vec::new(),
        }
    }

    /// The configuration (its `quotas` are the defaults for new domains).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The tree, read-only (dumps, checks, Dom0 restart).
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// A connection.
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.connections.get(&id)
    }

    /// Every connection.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.connections.values()
    }

    /// An introduced domain.
    pub fn domain(&self, domain: DomainId) -> Option<&DomainInfo> {
        self.domains.get(&domain)
    }

    /// Every introduced domain.
    pub fn domains(&self) -> impl Iterator<Item = &DomainInfo> {
        self.domains.values()
    }

    /// Open transactions of one connection.
    pub fn transaction_count(&self, connection: ConnectionId) -> usize {
        self.transactions
            .range((connection, TransactionId(0))..=(connection, TransactionId(u32::MAX)))
            .count()
    }

    fn open(&mut self, kind: ConnectionKind, domain: DomainId) -> ConnectionId {
        let id = ConnectionId(self.next_connection);
        self.next_connection = self.next_connection.wrapping_add(1).max(1);
        let connection = Connection::new(id, kind, domain, self.config.buffers);
        self.connections.insert(id, connection);
        id
    }

    /// Opens a privileged byte-stream connection for Dom0 (what xenstored's
    /// Unix socket is on Linux).
    pub fn open_stream(&mut self) -> ConnectionId {
        self.open(ConnectionKind::Stream, DomainId::DOM0)
    }

    /// Opens an in-process connection for a Dom0 service; use it with
    /// [`Xenstored::session`].
    pub fn open_local(&mut self) -> ConnectionId {
        self.open(ConnectionKind::Local, DomainId::DOM0)
    }

    /// Closes a stream or local connection: its watches and transactions go
    /// with it. Ring connections end with [`Xenstored::release_domain`].
    pub fn close(&mut self, id: ConnectionId) -> Result<(), Error> {
        match self.connections.get(&id).map(Connection::kind) {
            Some(ConnectionKind::Stream | ConnectionKind::Local) => {
                self.drop_connection(id);
                Ok(())
            }
            Some(ConnectionKind::Ring) => Err(Error::InvalidArgument),
            None => Err(Error::NotFound),
        }
    }

    fn drop_connection(&mut self, id: ConnectionId) {
        self.transactions.retain(|&(owner, _), _| owner != id);
        self.connections.remove(&id);
        self.output_ready.remove(&id);
    }

    fn reset_connection(&mut self, id: ConnectionId) {
        self.transactions.retain(|&(owner, _), _| owner != id);
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.reset();
        }
        self.output_ready.remove(&id);
    }

    /// Feeds bytes from a client's stream; see [`Connection::receive`].
    pub fn receive(&mut self, id: ConnectionId, bytes: &[u8]) -> Result<usize, ReceiveError> {
        let connection = self
            .connections
            .get_mut(&id)
            .ok_or(ReceiveError::UnknownConnection)?;
        connection.receive(bytes).map_err(ReceiveError::Protocol)
    }

    /// Copies a connection's waiting output into `buffer`; see
    /// [`Connection::read_output`]. 0 for unknown connections.
    pub fn read_output(&mut self, id: ConnectionId, buffer: &mut [u8]) -> usize {
        self.connections
            .get_mut(&id)
            .map_or(0, |connection| connection.read_output(buffer))
    }

    /// Takes a local connection's waiting watch events.
    pub fn take_watch_events(&mut self, id: ConnectionId) -> Vec<WatchEvent> {
        self.connections
            .get_mut(&id)
            .map(Connection::take_events)
            .unwrap_or_default()
    }

    /// What the glue must do since the last call: ring (dis)connections in
    /// order, then each connection with output waiting, once.
    pub fn take_actions(&mut self) -> Vec<Action> {
        let mut actions: Vec<Action> = self.actions.drain(..).collect();
        let ready = core::mem::take(&mut self.output_ready);
        actions.extend(
            ready
                .into_iter()
                .filter(|id| self.connections.get(id).is_some_and(Connection::has_output))
                .map(Action::OutputReady),
        );
        actions
    }

    /// Processes up to `per_connection` waiting requests of every
    /// connection, so a flooding client delays others by at most that many
    /// requests per round. A connection whose client is not reading its
    /// replies is skipped until it does.
    pub fn process_round(&mut self, per_connection: usize) -> Round {
        let ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        let mut processed = 0;
        for id in ids {
            for _ in 0..per_connection {
                let Some(message) = self
                    .connections
                    .get_mut(&id)
                    .and_then(Connection::next_request)
                else {
                    break;
                };
                self.handle_message(id, &message);
                processed += 1;
            }
        }
        let more = self.connections.values().any(Connection::ready);
        Round { processed, more }
    }

    fn handle_message(&mut self, id: ConnectionId, message: &Message) {
        let header = message.header();
        let view = message.view();
        let reply = match self.handle_view(id, &view) {
            Ok((kind, response)) => Message::new(
                kind.raw(),
                header.request_id,
                header.transaction_id,
                response.to_payload(),
            )
            .unwrap_or_else(|_| {
                Message::error_reply(header.request_id, header.transaction_id, Error::TooBig)
            }),
            Err(error) => Message::error_reply(header.request_id, header.transaction_id, error),
        };
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.push_reply(reply);
            self.output_ready.insert(id);
        }
        self.flush_deferred_events();
    }

    fn handle_view(
        &mut self,
        id: ConnectionId,
        view: &MessageView<'_>,
    ) -> Result<(MessageType, Response), Error> {
        let kind = view.message_type().ok_or(Error::NotImplemented)?;
        let transaction = self.admit(id, kind, view.header().transaction_id)?;
        let request = Request::parse_payload(kind, view.payload())?;
        let response = self.execute(id, transaction, request)?;
        Ok((kind, response))
    }

    /// The checks made before the payload is looked at, in C xenstored's
    /// order: privileged types (`EACCES`), then the transaction (`ENOENT`).
    fn admit(
        &self,
        id: ConnectionId,
        kind: MessageType,
        transaction: u32,
    ) -> Result<Option<TransactionId>, Error> {
        let connection = self.connections.get(&id).ok_or(Error::NotFound)?;
        if kind.is_privileged() && !connection.caller().privileged {
            return Err(Error::AccessDenied);
        }
        if kind.ignores_transaction() || transaction == 0 {
            return Ok(None);
        }
        let transaction = TransactionId(transaction);
        if self.transactions.contains_key(&(id, transaction)) {
            Ok(Some(transaction))
        } else {
            Err(Error::NotFound)
        }
    }

    /// Runs a typed request for a connection, as if it had arrived on the
    /// wire in `transaction` (the in-process interface; see also
    /// [`Xenstored::session`]). Watch events it causes are queued on the
    /// watching connections.
    pub fn request(
        &mut self,
        id: ConnectionId,
        transaction: Option<TransactionId>,
        request: Request<'_>,
    ) -> Result<Response, Error> {
        let kind = request.message_type();
        let result = self
            .admit(id, kind, transaction.map_or(0, |transaction| transaction.0))
            .and_then(|transaction| self.execute(id, transaction, request));
        self.flush_deferred_events();
        result
    }

    fn flush_deferred_events(&mut self) {
        for (id, event) in core::mem::take(&mut self.deferred_events) {
            if let Some(connection) = self.connections.get_mut(&id)
                && connection.push_event(event)
            {
                self.output_ready.insert(id);
            }
        }
    }

    fn quotas_for(&self, caller: &Caller) -> Option<Quotas> {
        if caller.privileged {
            return None;
        }
        Some(
            self.domains
                .get(&caller.domain)
                .map_or(self.config.quotas, |domain| domain.quotas),
        )
    }

    fn resolve(
        &self,
        caller: &Caller,
        raw: &str,
        allow_special: bool,
    ) -> Result<CanonicalPath, Error> {
        let path_max = self
            .quotas_for(caller)
            .and_then(|quotas| Quotas::limit(quotas.path_max))
            .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
        path::canonicalize(raw, caller.domain, path_max, allow_special)
    }

    /// Runs a read-only operation on the tree or in the transaction.
    fn inspect<T>(
        &mut self,
        id: ConnectionId,
        transaction: Option<TransactionId>,
        operation: impl FnOnce(&mut dyn NodeAccess) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match transaction {
            None => operation(&mut self.tree),
            Some(transaction) => {
                let open = self
                    .transactions
                    .get_mut(&(id, transaction))
                    .ok_or(Error::NotFound)?;
                let mut view = open.view(&mut self.tree);
                operation(&mut view)
            }
        }
    }

    /// Runs a changing operation; fires its watches now, or at commit.
    fn change(
        &mut self,
        id: ConnectionId,
        transaction: Option<TransactionId>,
        operation: impl FnOnce(&mut dyn NodeAccess) -> Result<Vec<Change>, Error>,
    ) -> Result<Response, Error> {
        match transaction {
            None => {
                let changes = operation(&mut self.tree)?;
                self.fire(&changes);
            }
            Some(transaction) => {
                let open = self
                    .transactions
                    .get_mut(&(id, transaction))
                    .ok_or(Error::NotFound)?;
                let changes = operation(&mut open.view(&mut self.tree))?;
                open.record_changes(changes);
            }
        }
        Ok(Response::Ok)
    }

    fn execute(
        &mut self,
        id: ConnectionId,
        transaction: Option<TransactionId>,
        request: Request<'_>,
    ) -> Result<Response, Error> {
        let caller = self.connections.get(&id).ok_or(Error::NotFound)?.caller();
        let quotas = self.quotas_for(&caller);
        let limits = quotas.as_ref();
        match request {
            Request::Read { path } => {
                let path = self.resolve(&caller, path, false)?;
                self.inspect(id, transaction, |view| {
                    operations::read(view, &caller, &path.absolute)
                })
                .map(Response::Value)
            }
            Request::Directory { path } => {
                let path = self.resolve(&caller, path, false)?;
                self.inspect(id, transaction, |view| {
                    operations::directory(view, &caller, &path.absolute)
                })
                .map(Response::Names)
            }
            Request::DirectoryPart { path, offset } => {
                let path = self.resolve(&caller, path, false)?;
                self.inspect(id, transaction, |view| {
                    operations::directory_part(view, &caller, &path.absolute, offset)
                })
                .map(Response::Raw)
            }
            Request::GetPermissions { path } => {
                let path = self.resolve(&caller, path, true)?;
                self.inspect(id, transaction, |view| {
                    operations::get_permissions(view, &caller, &path.absolute)
                })
                .map(Response::Permissions)
            }
            Request::Write { path, value } => {
                let path = self.resolve(&caller, path, false)?;
                self.change(id, transaction, |view| {
                    operations::write(view, &caller, limits, &path.absolute, value)
                })
            }
            Request::Mkdir { path } => {
                let path = self.resolve(&caller, path, false)?;
                self.change(id, transaction, |view| {
                    operations::mkdir(view, &caller, limits, &path.absolute)
                })
            }
            Request::Remove { path } => {
                let path = self.resolve(&caller, path, false)?;
                self.change(id, transaction, |view| {
                    operations::remove(view, &caller, &path.absolute)
                })
            }
            Request::SetPermissions { path, permissions } => {
                let path = self.resolve(&caller, path, true)?;
                self.change(id, transaction, |view| {
                    operations::set_permissions(view, &caller, limits, &path.absolute, permissions)
                })
            }
            Request::Watch { path, token, depth } => {
                let path = self.resolve(&caller, path, true)?;
                self.add_watch(id, quotas, path, token, depth)
            }
            Request::Unwatch { path, token } => {
                let path = self.resolve(&caller, path, true)?;
                let connection = self.connections.get_mut(&id).ok_or(Error::NotFound)?;
                let position = connection
                    .watches
                    .iter()
                    .position(|watch| watch.path == path.absolute && watch.token == token)
                    .ok_or(Error::NotFound)?;
                connection.watches.remove(position);
                Ok(Response::Ok)
            }
            Request::TransactionStart => self.start_transaction(id, transaction, quotas),
            Request::TransactionEnd { commit } => {
                let transaction = transaction.ok_or(Error::NotFound)?;
                self.end_transaction(id, transaction, commit)
            }
            Request::ResetWatches => {
                self.transactions.retain(|&(owner, _), _| owner != id);
                if let Some(connection) = self.connections.get_mut(&id) {
                    connection.watches.clear();
                }
                Ok(Response::Ok)
            }
            Request::GetDomainPath { domain } => {
                Ok(Response::DomainPath(path::domain_path(domain)))
            }
            Request::IsDomainIntroduced { domain } => Ok(Response::Introduced(
                domain == DomainId::DOM0
                    || domain == DomainId::SELF
                    || self.domains.contains_key(&domain),
            )),
            Request::Introduce {
                domain,
                frame,
                port,
            } => self
                .introduce_domain(domain, frame, port)
                .map(|_| Response::Ok),
            Request::Release { domain } => self.release_domain(domain).map(|()| Response::Ok),
            Request::Resume { domain } => {
                if !is_introducible(domain) {
                    return Err(Error::InvalidArgument);
                }
                let info = self.domains.get_mut(&domain).ok_or(Error::NotFound)?;
                info.shut_down = false;
                Ok(Response::Ok)
            }
            Request::SetTarget { domain, target } => {
                let served = self.domains.get(&domain).ok_or(Error::NotFound)?.connection;
                if !self.domains.contains_key(&target) {
                    return Err(Error::NotFound);
                }
                if let Some(connection) = self.connections.get_mut(&served) {
                    connection.set_target(target);
                }
                Ok(Response::Ok)
            }
            Request::GetFeature { domain } => match domain {
                None => Ok(Response::Number(u64::from(self.config.server_features))),
                Some(_) if !caller.privileged => Err(Error::AccessDenied),
                Some(domain) if self.domains.contains_key(&domain) => {
                    Ok(Response::Number(u64::from(self.config.server_features)))
                }
                Some(_) => Err(Error::NotFound),
            },
            Request::GetQuota { domain, name } => {
                let quotas = match domain {
                    None => self.config.quotas,
                    Some(domain) => self.domains.get(&domain).ok_or(Error::NotFound)?.quotas,
                };
                match name {
                    None => Ok(Response::Text(Quotas::NAMES.join(" "))),
                    Some(name) => quotas
                        .get(name)
                        .map(|value| Response::Number(u64::from(value))),
                }
            }
            Request::SetQuota {
                domain,
                name,
                value,
            } => {
                let quotas = match domain {
                    None => &mut self.config.quotas,
                    Some(domain) => {
                        &mut self.domains.get_mut(&domain).ok_or(Error::NotFound)?.quotas
                    }
                };
                quotas.set(name, value).map(|()| Response::Ok)
            }
            Request::Control { arguments } => self.control(arguments),
        }
    }

    fn add_watch(
        &mut self,
        id: ConnectionId,
        quotas: Option<Quotas>,
        path: CanonicalPath,
        token: &[u8],
        depth: Option<u32>,
    ) -> Result<Response, Error> {
        let connection = self.connections.get_mut(&id).ok_or(Error::NotFound)?;
        if connection
            .watches
            .iter()
            .any(|watch| watch.path == path.absolute && watch.token == token)
        {
            return Err(Error::AlreadyExists);
        }
        if let Some(limit) = quotas.and_then(|quotas| Quotas::limit(quotas.watches))
            && connection.watches.len() as u64 >= limit
        {
            return Err(Error::QuotaExceeded);
        }
        let watch = Watch {
            path: path.absolute,
            token: token.to_vec(),
            depth,
            relative_prefix: path.relative_prefix,
        };
        // Fired once straight away, unconditionally, after the reply.
        self.deferred_events.push((id, watch.initial_event()));
        connection.watches.push(watch);
        Ok(Response::Ok)
    }

    fn start_transaction(
        &mut self,
        id: ConnectionId,
        current: Option<TransactionId>,
        quotas: Option<Quotas>,
    ) -> Result<Response, Error> {
        if current.is_some() {
            return Err(Error::Busy);
        }
        if let Some(limit) = quotas.and_then(|quotas| Quotas::limit(quotas.transactions))
            && self.transaction_count(id) as u64 >= limit
        {
            return Err(Error::QuotaExceeded);
        }
        let node_limit = quotas
            .and_then(|quotas| Quotas::limit(quotas.transaction_nodes))
            .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
        let connection = self.connections.get_mut(&id).ok_or(Error::NotFound)?;
        // Ids in use are at most the open transactions, so this ends.
        let transaction = loop {
            let candidate = TransactionId(connection.next_transaction);
            connection.next_transaction = connection.next_transaction.wrapping_add(1).max(1);
            if !self.transactions.contains_key(&(id, candidate)) {
                break candidate;
            }
        };
        self.transactions
            .insert((id, transaction), Transaction::new(node_limit));
        Ok(Response::TransactionStarted(transaction))
    }

    fn end_transaction(
        &mut self,
        id: ConnectionId,
        transaction: TransactionId,
        commit: bool,
    ) -> Result<Response, Error> {
        let open = self
            .transactions
            .remove(&(id, transaction))
            .ok_or(Error::NotFound)?;
        if !commit {
            return Ok(Response::Ok);
        }
        let domains = &self.domains;
        let defaults = self.config.quotas;
        let changes = open.commit(&mut self.tree, |domain| {
            if domain == DomainId::DOM0 {
                return None;
            }
            let quotas = domains.get(&domain).map_or(defaults, |info| info.quotas);
            Quotas::limit(quotas.nodes)
        })?;
        self.fire(&changes);
        Ok(Response::Ok)
    }

    fn control(&mut self, arguments: &[u8]) -> Result<Response, Error> {
        let command = arguments
            .split(|&byte| byte == 0)
            .next()
            .unwrap_or_default();
        match command {
            b"check" => self
                .check()
                .map(|()| Response::Ok)
                .map_err(|_| Error::InputOutput),
            b"help" => Ok(Response::Text(String::from("check\nhelp\n"))),
            _ => Err(Error::InvalidArgument),
        }
    }

    /// Checks the invariants across tree, domains, connections and
    /// transactions (CONTROL `check`, and tests).
    pub fn check(&self) -> Result<(), String> {
        self.tree.check()?;
        for (domain, info) in &self.domains {
            let connection = self
                .connections
                .get(&info.connection)
                .ok_or_else(|| alloc::format!("domain {} has no connection", domain.0))?;
            if connection.domain() != *domain || connection.kind() != ConnectionKind::Ring {
                return Err(alloc::format!(
                    "domain {} has a foreign connection",
                    domain.0
                ));
            }
        }
        for &(owner, _) in self.transactions.keys() {
            if !self.connections.contains_key(&owner) {
                return Err(alloc::format!("transaction of closed {owner}"));
            }
        }
        Ok(())
    }

    /// Queues the events `changes` cause on every connection with a
    /// matching watch that may see them.
    fn fire(&mut self, changes: &[Change]) {
        for (&id, connection) in &mut self.connections {
            let caller = connection.caller();
            for change in changes {
                if !change.visible_to(&caller) {
                    continue;
                }
                let events: Vec<WatchEvent> = connection
                    .watches
                    .iter()
                    .filter(|watch| watch.matches(&change.path, change.scope))
                    .map(|watch| watch.event(&change.path))
                    .collect();
                for event in events {
                    if connection.push_event(event) {
                        self.output_ready.insert(id);
                    }
                }
            }
        }
    }

    /// Fires `@introduceDomain` or `@releaseDomain` about `domain` for every
    /// connection allowed to read that special node.
    fn fire_special(&mut self, name: &str, domain: DomainId) {
        let permissions = self.tree.node(name).map(|node| node.permissions.clone());
        for (&id, connection) in &mut self.connections {
            let caller = connection.caller();
            let allowed = caller.privileged
                || permissions
                    .as_ref()
                    .is_some_and(|permissions| permissions.rights(&caller).read);
            if !allowed {
                continue;
            }
            let events: Vec<WatchEvent> = connection
                .watches
                .iter()
                .filter_map(|watch| watch.special_event(name, domain))
                .collect();
            for event in events {
                if connection.push_event(event) {
                    self.output_ready.insert(id);
                }
            }
        }
    }

    /// Starts serving a domain (INTRODUCE). A new domain gets a ring
    /// connection and fires `@introduceDomain`; introducing a known domain
    /// again records the new page and port and resets its connection
    /// (watches, transactions, queued bytes), as C xenstored does.
    pub fn introduce_domain(
        &mut self,
        domain: DomainId,
        frame: GuestFrame,
        port: Port,
    ) -> Result<ConnectionId, Error> {
        if !is_introducible(domain) || port == Port::RESERVED {
            return Err(Error::InvalidArgument);
        }
        if let Some(info) = self.domains.get_mut(&domain) {
            info.frame = frame;
            info.port = port;
            let connection = info.connection;
            self.reset_connection(connection);
            self.actions.push_back(Action::ConnectRing {
                domain,
                connection,
                frame,
                port,
            });
            return Ok(connection);
        }
        let connection = self.open(ConnectionKind::Ring, domain);
        self.domains.insert(
            domain,
            DomainInfo {
                domain,
                connection,
                frame,
                port,
                quotas: self.config.quotas,
                shut_down: false,
            },
        );
        self.actions.push_back(Action::ConnectRing {
            domain,
            connection,
            frame,
            port,
        });
        self.fire_special(path::INTRODUCE_DOMAIN, domain);
        Ok(connection)
    }

    /// Stops serving a domain (RELEASE, or its destruction): drops its
    /// connection, watches and transactions, removes the nodes it owns (with
    /// their subtrees, firing watches), drops permission entries naming it,
    /// then fires `@releaseDomain`.
    pub fn release_domain(&mut self, domain: DomainId) -> Result<(), Error> {
        if !is_introducible(domain) {
            return Err(Error::InvalidArgument);
        }
        let info = self.domains.remove(&domain).ok_or(Error::NotFound)?;
        self.drop_connection(info.connection);
        for connection in self.connections.values_mut() {
            connection.forget_target(domain);
        }
        self.actions.push_back(Action::DisconnectRing { domain });
        for path in self
            .tree
            .paths_matching(|node| node.permissions.owner() == domain)
        {
            if path::parent(&path).is_none() || self.tree.node(&path).is_none() {
                continue;
            }
            if let Ok(changes) = operations::remove(&mut self.tree, &Caller::PRIVILEGED, &path) {
                self.fire(&changes);
            }
        }
        let mentioned = self.tree.paths_matching(|node| {
            node.permissions
                .entries()
                .iter()
                .any(|entry| entry.domain == domain)
        });
        for path in mentioned {
            if let Some(mut node) = self.tree.node(&path).cloned()
                && node.permissions.forget_domain(domain)
            {
                // Cannot fail on the tree itself.
                let _ = self.tree.put(&path, node);
            }
        }
        self.fire_special(path::RELEASE_DOMAIN, domain);
        Ok(())
    }

    /// The hypervisor reports `domain` shut down: fires `@releaseDomain`
    /// once (until RESUME). Returns whether it fired.
    pub fn domain_shut_down(&mut self, domain: DomainId) -> bool {
        match self.domains.get_mut(&domain) {
            Some(info) if !info.shut_down => {
                info.shut_down = true;
                self.fire_special(path::RELEASE_DOMAIN, domain);
                true
            }
            _ => false,
        }
    }
}
