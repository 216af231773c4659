//! The blkif back end of one virtual disk as a state machine: inputs
//! (start, front-end state change, event-channel notification, device
//! completion) go in with the time; actions (notify a port, state changes,
//! guest faults to log) come out. Grants, event channels and the device
//! are reached through the traits in [`crate::interfaces`].

use alloc::collections::{BTreeSet, VecDeque};
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use xen_ring::{BackRing, RingLayout};
use xenolith_abi::event_channel::Port;

use crate::config::Config;
use crate::error::{ConnectError, RequestError};
use crate::interfaces::{
    BlockDevice, Completion, DeviceOperation, DeviceTag, Events, Grants, GuestPiece, Sector,
    Xenstore,
};
use crate::wire::{
    Direction, PAGE_SIZE, REQUEST_SIZE, RESPONSE_SIZE, Request, RequestView, SECTOR_SIZE, Segment,
    Status, encode_response, indirect_segments, operation,
};
use crate::xenbus::{FrontendKeys, XenbusState};

/// Nanoseconds since an arbitrary origin (Dom0's monotonic clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time(pub u64);

/// Guest faults reported per second at most; the rest are counted in
/// [`Statistics::suppressed_reports`].
pub const REPORTS_PER_SECOND: u32 = 10;

/// What happened, for the back end to react to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The device was created: advertise features and go to InitWait.
    Start,
    /// The front end's `state` node changed (Dom0 watches it).
    FrontendChanged,
    /// An event arrived on a local port bound by this back end.
    Notified(Port),
    /// The device finished an operation.
    Completed(Completion),
    /// The device finished several operations: their responses go out
    /// with one publish (and at most one notification per ring).
    CompletedMany(Vec<Completion>),
}

/// What Dom0 must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Signal this local port (`EVTCHNOP_send`): responses await.
    Notify(Port),
    /// The back end wrote a new `state`.
    StateChanged(XenbusState),
    /// A request was refused (rate-limited; log it).
    Refused { queue: usize, error: RequestError },
    /// The connection failed or the ring was abused; the back end wrote
    /// `error` and is closing.
    Failed(ConnectError),
}

/// Counters since start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Statistics {
    pub reads: u64,
    pub writes: u64,
    /// Flush requests, with or without data.
    pub flushes: u64,
    pub discards: u64,
    /// Indirect requests (also counted as reads or writes).
    pub indirect: u64,
    /// Requests answered `BLKIF_RSP_ERROR` for a guest fault.
    pub errors: u64,
    /// Requests answered `BLKIF_RSP_EOPNOTSUPP`.
    pub not_supported: u64,
    /// Requests failed by the device.
    pub device_errors: u64,
    pub responses: u64,
    /// Publishes after which the front end was notified.
    pub notifications: u64,
    /// Times the ring was left unread because `queue_depth` requests were
    /// in flight (back-pressure).
    pub stalls: u64,
    /// Completions whose tag matched nothing.
    pub unknown_completions: u64,
    /// Guest faults not reported because of the rate limit.
    pub suppressed_reports: u64,
    /// Times a ring still held requests after a ring's worth was taken in
    /// one call: the front end refilled it while being served.
    pub budget_exhausted: u64,
}

struct Queue<R> {
    ring: BackRing<R>,
    port: Port,
    /// Requests may wait in the ring with `req_event` not armed (too many
    /// in flight, a ring's worth taken, a discard running): the front end
    /// will not notify for them, so completions look again.
    unread: bool,
}

#[derive(Debug)]
enum Stage {
    /// A flush (with its data, for a FUA write) waiting for the writes
    /// accepted before it to complete.
    Draining {
        data: Option<(Sector, Vec<u8>)>,
    },
    Reading {
        pieces: Vec<GuestPiece>,
        length: usize,
    },
    Writing {
        then_flush: bool,
    },
    Flushing,
    /// A discard waiting for every other request to finish: it goes to the
    /// device alone.
    DiscardWaiting {
        sector: Sector,
        sectors: u64,
        secure: bool,
    },
    Discarding,
}

#[derive(Debug)]
struct Pending {
    queue: usize,
    id: u64,
    operation: u8,
    sequence: u64,
    is_write: bool,
    generation: u32,
    stage: Stage,
}

/// The back end of one virtual block device.
pub struct Blkback<G: Grants, E: Events, D: BlockDevice> {
    config: Config,
    grants: G,
    events: E,
    device: D,
    state: XenbusState,
    queues: Vec<Queue<G::RingMemory>>,
    pending: Vec<Option<Pending>>,
    free_slots: Vec<usize>,
    generation: u32,
    in_flight: usize,
    writes_in_flight: BTreeSet<u64>,
    draining: VecDeque<usize>,
    /// The discard holding the disk: no request is taken from the rings
    /// while it waits for the ones in flight or runs.
    exclusive: Option<usize>,
    next_sequence: u64,
    close_to: Option<XenbusState>,
    actions: Vec<Action>,
    statistics: Statistics,
    report_second: u64,
    reports_this_second: u32,
}

impl<G: Grants, E: Events, D: BlockDevice> core::fmt::Debug for Blkback<G, E, D> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Blkback")
            .field("backend", &self.config.backend_path)
            .field("state", &self.state)
            .field("queues", &self.queues.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl<G: Grants, E: Events, D: BlockDevice> Blkback<G, E, D> {
    /// A back end in state Initialising; send [`Input::Start`] to advertise.
    pub fn new(config: Config, grants: G, events: E, device: D) -> Result<Self, ConnectError> {
        config.validate()?;
        let depth = config.queue_depth;
        Ok(Self {
            config,
            grants,
            events,
            device,
            state: XenbusState::Initialising,
            queues: Vec::new(),
            pending: (0..depth).map(|_| None).collect(),
            free_slots: (0..depth).rev().collect(),
            generation: 0,
            in_flight: 0,
            writes_in_flight: BTreeSet::new(),
            draining: VecDeque::new(),
            exclusive: None,
            next_sequence: 0,
            close_to: None,
            actions: Vec::new(),
            statistics: Statistics::default(),
            report_second: 0,
            reports_this_second: 0,
        })
    }

    /// The back end's xenbus state.
    pub const fn state(&self) -> XenbusState {
        self.state
    }

    /// Counters since start.
    pub const fn statistics(&self) -> Statistics {
        self.statistics
    }

    /// Requests accepted and not yet answered.
    pub const fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Connected queues (rings).
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The connected rings' memory, one per queue (for the owner's
    /// accounting of ring accesses).
    pub fn ring_memories(&self) -> impl Iterator<Item = &G::RingMemory> {
        self.queues.iter().map(|queue| queue.ring.memory())
    }

    /// The local ports bound, one per queue.
    pub fn ports(&self) -> Vec<Port> {
        self.queues.iter().map(|queue| queue.port).collect()
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The fakes or real handles, for inspection.
    pub const fn grants(&self) -> &G {
        &self.grants
    }

    /// Mutable access to the grants handle.
    pub fn grants_mut(&mut self) -> &mut G {
        &mut self.grants
    }

    /// The device handle.
    pub const fn device(&self) -> &D {
        &self.device
    }

    /// Mutable access to the device handle.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The events handle.
    pub const fn events(&self) -> &E {
        &self.events
    }

    /// Handles one input and returns what Dom0 must do. All responses
    /// produced are published once per call per ring (batching), with at
    /// most one notification per ring.
    pub fn process(&mut self, input: Input, now: Time, store: &mut impl Xenstore) -> Vec<Action> {
        let outcome = match input {
            Input::Start => self.start(store),
            Input::FrontendChanged => self.frontend_changed(store),
            Input::Notified(port) => {
                match self.queues.iter().position(|queue| queue.port == port) {
                    Some(queue) => self.service(queue, now),
                    None => Ok(()),
                }
            }
            Input::Completed(completion) => {
                self.complete(completion, now);
                self.service_unread(now)
            }
            Input::CompletedMany(completions) => {
                for completion in completions {
                    self.complete(completion, now);
                }
                self.service_unread(now)
            }
        };
        if let Err(error) = outcome {
            self.fail(store, error);
        }
        self.publish();
        self.finish_close_if_idle(store);
        core::mem::take(&mut self.actions)
    }

    fn set_state(&mut self, store: &mut impl Xenstore, state: XenbusState) {
        self.state = state;
        let path = format!("{}/state", self.config.backend_path);
        let _ = store.write(&path, &state.as_raw().to_string());
        self.actions.push(Action::StateChanged(state));
    }

    fn write_key(&self, store: &mut impl Xenstore, key: &str, value: &str) {
        let path = format!("{}/{key}", self.config.backend_path);
        let _ = store.write(&path, value);
    }

    fn start(&mut self, store: &mut impl Xenstore) -> Result<(), ConnectError> {
        if !matches!(self.state, XenbusState::Initialising | XenbusState::Closed) {
            return Ok(());
        }
        let disk = self.config.disk;
        self.write_key(
            store,
            "feature-flush-cache",
            if disk.offers_flush() { "1" } else { "0" },
        );
        match disk.offered_discard() {
            Some(discard) => {
                self.write_key(store, "feature-discard", "1");
                self.write_key(
                    store,
                    "discard-granularity",
                    &discard.granularity.to_string(),
                );
                self.write_key(store, "discard-alignment", &discard.alignment.to_string());
                self.write_key(
                    store,
                    "discard-secure",
                    if discard.secure { "1" } else { "0" },
                );
            }
            None => self.write_key(store, "feature-discard", "0"),
        }
        // Data moves by grant copy: keeping grants mapped would gain nothing.
        self.write_key(store, "feature-persistent", "0");
        if self.config.max_indirect_segments > 0 {
            let segments = self.config.max_indirect_segments.to_string();
            self.write_key(store, "feature-max-indirect-segments", &segments);
        }
        let order = self.config.max_ring_page_order.to_string();
        self.write_key(store, "max-ring-page-order", &order);
        if self.config.max_queues > 1 {
            let queues = self.config.max_queues.to_string();
            self.write_key(store, "multi-queue-max-queues", &queues);
        }
        self.close_to = None;
        self.set_state(store, XenbusState::InitWait);
        Ok(())
    }

    fn frontend_changed(&mut self, store: &mut impl Xenstore) -> Result<(), ConnectError> {
        let path = format!("{}/state", self.config.frontend_path);
        let frontend = store
            .read(&path)
            .map_or(XenbusState::Unknown, |text| XenbusState::parse(&text));
        match frontend {
            XenbusState::Initialised | XenbusState::Connected => {
                if self.state == XenbusState::InitWait {
                    self.connect(store)?;
                }
                Ok(())
            }
            XenbusState::Initialising => {
                if self.state == XenbusState::Closed {
                    self.start(store)?;
                }
                Ok(())
            }
            XenbusState::Closing => {
                self.begin_close(store, XenbusState::Closing);
                Ok(())
            }
            XenbusState::Closed | XenbusState::Unknown => {
                self.begin_close(store, XenbusState::Closed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn connect(&mut self, store: &mut impl Xenstore) -> Result<(), ConnectError> {
        let keys = FrontendKeys::read(store, &self.config)?;
        let domain = self.config.frontend_domain;
        for queue in &keys.queues {
            let layout = RingLayout::with_order(keys.ring_page_order, REQUEST_SIZE, RESPONSE_SIZE)
                .map_err(ConnectError::RingFault)?;
            let memory = self
                .grants
                .map_ring(domain, &queue.ring_grants)
                .map_err(|error| ConnectError::RingMapFailed { grant: error.grant });
            let memory = match memory {
                Ok(memory) => memory,
                Err(error) => {
                    self.teardown();
                    return Err(error);
                }
            };
            let ring = match BackRing::try_attach(memory, layout) {
                Ok(ring) => ring,
                Err((error, memory)) => {
                    self.grants.unmap_ring(memory);
                    self.teardown();
                    return Err(ConnectError::RingFault(error));
                }
            };
            let Some(port) = self.events.bind(domain, queue.event_channel) else {
                self.grants.unmap_ring(ring.into_memory());
                self.teardown();
                return Err(ConnectError::EventChannelBindFailed);
            };
            self.queues.push(Queue {
                ring,
                port,
                unread: false,
            });
        }
        let disk = self.config.disk;
        self.write_key(store, "sectors", &disk.sectors.to_string());
        self.write_key(store, "info", &disk.info_flags().to_string());
        self.write_key(store, "sector-size", &disk.sector_size.to_string());
        let physical = disk.physical_sector_size.to_string();
        self.write_key(store, "physical-sector-size", &physical);
        self.set_state(store, XenbusState::Connected);
        Ok(())
    }

    fn fail(&mut self, store: &mut impl Xenstore, error: ConnectError) {
        self.write_key(store, "error", &error.to_string());
        self.actions.push(Action::Failed(error));
        self.begin_close(store, XenbusState::Closing);
    }

    fn begin_close(&mut self, store: &mut impl Xenstore, target: XenbusState) {
        let target = match self.close_to {
            Some(XenbusState::Closed) => XenbusState::Closed,
            _ => target,
        };
        self.close_to = Some(target);
        if self.state != XenbusState::Closing && self.state != XenbusState::Closed {
            self.set_state(store, XenbusState::Closing);
        }
    }

    fn finish_close_if_idle(&mut self, store: &mut impl Xenstore) {
        let Some(target) = self.close_to else {
            return;
        };
        if self.in_flight > 0 {
            return;
        }
        self.teardown();
        if self.state != target {
            self.set_state(store, target);
        }
        if target == XenbusState::Closed {
            self.close_to = None;
        }
    }

    fn teardown(&mut self) {
        for queue in self.queues.drain(..) {
            self.events.unbind(queue.port);
            self.grants.unmap_ring(queue.ring.into_memory());
        }
    }

    fn accepting(&self) -> bool {
        self.state == XenbusState::Connected && self.close_to.is_none()
    }

    /// Reads the rings that [`Blkback::service`] left with requests in
    /// them, and those where one read of `req_prod` shows requests
    /// published since (their event may still be on its way: taking them
    /// now saves the front end a round trip). A full look at every ring
    /// would cost several copies each.
    fn service_unread(&mut self, now: Time) -> Result<(), ConnectError> {
        for queue in 0..self.queues.len() {
            let look = self
                .queues
                .get(queue)
                .is_some_and(|queue| queue.unread || queue.ring.has_unconsumed_requests());
            if look {
                self.service(queue, now)?;
            }
        }
        Ok(())
    }

    /// Takes requests from one ring until it is empty (and `req_event` is
    /// armed), `queue_depth` requests are in flight, or a ring's worth has
    /// been taken in this call; in the last two cases (and while a
    /// discard runs alone) the ring is marked unread, to be read again as
    /// requests complete.
    ///
    /// Responses are published once per [`Blkback::process`] call, so a
    /// front end that waits for them (as the ring rules say) cannot publish
    /// more than a ring's worth of requests during one call. One that does
    /// is refilling the ring behind our back — refused requests free their
    /// slot at once — and would keep Dom0 here for ever; the rest of its
    /// requests wait for the next completion or event.
    fn service(&mut self, queue: usize, now: Time) -> Result<(), ConnectError> {
        let emptied = self.take_requests(queue, now)?;
        if let Some(queue) = self.queues.get_mut(queue) {
            queue.unread = !emptied;
        }
        Ok(())
    }

    /// [`Blkback::service`]'s loop; true when the ring was left empty with
    /// `req_event` armed.
    fn take_requests(&mut self, queue: usize, now: Time) -> Result<bool, ConnectError> {
        if !self.accepting() {
            // Nothing is taken while closing; nothing needs reading after.
            return Ok(true);
        }
        if self.exclusive.is_some() {
            return Ok(false);
        }
        let budget = self
            .queues
            .get(queue)
            .map_or(0, |queue| queue.ring.layout().slots());
        let mut taken = 0u32;
        loop {
            while self.in_flight < self.config.queue_depth {
                if self.exclusive.is_some() {
                    // Taken again when the discard finishes.
                    return Ok(false);
                }
                if taken >= budget {
                    self.statistics.budget_exhausted += 1;
                    return Ok(false);
                }
                let Some(ring) = self.queues.get_mut(queue).map(|queue| &mut queue.ring) else {
                    return Ok(true);
                };
                match ring.next_request() {
                    Ok(Some(slot)) => {
                        taken += 1;
                        self.handle(queue, slot.bytes(), now);
                    }
                    Ok(None) => break,
                    Err(error) => return Err(ConnectError::RingFault(error)),
                }
            }
            if self.in_flight >= self.config.queue_depth {
                self.statistics.stalls += 1;
                return Ok(false);
            }
            let Some(ring) = self.queues.get_mut(queue).map(|queue| &mut queue.ring) else {
                return Ok(true);
            };
            if !ring.final_check_for_requests() {
                return Ok(true);
            }
        }
    }

    fn handle(&mut self, queue: usize, bytes: &[u8], now: Time) {
        let view = match RequestView::new_checked(bytes) {
            Ok(view) => view,
            Err(error) => return self.refuse(queue, 0, 0, error, now),
        };
        let (id, response_operation) = (view.id(), view.response_operation());
        if let Err(error) = self.start_request(queue, &view) {
            self.refuse(queue, id, response_operation, error, now);
        }
    }

    fn refuse(&mut self, queue: usize, id: u64, operation: u8, error: RequestError, now: Time) {
        match error.status() {
            Status::NotSupported => self.statistics.not_supported += 1,
            _ => self.statistics.errors += 1,
        }
        self.respond(queue, id, operation, error.status());
        let second = now.0 / 1_000_000_000;
        if second != self.report_second {
            self.report_second = second;
            self.reports_this_second = 0;
        }
        if self.reports_this_second < REPORTS_PER_SECOND {
            self.reports_this_second += 1;
            self.actions.push(Action::Refused { queue, error });
        } else {
            self.statistics.suppressed_reports += 1;
        }
    }

    fn respond(&mut self, queue: usize, id: u64, operation: u8, status: Status) {
        if let Some(queue) = self.queues.get_mut(queue) {
            // A response always has its consumed request: this cannot fail.
            if queue
                .ring
                .push_response(&encode_response(id, operation, status))
                .is_ok()
            {
                self.statistics.responses += 1;
            }
        }
    }

    fn check_range(&self, sector: u64, sectors: u64) -> Result<(), RequestError> {
        let disk = &self.config.disk;
        let end = sector.checked_add(sectors);
        if end.is_none_or(|end| end > disk.sectors) {
            return Err(RequestError::SectorOutOfRange {
                sector,
                sectors,
                disk_sectors: disk.sectors,
            });
        }
        let per_logical = u64::from(disk.sector_size) / SECTOR_SIZE;
        if !sector.is_multiple_of(per_logical) || !sectors.is_multiple_of(per_logical) {
            return Err(RequestError::Misaligned {
                sector,
                sectors,
                sector_size: disk.sector_size,
            });
        }
        Ok(())
    }

    fn start_request(&mut self, queue: usize, view: &RequestView<'_>) -> Result<(), RequestError> {
        let id = view.id();
        let response_operation = view.response_operation();
        match Request::parse(view, self.config.max_indirect_segments)? {
            Request::ReadWrite {
                direction,
                sector,
                segments,
                ..
            } => self.start_transfer(
                queue,
                id,
                response_operation,
                direction,
                sector,
                &segments,
                false,
            ),
            Request::Indirect {
                direction,
                sector,
                segment_count,
                pages,
                ..
            } => {
                let pieces: Vec<GuestPiece> = pages
                    .iter()
                    .map(|&grant| GuestPiece {
                        grant,
                        offset: 0,
                        length: PAGE_SIZE as u16,
                    })
                    .collect();
                // One private copy of the descriptors: no double fetch.
                let mut descriptors = vec![0; pieces.len() * PAGE_SIZE];
                self.grants
                    .copy_from_guest(self.config.frontend_domain, &pieces, &mut descriptors)
                    .map_err(|error| RequestError::BadIndirectPage { grant: error.grant })?;
                let segments = indirect_segments(&descriptors, segment_count)?;
                self.statistics.indirect += 1;
                self.start_transfer(
                    queue,
                    id,
                    response_operation,
                    direction,
                    sector,
                    &segments,
                    false,
                )
            }
            Request::Flush {
                sector, segments, ..
            } => {
                if !self.config.disk.offers_flush() {
                    return Err(RequestError::NotAdvertised {
                        operation: operation::FLUSH_DISKCACHE,
                    });
                }
                if segments.is_empty() {
                    self.statistics.flushes += 1;
                    let slot = self.allocate(
                        queue,
                        id,
                        response_operation,
                        false,
                        Stage::Draining { data: None },
                    );
                    self.draining.push_back(slot);
                    self.start_drained();
                    Ok(())
                } else {
                    self.start_transfer(
                        queue,
                        id,
                        response_operation,
                        Direction::Write,
                        sector,
                        &segments,
                        true,
                    )
                }
            }
            Request::Barrier { .. } => Err(RequestError::NotAdvertised {
                operation: operation::WRITE_BARRIER,
            }),
            Request::Discard {
                sector,
                sectors,
                secure,
                ..
            } => {
                let offered = self.config.disk.offered_discard();
                let Some(discard) = offered else {
                    return Err(RequestError::NotAdvertised {
                        operation: operation::DISCARD,
                    });
                };
                if secure && !discard.secure {
                    return Err(RequestError::NotAdvertised {
                        operation: operation::DISCARD,
                    });
                }
                self.check_range(sector, sectors)?;
                self.statistics.discards += 1;
                if sectors == 0 {
                    self.respond(queue, id, response_operation, Status::Okay);
                    return Ok(());
                }
                // A discard may free what requests in flight still use
                // (a qcow2 image reallocates freed clusters, even for its
                // own tables): it waits until nothing else is in flight,
                // and nothing new is taken until it is done.
                let stage = Stage::DiscardWaiting {
                    sector: Sector(sector),
                    sectors,
                    secure,
                };
                let slot = self.allocate(queue, id, response_operation, true, stage);
                self.exclusive = Some(slot);
                self.start_exclusive();
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_transfer(
        &mut self,
        queue: usize,
        id: u64,
        response_operation: u8,
        direction: Direction,
        sector: u64,
        segments: &[Segment],
        durable: bool,
    ) -> Result<(), RequestError> {
        if direction == Direction::Write && self.config.disk.read_only {
            return Err(RequestError::ReadOnly);
        }
        let sectors: u64 = segments.iter().map(Segment::sectors).sum();
        self.check_range(sector, sectors)?;
        let pieces: Vec<GuestPiece> = segments
            .iter()
            .map(|segment| GuestPiece {
                grant: segment.grant,
                offset: segment.offset() as u16,
                length: segment.length() as u16,
            })
            .collect();
        let length = (sectors * SECTOR_SIZE) as usize;
        match direction {
            Direction::Read => {
                self.statistics.reads += 1;
                let slot = self.allocate(
                    queue,
                    id,
                    response_operation,
                    false,
                    Stage::Reading { pieces, length },
                );
                self.submit(
                    slot,
                    DeviceOperation::Read {
                        sector: Sector(sector),
                        length,
                    },
                );
            }
            Direction::Write => {
                let mut data = vec![0; length];
                self.grants
                    .copy_from_guest(self.config.frontend_domain, &pieces, &mut data)
                    .map_err(|error| RequestError::BadGrantRef { grant: error.grant })?;
                self.statistics.writes += 1;
                if durable {
                    self.statistics.flushes += 1;
                    let stage = Stage::Draining {
                        data: Some((Sector(sector), data)),
                    };
                    let slot = self.allocate(queue, id, response_operation, true, stage);
                    self.draining.push_back(slot);
                    self.start_drained();
                } else {
                    let slot = self.allocate(
                        queue,
                        id,
                        response_operation,
                        true,
                        Stage::Writing { then_flush: false },
                    );
                    self.submit(
                        slot,
                        DeviceOperation::Write {
                            sector: Sector(sector),
                            data,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Takes a free slot; callers only run while `in_flight < queue_depth`.
    fn allocate(
        &mut self,
        queue: usize,
        id: u64,
        operation: u8,
        is_write: bool,
        stage: Stage,
    ) -> usize {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.generation = self.generation.wrapping_add(1);
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                // Unreachable while service() respects queue_depth; grow
                // rather than lose a request.
                self.pending.push(None);
                self.pending.len() - 1
            }
        };
        if let Some(entry) = self.pending.get_mut(slot) {
            *entry = Some(Pending {
                queue,
                id,
                operation,
                sequence,
                is_write,
                generation: self.generation,
                stage,
            });
        }
        if is_write {
            self.writes_in_flight.insert(sequence);
        }
        self.in_flight += 1;
        slot
    }

    fn tag(&self, slot: usize) -> Option<DeviceTag> {
        let pending = self.pending.get(slot)?.as_ref()?;
        Some(DeviceTag(
            (u64::from(pending.generation) << 32) | slot as u64,
        ))
    }

    fn submit(&mut self, slot: usize, operation: DeviceOperation) {
        let Some(tag) = self.tag(slot) else {
            return;
        };
        if self.device.submit(tag, operation).is_err() {
            self.statistics.device_errors += 1;
            self.finish(slot, Status::Error);
        }
    }

    /// Starts every waiting flush that no earlier write holds back.
    fn start_drained(&mut self) {
        let mut index = 0;
        while let Some(&slot) = self.draining.get(index) {
            let sequence = match self.pending.get(slot).and_then(Option::as_ref) {
                Some(pending) => pending.sequence,
                None => {
                    self.draining.remove(index);
                    continue;
                }
            };
            if self.writes_in_flight.range(..sequence).next().is_some() {
                index += 1;
                continue;
            }
            self.draining.remove(index);
            let data = match self.pending.get_mut(slot).and_then(Option::as_mut) {
                Some(pending) => match core::mem::replace(&mut pending.stage, Stage::Flushing) {
                    Stage::Draining { data } => data,
                    other => {
                        pending.stage = other;
                        continue;
                    }
                },
                None => continue,
            };
            match data {
                Some((sector, data)) => {
                    if let Some(pending) = self.pending.get_mut(slot).and_then(Option::as_mut) {
                        pending.stage = Stage::Writing { then_flush: true };
                    }
                    self.submit(slot, DeviceOperation::Write { sector, data });
                }
                None => self.submit(slot, DeviceOperation::Flush),
            }
        }
    }

    /// Sends the waiting discard to the device once it is the only request
    /// in flight.
    fn start_exclusive(&mut self) {
        let Some(slot) = self.exclusive else {
            return;
        };
        if self.in_flight > 1 {
            return;
        }
        let Some(pending) = self.pending.get_mut(slot).and_then(Option::as_mut) else {
            self.exclusive = None;
            return;
        };
        let Stage::DiscardWaiting {
            sector,
            sectors,
            secure,
        } = pending.stage
        else {
            return;
        };
        pending.stage = Stage::Discarding;
        self.submit(
            slot,
            DeviceOperation::Discard {
                sector,
                sectors,
                secure,
            },
        );
    }

    fn complete(&mut self, completion: Completion, _now: Time) {
        let slot = (completion.tag.0 & 0xffff_ffff) as usize;
        let generation = (completion.tag.0 >> 32) as u32;
        let matches = self
            .pending
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|pending| {
                pending.generation == generation
                    && !matches!(
                        pending.stage,
                        Stage::Draining { .. } | Stage::DiscardWaiting { .. }
                    )
            });
        if !matches {
            self.statistics.unknown_completions += 1;
            return;
        }
        let Some(pending) = self.pending.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let data = match completion.result {
            Ok(data) => data,
            Err(_) => {
                self.statistics.device_errors += 1;
                self.finish(slot, Status::Error);
                return;
            }
        };
        let status = match &pending.stage {
            Stage::Reading { pieces, length } => {
                if data.len() != *length {
                    self.statistics.device_errors += 1;
                    Status::Error
                } else if self
                    .grants
                    .copy_to_guest(self.config.frontend_domain, pieces, &data)
                    .is_err()
                {
                    self.statistics.errors += 1;
                    Status::Error
                } else {
                    Status::Okay
                }
            }
            Stage::Writing { then_flush: true } => {
                pending.stage = Stage::Flushing;
                self.submit(slot, DeviceOperation::Flush);
                return;
            }
            Stage::Writing { then_flush: false } | Stage::Flushing | Stage::Discarding => {
                Status::Okay
            }
            Stage::Draining { .. } | Stage::DiscardWaiting { .. } => return,
        };
        self.finish(slot, status);
    }

    /// Answers a request, frees its slot, and lets waiting flushes and a
    /// waiting discard go.
    fn finish(&mut self, slot: usize, status: Status) {
        let Some(pending) = self.pending.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if self.exclusive == Some(slot) {
            self.exclusive = None;
        }
        self.free_slots.push(slot);
        self.in_flight = self.in_flight.saturating_sub(1);
        if pending.is_write {
            self.writes_in_flight.remove(&pending.sequence);
        }
        self.respond(pending.queue, pending.id, pending.operation, status);
        self.start_drained();
        self.start_exclusive();
    }

    fn publish(&mut self) {
        for queue in &mut self.queues {
            if queue.ring.publish_responses() {
                self.statistics.notifications += 1;
                self.actions.push(Action::Notify(queue.port));
            }
        }
    }
}
