//! A hostile netfront (`hostile-vif`): first offers bad handshakes (no
//! `request-rx-copy`, a TX ring grant that does not exist, a bad event
//! channel, 99 queues), each refused (back end to Closing) and recovered
//! from. Then it connects to its vif as Linux's
//! netfront does (TX and RX rings granted, one event channel,
//! `request-rx-copy`, Connected), sends one good frame, then malformed TX
//! packets — bad grant references, a slot crossing its page, a runt,
//! fragment sizes that do not add up, too many data or extra-info slots,
//! malformed extra info — each of whose slots must be answered
//! `XEN_NETIF_RSP_ERROR` (`NULL` for extra-info slots); a good frame
//! afterwards must still go. An RX page that is not ours gets its packet
//! answered ERROR, and a good page afterwards receives the gateway's
//! reply to an ARP request. Then it floods the ring with bad packets: the
//! back end must answer them and cut the vif off (state Closing or Closed)
//! and stop answering; started over, it is served again. Layout:
//! `io/netif.h`.

use core::sync::atomic::{Ordering, fence};

use arrayvec::ArrayVec;
use xen_guest::{FrameSlot, GrantRef, Port, event_channel};
use xenolith_abi::xenbus::XenbusState;

use super::frontend::{self, Device, Store, init_ring, ring, text, write_key};
use super::{Context, MILLISECOND, POLL_SLICE, WAIT_ROUNDS_MAX};
use crate::report::{self, Detail, Outcome, detail, ensure, fail, ok};

/// Bytes of a TX ring entry (the request; a response is 4).
const TX_SLOT: usize = 12;
const TX_RING_SIZE: u32 = ring::capacity(TX_SLOT);
const NETTXF_MORE_DATA: u16 = 1 << 2;
const NETTXF_EXTRA_INFO: u16 = 1 << 3;
const EXTRA_TYPE_GSO: u8 = 1;
const EXTRA_FLAG_MORE: u8 = 1;
const RSP_ERROR: i16 = -1;
const RSP_OKAY: i16 = 0;
const RSP_NULL: i16 = 1;

const TX_RING_GREF: GrantRef = GrantRef(20);
const RX_RING_GREF: GrantRef = GrantRef(21);
const FRAME_GREF: GrantRef = GrantRef(22);
const RECEIVE_GREF: GrantRef = GrantRef(23);
/// Bytes of an RX ring entry (request and response alike).
const RX_SLOT: usize = 8;
const RX_RING_SIZE: u32 = ring::capacity(RX_SLOT);
/// Where the ARP request sits in the frame page, and its length.
const ARP_OFFSET: usize = 2048;
const ARP_LENGTH: u16 = 42;
const UNGRANTED_GREF: GrantRef = GrantRef(300);
const HUGE_GREF: GrantRef = GrantRef(1_000_000);
/// The good frame's length (Ethernet minimum without FCS).
const FRAME_LENGTH: u16 = 60;
/// Bad packets in the flood: far more than netback's 64 a second, fewer
/// than the ring holds.
const FLOOD_PACKETS: u32 = 200;
/// Slots one packet may take here (the too-many-slots case uses 20).
const PACKET_SLOTS_MAX: usize = 24;

const RESPONSE_TIMEOUT: u64 = 10_000 * MILLISECOND;
/// How long a cut-off vif must stay silent.
const SILENCE: u64 = 2_000 * MILLISECOND;

/// One packet's slots.
type Slots = ArrayVec<[u8; TX_SLOT], PACKET_SLOTS_MAX>;
/// A malformed packet: what it is, its slots, which are extra info.
type PacketCase<'a> = (&'a str, Slots, &'a [bool]);

/// The connected front end the later checks use.
pub struct NetFront {
    device: Device,
    tx: FrameSlot,
    rx: FrameSlot,
    /// The page good RX requests offer.
    received: FrameSlot,
    rx_posted: u32,
    rx_consumed: u32,
    port: Port,
    produced: u32,
    consumed: u32,
    next_id: u16,
}

/// One TX slot.
fn request(gref: GrantRef, offset: u16, flags: u16, id: u16, size: u16) -> [u8; TX_SLOT] {
    let mut bytes = [0; TX_SLOT];
    bytes[0..4].copy_from_slice(&gref.0.to_le_bytes());
    bytes[4..6].copy_from_slice(&offset.to_le_bytes());
    bytes[6..8].copy_from_slice(&flags.to_le_bytes());
    bytes[8..10].copy_from_slice(&id.to_le_bytes());
    bytes[10..12].copy_from_slice(&size.to_le_bytes());
    bytes
}

/// One extra-info slot: type, flags, six bytes of union.
fn extra(kind: u8, flags: u8, union: [u8; 6]) -> [u8; TX_SLOT] {
    let mut bytes = [0; TX_SLOT];
    bytes[0] = kind;
    bytes[1] = flags;
    bytes[2..8].copy_from_slice(&union);
    bytes
}

/// Parses `00:16:3e:..` into six bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl NetFront {
    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Publishes `slots` without waiting.
    fn publish(&mut self, slots: &[[u8; TX_SLOT]]) -> Outcome {
        let free = TX_RING_SIZE - self.produced.wrapping_sub(self.consumed);
        ensure!(
            slots.len() as u32 <= free,
            "{} slots do not fit the {free} free",
            slots.len()
        );
        for slot in slots {
            let place = ring::ENTRIES + (self.produced % TX_RING_SIZE) as usize * TX_SLOT;
            ensure!(
                self.tx.write(place, slot),
                "TX slot {place} is off the page"
            );
            self.produced = self.produced.wrapping_add(1);
        }
        fence(Ordering::SeqCst);
        self.tx.store(ring::REQUEST_PRODUCER, self.produced);
        fence(Ordering::SeqCst);
        ok("EVTCHNOP_send(vif)", event_channel::send(self.port))
    }

    /// Takes every response there is: (id, status) each.
    fn take_responses<const N: usize>(&mut self, into: &mut ArrayVec<(u16, i16), N>) -> u32 {
        let produced = self.tx.load::<u32>(ring::RESPONSE_PRODUCER).unwrap_or(0);
        // Never more than was asked: a back end cannot make us read junk.
        let waiting = produced
            .wrapping_sub(self.consumed)
            .min(self.produced.wrapping_sub(self.consumed));
        fence(Ordering::SeqCst);
        for _ in 0..waiting {
            let place = ring::ENTRIES + (self.consumed % TX_RING_SIZE) as usize * TX_SLOT;
            let id = self.tx.load::<u16>(place).unwrap_or(0);
            let status = self.tx.load::<u16>(place + 2).unwrap_or(0) as i16;
            let _ = into.try_push((id, status));
            self.consumed = self.consumed.wrapping_add(1);
        }
        self.tx
            .store(ring::RESPONSE_EVENT, self.consumed.wrapping_add(1));
        waiting
    }

    /// Sends one packet's slots and waits for a response to each.
    fn send(
        &mut self,
        context: &Context,
        slots: &[[u8; TX_SLOT]],
    ) -> Result<ArrayVec<(u16, i16), PACKET_SLOTS_MAX>, Detail> {
        self.publish(slots)?;
        let mut responses = ArrayVec::new();
        let shared = context.shared()?;
        let start = context.clock()?;
        for _ in 0..WAIT_ROUNDS_MAX {
            shared.clear_pending(self.port);
            self.take_responses(&mut responses);
            if responses.len() >= slots.len() {
                return Ok(responses);
            }
            if context.clock()?.since(start) >= RESPONSE_TIMEOUT {
                break;
            }
            context.pause(Some(self.port), POLL_SLICE);
        }
        fail!(
            "{} of {} responses within 10 s",
            responses.len(),
            slots.len()
        )
    }

    /// Sends one packet and checks each slot's status: data slots
    /// `status`, extra-info slots NULL, every id the slot's own (the first
    /// slot's for extra info).
    fn expect(
        &mut self,
        context: &Context,
        what: &str,
        slots: &[[u8; TX_SLOT]],
        extras: &[bool],
        status: i16,
    ) -> Outcome {
        let responses = self.send(context, slots)?;
        let first_id = u16::from_le_bytes([slots[0][8], slots[0][9]]);
        for (index, ((id, got), slot)) in responses.iter().zip(slots).enumerate() {
            let is_extra = extras.get(index).copied().unwrap_or(false);
            let (want_id, want) = if is_extra {
                (first_id, RSP_NULL)
            } else {
                (u16::from_le_bytes([slot[8], slot[9]]), status)
            };
            ensure!(
                *id == want_id && *got == want,
                "{what}: slot {index} answered id {id} status {got}, expected id {want_id} \
                 status {want}"
            );
        }
        Ok(())
    }

    /// Offers one RX page (`gref`) to the back end.
    fn post_rx(&mut self, gref: GrantRef, id: u16) -> Outcome {
        let place = ring::ENTRIES + (self.rx_posted % RX_RING_SIZE) as usize * RX_SLOT;
        let mut slot = [0u8; RX_SLOT];
        slot[0..2].copy_from_slice(&id.to_le_bytes());
        slot[4..8].copy_from_slice(&gref.0.to_le_bytes());
        ensure!(
            self.rx.write(place, &slot),
            "RX slot {place} is off the page"
        );
        self.rx_posted = self.rx_posted.wrapping_add(1);
        fence(Ordering::SeqCst);
        self.rx.store(ring::REQUEST_PRODUCER, self.rx_posted);
        fence(Ordering::SeqCst);
        ok("EVTCHNOP_send(vif)", event_channel::send(self.port))
    }

    /// Waits for the next RX response: (id, flags, status).
    fn next_rx(
        &mut self,
        context: &Context,
        timeout: u64,
    ) -> Result<Option<(u16, u16, i16)>, Detail> {
        let shared = context.shared()?;
        let start = context.clock()?;
        for _ in 0..WAIT_ROUNDS_MAX {
            shared.clear_pending(self.port);
            let produced = self.rx.load::<u32>(ring::RESPONSE_PRODUCER).unwrap_or(0);
            if produced != self.rx_consumed && self.rx_posted.wrapping_sub(self.rx_consumed) != 0 {
                fence(Ordering::SeqCst);
                let place = ring::ENTRIES + (self.rx_consumed % RX_RING_SIZE) as usize * RX_SLOT;
                let id = self.rx.load::<u16>(place).unwrap_or(0);
                let flags = self.rx.load::<u16>(place + 4).unwrap_or(0);
                let status = self.rx.load::<u16>(place + 6).unwrap_or(0) as i16;
                self.rx_consumed = self.rx_consumed.wrapping_add(1);
                self.rx
                    .store(ring::RESPONSE_EVENT, self.rx_consumed.wrapping_add(1));
                return Ok(Some((id, flags, status)));
            }
            if context.clock()?.since(start) >= timeout {
                break;
            }
            context.pause(Some(self.port), POLL_SLICE);
        }
        Ok(None)
    }

    /// A good single-slot frame.
    fn good_frame(&mut self) -> [u8; TX_SLOT] {
        let id = self.id();
        request(FRAME_GREF, 0, 0, id, FRAME_LENGTH)
    }
}

/// Runs `run` with the connected front end taken out of the context.
fn with_front(
    context: &mut Context,
    run: impl FnOnce(&mut NetFront, &Context) -> Outcome,
) -> Outcome {
    frontend::with_connected(
        context,
        |context| &mut context.net,
        "vif",
        "hostile-vif-connect",
        run,
    )
}

/// Bad handshakes, each refused (back end to Closing) and recovered from.
pub fn handshake(context: &mut Context) -> Outcome {
    let mut store = Store::open(context)?;
    let device = frontend::find_device(context, &mut store, "vif")?;
    let port = frontend::backend_port(&device, "vif")?;
    let port_text = text(format_args!("{}", port.0));
    let port_text = port_text.as_str();
    let cases: [(&str, &[(&str, &str)]); 4] = [
        (
            "no request-rx-copy",
            &[
                ("tx-ring-ref", "20"),
                ("rx-ring-ref", "21"),
                ("event-channel", port_text),
            ],
        ),
        (
            "tx-ring-ref 1000000",
            &[
                ("tx-ring-ref", "1000000"),
                ("rx-ring-ref", "21"),
                ("event-channel", port_text),
                ("request-rx-copy", "1"),
            ],
        ),
        (
            "event-channel not a number",
            &[
                ("tx-ring-ref", "20"),
                ("rx-ring-ref", "21"),
                ("event-channel", "-1"),
                ("request-rx-copy", "1"),
            ],
        ),
        (
            "99 queues",
            &[
                ("multi-queue-num-queues", "99"),
                ("event-channel", port_text),
                ("request-rx-copy", "1"),
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
            XenbusState::Connected,
        )?;
    }
    let _ = event_channel::close(port);
    Ok(())
}

/// Does netfront's side of the handshake.
pub fn connect(context: &mut Context) -> Outcome {
    let mut store = Store::open(context)?;
    let device = frontend::find_device(context, &mut store, "vif")?;
    let mac_text = store.require(context, &text(format_args!("{}/mac", device.frontend)))?;
    let mac = parse_mac(&mac_text)
        .ok_or_else(|| detail(format_args!("{}/mac is {mac_text:?}", device.frontend)))?;
    let pages = context.pages()?;
    let [.., tx, rx, frame, received] = pages.device;
    init_ring(&tx);
    init_ring(&rx);
    // The good frame: broadcast from our MAC, a local experimental
    // EtherType (0x88b5), zero payload.
    frame.fill(0);
    frame.write(0, &[0xff; 6]);
    frame.write(6, &mac);
    frame.write(12, &[0x88, 0xb5]);
    frame.write(14, b"xenolith hostile-vif");
    // An ARP request for the gateway (QEMU's user network answers it),
    // from 10.0.2.99, at offset 2048 of the frame page.
    frame.write(ARP_OFFSET, &[0xff; 6]);
    frame.write(ARP_OFFSET + 6, &mac);
    frame.write(ARP_OFFSET + 12, &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.write(ARP_OFFSET + 22, &mac);
    frame.write(
        ARP_OFFSET + 28,
        &[10, 0, 2, 99, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2],
    );
    received.fill(0);
    frontend::grant_pages(
        context,
        &device,
        &[
            (TX_RING_GREF, tx, false),
            (RX_RING_GREF, rx, false),
            (FRAME_GREF, frame, true),
            (RECEIVE_GREF, received, false),
        ],
    )?;
    let port = frontend::backend_port(&device, "vif")?;
    for (key, value) in [
        ("tx-ring-ref", TX_RING_GREF.0),
        ("rx-ring-ref", RX_RING_GREF.0),
        ("event-channel", port.0),
        ("request-rx-copy", 1),
        ("feature-rx-notify", 1),
        ("feature-sg", 1),
    ] {
        write_key(context, &mut store, &device, key, format_args!("{value}"))?;
    }
    write_key(context, &mut store, &device, "state", format_args!("4"))?;
    frontend::wait_connected(context, &mut store, &device)?;
    report::line(format_args!(
        "vif {} connected, mac {mac_text}",
        device.frontend
    ));
    context.net = Some(NetFront {
        device,
        tx,
        rx,
        received,
        rx_posted: 0,
        rx_consumed: 0,
        port,
        produced: 0,
        consumed: 0,
        next_id: 0,
    });
    Ok(())
}

pub fn valid_before(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let frame = front.good_frame();
        front.expect(context, "a good frame", &[frame], &[], RSP_OKAY)
    })
}

/// Every malformed packet, one at a time.
pub fn malformed(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let mut id = || front.id();
        let gso = |size: u16, kind: u8| {
            let size = size.to_le_bytes();
            [size[0], size[1], kind, 0, 0, 0]
        };
        let (a, b, c) = (id(), id(), id());
        let (d, e, f) = (id(), id(), id());
        let (g, h, i) = (id(), id(), id());
        let j = id();
        let cases: [PacketCase<'_>; 9] = [
            (
                "gref 1000000",
                [request(HUGE_GREF, 0, 0, a, 60)].into_iter().collect(),
                &[],
            ),
            (
                "ungranted gref",
                [request(UNGRANTED_GREF, 0, 0, b, 60)].into_iter().collect(),
                &[],
            ),
            (
                "a slot crossing its page",
                [request(FRAME_GREF, 4090, 0, c, 60)].into_iter().collect(),
                &[],
            ),
            (
                "an 8-byte runt",
                [request(FRAME_GREF, 0, 0, d, 8)].into_iter().collect(),
                &[],
            ),
            (
                "fragments larger than the packet",
                [
                    request(FRAME_GREF, 0, NETTXF_MORE_DATA, e, 60),
                    request(FRAME_GREF, 0, 0, f, 100),
                ]
                .into_iter()
                .collect(),
                &[],
            ),
            (
                "extra info of type 0",
                [
                    request(FRAME_GREF, 0, NETTXF_EXTRA_INFO, g, 60),
                    extra(0, 0, [0; 6]),
                ]
                .into_iter()
                .collect(),
                &[false, true],
            ),
            (
                "GSO extra info of size 0",
                [
                    request(FRAME_GREF, 0, NETTXF_EXTRA_INFO, h, 60),
                    extra(EXTRA_TYPE_GSO, 0, gso(0, 1)),
                ]
                .into_iter()
                .collect(),
                &[false, true],
            ),
            (
                "GSO extra info of type 9 with unknown flags",
                [
                    request(FRAME_GREF, 0, NETTXF_EXTRA_INFO, i, 60),
                    extra(EXTRA_TYPE_GSO, 0x80, gso(1400, 9)),
                ]
                .into_iter()
                .collect(),
                &[false, true],
            ),
            (
                "five extra-info slots",
                [
                    request(FRAME_GREF, 0, NETTXF_EXTRA_INFO, j, 60),
                    extra(2, EXTRA_FLAG_MORE, [1, 0, 0x5e, 0, 0, 1]),
                    extra(3, EXTRA_FLAG_MORE, [1, 0, 0x5e, 0, 0, 1]),
                    extra(4, EXTRA_FLAG_MORE, [0; 6]),
                    extra(EXTRA_TYPE_GSO, EXTRA_FLAG_MORE, gso(1400, 1)),
                    extra(2, 0, [1, 0, 0x5e, 0, 0, 2]),
                ]
                .into_iter()
                .collect(),
                &[false, true, true, true, true, true],
            ),
        ];
        for (what, slots, extras) in cases {
            front.expect(context, what, &slots, extras, RSP_ERROR)?;
        }
        // 20 data slots: above netback's 18 (and Linux's).
        let mut slots = Slots::new();
        for index in 0..20u16 {
            let flags = if index < 19 { NETTXF_MORE_DATA } else { 0 };
            let size = if index == 0 { 20 * 60 } else { 60 };
            let id = front.id();
            slots.push(request(FRAME_GREF, 0, flags, id, size));
        }
        front.expect(context, "20 data slots", &slots, &[], RSP_ERROR)
    })
}

pub fn valid_after(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let frame = front.good_frame();
        front.expect(
            context,
            "a good frame after bad ones",
            &[frame],
            &[],
            RSP_OKAY,
        )
    })
}

/// RX pages that are not ours: the packet meant for them is dropped
/// (answered ERROR); a good page afterwards gets the gateway's ARP reply.
pub fn rx_bad_page(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        front.post_rx(HUGE_GREF, 1)?;
        let id = front.id();
        let arp = request(FRAME_GREF, ARP_OFFSET as u16, 0, id, ARP_LENGTH);
        front.expect(context, "an ARP request", &[arp], &[], RSP_OKAY)?;
        let Some((rx_id, _, status)) = front.next_rx(context, RESPONSE_TIMEOUT)? else {
            fail!("nothing arrived for the RX page with gref 1000000 within 10 s");
        };
        ensure!(
            rx_id == 1 && status == RSP_ERROR,
            "the RX page with gref 1000000 was answered id {rx_id} status {status}, \
             expected id 1 status -1"
        );
        // Now a page of ours: whatever arrives is delivered, and the
        // gateway's ARP reply (opcode 2 from 10.0.2.2) among it.
        let start = context.clock()?;
        for attempt in 0..20u16 {
            front.received.fill(0);
            front.post_rx(RECEIVE_GREF, 100 + attempt)?;
            if attempt % 4 == 0 {
                let id = front.id();
                let arp = request(FRAME_GREF, ARP_OFFSET as u16, 0, id, ARP_LENGTH);
                front.expect(context, "an ARP request", &[arp], &[], RSP_OKAY)?;
            }
            let Some((rx_id, flags, status)) = front.next_rx(context, RESPONSE_TIMEOUT)? else {
                fail!("nothing arrived for a good RX page within 10 s");
            };
            ensure!(
                rx_id == 100 + attempt && status > 0,
                "a good RX page was answered id {rx_id} status {status} flags {flags:#x}"
            );
            let mut head = [0u8; 42];
            front.received.read(0, &mut head);
            let reply = head[12..14] == [0x08, 0x06]
                && head[20..22] == [0, 2]
                && head[28..32] == [10, 0, 2, 2];
            if reply {
                report::line(format_args!(
                    "the gateway's ARP reply arrived in a good RX page ({status} bytes)"
                ));
                return Ok(());
            }
            if context.clock()?.since(start) >= 3 * RESPONSE_TIMEOUT {
                break;
            }
        }
        fail!("no ARP reply from the gateway in 20 received frames")
    })
}

/// A flood of bad packets: answered, then the vif is cut off.
pub fn flood_cut_off(context: &mut Context) -> Outcome {
    with_front(context, |front, context| {
        let mut slots = ArrayVec::<[u8; TX_SLOT], { FLOOD_PACKETS as usize }>::new();
        for _ in 0..FLOOD_PACKETS {
            let id = front.id();
            slots.push(request(HUGE_GREF, 0, 0, id, 60));
        }
        front.publish(&slots)?;
        let mut store = Store::open(context)?;
        let (state, cut_off) = frontend::wait_given_up(context, &mut store, &front.device)?;
        let mut responses = ArrayVec::<(u16, i16), { FLOOD_PACKETS as usize }>::new();
        front.take_responses(&mut responses);
        let errors = responses
            .iter()
            .filter(|(_, status)| *status == RSP_ERROR)
            .count();
        ensure!(
            cut_off,
            "after {FLOOD_PACKETS} bad packets the back end is still {state:?} after 30 s \
             ({} responses, {errors} errors)",
            responses.len()
        );
        ensure!(
            errors == responses.len(),
            "the flood got {} responses of which only {errors} were errors",
            responses.len()
        );
        report::line(format_args!(
            "vif back end cut us off ({state:?}) after {} error responses to {FLOOD_PACKETS} bad packets",
            responses.len()
        ));
        // And a good frame is no longer served.
        let frame = front.good_frame();
        front.publish(&[frame])?;
        context.pause(Some(front.port), SILENCE);
        let mut late = ArrayVec::<(u16, i16), 4>::new();
        front.take_responses(&mut late);
        ensure!(
            late.is_empty(),
            "the back end still served a good frame after cutting the vif off: {late:?}"
        );
        Ok(())
    })
}

/// After the cut-off the front end starts over as a reloaded driver does
/// (Closed, Initialising, the handshake again): the back end must serve
/// it again, and a good frame goes.
pub fn reconnect(context: &mut Context) -> Outcome {
    let old = frontend::take_connected(&mut context.net, "vif", "hostile-vif-connect")?;
    let mut store = Store::open(context)?;
    frontend::start_over(
        context,
        &mut store,
        &old.device,
        "starting over after the cut-off",
        [],
    )?;
    let _ = event_channel::close(old.port);
    connect(context)?;
    with_front(context, |front, context| {
        let frame = front.good_frame();
        front.expect(
            context,
            "a good frame after reconnecting",
            &[frame],
            &[],
            RSP_OKAY,
        )
    })
}
