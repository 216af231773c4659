//! A hostile blkfront (`hostile-vbd`): first offers bad handshakes (a ring
//! grant that does not exist, keys that are not numbers, no event
//! channel, the 32-bit protocol, a huge ring order), each of which the
//! back end must refuse by going to Closing and recover from when the
//! front end starts over. Then it connects to its vbd as Linux's
//! blkfront does (ring page granted, event channel, `x86_64-abi`,
//! Initialised then Connected), proves a write and read back work, then
//! sends malformed requests — bad grant references, segments outside
//! their page, sectors beyond the disk, too many or no segments, unknown
//! and unadvertised operations, broken indirect requests — each of which
//! must be answered `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP` with the
//! request's id; a valid request afterwards must still work. Last, it
//! publishes an impossible producer index, and the back end must close
//! the device and answer nothing more. Layout: `io/blkif.h`, x86_64.

use core::sync::atomic::{Ordering, fence};

use xen_guest::{FrameSlot, GrantRef, Port, event_channel};
use xenolith_abi::xenbus::XenbusState;

use super::frontend::{self, Device, Store, init_ring, ring, text, write_key};
use super::{Context, MILLISECOND, POLL_SLICE, WAIT_ROUNDS_MAX};
use crate::report::{self, Detail, Outcome, detail, ensure, fail, ok};

/// Bytes of a request slot (and of a ring entry).
const REQUEST_SIZE: usize = 112;
/// Entries in the one-page ring.
const RING_SIZE: u32 = ring::capacity(REQUEST_SIZE);
const OP_READ: u8 = 0;
const OP_WRITE: u8 = 1;
const OP_WRITE_BARRIER: u8 = 2;
const OP_DISCARD: u8 = 5;
const OP_INDIRECT: u8 = 6;
const RSP_OKAY: i16 = 0;
const RSP_ERROR: i16 = -1;
const RSP_EOPNOTSUPP: i16 = -2;

/// Our grant references (after the 8 reserved ones and the checks' own).
const RING_GREF: GrantRef = GrantRef(16);
const DATA_GREF: GrantRef = GrantRef(17);
const INDIRECT_GREF: GrantRef = GrantRef(18);
/// In our table's range, never granted.
const UNGRANTED_GREF: GrantRef = GrantRef(300);
/// Far beyond any table.
const HUGE_GREF: GrantRef = GrantRef(1_000_000);
/// Where the valid requests write and read: sector 8 of our own disk.
const TEST_SECTOR: u64 = 8;

/// How long one request may take to be answered.
const RESPONSE_TIMEOUT: u64 = 10_000 * MILLISECOND;
/// How long a ring the back end gave up on must stay silent.
const SILENCE: u64 = 2_000 * MILLISECOND;

/// The connected front end the later checks use.
pub struct BlockFront {
    device: Device,
    ring: FrameSlot,
    data: FrameSlot,
    indirect: FrameSlot,
    port: Port,
    produced: u32,
    consumed: u32,
    sectors: u64,
    max_indirect: u32,
    discard: bool,
    next_id: u64,
}

/// A malformed direct request: what it is, operation, `nr_segments`,
/// sector, the segments written.
type DirectCase<'a> = (&'a str, u8, u8, u64, &'a [[u8; 8]]);
/// A malformed indirect request: what it is, inner operation,
/// `nr_segments`, descriptor pages, the operation and status expected back.
type IndirectCase<'a> = (&'a str, u8, u16, &'a [GrantRef], u8, i16);

/// One response: (id, operation, status).
type Response = (u64, u8, i16);

fn segment(gref: GrantRef, first: u8, last: u8) -> [u8; 8] {
    let mut bytes = [0; 8];
    bytes[0..4].copy_from_slice(&gref.0.to_le_bytes());
    bytes[4] = first;
    bytes[5] = last;
    bytes
}

/// A direct request claiming `count` segments, `segments` filled in.
fn direct(operation: u8, id: u64, sector: u64, count: u8, segments: &[[u8; 8]]) -> [u8; 112] {
    let mut bytes = [0; REQUEST_SIZE];
    bytes[0] = operation;
    bytes[1] = count;
    bytes[8..16].copy_from_slice(&id.to_le_bytes());
    bytes[16..24].copy_from_slice(&sector.to_le_bytes());
    for (index, raw) in segments.iter().take(11).enumerate() {
        bytes[24 + index * 8..32 + index * 8].copy_from_slice(raw);
    }
    bytes
}

fn indirect(inner: u8, id: u64, sector: u64, count: u16, pages: &[GrantRef]) -> [u8; 112] {
    let mut bytes = [0; REQUEST_SIZE];
    bytes[0] = OP_INDIRECT;
    bytes[1] = inner;
    bytes[2..4].copy_from_slice(&count.to_le_bytes());
    bytes[8..16].copy_from_slice(&id.to_le_bytes());
    bytes[16..24].copy_from_slice(&sector.to_le_bytes());
    for (index, gref) in pages.iter().take(8).enumerate() {
        bytes[28 + index * 4..32 + index * 4].copy_from_slice(&gref.0.to_le_bytes());
    }
    bytes
}

fn discard(id: u64, sector: u64, sectors: u64) -> [u8; 112] {
    let mut bytes = [0; REQUEST_SIZE];
    bytes[0] = OP_DISCARD;
    bytes[8..16].copy_from_slice(&id.to_le_bytes());
    bytes[16..24].copy_from_slice(&sector.to_le_bytes());
    bytes[24..32].copy_from_slice(&sectors.to_le_bytes());
    bytes
}

fn number(value: Option<frontend::Text>, what: &str) -> Result<Option<u64>, Detail> {
    match value {
        None => Ok(None),
        Some(value) => value
            .parse::<u64>()
            .map(Some)
            .map_err(|_| detail(format_args!("{what} is {value:?}, not a number"))),
    }
}

impl BlockFront {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Puts one request on the ring, notifies, and waits for its response.
    fn submit(&mut self, context: &Context, request: &[u8; 112]) -> Result<Response, Detail> {
        let place = ring::ENTRIES + (self.produced % RING_SIZE) as usize * REQUEST_SIZE;
        ensure!(
            self.ring.write(place, request),
            "ring slot {place} is off the page"
        );
        fence(Ordering::SeqCst);
        self.produced = self.produced.wrapping_add(1);
        self.ring.store(ring::REQUEST_PRODUCER, self.produced);
        fence(Ordering::SeqCst);
        ok("EVTCHNOP_send(vbd)", event_channel::send(self.port))?;
        let shared = context.shared()?;
        let start = context.clock()?;
        for _ in 0..WAIT_ROUNDS_MAX {
            shared.clear_pending(self.port);
            let produced = self.ring.load::<u32>(ring::RESPONSE_PRODUCER).unwrap_or(0);
            if produced != self.consumed {
                fence(Ordering::SeqCst);
                let place = ring::ENTRIES + (self.consumed % RING_SIZE) as usize * REQUEST_SIZE;
                let id = self.ring.load::<u64>(place).unwrap_or(0);
                let operation = self.ring.load::<u8>(place + 8).unwrap_or(0);
                let status = self.ring.load::<u16>(place + 10).unwrap_or(0) as i16;
                self.consumed = self.consumed.wrapping_add(1);
                self.ring
                    .store(ring::RESPONSE_EVENT, self.consumed.wrapping_add(1));
                return Ok((id, operation, status));
            }
            if context.clock()?.since(start) >= RESPONSE_TIMEOUT {
                break;
            }
            context.pause(Some(self.port), POLL_SLICE);
        }
        fail!(
            "no response within 10 s to request {:?} (req_prod {}, rsp_prod {:?})",
            &request[..24],
            self.produced,
            self.ring.load::<u32>(ring::RESPONSE_PRODUCER)
        )
    }

    /// Sends `request` (whose id is `id`) and checks it is answered
    /// `expected` with the request's id and operation `operation`.
    fn expect(
        &mut self,
        context: &Context,
        what: &str,
        request: [u8; 112],
        operation: u8,
        expected: i16,
    ) -> Outcome {
        let id = u64::from_le_bytes([
            request[8],
            request[9],
            request[10],
            request[11],
            request[12],
            request[13],
            request[14],
            request[15],
        ]);
        let (got_id, got_operation, status) = self.submit(context, &request)?;
        ensure!(
            got_id == id && got_operation == operation,
            "{what}: answered id {got_id} operation {got_operation}, expected id {id} \
             operation {operation}"
        );
        ensure!(
            status == expected,
            "{what}: status {status}, expected {expected}"
        );
        Ok(())
    }

    /// Writes a pattern to [`TEST_SECTOR`] and reads it back.
    fn round_trip(&mut self, context: &Context, seed: u8) -> Outcome {
        for offset in 0..4096usize {
            self.data
                .store(offset, (offset as u8).wrapping_mul(13).wrapping_add(seed));
        }
        let id = self.id();
        let write = direct(OP_WRITE, id, TEST_SECTOR, 1, &[segment(DATA_GREF, 0, 7)]);
        self.expect(context, "valid write", write, OP_WRITE, RSP_OKAY)?;
        self.data.fill(0);
        let id = self.id();
        let read = direct(OP_READ, id, TEST_SECTOR, 1, &[segment(DATA_GREF, 0, 7)]);
        self.expect(context, "valid read", read, OP_READ, RSP_OKAY)?;
        for offset in 0..4096usize {
            let expected = (offset as u8).wrapping_mul(13).wrapping_add(seed);
            let found = self.data.load::<u8>(offset).unwrap_or(0);
            ensure!(
                found == expected,
                "read back byte {offset} as {found:#x}, wrote {expected:#x}"
            );
        }
        Ok(())
    }
}

/// Runs `run` with the connected front end taken out of the context (and
/// put back after).
fn with_front(
    context: &mut Context,
    run: impl FnOnce(&mut BlockFront, &Context) -> Outcome,
) -> Outcome {
    frontend::with_connected(
        context,
        |context| &mut context.block,
        "vbd",
        "hostile-vbd-connect",
        run,
    )
}

/// Bad handshakes, each refused (back end to Closing) and recovered from
/// (the front end starts over and the back end offers itself again).
pub fn handshake(context: &mut Context) -> Outcome {
    let mut store = Store::open(context)?;
    let device = frontend::find_device(context, &mut store, "vbd")?;
    let port = frontend::backend_port(&device, "vbd")?;
    let port_text = text(format_args!("{}", port.0));
    let cases: [(&str, &[(&str, &str)]); 5] = [
        (
            "ring-ref 1000000",
            &[("ring-ref", "1000000"), ("event-channel", &port_text)],
        ),
        (
            "ring-ref not a number",
            &[("ring-ref", "sixteen"), ("event-channel", &port_text)],
        ),
        ("no event-channel", &[("ring-ref", "16")]),
        (
            "the 32-bit protocol",
            &[
                ("ring-ref", "16"),
                ("event-channel", &port_text),
                ("protocol", "x86_32-abi"),
            ],
        ),
        (
            "ring-page-order 30",
            &[
                ("ring-page-order", "30"),
                ("ring-ref0", "16"),
                ("event-channel", &port_text),
            ],
        ),
    ];
    for (what, keys) in cases {
        frontend::refused_handshake(
            context,
            &mut store,
            &device,
            what,
            keys,
            XenbusState::Initialised,
        )?;
    }
    let _ = event_channel::close(port);
    Ok(())
}

/// Does blkfront's side of the handshake.
pub fn connect(context: &mut Context) -> Outcome {
    let mut store = Store::open(context)?;
    let device = frontend::find_device(context, &mut store, "vbd")?;
    let pages = context.pages()?;
    let [ring_page, data, indirect_page, ..] = pages.device;
    init_ring(&ring_page);
    data.fill(0);
    indirect_page.fill(0);
    frontend::grant_pages(
        context,
        &device,
        &[
            (RING_GREF, ring_page, false),
            (DATA_GREF, data, false),
            (INDIRECT_GREF, indirect_page, false),
        ],
    )?;
    let port = frontend::backend_port(&device, "vbd")?;
    write_key(
        context,
        &mut store,
        &device,
        "ring-ref",
        format_args!("{}", RING_GREF.0),
    )?;
    write_key(
        context,
        &mut store,
        &device,
        "event-channel",
        format_args!("{}", port.0),
    )?;
    write_key(
        context,
        &mut store,
        &device,
        "protocol",
        format_args!("x86_64-abi"),
    )?;
    write_key(context, &mut store, &device, "state", format_args!("3"))?;
    frontend::wait_connected(context, &mut store, &device)?;
    write_key(context, &mut store, &device, "state", format_args!("4"))?;
    // The back end writes the disk's keys when it connects.
    let backend = &device.backend;
    let sectors = number(
        store.read(context, &text(format_args!("{backend}/sectors")))?,
        "sectors",
    )?
    .ok_or_else(|| detail(format_args!("{backend}/sectors is missing")))?;
    let max_indirect = number(
        store.read(
            context,
            &text(format_args!("{backend}/feature-max-indirect-segments")),
        )?,
        "feature-max-indirect-segments",
    )?
    .unwrap_or(0);
    let discard = number(
        store.read(context, &text(format_args!("{backend}/feature-discard")))?,
        "feature-discard",
    )?
    .unwrap_or(0)
        != 0;

    report::line(format_args!(
        "vbd {}: {sectors} sectors, {max_indirect} indirect segments, discard {discard}",
        device.frontend
    ));
    context.block = Some(BlockFront {
        device,
        ring: ring_page,
        data,
        indirect: indirect_page,
        port,
        produced: 0,
        consumed: 0,
        sectors,
        max_indirect: max_indirect.min(u64::from(u32::MAX)) as u32,
        discard,
        next_id: 0x1000,
    });
    Ok(())
}

pub fn valid_before(context: &mut Context) -> Outcome {
    with_front(context, |front, context| front.round_trip(context, 0x31))
}

/// Every malformed request, one at a time, each with its expected status.
pub fn malformed(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let sectors = front.sectors;
        let good = segment(DATA_GREF, 0, 7);
        let cases: [DirectCase<'_>; 9] = [
            (
                "read into an ungranted page",
                OP_READ,
                1,
                0,
                &[segment(UNGRANTED_GREF, 0, 7)],
            ),
            (
                "write from gref 1000000",
                OP_WRITE,
                1,
                0,
                &[segment(HUGE_GREF, 0, 7)],
            ),
            (
                "first_sect 5 > last_sect 2",
                OP_READ,
                1,
                0,
                &[segment(DATA_GREF, 5, 2)],
            ),
            ("last_sect 8", OP_READ, 1, 0, &[segment(DATA_GREF, 0, 8)]),
            (
                "sectors past the end",
                OP_READ,
                1,
                sectors.saturating_sub(4),
                &[good],
            ),
            ("sector overflowing u64", OP_WRITE, 1, u64::MAX - 3, &[good]),
            ("12 segments", OP_READ, 12, 0, &[good; 11]),
            ("255 segments", OP_WRITE, 255, 0, &[good; 11]),
            ("read without segments", OP_READ, 0, 0, &[]),
        ];
        for (what, operation, count, sector, segments) in cases {
            let id = front.id();
            let request = direct(operation, id, sector, count, segments);
            front.expect(context, what, request, operation, RSP_ERROR)?;
        }
        for (what, operation) in [
            ("unknown operation 200", 200),
            ("barrier", OP_WRITE_BARRIER),
        ] {
            let id = front.id();
            let request = direct(operation, id, 0, 1, &[good]);
            front.expect(context, what, request, operation, RSP_EOPNOTSUPP)?;
        }
        let id = front.id();
        let (what, expected) = if front.discard {
            ("discard past the end", RSP_ERROR)
        } else {
            ("discard not advertised", RSP_EOPNOTSUPP)
        };
        front.expect(
            context,
            what,
            discard(id, sectors, 1 << 40),
            OP_DISCARD,
            expected,
        )?;
        Ok(())
    })
}

/// Broken indirect requests (or, without the feature, refused ones).
pub fn malformed_indirect(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let maximum = front.max_indirect;
        if maximum == 0 {
            let id = front.id();
            let request = indirect(OP_READ, id, 0, 1, &[INDIRECT_GREF]);
            return front.expect(
                context,
                "indirect not advertised",
                request,
                OP_READ,
                RSP_EOPNOTSUPP,
            );
        }
        // The descriptor page: segment 0 good, segment 1 first > last,
        // segment 2 a bad grant.
        front.indirect.fill(0);
        front.indirect.write(0, &segment(DATA_GREF, 0, 7));
        front.indirect.write(8, &segment(DATA_GREF, 6, 1));
        front.indirect.write(16, &segment(HUGE_GREF, 0, 7));
        let count_max = u16::try_from(maximum).unwrap_or(u16::MAX);
        let cases: [IndirectCase<'_>; 6] = [
            ("indirect op 5 inside", 5, 1, &[INDIRECT_GREF], 5, RSP_ERROR),
            (
                "indirect page gref 1000000",
                OP_READ,
                1,
                &[HUGE_GREF],
                OP_READ,
                RSP_ERROR,
            ),
            (
                "indirect page ungranted",
                OP_WRITE,
                1,
                &[UNGRANTED_GREF],
                OP_WRITE,
                RSP_ERROR,
            ),
            (
                "indirect without segments",
                OP_READ,
                0,
                &[INDIRECT_GREF],
                OP_READ,
                RSP_ERROR,
            ),
            (
                "indirect above the advertised maximum",
                OP_READ,
                count_max.saturating_add(1),
                &[INDIRECT_GREF; 8],
                OP_READ,
                RSP_ERROR,
            ),
            (
                "indirect segment first > last",
                OP_READ,
                2,
                &[INDIRECT_GREF],
                OP_READ,
                RSP_ERROR,
            ),
        ];
        for (what, inner, count, pages, answered, expected) in cases {
            let id = front.id();
            let request = indirect(inner, id, 0, count, pages);
            front.expect(context, what, request, answered, expected)?;
        }
        // A bad grant in a descriptor: segments 0 and 2 (1 rewritten good).
        front.indirect.write(8, &segment(DATA_GREF, 0, 7));
        let id = front.id();
        let request = indirect(OP_WRITE, id, 0, 3, &[INDIRECT_GREF]);
        front.expect(
            context,
            "indirect data gref 1000000",
            request,
            OP_WRITE,
            RSP_ERROR,
        )?;
        // And a good one still works.
        let id = front.id();
        let request = indirect(OP_READ, id, TEST_SECTOR, 1, &[INDIRECT_GREF]);
        front.expect(context, "valid indirect read", request, OP_READ, RSP_OKAY)
    })
}

pub fn valid_after(context: &mut Context) -> Outcome {
    with_front(context, |front, context| front.round_trip(context, 0x77))
}

/// An impossible producer index: the back end must give the ring up.
pub fn ring_cut_off(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let impossible = front.consumed.wrapping_add(RING_SIZE * 40 + 3);
        front.ring.store(ring::REQUEST_PRODUCER, impossible);
        fence(Ordering::SeqCst);
        ok("EVTCHNOP_send(vbd)", event_channel::send(front.port))?;
        let mut store = Store::open(context)?;
        let (state, closed) = frontend::wait_given_up(context, &mut store, &front.device)?;
        ensure!(
            closed,
            "after an impossible producer index the back end is still {state:?} after 30 s"
        );
        report::line(format_args!("vbd back end cut us off: {state:?}"));
        // Sane indices again and a good request: it must not be served.
        front.produced = front.consumed;
        let responses = front.ring.load::<u32>(ring::RESPONSE_PRODUCER);
        let id = front.id();
        let read = direct(OP_READ, id, TEST_SECTOR, 1, &[segment(DATA_GREF, 0, 7)]);
        let place = ring::ENTRIES + (front.produced % RING_SIZE) as usize * REQUEST_SIZE;
        front.ring.write(place, &read);
        fence(Ordering::SeqCst);
        front
            .ring
            .store(ring::REQUEST_PRODUCER, front.produced.wrapping_add(1));
        let _ = event_channel::send(front.port);
        context.pause(Some(front.port), SILENCE);
        let after = front.ring.load::<u32>(ring::RESPONSE_PRODUCER);
        ensure!(
            after == responses,
            "the back end answered on a ring it gave up on (rsp_prod {responses:?} -> {after:?})"
        );
        Ok(())
    })
}
