//! Fuzzes the back end of a Xen shared ring against a hostile front end that
//! writes arbitrary indices, events and slot bytes between the back end's
//! steps: the ring must never panic, never hold more than a ring's worth of
//! requests in flight, and stay faulted once it refuses a producer index.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_ring::fake::FakeRingMemory;
use xen_ring::{BackRing, RingLayout, offsets};

fuzz_target!(|data: &[u8]| {
    let Some((&config, operations)) = data.split_first() else {
        return;
    };
    let pages = 1usize << (config & 3);
    let (request_size, response_size) = match (config >> 2) % 3 {
        0 => (112, 16),
        1 => (12, 4),
        _ => (8, 8),
    };
    let Ok(layout) = RingLayout::new(pages, request_size, response_size) else {
        return;
    };
    let memory = FakeRingMemory::new(pages);
    let start = u32::MAX - u32::from(config >> 4) * 7;
    memory.poke_u32(offsets::REQ_PROD, start);
    memory.poke_u32(offsets::RSP_PROD, start);
    let Ok(mut ring) = BackRing::attach(memory.clone(), layout) else {
        return;
    };
    let response = vec![0u8; response_size];
    let mut faulted = false;
    for operation in operations.chunks_exact(5) {
        let value = u32::from_le_bytes([operation[1], operation[2], operation[3], operation[4]]);
        match operation[0] % 8 {
            0 => memory.poke_u32(offsets::REQ_PROD, value),
            1 => memory.poke_u32(
                offsets::REQ_PROD,
                ring.state().request_consumer.add(value % 64).0,
            ),
            2 => memory.poke_u32(offsets::RSP_EVENT, value),
            3 => {
                let offset = value as usize % (layout.size() - 4);
                memory.poke_u32(offset, value);
            }
            4 => {
                for _ in 0..(value % 64) {
                    match ring.next_request() {
                        Ok(Some(slot)) => assert_eq!(slot.bytes().len(), request_size),
                        Ok(None) => break,
                        Err(_) => {
                            faulted = true;
                            break;
                        }
                    }
                }
            }
            5 => {
                for _ in 0..(value % 64) {
                    if ring.push_response(&response).is_err() {
                        break;
                    }
                }
            }
            6 => {
                let _ = ring.publish_responses();
            }
            _ => {
                let _ = ring.final_check_for_requests();
            }
        }
        assert!(ring.requests_in_flight() <= layout.slots());
        assert!(ring.unpublished_responses() <= layout.slots());
        if faulted {
            assert!(ring.next_request().is_err());
        }
    }
});
