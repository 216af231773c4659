//! Test doubles (feature `test-utils`): ring memory in a shared `Vec`, and a
//! front end that behaves like Linux's `RING_*` macros on the other side.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::layout::{HEADER_SIZE, RingIndex, RingLayout, offsets};
use crate::memory::{Barrier, RingMemory};

/// One access to a [`FakeRingMemory`], recorded when logging is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `read(offset, len)`.
    Read { offset: usize, length: usize },
    /// `write(offset, len)`.
    Write { offset: usize, length: usize },
    /// `barrier(kind)`.
    Barrier(Barrier),
}

#[derive(Debug, Default)]
struct Inner {
    bytes: Vec<u8>,
    log: Option<Vec<Access>>,
}

/// Ring memory held in a `Vec`, shared between clones: give one clone to
/// the [`crate::BackRing`] and keep another for a [`FakeFrontRing`] or for
/// poking at the bytes. Accesses outside the memory panic (they are bugs in
/// the code under test).
#[derive(Clone, Debug, Default)]
pub struct FakeRingMemory {
    inner: Rc<RefCell<Inner>>,
}

impl FakeRingMemory {
    /// Zeroed memory of `pages` pages.
    pub fn new(pages: usize) -> Self {
        Self::with_size(pages * crate::PAGE_SIZE)
    }

    /// Zeroed memory of `size` bytes.
    pub fn with_size(size: usize) -> Self {
        Self {
            inner: Rc::new(RefCell::new(Inner {
                bytes: vec![0; size],
                log: None,
            })),
        }
    }

    /// Starts recording accesses (from both sides), dropping any old log.
    pub fn start_log(&self) {
        self.inner.borrow_mut().log = Some(Vec::new());
    }

    /// Stops recording and returns what was recorded.
    pub fn take_log(&self) -> Vec<Access> {
        self.inner.borrow_mut().log.take().unwrap_or_default()
    }

    /// Reads a little-endian u32 without logging.
    pub fn peek_u32(&self, offset: usize) -> u32 {
        let inner = self.inner.borrow();
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&inner.bytes[offset..offset + 4]);
        u32::from_le_bytes(bytes)
    }

    /// Writes a little-endian u32 without logging (a hostile front end).
    pub fn poke_u32(&self, offset: usize, value: u32) {
        self.poke(offset, &value.to_le_bytes());
    }

    /// Copies bytes in without logging.
    pub fn poke(&self, offset: usize, data: &[u8]) {
        self.inner.borrow_mut().bytes[offset..offset + data.len()].copy_from_slice(data);
    }

    /// Copies bytes out without logging.
    pub fn peek(&self, offset: usize, buffer: &mut [u8]) {
        let inner = self.inner.borrow();
        buffer.copy_from_slice(&inner.bytes[offset..offset + buffer.len()]);
    }
}

impl RingMemory for FakeRingMemory {
    fn size(&self) -> usize {
        self.inner.borrow().bytes.len()
    }

    fn read(&self, offset: usize, buffer: &mut [u8]) {
        let mut inner = self.inner.borrow_mut();
        buffer.copy_from_slice(&inner.bytes[offset..offset + buffer.len()]);
        if let Some(log) = inner.log.as_mut() {
            log.push(Access::Read {
                offset,
                length: buffer.len(),
            });
        }
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        let mut inner = self.inner.borrow_mut();
        inner.bytes[offset..offset + data.len()].copy_from_slice(data);
        if let Some(log) = inner.log.as_mut() {
            log.push(Access::Write {
                offset,
                length: data.len(),
            });
        }
    }

    fn barrier(&mut self, kind: Barrier) {
        if let Some(log) = self.inner.borrow_mut().log.as_mut() {
            log.push(Access::Barrier(kind));
        }
    }
}

/// The front end's side of a ring, as Linux's `FRONT_RING_*` and `RING_*`
/// macros drive it: private `req_prod_pvt` and `rsp_cons`, notification
/// hold-off through `req_event`/`rsp_event`.
#[derive(Debug)]
pub struct FakeFrontRing {
    memory: FakeRingMemory,
    layout: RingLayout,
    request_producer: RingIndex,
    response_consumer: RingIndex,
}

impl FakeFrontRing {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`, but with every index starting
    /// at `start` rather than 0 (to exercise wrap-around): `req_prod =
    /// rsp_prod = start`, `req_event = rsp_event = start + 1`, padding zeroed.
    pub fn init(memory: &FakeRingMemory, layout: RingLayout, start: RingIndex) -> Self {
        memory.poke(0, &[0; HEADER_SIZE]);
        memory.poke_u32(offsets::REQ_PROD, start.0);
        memory.poke_u32(offsets::RSP_PROD, start.0);
        memory.poke_u32(offsets::REQ_EVENT, start.add(1).0);
        memory.poke_u32(offsets::RSP_EVENT, start.add(1).0);
        Self {
            memory: memory.clone(),
            layout,
            request_producer: start,
            response_consumer: start,
        }
    }

    /// The ring's geometry.
    pub const fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// Requests that may still be queued (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        // Saturating: a test that pokes the indices may put the back end
        // ahead of this fake's private producer.
        self.layout
            .slots()
            .saturating_sub(self.request_producer.distance_from(self.response_consumer))
    }

    /// Private request producer (`req_prod_pvt`).
    pub const fn request_producer(&self) -> RingIndex {
        self.request_producer
    }

    /// Queues one request (zero-padded to the request size), unpublished.
    /// False if the ring is full or `bytes` is too long.
    pub fn push_request(&mut self, bytes: &[u8]) -> bool {
        if self.free_requests() == 0 || bytes.len() > self.layout.request_size() {
            return false;
        }
        let mut slot = vec![0; self.layout.request_size()];
        slot[..bytes.len()].copy_from_slice(bytes);
        let offset = self.layout.slot_offset(self.request_producer);
        self.memory.write(offset, &slot);
        self.request_producer = self.request_producer.add(1);
        true
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes queued requests and
    /// says whether the back end asked to be notified.
    pub fn publish_requests(&mut self) -> bool {
        let old = RingIndex(self.memory.peek_u32(offsets::REQ_PROD));
        let new = self.request_producer;
        self.memory.barrier(Barrier::Write);
        self.memory.poke_u32(offsets::REQ_PROD, new.0);
        self.memory.barrier(Barrier::Full);
        let event = RingIndex(self.memory.peek_u32(offsets::REQ_EVENT));
        new.distance_from(event) < new.distance_from(old)
    }

    /// Published responses not yet consumed.
    pub fn unconsumed_responses(&self) -> u32 {
        RingIndex(self.memory.peek_u32(offsets::RSP_PROD)).distance_from(self.response_consumer)
    }

    /// Copies the next published response out, or `None`.
    pub fn next_response(&mut self) -> Option<Vec<u8>> {
        if self.unconsumed_responses() == 0 {
            return None;
        }
        let mut bytes = vec![0; self.layout.response_size()];
        self.memory
            .read(self.layout.slot_offset(self.response_consumer), &mut bytes);
        self.response_consumer = self.response_consumer.add(1);
        Some(bytes)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: true if responses are waiting;
    /// otherwise arms `rsp_event = rsp_cons + 1` and checks again.
    pub fn final_check_for_responses(&mut self) -> bool {
        if self.unconsumed_responses() > 0 {
            return true;
        }
        self.memory
            .poke_u32(offsets::RSP_EVENT, self.response_consumer.add(1).0);
        self.memory.barrier(Barrier::Full);
        self.unconsumed_responses() > 0
    }
}
