//! Xen shared rings (`xen/include/public/io/ring.h`) from the back end's
//! side: request and response slots in granted pages, free-running indices
//! checked against the ring size, and the notification hold-off rules.
//!
//! # Shape
//!
//! - [`RingMemory`] is the granted pages seen as one byte range. Dom0
//!   implements it with volatile copies in and out of its mapping of the
//!   pages (never `&`/`&mut` into shared memory) and with real fences for
//!   [`Barrier::Full`]. Tests use [`fake::FakeRingMemory`] (feature
//!   `test-utils`).
//! - [`RingLayout`] says how many pages, how large a request and a response
//!   are, and so how many slots the ring has (the largest power of two that
//!   fits after the 64-byte header).
//! - [`BackRing`] is the back end's private state (`req_cons`,
//!   `rsp_prod_pvt`) plus the memory. It hands requests out one slot at a
//!   time ([`BackRing::next_request`], reading `req_prod` once per batch,
//!   refusing an out-of-range producer index, and copying a batch's slots
//!   out in one read per stretch up to the ring's end, since each access
//!   may be a hypercall), writes responses
//!   ([`BackRing::push_response`]), publishes them and says whether the front
//!   end asked to be notified ([`BackRing::publish_responses`], the
//!   `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` rule) and arms `req_event`
//!   before the back end sleeps ([`BackRing::final_check_for_requests`],
//!   `RING_FINAL_CHECK_FOR_REQUESTS`).
//! - [`fake::FakeFrontRing`] behaves like Linux's front-end `RING_*` macros,
//!   so back ends (blkback, netback) can be tested against it.
//!
//! # Typical back-end loop
//!
//! ```text
//! on event-channel notification (and once at connect):
//!   loop {
//!     while let Some(slot) = ring.next_request()? { parse(slot.bytes()); ... }
//!     if !ring.final_check_for_requests() { break }   // req_event armed
//!   }
//! on completions:
//!   ring.push_response(&bytes)?; ...
//!   if ring.publish_responses() { notify the front end's event channel }
//! ```
//!
//! A [`RingError::ProducerIndexOutOfRange`] means the front end is broken or
//! malicious: the ring stays faulted, and the owner should disconnect it.
//!
//! # Multi-page rings
//!
//! A ring of `2^order` pages (blkif's `ring-page-order`, 0–4) is one virtual
//! range in Xen's and Linux's back ends; here it is one offset range of
//! `pages * 4096` bytes, and a slot may straddle a page boundary. Dom0's
//! [`RingMemory`] splits such a copy between the two mapped pages.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod back;
mod error;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
mod layout;
mod memory;
#[cfg(test)]
mod tests;

pub use back::{BackRing, RequestSlot, RingCounters, RingState};
pub use error::RingError;
pub use layout::{
    HEADER_SIZE, MAX_PAGES, MAX_SLOT_SIZE, PAGE_SIZE, RingIndex, RingLayout, offsets,
};
pub use memory::{Barrier, RingMemory};
