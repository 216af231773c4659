//! Host tests: the handshake, every operation, every bad input, flush
//! ordering, back-pressure, batching and notifications, teardown, and a
//! seeded random run — all against the fakes.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use crate::fake::{
    DeviceEvent, FakeBlkfront, FakeBlockDevice, FakeEvents, FakeGrants, FakeXenstore, OperationKind,
};
use crate::wire::{RequestBuilder, Response, Status, encode_segment, operation};
use crate::{
    Action, Blkback, Config, ConnectError, DiscardInfo, DiskInfo, DomainId, GrantRef, Input,
    RequestError, Time, XenbusState,
};

const FRONTEND: &str = "/local/domain/5/device/vbd/51712";
const BACKEND: &str = "/local/domain/0/backend/vbd/5/51712";
const SECTORS: u64 = 2048;

type Backend = Blkback<FakeGrants, FakeEvents, FakeBlockDevice>;

struct Harness {
    backend: Backend,
    store: FakeXenstore,
    front: FakeBlkfront,
    now: Time,
    actions: Vec<Action>,
}

fn disk() -> DiskInfo {
    DiskInfo {
        sectors: SECTORS,
        sector_size: 512,
        physical_sector_size: 4096,
        read_only: false,
        removable: false,
        flush: true,
        discard: Some(DiscardInfo {
            granularity: 4096,
            alignment: 0,
            secure: false,
        }),
    }
}

fn setup(config: Config, order: u32, queues: u32, start: u32) -> Harness {
    let mut store = FakeXenstore::default();
    let mut grants = FakeGrants::default();
    let front = FakeBlkfront::new(&mut store, &mut grants, FRONTEND, order, queues, start);
    front.set_state(&mut store, XenbusState::Initialising);
    let backend = Blkback::new(
        config,
        grants,
        FakeEvents::default(),
        FakeBlockDevice::new(SECTORS),
    )
    .expect("valid config");
    Harness {
        backend,
        store,
        front,
        now: Time(0),
        actions: Vec::new(),
    }
}

fn config(disk: DiskInfo) -> Config {
    Config::new(DomainId(5), FRONTEND.to_string(), BACKEND.to_string(), disk)
}

fn connected_with(config: Config, order: u32, queues: u32) -> Harness {
    let mut harness = setup(config, order, queues, u32::MAX - 3);
    harness.input(Input::Start);
    assert_eq!(harness.backend.state(), XenbusState::InitWait);
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Initialised);
    harness.input(Input::FrontendChanged);
    assert_eq!(
        harness.backend.state(),
        XenbusState::Connected,
        "{:?}",
        harness.actions
    );
    harness
}

fn connected() -> Harness {
    connected_with(config(disk()), 0, 1)
}

impl Harness {
    fn input(&mut self, input: Input) {
        let actions = self.backend.process(input, self.now, &mut self.store);
        self.actions.extend(actions);
    }

    fn backend_key(&self, key: &str) -> Option<&str> {
        self.store.get(&alloc::format!("{BACKEND}/{key}"))
    }

    /// A granted page filled with `fill`.
    fn page(&mut self, fill: u8) -> GrantRef {
        let grant = self.front.allocate_grant();
        let grants = self.backend.grants_mut();
        grants.grant_page(grant);
        grants.page_mut(grant).expect("granted").fill(fill);
        grant
    }

    fn page_bytes(&self, grant: GrantRef) -> Vec<u8> {
        self.backend.grants().page(grant).expect("granted").to_vec()
    }

    /// Pushes requests on queue 0, publishes and notifies the back end.
    fn send(&mut self, requests: &[RequestBuilder]) {
        self.send_on(0, requests);
    }

    fn send_on(&mut self, queue: usize, requests: &[RequestBuilder]) {
        for request in requests {
            assert!(self.front.push(queue, request), "front ring full");
        }
        self.front.publish(queue);
        let port = self.backend.ports()[queue];
        self.input(Input::Notified(port));
    }

    fn complete_next(&mut self) -> bool {
        match self.backend.device_mut().complete_next() {
            Some(completion) => {
                self.input(Input::Completed(completion));
                true
            }
            None => false,
        }
    }

    fn complete_all(&mut self) {
        while self.complete_next() {}
    }

    fn responses(&mut self) -> Vec<Response> {
        self.front.responses(0)
    }

    fn notifications(&self) -> usize {
        self.actions
            .iter()
            .filter(|action| matches!(action, Action::Notify(_)))
            .count()
    }
}

fn read(id: u64, sector: u64, segments: &[(GrantRef, u8, u8)]) -> RequestBuilder {
    RequestBuilder::direct(operation::READ, id, sector, segments)
}

fn write(id: u64, sector: u64, segments: &[(GrantRef, u8, u8)]) -> RequestBuilder {
    RequestBuilder::direct(operation::WRITE, id, sector, segments)
}

fn status(response: &Response) -> Option<Status> {
    Status::from_raw(response.status)
}

/// Sends one request, completes everything, and returns its one response.
fn answer(harness: &mut Harness, request: RequestBuilder) -> Response {
    harness.send(&[request]);
    harness.complete_all();
    let responses = harness.responses();
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0]
}

#[test]
fn handshake_advertises_features_then_connects() {
    let mut harness = setup(config(disk()), 0, 1, 0);
    harness.input(Input::Start);
    for (key, value) in [
        ("state", "2"),
        ("feature-flush-cache", "1"),
        ("feature-discard", "1"),
        ("discard-granularity", "4096"),
        ("discard-alignment", "0"),
        ("discard-secure", "0"),
        ("feature-persistent", "0"),
        ("feature-max-indirect-segments", "32"),
        ("max-ring-page-order", "4"),
        ("multi-queue-max-queues", "4"),
    ] {
        assert_eq!(harness.backend_key(key), Some(value), "{key}");
    }
    assert_eq!(
        harness.backend_key("sectors"),
        None,
        "disk keys come at connect"
    );
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Initialised);
    harness.input(Input::FrontendChanged);
    for (key, value) in [
        ("state", "4"),
        ("sectors", "2048"),
        ("info", "0"),
        ("sector-size", "512"),
        ("physical-sector-size", "4096"),
    ] {
        assert_eq!(harness.backend_key(key), Some(value), "{key}");
    }
    assert_eq!(
        harness.actions,
        [
            Action::StateChanged(XenbusState::InitWait),
            Action::StateChanged(XenbusState::Connected)
        ]
    );
    assert_eq!(harness.backend.grants().mapped_rings, 1);
    assert_eq!(harness.backend.events().bound.len(), 1);
    // A second Initialised/Connected does not reconnect.
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Connected);
    harness.input(Input::FrontendChanged);
    assert_eq!(harness.backend.grants().mapped_rings, 1);
}

#[test]
fn read_only_removable_disk_offers_no_flush_or_discard() {
    let mut disk = disk();
    disk.read_only = true;
    disk.removable = true;
    let mut harness = connected_with(config(disk), 0, 1);
    assert_eq!(harness.backend_key("info"), Some("6"));
    assert_eq!(harness.backend_key("feature-flush-cache"), Some("0"));
    assert_eq!(harness.backend_key("feature-discard"), Some("0"));
    let page = harness.page(1);
    let response = answer(&mut harness, write(1, 0, &[(page, 0, 7)]));
    assert_eq!(status(&response), Some(Status::Error));
    let flush = RequestBuilder::direct(operation::FLUSH_DISKCACHE, 2, 0, &[]);
    assert_eq!(
        status(&answer(&mut harness, flush)),
        Some(Status::NotSupported)
    );
    let discard = RequestBuilder::discard(3, 0, 8, false);
    assert_eq!(
        status(&answer(&mut harness, discard)),
        Some(Status::NotSupported)
    );
    let response = answer(&mut harness, read(4, 0, &[(page, 0, 7)]));
    assert_eq!(status(&response), Some(Status::Okay));
}

#[test]
fn reads_fill_the_named_sectors_of_each_page() {
    let mut harness = connected();
    for (index, byte) in harness.backend.device_mut().contents.iter_mut().enumerate() {
        *byte = (index / 512) as u8;
    }
    let first = harness.page(0xee);
    let second = harness.page(0xee);
    // Sectors 10..=12 into sectors 5..=7 of the first page, 13 into 0 of the second.
    let response = answer(&mut harness, read(77, 10, &[(first, 5, 7), (second, 0, 0)]));
    assert_eq!(
        response,
        Response {
            id: 77,
            operation: operation::READ,
            status: 0
        }
    );
    let page = harness.page_bytes(first);
    assert!(page[..5 * 512].iter().all(|&byte| byte == 0xee));
    assert!(page[5 * 512..6 * 512].iter().all(|&byte| byte == 10));
    assert!(page[7 * 512..].iter().all(|&byte| byte == 12));
    let page = harness.page_bytes(second);
    assert!(page[..512].iter().all(|&byte| byte == 13));
    assert!(page[512..].iter().all(|&byte| byte == 0xee));
    assert_eq!(harness.backend.statistics().reads, 1);
}

#[test]
fn writes_are_answered_only_once_on_the_device() {
    let mut harness = connected();
    let page = harness.page(0x5a);
    harness.send(&[write(9, 100, &[(page, 2, 3)])]);
    assert!(
        harness.responses().is_empty(),
        "no response before completion"
    );
    assert_eq!(harness.backend.device().in_flight(), 1);
    assert!(harness.complete_next());
    let responses = harness.responses();
    assert_eq!(
        responses,
        [Response {
            id: 9,
            operation: operation::WRITE,
            status: 0
        }]
    );
    let contents = &harness.backend.device().contents;
    assert!(
        contents[100 * 512..102 * 512]
            .iter()
            .all(|&byte| byte == 0x5a)
    );
    assert!(contents[102 * 512..103 * 512].iter().all(|&byte| byte == 0));
}

#[test]
fn flush_waits_for_earlier_writes_and_answers_after_the_device_flush() {
    let mut harness = connected();
    let page = harness.page(0x11);
    let flush = RequestBuilder::direct(operation::FLUSH_DISKCACHE, 2, 0, &[]);
    harness.send(&[write(1, 0, &[(page, 0, 7)]), flush]);
    // Only the write is on the device: the flush waits for it.
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write]
    );
    // A later write is not held back by the flush.
    let later = harness.page(0x22);
    harness.send(&[write(3, 8, &[(later, 0, 7)])]);
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write, OperationKind::Write]
    );
    assert!(harness.complete_next());
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write, OperationKind::Flush]
    );
    assert_eq!(
        harness.responses().iter().map(|r| r.id).collect::<Vec<_>>(),
        [1]
    );
    // Complete the flush before the later write: the flush is answered.
    let completion = harness.backend.device_mut().complete_at(1).expect("flush");
    harness.input(Input::Completed(completion));
    let responses = harness.responses();
    assert_eq!(
        responses,
        [Response {
            id: 2,
            operation: operation::FLUSH_DISKCACHE,
            status: 0
        }]
    );
    assert!(
        harness.backend.device().durable[..4096]
            .iter()
            .all(|&byte| byte == 0x11)
    );
    harness.complete_all();
    assert_eq!(harness.responses().len(), 1);
    assert_eq!(harness.backend.statistics().flushes, 1);
}

#[test]
fn flush_with_data_is_durable_when_answered() {
    let mut harness = connected();
    let early = harness.page(0x33);
    let page = harness.page(0x44);
    let fua = RequestBuilder::direct(operation::FLUSH_DISKCACHE, 5, 16, &[(page, 0, 7)]);
    harness.send(&[write(4, 0, &[(early, 0, 7)]), fua]);
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write]
    );
    assert!(harness.complete_next()); // the earlier write
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write]
    );
    assert!(harness.complete_next()); // the FUA data
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Flush]
    );
    assert_eq!(
        harness.responses().iter().map(|r| r.id).collect::<Vec<_>>(),
        [4]
    );
    assert!(harness.complete_next());
    let responses = harness.responses();
    assert_eq!(responses[0].id, 5);
    assert_eq!(status(&responses[0]), Some(Status::Okay));
    let durable = &harness.backend.device().durable;
    assert!(durable[..4096].iter().all(|&byte| byte == 0x33));
    assert!(
        durable[16 * 512..16 * 512 + 4096]
            .iter()
            .all(|&byte| byte == 0x44)
    );
}

#[test]
fn flush_on_a_disk_without_cache_is_not_supported() {
    let mut disk = disk();
    disk.flush = false;
    let mut harness = connected_with(config(disk), 0, 1);
    assert_eq!(harness.backend_key("feature-flush-cache"), Some("0"));
    let flush = RequestBuilder::direct(operation::FLUSH_DISKCACHE, 1, 0, &[]);
    let response = answer(&mut harness, flush);
    assert_eq!(status(&response), Some(Status::NotSupported));
    assert_eq!(response.operation, operation::FLUSH_DISKCACHE);
}

#[test]
fn discard_zeroes_and_checks_its_range_and_flags() {
    let mut harness = connected();
    harness.backend.device_mut().contents.fill(0xff);
    let response = answer(&mut harness, RequestBuilder::discard(1, 8, 16, false));
    assert_eq!(
        response,
        Response {
            id: 1,
            operation: operation::DISCARD,
            status: 0
        }
    );
    let contents = &harness.backend.device().contents;
    assert!(contents[8 * 512..24 * 512].iter().all(|&byte| byte == 0));
    assert_eq!(contents[24 * 512], 0xff);
    let beyond = RequestBuilder::discard(2, SECTORS - 4, 8, false);
    assert_eq!(status(&answer(&mut harness, beyond)), Some(Status::Error));
    let wrapping = RequestBuilder::discard(3, u64::MAX - 1, 4, false);
    assert_eq!(status(&answer(&mut harness, wrapping)), Some(Status::Error));
    let secure = RequestBuilder::discard(4, 0, 8, true);
    assert_eq!(
        status(&answer(&mut harness, secure)),
        Some(Status::NotSupported)
    );
    let empty = RequestBuilder::discard(5, 0, 0, false);
    assert_eq!(status(&answer(&mut harness, empty)), Some(Status::Okay));

    let mut no_discard = disk();
    no_discard.discard = None;
    let mut harness = connected_with(config(no_discard), 0, 1);
    let response = answer(&mut harness, RequestBuilder::discard(6, 0, 8, false));
    assert_eq!(status(&response), Some(Status::NotSupported));
}

#[test]
fn discard_waits_alone_for_the_requests_before_it_and_holds_back_later_ones() {
    let mut harness = connected();
    let first = harness.page(0x11);
    let second = harness.page(0x22);
    let later = harness.page(0x33);
    harness.send(&[
        write(1, 0, &[(first, 0, 7)]),
        read(2, 16, &[(second, 0, 7)]),
        RequestBuilder::discard(3, 0, 64, false),
        write(4, 64, &[(later, 0, 7)]),
    ]);
    // The discard waits for both; the write after it is not even taken.
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write, OperationKind::Read]
    );
    assert_eq!(harness.backend.in_flight(), 3);
    // A notification meanwhile takes nothing either.
    harness.input(Input::Notified(harness.backend.ports()[0]));
    assert_eq!(harness.backend.device().in_flight(), 2);
    assert!(harness.complete_next());
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Read],
        "one request is still in flight: no discard yet"
    );
    assert!(harness.complete_next());
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Discard],
        "the discard goes alone"
    );
    let ids: Vec<u64> = harness.responses().iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 2]);
    assert!(harness.complete_next());
    // Answered, and the held-back write is taken now.
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Write]
    );
    harness.complete_all();
    let responses = harness.responses();
    assert_eq!(
        responses
            .iter()
            .map(|r| (r.id, r.status))
            .collect::<Vec<_>>(),
        [(3, 0), (4, 0)]
    );
    assert_eq!(responses[0].operation, operation::DISCARD);
    let contents = &harness.backend.device().contents;
    assert!(contents[..64 * 512].iter().all(|&byte| byte == 0));
    assert!(
        contents[64 * 512..72 * 512]
            .iter()
            .all(|&byte| byte == 0x33)
    );
    // The discard was alone on the device from submission to completion.
    let mut on_device = 0usize;
    let mut discarding = false;
    for event in &harness.backend.device().events {
        match event {
            DeviceEvent::Submitted(_, kind) => {
                assert!(!discarding, "{kind:?} submitted during the discard");
                if *kind == OperationKind::Discard {
                    assert_eq!(on_device, 0, "discard submitted beside another request");
                    discarding = true;
                }
                on_device += 1;
            }
            DeviceEvent::Completed(_, kind) => {
                discarding &= *kind != OperationKind::Discard;
                on_device -= 1;
            }
        }
    }
}

#[test]
fn a_discard_on_one_queue_holds_back_the_other_queues() {
    let mut harness = connected_with(config(disk()), 0, 2);
    let page = harness.page(0x66);
    harness.send_on(0, &[read(1, 0, &[(page, 0, 7)])]);
    harness.send_on(1, &[RequestBuilder::discard(2, 0, 8, false)]);
    harness.send_on(0, &[read(3, 8, &[(page, 0, 7)])]);
    // Queue 0's second read waits behind queue 1's discard.
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Read]
    );
    assert!(harness.complete_next());
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Discard]
    );
    assert!(harness.complete_next());
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Read]
    );
    harness.complete_all();
    let ids = |responses: Vec<Response>| responses.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(harness.front.responses(0)), [1, 3]);
    assert_eq!(ids(harness.front.responses(1)), [2]);
}

#[test]
fn a_failed_or_refused_discard_lets_the_ring_go_on() {
    let mut harness = connected();
    let page = harness.page(0x44);
    harness.backend.device_mut().refuse = true;
    harness.send(&[
        RequestBuilder::discard(1, 0, 8, false),
        write(2, 8, &[(page, 0, 7)]),
    ]);
    // The device refused the discard: answered with an error, and the
    // write behind it is taken (and refused too, the device being gone).
    let responses = harness.responses();
    assert_eq!(
        responses
            .iter()
            .map(|r| (r.id, status(r)))
            .collect::<Vec<_>>(),
        [(1, Some(Status::Error)), (2, Some(Status::Error))]
    );
    harness.backend.device_mut().refuse = false;
    harness.send(&[RequestBuilder::discard(3, 0, 8, false)]);
    let tag = harness.backend.device().queued_tags()[0];
    harness.backend.device_mut().fail.insert(tag.0);
    harness.send(&[write(4, 8, &[(page, 0, 7)])]);
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Discard]
    );
    harness.complete_all();
    let responses = harness.responses();
    assert_eq!(
        responses
            .iter()
            .map(|r| (r.id, status(r)))
            .collect::<Vec<_>>(),
        [(3, Some(Status::Error)), (4, Some(Status::Okay))]
    );
    assert_eq!(harness.backend.in_flight(), 0);
}

#[test]
fn discards_the_disk_cannot_take_are_refused_without_holding_the_ring() {
    let mut harness = connected();
    let page = harness.page(0x55);
    // Out of range, wrapping, secure (not offered): refused at once, and
    // the read behind them is served as usual.
    harness.send(&[
        RequestBuilder::discard(1, SECTORS, 8, false),
        RequestBuilder::discard(2, u64::MAX - 7, 16, false),
        RequestBuilder::discard(3, 0, 8, true),
        read(4, 0, &[(page, 0, 7)]),
    ]);
    assert_eq!(
        harness.backend.device().queued_kinds(),
        [OperationKind::Read]
    );
    harness.complete_all();
    let responses = harness.responses();
    assert_eq!(
        responses
            .iter()
            .map(|r| (r.id, status(r)))
            .collect::<Vec<_>>(),
        [
            (1, Some(Status::Error)),
            (2, Some(Status::Error)),
            (3, Some(Status::NotSupported)),
            (4, Some(Status::Okay))
        ]
    );
    // A 4 KiB-sector disk refuses a discard that splits a sector.
    let mut big_sectors = disk();
    big_sectors.sector_size = 4096;
    let mut harness = connected_with(config(big_sectors), 0, 1);
    let misaligned = RequestBuilder::discard(5, 4, 8, false);
    assert_eq!(
        status(&answer(&mut harness, misaligned)),
        Some(Status::Error)
    );
    let short = RequestBuilder::discard(6, 0, 4, false);
    assert_eq!(status(&answer(&mut harness, short)), Some(Status::Error));
    assert!(harness.backend.device().events.is_empty());
}

/// Builds an indirect request over `count` single-sector segments, each in
/// its own data page, and returns it with the data pages.
fn indirect(
    harness: &mut Harness,
    inner: u8,
    id: u64,
    sector: u64,
    count: usize,
) -> (RequestBuilder, Vec<GrantRef>) {
    let data: Vec<GrantRef> = (0..count).map(|index| harness.page(index as u8)).collect();
    let mut pages = Vec::new();
    for chunk in data.chunks(512) {
        let page = harness.page(0);
        let bytes = harness
            .backend
            .grants_mut()
            .page_mut(page)
            .expect("granted");
        for (index, grant) in chunk.iter().enumerate() {
            bytes[index * 8..index * 8 + 8].copy_from_slice(&encode_segment(*grant, 3, 3));
        }
        pages.push(page);
    }
    let request = RequestBuilder::indirect(inner, id, sector, count as u16, &pages);
    (request, data)
}

#[test]
fn indirect_writes_and_reads_round_trip() {
    let mut harness = connected();
    let (request, data) = indirect(&mut harness, operation::WRITE, 40, 64, 20);
    let response = answer(&mut harness, request);
    // Answered with the inner operation, as blkfront expects.
    assert_eq!(
        response,
        Response {
            id: 40,
            operation: operation::WRITE,
            status: 0
        }
    );
    let contents = &harness.backend.device().contents;
    for index in 0..20 {
        let sector = (64 + index) * 512;
        assert!(
            contents[sector..sector + 512]
                .iter()
                .all(|&byte| byte == index as u8)
        );
    }
    for grant in &data {
        harness
            .backend
            .grants_mut()
            .page_mut(*grant)
            .expect("granted")
            .fill(0xcc);
    }
    let (request, targets) = indirect(&mut harness, operation::READ, 41, 64, 20);
    let response = answer(&mut harness, request);
    assert_eq!(response.operation, operation::READ);
    assert_eq!(status(&response), Some(Status::Okay));
    for (index, grant) in targets.iter().enumerate() {
        let page = harness.page_bytes(*grant);
        assert!(
            page[3 * 512..4 * 512]
                .iter()
                .all(|&byte| byte == index as u8)
        );
    }
    assert_eq!(harness.backend.statistics().indirect, 2);
}

#[test]
fn bad_indirect_requests_are_refused() {
    let mut config = config(disk());
    config.max_indirect_segments = 600;
    let mut harness = connected_with(config, 0, 1);
    // 600 segments span two descriptor pages.
    let (request, _) = indirect(&mut harness, operation::WRITE, 1, 0, 600);
    assert_eq!(status(&answer(&mut harness, request)), Some(Status::Okay));
    let (request, _) = indirect(&mut harness, operation::READ, 2, 0, 601);
    assert_eq!(
        status(&answer(&mut harness, request)),
        Some(Status::Error),
        "too many"
    );
    let (request, _) = indirect(&mut harness, operation::DISCARD, 3, 0, 4);
    let response = answer(&mut harness, request);
    assert_eq!(status(&response), Some(Status::Error), "bad inner op");
    assert_eq!(response.operation, operation::DISCARD);
    let zero = RequestBuilder::indirect(operation::READ, 4, 0, 0, &[]);
    assert_eq!(status(&answer(&mut harness, zero)), Some(Status::Error));
    let missing = RequestBuilder::indirect(operation::READ, 5, 0, 4, &[GrantRef(999_999)]);
    assert_eq!(status(&answer(&mut harness, missing)), Some(Status::Error));
    // A descriptor page holding a malformed segment.
    let (request, _) = indirect(&mut harness, operation::READ, 6, 0, 3);
    let descriptor_page = GrantRef(u32::from_le_bytes(
        request.bytes()[28..32].try_into().expect("4"),
    ));
    harness
        .backend
        .grants_mut()
        .page_mut(descriptor_page)
        .expect("granted")[8 + 5] = 8;
    assert_eq!(status(&answer(&mut harness, request)), Some(Status::Error));
    // Beyond the disk.
    let (request, _) = indirect(&mut harness, operation::READ, 7, SECTORS - 2, 3);
    assert_eq!(status(&answer(&mut harness, request)), Some(Status::Error));

    let mut config = self::config(disk());
    config.max_indirect_segments = 0;
    let mut harness = connected_with(config, 0, 1);
    assert_eq!(harness.backend_key("feature-max-indirect-segments"), None);
    let (request, _) = indirect(&mut harness, operation::READ, 8, 0, 3);
    assert_eq!(
        status(&answer(&mut harness, request)),
        Some(Status::NotSupported)
    );
}

#[test]
fn every_bad_direct_request_gets_an_error_response() {
    let mut harness = connected();
    let page = harness.page(0);
    let cases: Vec<(RequestBuilder, Status)> = vec![
        (read(1, 0, &[(page, 4, 3)]), Status::Error), // first > last
        (read(2, 0, &[(page, 0, 8)]), Status::Error), // last beyond the page
        (write(3, SECTORS - 1, &[(page, 0, 1)]), Status::Error), // past the end
        (read(4, u64::MAX, &[(page, 0, 0)]), Status::Error), // wraps
        (read(5, 0, &[]), Status::Error),             // no segments
        (
            read(6, 0, &[(page, 0, 0)]).with_segment_count(12),
            Status::Error,
        ),
        (read(7, 0, &[(GrantRef(4242), 0, 0)]), Status::Error), // not granted
        (write(8, 0, &[(GrantRef(4243), 0, 0)]), Status::Error),
        (RequestBuilder::direct(4, 9, 0, &[]), Status::NotSupported),
        (
            RequestBuilder::direct(200, 10, 0, &[]),
            Status::NotSupported,
        ),
        (
            RequestBuilder::direct(operation::WRITE_BARRIER, 11, 0, &[]),
            Status::NotSupported,
        ),
    ];
    for (request, expected) in cases {
        let id = u64::from_le_bytes(request.bytes()[8..16].try_into().expect("8"));
        let operation = request.bytes()[0];
        let response = answer(&mut harness, request);
        assert_eq!(response.id, id);
        assert_eq!(response.operation, operation, "request {id}");
        assert_eq!(status(&response), Some(expected), "request {id}");
    }
    // Only the read into an ungranted page reached the device: with grant
    // copies, a read's pages are touched when its data is ready.
    assert_eq!(harness.backend.device().events.len(), 2);
    let statistics = harness.backend.statistics();
    assert_eq!((statistics.errors, statistics.not_supported), (8, 3));
    assert!(harness.actions.iter().any(|action| matches!(
        action,
        Action::Refused {
            error: RequestError::SegmentOutOfBounds { .. },
            ..
        }
    )));
}

#[test]
fn four_k_sector_disks_refuse_misaligned_requests() {
    let mut disk = disk();
    disk.sector_size = 4096;
    let mut harness = connected_with(config(disk), 0, 1);
    let page = harness.page(0);
    assert_eq!(
        status(&answer(&mut harness, read(1, 8, &[(page, 0, 7)]))),
        Some(Status::Okay)
    );
    assert_eq!(
        status(&answer(&mut harness, read(2, 4, &[(page, 0, 7)]))),
        Some(Status::Error)
    );
    assert_eq!(
        status(&answer(&mut harness, read(3, 8, &[(page, 0, 3)]))),
        Some(Status::Error)
    );
}

#[test]
fn device_failures_become_error_responses() {
    let mut harness = connected();
    let page = harness.page(0);
    harness.send(&[read(1, 0, &[(page, 0, 0)])]);
    let tag = harness.backend.device().queued_tags()[0];
    harness.backend.device_mut().fail.insert(tag.0);
    harness.complete_all();
    assert_eq!(status(&harness.responses()[0]), Some(Status::Error));
    harness.backend.device_mut().refuse = true;
    assert_eq!(
        status(&answer(&mut harness, write(2, 0, &[(page, 0, 0)]))),
        Some(Status::Error)
    );
    assert_eq!(harness.backend.statistics().device_errors, 2);
    // A completion nobody asked for is ignored.
    harness.input(Input::Completed(crate::Completion {
        tag: crate::DeviceTag(0xdead_0000_0001),
        result: Ok(Vec::new()),
    }));
    assert_eq!(harness.backend.statistics().unknown_completions, 1);
    assert!(harness.responses().is_empty());
}

#[test]
fn a_batch_is_published_once_with_one_notification() {
    let mut harness = connected();
    let page = harness.page(0);
    let batch: Vec<RequestBuilder> = (0..10).map(|id| read(id, id, &[(page, 0, 0)])).collect();
    harness.send(&batch);
    assert_eq!(harness.backend.device().in_flight(), 10);
    // All ten complete inside one process call each; the front end armed
    // rsp_event only for the first response.
    harness.complete_all();
    assert_eq!(harness.notifications(), 1);
    assert_eq!(harness.responses().len(), 10);
    // The front end re-arms before sleeping: the next response notifies.
    assert!(!harness.front.queues[0].ring.final_check_for_responses());
    answer(&mut harness, read(11, 0, &[(page, 0, 0)]));
    assert_eq!(harness.notifications(), 2);
    // The back end armed req_event before going idle: the front end's next
    // publish asks for an event, and a busy back end's would not.
    assert!(harness.front.push(0, &read(12, 0, &[(page, 0, 0)])));
    assert!(harness.front.publish(0));
    // Many completions in one go: a device completing two at once is two
    // inputs, each publishing; with rsp_event not re-armed, no more events.
    let before = harness.notifications();
    let port = harness.backend.ports()[0];
    harness.input(Input::Notified(port));
    harness.complete_all();
    assert_eq!(harness.notifications(), before);
    assert_eq!(
        harness.backend.statistics().notifications as usize,
        harness.notifications()
    );
}

#[test]
fn queue_depth_applies_back_pressure_without_losing_requests() {
    let mut config = config(disk());
    config.queue_depth = 4;
    let mut harness = connected_with(config, 0, 1);
    let page = harness.page(0);
    let batch: Vec<RequestBuilder> = (0..20).map(|id| read(id, id, &[(page, 0, 0)])).collect();
    harness.send(&batch);
    assert_eq!(harness.backend.device().in_flight(), 4);
    assert!(harness.backend.statistics().stalls >= 1);
    harness.complete_all();
    let mut ids: Vec<u64> = harness
        .responses()
        .iter()
        .map(|response| response.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(harness.backend.device().most_in_flight, 4);
}

#[test]
fn deep_queues_keep_many_requests_in_flight() {
    let mut harness = connected_with(config(disk()), 2, 1);
    let page = harness.page(0);
    // An order-2 ring holds 128 requests; 64 (the queue depth) go to the device.
    let batch: Vec<RequestBuilder> = (0..100).map(|id| read(id, id, &[(page, 0, 0)])).collect();
    harness.send(&batch);
    assert_eq!(harness.backend.device().in_flight(), 64);
    harness.complete_all();
    assert_eq!(harness.responses().len(), 100);
}

#[test]
fn multi_page_rings_connect_at_each_order() {
    for order in 0..=4 {
        let mut harness = connected_with(config(disk()), order, 1);
        if order > 0 {
            assert!(
                harness
                    .store
                    .get(&alloc::format!("{FRONTEND}/ring-ref0"))
                    .is_some()
            );
        }
        let page = harness.page(0);
        assert_eq!(
            status(&answer(&mut harness, read(1, 0, &[(page, 0, 0)]))),
            Some(Status::Okay)
        );
    }
}

#[test]
fn multi_queue_connects_every_ring() {
    let mut harness = connected_with(config(disk()), 1, 3);
    assert_eq!(harness.backend.queue_count(), 3);
    assert_eq!(harness.backend.events().bound.len(), 3);
    let page = harness.page(0);
    for queue in 0..3 {
        harness.send_on(queue, &[read(queue as u64, 0, &[(page, 0, 0)])]);
        harness.complete_all();
        let responses = harness.front.responses(queue);
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].id, queue as u64);
    }
}

fn refused_connect(harness: &mut Harness) -> ConnectError {
    harness.input(Input::Start);
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Initialised);
    harness.input(Input::FrontendChanged);
    assert_eq!(harness.backend.state(), XenbusState::Closing);
    assert!(harness.backend_key("error").is_some());
    assert_eq!(
        harness.backend.grants().mapped_rings,
        0,
        "nothing left mapped"
    );
    assert!(harness.backend.events().bound.is_empty());
    harness
        .actions
        .iter()
        .find_map(|action| match action {
            Action::Failed(error) => Some(error.clone()),
            _ => None,
        })
        .expect("a failure")
}

#[test]
fn handshake_refusals() {
    let mut harness = setup(config(disk()), 0, 1, 0);
    harness
        .store
        .set(&alloc::format!("{FRONTEND}/protocol"), "x86_32-abi");
    assert_eq!(
        refused_connect(&mut harness),
        ConnectError::UnsupportedProtocol
    );

    let mut small = config(disk());
    small.max_ring_page_order = 1;
    let mut harness = setup(small, 2, 1, 0);
    assert!(matches!(
        refused_connect(&mut harness),
        ConnectError::RingOrderTooLarge {
            order: 2,
            maximum: 1
        }
    ));

    let mut harness = setup(config(disk()), 0, 5, 0);
    assert!(matches!(
        refused_connect(&mut harness),
        ConnectError::BadQueueCount { .. }
    ));

    let mut harness = setup(config(disk()), 0, 1, 0);
    harness
        .store
        .nodes
        .remove(&alloc::format!("{FRONTEND}/event-channel"));
    assert!(matches!(
        refused_connect(&mut harness),
        ConnectError::BadFrontendKey { .. }
    ));

    let mut harness = setup(config(disk()), 0, 1, 0);
    harness
        .store
        .set(&alloc::format!("{FRONTEND}/ring-ref"), "77");
    assert!(matches!(
        refused_connect(&mut harness),
        ConnectError::RingMapFailed { .. }
    ));

    // The second queue's event channel cannot be bound: the first is undone.
    let mut harness = setup(config(disk()), 0, 2, 0);
    harness.backend = {
        let mut events = FakeEvents::default();
        events.refuse = true;
        let grants = core::mem::take(harness.backend.grants_mut());
        Blkback::new(
            config(disk()),
            grants,
            events,
            FakeBlockDevice::new(SECTORS),
        )
        .expect("config")
    };
    assert_eq!(
        refused_connect(&mut harness),
        ConnectError::EventChannelBindFailed
    );

    // Indices already out of range when connecting.
    let mut harness = setup(config(disk()), 0, 1, 0);
    poke_request_producer(&mut harness, 33);
    assert!(matches!(
        refused_connect(&mut harness),
        ConnectError::RingFault(_)
    ));
}

#[test]
fn a_hostile_producer_index_closes_the_device() {
    let mut harness = connected();
    let page = harness.page(0);
    harness.send(&[read(1, 0, &[(page, 0, 0)])]);
    // The front end claims 40 more requests than a 32-slot ring can hold.
    let start = harness.front.queues[0].ring.request_producer().0;
    poke_request_producer(&mut harness, start.wrapping_add(40));
    let port = harness.backend.ports()[0];
    harness.input(Input::Notified(port));
    assert!(harness.actions.iter().any(|action| matches!(
        action,
        Action::Failed(ConnectError::RingFault(
            xen_ring::RingError::ProducerIndexOutOfRange { .. }
        ))
    )));
    assert_eq!(harness.backend.state(), XenbusState::Closing);
    assert!(
        harness
            .backend_key("error")
            .expect("error written")
            .contains("malicious")
    );
    // The read in flight still completes, then the ring is released.
    assert_eq!(harness.backend.grants().mapped_rings, 1);
    harness.complete_all();
    assert_eq!(harness.backend.grants().mapped_rings, 0);
}

fn poke_request_producer(harness: &mut Harness, value: u32) {
    let grants = harness.front.queues[0].grants.clone();
    let mapped = crate::Grants::map_ring(harness.backend.grants_mut(), DomainId(5), &grants)
        .expect("ring granted");
    mapped.poke_u32(xen_ring::offsets::REQ_PROD, value);
    crate::Grants::unmap_ring(harness.backend.grants_mut(), mapped);
}

#[test]
fn closing_waits_for_requests_in_flight_then_reconnects() {
    let mut harness = connected();
    let page = harness.page(0);
    harness.send(&[write(1, 0, &[(page, 0, 0)])]);
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Closing);
    harness.input(Input::FrontendChanged);
    assert_eq!(harness.backend.state(), XenbusState::Closing);
    assert_eq!(harness.backend.grants().mapped_rings, 1, "still in flight");
    // Requests published while closing are not taken.
    assert!(harness.front.push(0, &read(2, 0, &[(page, 0, 0)])));
    harness.front.publish(0);
    harness.input(Input::Notified(harness.backend.ports()[0]));
    assert_eq!(harness.backend.device().in_flight(), 1);
    harness.complete_all();
    assert_eq!(harness.responses().len(), 1, "the write is still answered");
    assert_eq!(harness.backend.grants().mapped_rings, 0);
    assert!(harness.backend.events().bound.is_empty());
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Closed);
    harness.input(Input::FrontendChanged);
    assert_eq!(harness.backend.state(), XenbusState::Closed);
    assert_eq!(harness.backend_key("state"), Some("6"));
    // The front end comes back (a new kernel): the back end offers again.
    harness.front = FakeBlkfront::new(
        &mut harness.store,
        harness.backend.grants_mut(),
        FRONTEND,
        1,
        1,
        7,
    );
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Initialising);
    harness.input(Input::FrontendChanged);
    assert_eq!(harness.backend.state(), XenbusState::InitWait);
    harness
        .front
        .set_state(&mut harness.store, XenbusState::Initialised);
    harness.input(Input::FrontendChanged);
    assert_eq!(harness.backend.state(), XenbusState::Connected);
    let page = harness.page(0);
    assert_eq!(
        status(&answer(&mut harness, read(3, 0, &[(page, 0, 0)]))),
        Some(Status::Okay)
    );
}

#[test]
fn guest_fault_reports_are_rate_limited() {
    let mut harness = connected();
    let bad: Vec<RequestBuilder> = (0..30)
        .map(|id| RequestBuilder::direct(4, id, 0, &[]))
        .collect();
    harness.send(&bad);
    let reported = harness
        .actions
        .iter()
        .filter(|action| matches!(action, Action::Refused { .. }))
        .count();
    assert_eq!(reported, 10);
    assert_eq!(harness.backend.statistics().suppressed_reports, 20);
    assert_eq!(harness.responses().len(), 30);
    harness.now = Time(2_000_000_000);
    harness.send(&[RequestBuilder::direct(4, 99, 0, &[])]);
    let reported = harness
        .actions
        .iter()
        .filter(|action| matches!(action, Action::Refused { .. }))
        .count();
    assert_eq!(reported, 11);
}

#[test]
fn config_is_validated() {
    let mut bad = config(disk());
    bad.disk.sector_size = 1000;
    assert!(
        Backend::new(
            bad,
            FakeGrants::default(),
            FakeEvents::default(),
            FakeBlockDevice::new(1)
        )
        .is_err()
    );
    let mut bad = config(disk());
    bad.max_indirect_segments = 11;
    assert!(
        Backend::new(
            bad,
            FakeGrants::default(),
            FakeEvents::default(),
            FakeBlockDevice::new(1)
        )
        .is_err()
    );
    let mut bad = config(disk());
    bad.queue_depth = 0;
    assert!(
        Backend::new(
            bad,
            FakeGrants::default(),
            FakeEvents::default(),
            FakeBlockDevice::new(1)
        )
        .is_err()
    );
}

/// SplitMix64 for the seeded random run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Random valid and invalid requests, completed in random order: every
/// request is answered exactly once with its own id, and nothing panics.
#[test]
fn random_request_sequences_are_each_answered_once() {
    for seed in 0..40 {
        let mut random = Random(seed);
        let mut config = config(disk());
        config.queue_depth = 1 + (random.next() % 16) as usize;
        let mut harness = connected_with(config, (random.next() % 3) as u32, 1);
        let pages: Vec<GrantRef> = (0..4).map(|fill| harness.page(fill)).collect();
        let mut sent = 0u64;
        let mut answered = Vec::new();
        for _ in 0..200 {
            match random.next() % 3 {
                0 => {
                    let mut raw = [0u8; 112];
                    for byte in raw.iter_mut() {
                        *byte = random.next() as u8;
                    }
                    raw[0] %= 8;
                    raw[1] %= 13;
                    raw[16..24].copy_from_slice(&(random.next() % (SECTORS + 8)).to_le_bytes());
                    for segment in 0..11 {
                        let at = 24 + segment * 8;
                        let grant = pages[(random.next() % 4) as usize];
                        raw[at..at + 4].copy_from_slice(&grant.0.to_le_bytes());
                        raw[at + 4] %= 9;
                        raw[at + 5] %= 9;
                    }
                    raw[8..16].copy_from_slice(&sent.to_le_bytes());
                    let request = RequestBuilder::from_bytes(raw);
                    if harness.front.push(0, &request) {
                        sent += 1;
                    }
                }
                1 => {
                    harness.front.publish(0);
                    let port = harness.backend.ports()[0];
                    harness.input(Input::Notified(port));
                }
                _ => {
                    let queued = harness.backend.device().in_flight();
                    if queued > 0 {
                        let position = (random.next() % queued as u64) as usize;
                        if let Some(completion) = harness.backend.device_mut().complete_at(position)
                        {
                            harness.input(Input::Completed(completion));
                        }
                    }
                }
            }
            answered.extend(harness.responses().iter().map(|response| response.id));
        }
        harness.front.publish(0);
        let port = harness.backend.ports()[0];
        harness.input(Input::Notified(port));
        while harness.backend.in_flight() > 0 || harness.backend.device().in_flight() > 0 {
            harness.complete_all();
            harness.input(Input::Notified(port));
        }
        answered.extend(harness.responses().iter().map(|response| response.id));
        answered.sort_unstable();
        assert_eq!(answered, (0..sent).collect::<Vec<_>>(), "seed {seed}");
    }
}

/// Grants through which the front end races the back end: every copy
/// (here, of an indirect descriptor page) publishes one more request
/// behind the back end's back, as a guest on another CPU, or running while
/// Dom0 is preempted, can.
struct RacingGrants {
    inner: FakeGrants,
    ring: Option<xen_ring::fake::FakeRingMemory>,
    request: RequestBuilder,
    /// Requests slipped in; capped so that a back end without a budget
    /// ends the test instead of spinning for ever.
    injected: usize,
}

const RACING_CAP: usize = 10_000;

impl crate::Grants for RacingGrants {
    type RingMemory = xen_ring::fake::FakeRingMemory;

    fn map_ring(
        &mut self,
        domain: DomainId,
        grants: &[GrantRef],
    ) -> Result<Self::RingMemory, crate::GrantError> {
        let memory = self.inner.map_ring(domain, grants)?;
        self.ring = Some(memory.clone());
        Ok(memory)
    }

    fn unmap_ring(&mut self, memory: Self::RingMemory) {
        self.inner.unmap_ring(memory);
    }

    fn copy_from_guest(
        &mut self,
        domain: DomainId,
        pieces: &[crate::GuestPiece],
        buffer: &mut [u8],
    ) -> Result<(), crate::GrantError> {
        use xen_ring::RingMemory;
        if let Some(ring) = &mut self.ring
            && self.injected < RACING_CAP
        {
            let mut word = [0; 4];
            ring.read(0, &mut word);
            let producer = u32::from_le_bytes(word);
            let slot = 64 + (producer % 32) as usize * crate::wire::REQUEST_SIZE;
            ring.write(slot, self.request.bytes());
            ring.write(0, &producer.wrapping_add(1).to_le_bytes());
            self.injected += 1;
        }
        self.inner.copy_from_guest(domain, pieces, buffer)
    }

    fn copy_to_guest(
        &mut self,
        domain: DomainId,
        pieces: &[crate::GuestPiece],
        data: &[u8],
    ) -> Result<(), crate::GrantError> {
        self.inner.copy_to_guest(domain, pieces, data)
    }
}

#[test]
fn a_front_end_refilling_its_ring_while_served_cannot_keep_dom0_busy() {
    let mut store = FakeXenstore::default();
    let mut grants = FakeGrants::default();
    let mut front = FakeBlkfront::new(&mut store, &mut grants, FRONTEND, 0, 1, 0);
    // A descriptor page whose only segment has first_sect > last_sect:
    // refused at once, after the page is copied.
    let descriptors = front.allocate_grant();
    grants.grant_page(descriptors);
    grants.page_mut(descriptors).expect("granted")[..8].copy_from_slice(&encode_segment(
        GrantRef(1),
        5,
        2,
    ));
    let request = RequestBuilder::indirect(operation::READ, 7, 0, 1, &[descriptors]);
    let racing = RacingGrants {
        inner: grants,
        ring: None,
        request,
        injected: 0,
    };
    let mut backend = Blkback::new(
        config(disk()),
        racing,
        FakeEvents::default(),
        FakeBlockDevice::new(SECTORS),
    )
    .expect("valid config");
    backend.process(Input::Start, Time(0), &mut store);
    front.set_state(&mut store, XenbusState::Initialised);
    backend.process(Input::FrontendChanged, Time(0), &mut store);
    assert_eq!(backend.state(), XenbusState::Connected);
    let port = backend.ports()[0];

    assert!(front.push(0, &request));
    front.publish(0);
    backend.process(Input::Notified(port), Time(1), &mut store);
    // One ring's worth per call: all a front end that waits for our
    // responses (published once per call) could have put there.
    let first = backend.statistics().responses;
    assert_eq!(first, 32, "{:?}", backend.statistics());
    assert!(backend.grants().injected < RACING_CAP);
    // The rest waits for the next event, and is served then.
    backend.process(Input::Notified(port), Time(2), &mut store);
    assert_eq!(backend.statistics().responses, 64);
    assert_eq!(backend.statistics().errors, 64);
    assert_eq!(backend.statistics().budget_exhausted, 2);
    assert_eq!(backend.state(), XenbusState::Connected);
}

#[test]
fn completions_taken_together_are_answered_with_one_publish() {
    let mut harness = connected();
    let page = harness.page(0);
    let batch: Vec<RequestBuilder> = (0..8).map(|id| read(id, id, &[(page, 0, 0)])).collect();
    harness.send(&batch);
    assert_eq!(harness.backend.device().in_flight(), 8);
    // The front end re-arms rsp_event for every response, as one waiting
    // for each would.
    assert!(!harness.front.queues[0].ring.final_check_for_responses());
    let mut completions = Vec::new();
    while let Some(completion) = harness.backend.device_mut().complete_next() {
        completions.push(completion);
    }
    harness.input(Input::CompletedMany(completions));
    assert_eq!(harness.notifications(), 1);
    let mut ids: Vec<u64> = harness.responses().iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..8).collect::<Vec<u64>>());
    assert_eq!(harness.backend.in_flight(), 0);
}

#[test]
fn completions_take_requests_published_meanwhile() {
    let mut harness = connected();
    let page = harness.page(0);
    harness.send(&[read(1, 0, &[(page, 0, 0)])]);
    // Published while the first is on the device; its event not yet seen.
    assert!(harness.front.push(0, &read(2, 1, &[(page, 0, 0)])));
    assert!(harness.front.publish(0));
    assert!(harness.complete_next());
    assert_eq!(harness.backend.device().in_flight(), 1);
    // Its event then finds nothing more and costs no second request.
    let port = harness.backend.ports()[0];
    harness.input(Input::Notified(port));
    assert_eq!(harness.backend.device().in_flight(), 1);
    harness.complete_all();
    let mut ids: Vec<u64> = harness.responses().iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
}
