//! Host tests of the back ring against the fake front end: the protocol
//! rules, hostile indices, barrier order, and a randomised run with indices
//! starting near the u32 wrap.

use alloc::vec::Vec;

use crate::fake::{Access, FakeFrontRing, FakeRingMemory};
use crate::{BackRing, Barrier, RingError, RingIndex, RingLayout, RingMemory, offsets};

const BLKIF_REQUEST: usize = 112;
const BLKIF_RESPONSE: usize = 16;

fn blkif_pair(pages: usize, start: u32) -> (FakeFrontRing, BackRing<FakeRingMemory>) {
    let memory = FakeRingMemory::new(pages);
    let layout = RingLayout::new(pages, BLKIF_REQUEST, BLKIF_RESPONSE).expect("layout");
    let front = FakeFrontRing::init(&memory, layout, RingIndex(start));
    let back = BackRing::attach(memory, layout).expect("attach");
    (front, back)
}

fn request(tag: u32) -> [u8; BLKIF_REQUEST] {
    let mut bytes = [0; BLKIF_REQUEST];
    bytes[..4].copy_from_slice(&tag.to_le_bytes());
    bytes[BLKIF_REQUEST - 4..].copy_from_slice(&(!tag).to_le_bytes());
    bytes
}

fn response(tag: u32) -> [u8; BLKIF_RESPONSE] {
    let mut bytes = [0; BLKIF_RESPONSE];
    bytes[..4].copy_from_slice(&tag.to_le_bytes());
    bytes
}

fn tag_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[test]
fn request_and_response_round_trip() {
    let (mut front, mut back) = blkif_pair(1, 0);
    assert_eq!(back.next_request(), Ok(None));
    assert!(front.push_request(&request(7)));
    // The back end armed req_event = 1 by default (front end's init).
    assert!(front.publish_requests());
    let slot = back.next_request().expect("no fault").expect("a request");
    assert_eq!(slot.bytes(), &request(7)[..]);
    assert_eq!(slot.index(), RingIndex(0));
    assert_eq!(back.next_request(), Ok(None));
    assert_eq!(back.requests_in_flight(), 1);
    assert_eq!(back.push_response(&response(7)), Ok(RingIndex(0)));
    // rsp_event = 1 from init: the first response is notified.
    assert!(back.publish_responses());
    assert_eq!(front.next_response().as_deref(), Some(&response(7)[..]));
    assert_eq!(front.next_response(), None);
    let counters = back.counters();
    assert_eq!((counters.requests, counters.responses), (1, 1));
    assert_eq!((counters.publishes, counters.notifications), (1, 1));
}

#[test]
fn unconsumed_requests_counts_published_requests_within_the_room_left() {
    let (mut front, mut back) = blkif_pair(1, u32::MAX - 1);
    assert_eq!(back.unconsumed_requests(), 0);
    for id in 0..3 {
        assert!(front.push_request(&request(id)));
    }
    front.publish_requests();
    assert_eq!(back.unconsumed_requests(), 3);
    assert!(back.next_request().expect("ok").is_some());
    assert_eq!(back.unconsumed_requests(), 2);
    assert!(back.has_unconsumed_requests());
}

#[test]
fn attach_starts_at_published_response_index() {
    let (mut front, mut back) = blkif_pair(2, 0xdead_beef);
    assert_eq!(back.state().request_consumer, RingIndex(0xdead_beef));
    assert!(front.push_request(&request(1)));
    front.publish_requests();
    let slot = back.next_request().expect("ok").expect("request");
    assert_eq!(slot.index(), RingIndex(0xdead_beef));
    assert_eq!(slot.bytes(), &request(1)[..]);
}

#[test]
fn attach_refuses_a_bogus_producer_and_small_memory() {
    let memory = FakeRingMemory::new(1);
    let layout = RingLayout::new(1, BLKIF_REQUEST, BLKIF_RESPONSE).expect("layout");
    memory.poke_u32(offsets::REQ_PROD, 33);
    assert!(matches!(
        BackRing::attach(memory.clone(), layout),
        Err(RingError::ProducerIndexOutOfRange { .. })
    ));
    memory.poke_u32(offsets::REQ_PROD, 32);
    assert!(BackRing::attach(memory, layout).is_ok());
    let two_pages = RingLayout::new(2, BLKIF_REQUEST, BLKIF_RESPONSE).expect("layout");
    assert_eq!(
        BackRing::attach(FakeRingMemory::new(1), two_pages).err(),
        Some(RingError::MemoryTooSmall {
            needed: 8192,
            available: 4096
        })
    );
}

#[test]
fn producer_too_far_ahead_faults_for_good() {
    let (_front, mut back) = blkif_pair(1, u32::MAX - 3);
    let memory = back.memory().clone();
    memory.poke_u32(offsets::REQ_PROD, (u32::MAX - 3).wrapping_add(33));
    let fault = back.next_request();
    assert!(matches!(
        fault,
        Err(RingError::ProducerIndexOutOfRange { slots: 32, .. })
    ));
    // Sticky, even once the index looks sane again.
    memory.poke_u32(offsets::REQ_PROD, u32::MAX - 3);
    assert_eq!(back.next_request(), fault);
    assert!(!back.final_check_for_requests());
    assert_eq!(back.counters().producer_faults, 1);
    assert!(back.fault().is_some());
}

#[test]
fn producer_moving_backwards_faults() {
    let (mut front, mut back) = blkif_pair(1, 10);
    for tag in 0..4 {
        assert!(front.push_request(&request(tag)));
    }
    front.publish_requests();
    for _ in 0..4 {
        assert!(back.next_request().expect("ok").is_some());
    }
    back.memory().poke_u32(offsets::REQ_PROD, 12);
    assert!(matches!(
        back.next_request(),
        Err(RingError::ProducerIndexOutOfRange { .. })
    ));
}

#[test]
fn a_full_ring_in_flight_is_accepted_and_no_more() {
    let (mut front, mut back) = blkif_pair(1, u32::MAX - 10);
    for tag in 0..32 {
        assert!(front.push_request(&request(tag)));
    }
    assert!(!front.push_request(&request(99)), "front end ring full");
    front.publish_requests();
    for tag in 0..32 {
        let slot = back.next_request().expect("ok").expect("request");
        assert_eq!(tag_of(slot.bytes()), tag);
    }
    assert_eq!(back.next_request(), Ok(None));
    assert_eq!(back.requests_in_flight(), 32);
    // One more than a ring's worth of outstanding requests is hostile.
    back.memory()
        .poke_u32(offsets::REQ_PROD, (u32::MAX - 10).wrapping_add(33));
    assert!(back.next_request().is_err());
}

#[test]
fn responses_need_a_consumed_request_and_the_right_size() {
    let (mut front, mut back) = blkif_pair(1, 0);
    assert_eq!(
        back.push_response(&response(0)),
        Err(RingError::ResponseWithoutRequest)
    );
    assert!(front.push_request(&request(0)));
    front.publish_requests();
    assert!(back.next_request().expect("ok").is_some());
    assert_eq!(
        back.push_response(&[0; 8]),
        Err(RingError::ResponseSizeMismatch {
            expected: 16,
            actual: 8
        })
    );
    assert!(back.push_response(&response(0)).is_ok());
    assert_eq!(
        back.push_response(&response(1)),
        Err(RingError::ResponseWithoutRequest)
    );
    assert_eq!(back.unpublished_responses(), 1);
}

#[test]
fn request_producer_is_read_once_per_batch() {
    let (mut front, mut back) = blkif_pair(1, 0);
    for tag in 0..5 {
        assert!(front.push_request(&request(tag)));
    }
    front.publish_requests();
    back.memory().start_log();
    for _ in 0..5 {
        assert!(back.next_request().expect("ok").is_some());
    }
    let log = back.memory().take_log();
    let producer_reads = log
        .iter()
        .filter(|access| matches!(access, Access::Read { offset: 0, .. }))
        .count();
    assert_eq!(producer_reads, 1);
    // A read barrier separates the index read from the slot reads.
    assert_eq!(log[1], Access::Barrier(Barrier::Read));
    assert_eq!(back.counters().batches, 1);
}

#[test]
fn publish_orders_slots_index_barrier_event() {
    let (mut front, mut back) = blkif_pair(1, 0);
    assert!(front.push_request(&request(0)));
    front.publish_requests();
    assert!(back.next_request().expect("ok").is_some());
    back.memory().start_log();
    back.push_response(&response(0)).expect("push");
    assert!(back.publish_responses());
    let log = back.memory().take_log();
    assert_eq!(
        log,
        [
            Access::Write {
                offset: 64,
                length: 16
            },
            Access::Barrier(Barrier::Write),
            Access::Write {
                offset: offsets::RSP_PROD,
                length: 4
            },
            Access::Barrier(Barrier::Full),
            Access::Read {
                offset: offsets::RSP_EVENT,
                length: 4
            },
        ]
    );
    // Nothing new: no writes, no notification.
    back.memory().start_log();
    assert!(!back.publish_responses());
    assert!(back.memory().take_log().is_empty());
}

#[test]
fn final_check_arms_request_event_then_rechecks() {
    let (mut front, mut back) = blkif_pair(1, 100);
    assert!(front.push_request(&request(0)));
    assert!(front.publish_requests());
    assert!(back.final_check_for_requests(), "work pending: no arming");
    assert_eq!(back.counters().request_events_armed, 0);
    assert!(back.next_request().expect("ok").is_some());
    // Busy back end (req_event not re-armed): the front end does not notify.
    assert!(front.push_request(&request(1)));
    assert!(!front.publish_requests());
    assert!(back.next_request().expect("ok").is_some());
    back.memory().start_log();
    assert!(!back.final_check_for_requests());
    let log = back.memory().take_log();
    assert!(log.contains(&Access::Write {
        offset: offsets::REQ_EVENT,
        length: 4
    }));
    let write_at = log
        .iter()
        .position(|access| matches!(access, Access::Write { .. }))
        .expect("armed");
    assert_eq!(log[write_at + 1], Access::Barrier(Barrier::Full));
    assert!(matches!(log[write_at + 2], Access::Read { offset: 0, .. }));
    assert_eq!(back.memory().peek_u32(offsets::REQ_EVENT), 103);
    // Now asleep: the next request is notified.
    assert!(front.push_request(&request(2)));
    assert!(front.publish_requests());
}

#[test]
fn final_check_catches_a_request_published_in_the_race_window() {
    let (mut front, back) = blkif_pair(1, 0);
    // The front end publishes after the back end's first check but before it
    // arms req_event: the recheck sees it.
    struct Racing {
        inner: FakeRingMemory,
        pending: Option<u32>,
    }
    impl RingMemory for Racing {
        fn size(&self) -> usize {
            self.inner.size()
        }
        fn read(&self, offset: usize, buffer: &mut [u8]) {
            self.inner.read(offset, buffer)
        }
        fn write(&mut self, offset: usize, data: &[u8]) {
            self.inner.write(offset, data);
            if offset == offsets::REQ_EVENT
                && let Some(producer) = self.pending.take()
            {
                self.inner.poke_u32(offsets::REQ_PROD, producer);
            }
        }
        fn barrier(&mut self, kind: Barrier) {
            self.inner.barrier(kind)
        }
    }
    assert!(front.push_request(&request(5)));
    let state = back.state();
    let layout = *back.layout();
    let memory = back.into_memory();
    let mut back = BackRing::resume(
        Racing {
            inner: memory,
            pending: Some(1),
        },
        layout,
        state,
    );
    assert!(back.final_check_for_requests());
    let slot = back.next_request().expect("ok").expect("request");
    assert_eq!(tag_of(slot.bytes()), 5);
}

#[test]
fn resume_continues_from_saved_indices() {
    let (mut front, mut back) = blkif_pair(1, 5);
    for tag in 0..3 {
        assert!(front.push_request(&request(tag)));
    }
    front.publish_requests();
    assert!(back.next_request().expect("ok").is_some());
    back.push_response(&response(0)).expect("push");
    back.publish_responses();
    assert!(back.next_request().expect("ok").is_some());
    let state = back.state();
    let layout = *back.layout();
    let mut back = BackRing::resume(back.into_memory(), layout, state);
    assert_eq!(back.requests_in_flight(), 1);
    let slot = back.next_request().expect("ok").expect("third request");
    assert_eq!(tag_of(slot.bytes()), 2);
}

#[test]
fn netif_sized_slots_work() {
    let memory = FakeRingMemory::new(1);
    let layout = RingLayout::new(1, 12, 4).expect("netif tx");
    let mut front = FakeFrontRing::init(&memory, layout, RingIndex(u32::MAX));
    let mut back = BackRing::attach(memory, layout).expect("attach");
    for round in 0..600u32 {
        assert!(front.push_request(&round.to_le_bytes()));
        front.publish_requests();
        let slot = back.next_request().expect("ok").expect("request");
        assert_eq!(slot.bytes().len(), 12);
        assert_eq!(tag_of(slot.bytes()), round);
        back.push_response(&round.to_le_bytes()).expect("push");
        back.publish_responses();
        assert_eq!(front.next_response(), Some(round.to_le_bytes().to_vec()));
    }
}

/// SplitMix64: a small deterministic generator for the randomised tests.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u32) -> u32 {
        (self.next() % u64::from(bound.max(1))) as u32
    }
}

/// Random interleavings of both sides, indices starting within two rings of
/// the u32 wrap. Checked every step: requests arrive once, in order, intact;
/// responses likewise; a notification is requested in each direction exactly
/// when the sleeping side armed its event inside the published range, and a
/// side that went to sleep is never left asleep with work published.
#[test]
fn randomised_runs_across_the_index_wrap() {
    for seed in 0..300u64 {
        let mut random = Random(seed);
        let pages = 1usize << random.below(3);
        let (request_size, response_size) = match random.below(4) {
            0 => (BLKIF_REQUEST, BLKIF_RESPONSE),
            1 => (12, 4),
            // netif's rx ring: requests smaller than the slots.
            2 => (8, 16),
            _ => (8, 8),
        };
        let layout = RingLayout::new(pages, request_size, response_size).expect("layout");
        let slots = layout.slots();
        let start = u32::MAX - random.below(2 * slots);
        let memory = FakeRingMemory::new(pages);
        let mut front = FakeFrontRing::init(&memory, layout, RingIndex(start));
        let mut back = BackRing::attach(memory.clone(), layout).expect("attach");

        let mut next_request_tag = 0u32;
        let mut next_expected_request = 0u32;
        let mut awaiting_response: Vec<u32> = Vec::new();
        let mut next_expected_response = 0u32;
        let mut back_asleep = false;
        let mut front_asleep = false;

        for _ in 0..400 {
            match random.below(6) {
                0 => {
                    // Front end queues some requests and publishes them.
                    let count = random.below(slots + 1);
                    let old = memory.peek_u32(offsets::REQ_PROD);
                    let mut pushed = 0;
                    for _ in 0..count {
                        let mut bytes = [0u8; 8];
                        bytes[..4].copy_from_slice(&next_request_tag.to_le_bytes());
                        if !front.push_request(&bytes[..request_size.min(8)]) {
                            break;
                        }
                        next_request_tag += 1;
                        pushed += 1;
                    }
                    let event = memory.peek_u32(offsets::REQ_EVENT);
                    let notify = front.publish_requests();
                    let new = old.wrapping_add(pushed);
                    assert_eq!(
                        notify,
                        new.wrapping_sub(event) < new.wrapping_sub(old),
                        "seed {seed}: request notification rule"
                    );
                    if back_asleep && pushed > 0 {
                        assert!(notify, "seed {seed}: sleeping back end not woken");
                    }
                    if notify {
                        back_asleep = false;
                    }
                }
                1 => {
                    // Back end consumes up to a batch.
                    let count = random.below(slots + 1);
                    for _ in 0..count {
                        match back.next_request().expect("honest front end") {
                            Some(slot) => {
                                let tag = tag_of(slot.bytes());
                                assert_eq!(tag, next_expected_request, "seed {seed}");
                                next_expected_request += 1;
                                awaiting_response.push(tag);
                            }
                            None => break,
                        }
                    }
                    assert!(back.requests_in_flight() <= slots);
                }
                2 => {
                    // Back end answers some, in order, and publishes.
                    let count = random.below(awaiting_response.len() as u32 + 1) as usize;
                    for tag in awaiting_response.drain(..count) {
                        let mut bytes = alloc::vec![0u8; response_size];
                        bytes[..4].copy_from_slice(&tag.to_le_bytes());
                        back.push_response(&bytes).expect("push");
                    }
                    let old = memory.peek_u32(offsets::RSP_PROD);
                    let event = memory.peek_u32(offsets::RSP_EVENT);
                    let new = back.state().response_producer.0;
                    let notify = back.publish_responses();
                    assert_eq!(
                        notify,
                        new != old && new.wrapping_sub(event) < new.wrapping_sub(old),
                        "seed {seed}: response notification rule"
                    );
                    if front_asleep && new != old {
                        assert!(notify, "seed {seed}: sleeping front end not woken");
                    }
                    if notify {
                        front_asleep = false;
                    }
                }
                3 => {
                    // Front end takes responses.
                    while let Some(bytes) = front.next_response() {
                        assert_eq!(tag_of(&bytes), next_expected_response, "seed {seed}");
                        next_expected_response += 1;
                    }
                }
                4 => {
                    if !back.final_check_for_requests() {
                        back_asleep = true;
                    }
                }
                _ => {
                    if !front.final_check_for_responses() {
                        front_asleep = true;
                    }
                }
            }
            assert!(back.fault().is_none());
            assert!(front.free_requests() <= slots);
        }
    }
}

/// The hold-off rule on its own: a front end that never re-arms `rsp_event`
/// is notified once (for the initial threshold) and never again.
#[test]
fn a_polling_front_end_is_notified_only_once() {
    let (mut front, mut back) = blkif_pair(1, u32::MAX - 1);
    let mut notifications = 0;
    for tag in 0..100 {
        assert!(front.push_request(&request(tag)));
        front.publish_requests();
        assert!(back.next_request().expect("ok").is_some());
        back.push_response(&response(tag)).expect("push");
        if back.publish_responses() {
            notifications += 1;
        }
        assert!(front.next_response().is_some());
    }
    assert_eq!(notifications, 1);
}

/// Every ring access may be a hypercall in Dom0: a published batch is
/// copied out in one read per stretch of slots (two where it wraps), and
/// each request is still read from the ring only once.
#[test]
fn a_published_batch_is_read_in_one_copy_per_stretch() {
    // 32 slots; start 28 so that the batch of 8 wraps after 4.
    let (mut front, mut back) = blkif_pair(1, 28);
    for tag in 0..8 {
        assert!(front.push_request(&request(tag)));
    }
    front.publish_requests();
    back.memory().start_log();
    for tag in 0..8 {
        let slot = back.next_request().expect("ok").expect("request");
        assert_eq!(tag_of(slot.bytes()), tag);
    }
    assert!(back.next_request().expect("ok").is_none());
    let log = back.memory().take_log();
    let slot_reads: Vec<usize> = log
        .iter()
        .filter_map(|access| match access {
            Access::Read { offset, length } if *offset >= 64 => Some(*length),
            _ => None,
        })
        .collect();
    assert_eq!(slot_reads, [4 * BLKIF_REQUEST, 4 * BLKIF_REQUEST]);
    // Requests published after a prefetch are read afresh, not from it.
    assert!(front.push_request(&request(8)));
    front.publish_requests();
    let slot = back.next_request().expect("ok").expect("request");
    assert_eq!(tag_of(slot.bytes()), 8);
}

#[test]
fn an_armed_request_event_is_not_written_again() {
    let (mut front, mut back) = blkif_pair(1, 0);
    assert!(!back.final_check_for_requests());
    back.memory().start_log();
    assert!(!back.final_check_for_requests());
    let log = back.memory().take_log();
    assert_eq!(
        log,
        [Access::Read {
            offset: 0,
            length: 4
        }]
    );
    // The front end is still woken by its next request.
    assert!(front.push_request(&request(0)));
    assert!(front.publish_requests());
    assert!(back.final_check_for_requests());
    assert!(back.next_request().expect("ok").is_some());
    // Consumed one: the next arming writes req_event again.
    back.memory().start_log();
    assert!(!back.final_check_for_requests());
    assert!(back.memory().take_log().contains(&Access::Write {
        offset: offsets::REQ_EVENT,
        length: 4
    }));
}

#[test]
fn responses_reach_the_ring_in_one_copy_per_stretch_when_published() {
    // 32 slots; start 28 so that eight responses wrap after four.
    let (mut front, mut back) = blkif_pair(1, 28);
    for tag in 0..8 {
        assert!(front.push_request(&request(tag)));
    }
    front.publish_requests();
    while back.next_request().expect("ok").is_some() {}
    back.memory().start_log();
    for tag in 0..8 {
        back.push_response(&response(tag)).expect("push");
    }
    assert!(back.publish_responses());
    let log = back.memory().take_log();
    let writes: Vec<(usize, usize)> = log
        .iter()
        .filter_map(|access| match access {
            Access::Write { offset, length } => Some((*offset, *length)),
            _ => None,
        })
        .collect();
    assert_eq!(
        writes,
        [
            (64 + 28 * BLKIF_REQUEST, 3 * BLKIF_REQUEST + BLKIF_RESPONSE),
            (64, 3 * BLKIF_REQUEST + BLKIF_RESPONSE),
            (offsets::RSP_PROD, 4)
        ]
    );
    for tag in 0..8 {
        assert_eq!(tag_of(&front.next_response().expect("response")), tag);
    }
    assert!(front.next_response().is_none());
}

#[test]
fn arming_right_after_finding_nothing_reads_req_prod_once() {
    let (mut front, mut back) = blkif_pair(1, 0);
    assert!(front.push_request(&request(0)));
    front.publish_requests();
    assert!(back.next_request().expect("ok").is_some());
    assert!(back.next_request().expect("ok").is_none());
    back.memory().start_log();
    assert!(!back.final_check_for_requests());
    assert_eq!(
        back.memory().take_log(),
        [
            Access::Write {
                offset: offsets::REQ_EVENT,
                length: 4
            },
            Access::Barrier(Barrier::Full),
            Access::Read {
                offset: offsets::REQ_PROD,
                length: 4
            },
        ]
    );
}

/// Records each `write_then_read` (the offsets written, the offset read)
/// and carries it out as the default does.
struct Batching {
    inner: FakeRingMemory,
    batches: Vec<(Vec<usize>, usize)>,
}

impl RingMemory for Batching {
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn read(&self, offset: usize, buffer: &mut [u8]) {
        self.inner.read(offset, buffer)
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        self.inner.write(offset, data)
    }
    fn barrier(&mut self, kind: Barrier) {
        self.inner.barrier(kind)
    }
    fn write_then_read(
        &mut self,
        writes: &[(usize, &[u8])],
        read_offset: usize,
        buffer: &mut [u8],
    ) {
        self.batches.push((
            writes.iter().map(|(offset, _)| *offset).collect(),
            read_offset,
        ));
        for (offset, data) in writes {
            self.inner.write(*offset, data);
        }
        self.inner.read(read_offset, buffer);
    }
}

#[test]
fn publishing_and_arming_are_one_write_then_read_each() {
    let (mut front, back) = blkif_pair(1, 0);
    let layout = *back.layout();
    let state = back.state();
    let mut back = BackRing::resume(
        Batching {
            inner: back.into_memory(),
            batches: Vec::new(),
        },
        layout,
        state,
    );
    for tag in 0..2 {
        assert!(front.push_request(&request(tag)));
    }
    front.publish_requests();
    for tag in 0..2 {
        let slot = back.next_request().expect("ok").expect("request");
        assert_eq!(tag_of(slot.bytes()), tag);
        back.push_response(&response(tag)).expect("push");
    }
    // The front end waits for responses (rsp_event = 1): notified.
    assert!(back.publish_responses());
    assert_eq!(
        back.memory().batches,
        [(
            alloc::vec![layout.slot_offset(RingIndex(0)), offsets::RSP_PROD],
            offsets::RSP_EVENT
        )]
    );
    // Both responses and the index reached the ring, in the front end's
    // view.
    assert_eq!(tag_of(&front.next_response().expect("response")), 0);
    assert_eq!(tag_of(&front.next_response().expect("response")), 1);
    // Nothing left: arming req_event and reading req_prod is one call.
    assert!(!back.final_check_for_requests());
    assert_eq!(
        back.memory().batches.last(),
        Some(&(alloc::vec![offsets::REQ_EVENT], offsets::REQ_PROD))
    );
    // A request published now crosses req_event: the front end notifies.
    assert!(front.push_request(&request(7)));
    assert!(front.publish_requests());
}
