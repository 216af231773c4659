//! The back end's side of a shared ring: copying requests out, writing and
//! publishing responses, and the notification hold-off rules of `ring.h`.

use crate::error::RingError;
use crate::layout::{MAX_SLOT_SIZE, RingIndex, RingLayout, offsets};
use crate::memory::{Barrier, RingMemory};

/// One request copied out of the ring. The bytes are a private copy: the
/// front end can no longer change them, so they can be validated once and
/// trusted afterwards (no double fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSlot {
    index: RingIndex,
    length: usize,
    bytes: [u8; MAX_SLOT_SIZE],
}

impl RequestSlot {
    /// The ring index the request was read from.
    pub const fn index(&self) -> RingIndex {
        self.index
    }

    /// The request's bytes (the layout's request size).
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.length).unwrap_or(&[])
    }
}

/// The back end's private indices: what Dom0 must keep to re-attach to a
/// live ring after a restart (see [`BackRing::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RingState {
    /// Next request to consume (`req_cons`).
    pub request_consumer: RingIndex,
    /// Next response slot to write (`rsp_prod_pvt`).
    pub response_producer: RingIndex,
    /// Last `rsp_prod` value published to the front end.
    pub response_published: RingIndex,
}

/// What a ring has done, for statistics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RingCounters {
    /// Requests copied out.
    pub requests: u64,
    /// Times `req_prod` was read to start a batch.
    pub batches: u64,
    /// Responses written.
    pub responses: u64,
    /// Times `rsp_prod` was published.
    pub publishes: u64,
    /// Publishes after which the front end asked to be notified.
    pub notifications: u64,
    /// Times `req_event` was armed before sleeping.
    pub request_events_armed: u64,
    /// Producer-index faults seen (0 or 1: the ring stays faulted).
    pub producer_faults: u64,
}

/// Bytes of published requests copied out of the ring in one read (when
/// the front end published several): every read of ring memory may be a
/// hypercall (Dom0 reaches rings by grant copy), so a batch costs one or
/// two reads rather than one per request.
const PREFETCH_BYTES: usize = 2048;

/// Bytes of responses gathered before they are written to the ring in one
/// copy (at the latest when they are published).
const RESPONSE_BUFFER_BYTES: usize = 2048;

/// Published requests copied out ahead of their consumption: slots
/// `start .. start + count`, one slot's bytes each (the request at the
/// start of its slot). Each slot is still read from the ring exactly once.
#[derive(Clone)]
struct Prefetched {
    start: RingIndex,
    count: u32,
    bytes: [u8; PREFETCH_BYTES],
}

impl core::fmt::Debug for Prefetched {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Prefetched")
            .field("start", &self.start)
            .field("count", &self.count)
            .finish()
    }
}

/// The back end of one shared ring over memory `M`.
#[derive(Debug)]
pub struct BackRing<M> {
    memory: M,
    layout: RingLayout,
    state: RingState,
    /// `req_prod` as read at the start of the current batch.
    batch_end: RingIndex,
    /// Whether the last access to the ring was [`BackRing::next_request`]'s
    /// read of `req_prod` finding nothing new: arming `req_event` need not
    /// be preceded by the same read again (the read after arming stays).
    producer_just_read: bool,
    /// The `req_event` value last written (and the front end has no
    /// reason to change): arming it again would write the same.
    request_event: Option<RingIndex>,
    prefetched: Prefetched,
    /// Responses pushed but not yet written to the ring: indices
    /// `unwritten_from .. state.response_producer`, in order.
    unwritten_from: RingIndex,
    unwritten: [u8; RESPONSE_BUFFER_BYTES],
    fault: Option<RingError>,
    counters: RingCounters,
}

impl<M: RingMemory> BackRing<M> {
    /// Attaches to a ring of `pages` pages with the given request and
    /// response sizes. See [`BackRing::attach`].
    pub fn new(
        memory: M,
        pages: usize,
        request_size: usize,
        response_size: usize,
    ) -> Result<Self, RingError> {
        Self::attach(memory, RingLayout::new(pages, request_size, response_size)?)
    }

    /// Attaches to a ring the front end has initialised. The private indices
    /// start at the published `rsp_prod` (as Linux's `BACK_RING_ATTACH`), so a
    /// front end whose indices do not start at 0 works; `req_prod` may be
    /// at most a ring's worth ahead of it.
    pub fn attach(memory: M, layout: RingLayout) -> Result<Self, RingError> {
        Self::try_attach(memory, layout).map_err(|(error, _)| error)
    }

    /// [`BackRing::attach`], handing the memory back on failure so that the
    /// caller can unmap it.
    pub fn try_attach(memory: M, layout: RingLayout) -> Result<Self, (RingError, M)> {
        if memory.size() < layout.size() {
            let error = RingError::MemoryTooSmall {
                needed: layout.size(),
                available: memory.size(),
            };
            return Err((error, memory));
        }
        let response_producer = RingIndex(read_u32(&memory, offsets::RSP_PROD));
        let request_producer = RingIndex(read_u32(&memory, offsets::REQ_PROD));
        if request_producer.distance_from(response_producer) > layout.slots() {
            let error = RingError::ProducerIndexOutOfRange {
                request_producer: request_producer.0,
                response_producer: response_producer.0,
                slots: layout.slots(),
            };
            return Err((error, memory));
        }
        Ok(Self::resume(
            memory,
            layout,
            RingState {
                request_consumer: response_producer,
                response_producer,
                response_published: response_producer,
            },
        ))
    }

    /// Re-attaches to a live ring with indices saved by [`BackRing::state`]
    /// (Dom0 restart). Requests that were in flight must be answered by the
    /// caller or the front end waits for them forever.
    pub fn resume(memory: M, layout: RingLayout, state: RingState) -> Self {
        Self {
            memory,
            layout,
            state,
            batch_end: state.request_consumer,
            producer_just_read: false,
            request_event: None,
            prefetched: Prefetched {
                start: state.request_consumer,
                count: 0,
                bytes: [0; PREFETCH_BYTES],
            },
            unwritten_from: state.response_producer,
            unwritten: [0; RESPONSE_BUFFER_BYTES],
            fault: None,
            counters: RingCounters::default(),
        }
    }

    /// The ring's geometry.
    pub const fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The private indices, to save for [`BackRing::resume`].
    pub const fn state(&self) -> RingState {
        self.state
    }

    /// What the ring has done so far.
    pub const fn counters(&self) -> RingCounters {
        self.counters
    }

    /// The fault that stopped the ring, if any.
    pub const fn fault(&self) -> Option<RingError> {
        self.fault
    }

    /// The memory, for the owner's use (unmapping at disconnect).
    pub const fn memory(&self) -> &M {
        &self.memory
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.memory
    }

    /// Requests consumed and not yet answered by [`BackRing::push_response`].
    pub const fn requests_in_flight(&self) -> u32 {
        self.state
            .request_consumer
            .distance_from(self.state.response_producer)
    }

    /// Responses written but not yet published.
    pub const fn unpublished_responses(&self) -> u32 {
        self.state
            .response_producer
            .distance_from(self.state.response_published)
    }

    /// Copies the next request out of the ring, or `None` when the front end
    /// has published no more (or a ring's worth is already in flight).
    ///
    /// `req_prod` is read once per batch: when the previous batch is used up.
    /// A producer index more than a ring's worth ahead of the responses, or
    /// behind the requests already consumed, faults the ring for good:
    /// [`RingError::ProducerIndexOutOfRange`].
    pub fn next_request(&mut self) -> Result<Option<RequestSlot>, RingError> {
        if let Some(fault) = self.fault {
            return Err(fault);
        }
        let slots = self.layout.slots();
        let consumer = self.state.request_consumer;
        self.producer_just_read = false;
        if consumer == self.batch_end {
            let producer = RingIndex(read_u32(&self.memory, offsets::REQ_PROD));
            self.memory.barrier(Barrier::Read);
            self.counters.batches += 1;
            let ahead = producer.distance_from(self.state.response_producer);
            if ahead > slots || ahead < self.requests_in_flight() {
                let fault = RingError::ProducerIndexOutOfRange {
                    request_producer: producer.0,
                    response_producer: self.state.response_producer.0,
                    slots,
                };
                self.fault = Some(fault);
                self.counters.producer_faults += 1;
                return Err(fault);
            }
            self.batch_end = producer;
            if producer == consumer {
                self.producer_just_read = true;
                return Ok(None);
            }
        }
        // RING_REQUEST_CONS_OVERFLOW: never more than a ring's worth in flight.
        if self.requests_in_flight() >= slots {
            return Ok(None);
        }
        let size = self.layout.request_size();
        let mut slot = RequestSlot {
            index: consumer,
            length: size,
            bytes: [0; MAX_SLOT_SIZE],
        };
        let cached = consumer.distance_from(self.prefetched.start);
        if cached >= self.prefetched.count {
            self.prefetch(consumer);
        }
        let at = consumer.distance_from(self.prefetched.start) as usize * self.layout.slot_size();
        if let (Some(buffer), Some(source)) = (
            slot.bytes.get_mut(..size),
            self.prefetched.bytes.get(at..at + size),
        ) {
            buffer.copy_from_slice(source);
        }
        self.state.request_consumer = consumer.add(1);
        self.counters.requests += 1;
        Ok(Some(slot))
    }

    /// Copies the published requests from `consumer` on (as many as fit,
    /// up to the end of the ring's slot array) out in one read. Only
    /// slots before `batch_end` are read: those the front end published.
    fn prefetch(&mut self, consumer: RingIndex) {
        let stride = self.layout.slot_size();
        let published = self.batch_end.distance_from(consumer);
        let to_wrap = self.layout.slots() - (consumer.0 & (self.layout.slots() - 1));
        let fit = (PREFETCH_BYTES / stride.max(1)) as u32;
        let count = published.min(to_wrap).min(fit).max(1);
        let offset = self.layout.slot_offset(consumer);
        // Whole slots but the last, which needs only its request.
        let length = (count as usize - 1) * stride + self.layout.request_size();
        if let Some(buffer) = self.prefetched.bytes.get_mut(..length) {
            self.memory.read(offset, buffer);
        }
        self.prefetched.start = consumer;
        self.prefetched.count = count;
    }

    /// Whether the front end has published requests not yet consumed
    /// (`RING_HAS_UNCONSUMED_REQUESTS`), reading `req_prod` afresh. A bogus
    /// producer index counts as work, so that [`BackRing::next_request`]
    /// reports it. Always false once the ring is faulted.
    pub fn has_unconsumed_requests(&self) -> bool {
        self.unconsumed_requests() > 0
    }

    /// How many requests [`BackRing::next_request`] would hand out now
    /// (`RING_HAS_UNCONSUMED_REQUESTS`'s count): published ones, bounded
    /// by the room left for their responses. 0 once the ring is faulted.
    pub fn unconsumed_requests(&self) -> u32 {
        if self.fault.is_some() {
            return 0;
        }
        let producer = RingIndex(read_u32(&self.memory, offsets::REQ_PROD));
        self.pending_after(producer)
    }

    /// How many requests up to `producer` (a `req_prod` just read) are
    /// unconsumed, bounded by the room left for their responses.
    fn pending_after(&self, producer: RingIndex) -> u32 {
        if self.fault.is_some() {
            return 0;
        }
        let published = producer.distance_from(self.state.request_consumer);
        let room = self.layout.slots() - self.requests_in_flight().min(self.layout.slots());
        published.min(room)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: true if there is work; otherwise arms
    /// `req_event = req_cons + 1` (the front end then notifies on its next
    /// request), and checks once more to close the race with a request
    /// published meanwhile. Call before going to sleep on the event channel.
    ///
    /// When `req_event` already holds the value (nothing was consumed since
    /// it was armed and checked), one read of `req_prod` is the whole check:
    /// a request published since then crossed `req_event` and notified.
    ///
    /// Right after [`BackRing::next_request`] found nothing new, the first
    /// check is that read itself: arming follows at once.
    pub fn final_check_for_requests(&mut self) -> bool {
        let event = self.state.request_consumer.add(1);
        let armed = self.request_event == Some(event);
        let just_read = core::mem::take(&mut self.producer_just_read);
        if (armed || !just_read) && self.has_unconsumed_requests() {
            return true;
        }
        if self.fault.is_some() {
            return false;
        }
        if armed {
            return false;
        }
        self.request_event = Some(event);
        // Arm req_event and read req_prod afresh: one call.
        let armed = Word(event.0.to_le_bytes());
        let mut producer = Word([0; 4]);
        self.memory.write_then_read(
            &[(offsets::REQ_EVENT, &armed.0)],
            offsets::REQ_PROD,
            &mut producer.0,
        );
        self.counters.request_events_armed += 1;
        self.pending_after(RingIndex(u32::from_le_bytes(producer.0))) > 0
    }

    /// Writes one response into the next response slot (not yet visible to
    /// the front end: see [`BackRing::publish_responses`]). Refused if it is
    /// not exactly the layout's response size, or if every consumed request
    /// already has a response (the slot would still hold a live request).
    ///
    /// Consecutive responses are gathered and reach the ring in one copy,
    /// when the stretch is full, reaches the ring's end, or is published.
    pub fn push_response(&mut self, bytes: &[u8]) -> Result<RingIndex, RingError> {
        let size = self.layout.response_size();
        if bytes.len() != size {
            return Err(RingError::ResponseSizeMismatch {
                expected: size,
                actual: bytes.len(),
            });
        }
        if self.requests_in_flight() == 0 {
            return Err(RingError::ResponseWithoutRequest);
        }
        self.producer_just_read = false;
        let stride = self.layout.slot_size();
        let index = self.state.response_producer;
        let gathered = index.distance_from(self.unwritten_from) as usize;
        let wraps = gathered > 0
            && self.layout.slot_offset(index) < self.layout.slot_offset(self.unwritten_from);
        if gathered * stride + size > RESPONSE_BUFFER_BYTES || wraps {
            self.write_responses();
        }
        // A slot's bytes after the response are the consumed request's
        // leftovers, ours until the response is published: zeros go there.
        let at = index.distance_from(self.unwritten_from) as usize * stride;
        if let Some(slot) = self
            .unwritten
            .get_mut(at..(at + stride).min(RESPONSE_BUFFER_BYTES))
        {
            slot.fill(0);
        }
        match self.unwritten.get_mut(at..at + size) {
            Some(slot) => slot.copy_from_slice(bytes),
            // Unreachable (a response fits the buffer); write it directly.
            None => self.memory.write(self.layout.slot_offset(index), bytes),
        }
        self.state.response_producer = index.add(1);
        self.counters.responses += 1;
        Ok(index)
    }

    /// Writes the gathered responses into their slots.
    fn write_responses(&mut self) {
        let count = self
            .state
            .response_producer
            .distance_from(self.unwritten_from) as usize;
        let length =
            count.saturating_sub(1) * self.layout.slot_size() + self.layout.response_size();
        if count > 0
            && let Some(bytes) = self.unwritten.get(..length)
        {
            self.memory
                .write(self.layout.slot_offset(self.unwritten_from), bytes);
        }
        self.unwritten_from = self.state.response_producer;
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the responses written
    /// since the last call, and returns whether the front end asked to be
    /// notified of them (its `rsp_event` lies in the newly published range).
    /// The caller then signals the event channel. Publishing nothing new
    /// writes nothing and asks for no notification.
    pub fn publish_responses(&mut self) -> bool {
        let old = self.state.response_published;
        let new = self.state.response_producer;
        if old == new {
            return false;
        }
        self.producer_just_read = false;
        // The responses, then rsp_prod, then a look at rsp_event: one
        // call (see RingMemory::write_then_read).
        let count = new.distance_from(self.unwritten_from) as usize;
        let length =
            count.saturating_sub(1) * self.layout.slot_size() + self.layout.response_size();
        let slots_at = self.layout.slot_offset(self.unwritten_from);
        // Indices go through 4-aligned words: one 32-bit access each.
        let producer = Word(new.0.to_le_bytes());
        let mut event = Word([0; 4]);
        match self.unwritten.get(..length).filter(|_| count > 0) {
            Some(bytes) => self.memory.write_then_read(
                &[(slots_at, bytes), (offsets::RSP_PROD, &producer.0)],
                offsets::RSP_EVENT,
                &mut event.0,
            ),
            None => self.memory.write_then_read(
                &[(offsets::RSP_PROD, &producer.0)],
                offsets::RSP_EVENT,
                &mut event.0,
            ),
        }
        self.unwritten_from = new;
        self.state.response_published = new;
        let event = RingIndex(u32::from_le_bytes(event.0));
        self.counters.publishes += 1;
        let notify = new.distance_from(event) < new.distance_from(old);
        if notify {
            self.counters.notifications += 1;
        }
        notify
    }
}

/// Four bytes on a 4-byte boundary: an index copied through it is one
/// 4-byte piece that cannot straddle a page of Dom0's, so the copy can be
/// a single 32-bit access (a piece split in two could see half of the
/// front end's update).
#[repr(align(4))]
struct Word([u8; 4]);

/// Reads an index in one copy of its 4 bytes.
fn read_u32<M: RingMemory>(memory: &M, offset: usize) -> u32 {
    let mut word = Word([0; 4]);
    memory.read(offset, &mut word.0);
    u32::from_le_bytes(word.0)
}
