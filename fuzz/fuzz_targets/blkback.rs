//! Fuzzes the blkif back end with random request slots pushed into a fake
//! front end's ring, interleaved with notifications and device completions
//! in random order: it must never panic, and once everything completes
//! every request published must have been answered exactly once (unless
//! the back end closed the device for a hostile ring).
#![no_main]

use blkback::fake::{FakeBlkfront, FakeBlockDevice, FakeEvents, FakeGrants, FakeXenstore};
use blkback::wire::RequestBuilder;
use blkback::{Blkback, Config, DiscardInfo, DiskInfo, DomainId, Input, Time, XenbusState};
use libfuzzer_sys::fuzz_target;

const FRONTEND: &str = "/local/domain/5/device/vbd/51712";
const BACKEND: &str = "/local/domain/0/backend/vbd/5/51712";
const SECTORS: u64 = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, operations)) = data.split_first() else {
        return;
    };
    let disk = DiskInfo {
        sectors: SECTORS,
        sector_size: if setup & 1 == 0 { 512 } else { 4096 },
        physical_sector_size: 4096,
        read_only: setup & 2 != 0,
        removable: false,
        flush: setup & 4 != 0,
        discard: (setup & 8 != 0).then_some(DiscardInfo {
            granularity: 4096,
            alignment: 0,
            secure: setup & 16 != 0,
        }),
    };
    let mut config = Config::new(DomainId(5), FRONTEND.into(), BACKEND.into(), disk);
    config.queue_depth = 1 + usize::from(setup >> 5);
    let mut store = FakeXenstore::default();
    let mut grants = FakeGrants::default();
    let order = u32::from(setup >> 6);
    let mut front = FakeBlkfront::new(&mut store, &mut grants, FRONTEND, order, 1, u32::MAX - 2);
    let pages: Vec<_> = (0..4).map(|_| front.allocate_grant()).collect();
    for &page in &pages {
        grants.grant_page(page);
    }
    // An indirect descriptor page filled from the input.
    let descriptor = front.allocate_grant();
    grants.grant_page(descriptor);
    if let Some(page) = grants.page_mut(descriptor) {
        for (target, source) in page.iter_mut().zip(operations.iter().cycle()) {
            *target = *source;
        }
    }
    let Ok(mut backend) = Blkback::new(
        config,
        grants,
        FakeEvents::default(),
        FakeBlockDevice::new(SECTORS),
    ) else {
        return;
    };
    let now = Time(0);
    front.set_state(&mut store, XenbusState::Initialising);
    backend.process(Input::Start, now, &mut store);
    front.set_state(&mut store, XenbusState::Initialised);
    backend.process(Input::FrontendChanged, now, &mut store);
    let Some(&port) = backend.ports().first() else {
        return;
    };
    let mut pushed = 0u64;
    let mut answered = 0u64;
    for operation in operations.chunks_exact(113) {
        let (&selector, rest) = operation.split_first().unwrap_or((&0, &[]));
        match selector % 4 {
            0 | 1 => {
                let mut raw = [0u8; 112];
                raw.copy_from_slice(rest);
                // Point most grant fields at real pages so requests get far.
                if selector & 0x10 != 0 {
                    for segment in 0..11 {
                        let at = 24 + segment * 8;
                        let grant = pages[usize::from(raw[at]) % pages.len()];
                        raw[at..at + 4].copy_from_slice(&grant.0.to_le_bytes());
                    }
                    raw[28..32].copy_from_slice(&descriptor.0.to_le_bytes());
                }
                if front.push(0, &RequestBuilder::from_bytes(raw)) {
                    pushed += 1;
                }
                if selector % 4 == 1 {
                    front.publish(0);
                    backend.process(Input::Notified(port), now, &mut store);
                }
            }
            2 => {
                let queued = backend.device().in_flight();
                if queued > 0 {
                    let position = usize::from(rest[0]) % queued;
                    if let Some(completion) = backend.device_mut().complete_at(position) {
                        backend.process(Input::Completed(completion), now, &mut store);
                    }
                }
            }
            _ => {
                answered += front.responses(0).len() as u64;
            }
        }
        assert!(backend.in_flight() <= backend.config().queue_depth);
    }
    front.publish(0);
    backend.process(Input::Notified(port), now, &mut store);
    for _ in 0..10_000 {
        let Some(completion) = backend.device_mut().complete_next() else {
            break;
        };
        backend.process(Input::Completed(completion), now, &mut store);
        backend.process(Input::Notified(port), now, &mut store);
    }
    answered += front.responses(0).len() as u64;
    if backend.state() == XenbusState::Connected {
        assert_eq!(answered, pushed);
    } else {
        assert!(answered <= pushed);
    }
});
