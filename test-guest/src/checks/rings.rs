//! The rings Dom0 serves, used and then abused (`rings=indices` or
//! `rings=protocol`): a xenstore read and a console line that must get
//! through; console output indices that cannot be, which Dom0 must discard
//! and then serve the console again; xenstore request indices that cannot
//! be, or a flood of garbage requests (each answered with an error) and
//! then one announcing an oversized payload, after which Dom0 must set the
//! ring's `error` field and stop serving it. `await-input` waits for a
//! byte typed on the console (the toolstack tests end a guest that way).
//! Layouts: XEN-ABI.md §5.1 (xenstore) and §9 (console).

use core::fmt::Write;
use core::sync::atomic::{Ordering, fence};

use arrayvec::{ArrayString, ArrayVec};
use xen_guest::hvm::{self, HvmParamIndex};
use xen_guest::{DomainId, FrameSlot, Port, event_channel};

use super::{Context, MILLISECOND, POLL_SLICE, WAIT_ROUNDS_MAX};
use crate::memory;
use crate::report::{self, Detail, Outcome, detail, ensure, fail, ok};

/// One byte queue of a ring page, with free-running u32 indices.
#[derive(Clone, Copy)]
pub(super) struct Queue {
    data: usize,
    size: u32,
    consumer: usize,
    producer: usize,
}

pub(super) const REQUESTS: Queue = Queue {
    data: 0,
    size: 1024,
    consumer: 2048,
    producer: 2052,
};
pub(super) const RESPONSES: Queue = Queue {
    data: 1024,
    size: 1024,
    consumer: 2056,
    producer: 2060,
};
const CONSOLE_INPUT: Queue = Queue {
    data: 0,
    size: 1024,
    consumer: 3072,
    producer: 3076,
};
const CONSOLE_OUTPUT: Queue = Queue {
    data: 1024,
    size: 2048,
    consumer: 3080,
    producer: 3084,
};

/// The xenstore page's `error` word, and the values Dom0 sets.
const STORE_ERROR: usize = 2072;
const STORE_ERROR_RING_INDEX: u32 = 2;
const STORE_ERROR_PROTOCOL: u32 = 3;

pub(super) const XS_READ: u32 = 2;
pub(super) const XS_WRITE: u32 = 11;
pub(super) const XS_ERROR: u32 = 16;
pub(super) const HEADER_SIZE: usize = 16;
/// Most payload bytes a xenstore message may carry.
const PAYLOAD_MAX: u32 = 4096;

/// How long Dom0 gets to react to one step.
const REACTION_TIMEOUT: u64 = 10_000 * MILLISECOND;
/// How long the garbage flood may take in all.
const FLOOD_TIMEOUT: u64 = 30_000 * MILLISECOND;
/// How long Dom0 gets to show it answers a ring it gave up on.
const SILENCE: u64 = 500 * MILLISECOND;
/// How long `await-input` waits for a typed byte.
const INPUT_TIMEOUT: u64 = 120_000 * MILLISECOND;
/// Garbage requests in the flood.
const FLOOD_REQUESTS: u32 = 300;

impl Queue {
    /// (consumer, producer), each read once.
    fn indices(&self, page: &FrameSlot) -> (u32, u32) {
        (
            page.load::<u32>(self.consumer).unwrap_or(0),
            page.load::<u32>(self.producer).unwrap_or(0),
        )
    }

    /// Bytes between the indices.
    fn waiting(&self, page: &FrameSlot) -> u32 {
        let (consumer, producer) = self.indices(page);
        producer.wrapping_sub(consumer)
    }

    /// Appends as much of `bytes` as fits, as the producer; how many went.
    pub(super) fn produce(&self, page: &FrameSlot, bytes: &[u8]) -> usize {
        let (consumer, producer) = self.indices(page);
        let free = self.size.saturating_sub(producer.wrapping_sub(consumer)) as usize;
        let count = bytes.len().min(free);
        for (index, &byte) in bytes.iter().take(count).enumerate() {
            let position = producer.wrapping_add(index as u32) & (self.size - 1);
            page.store(self.data + position as usize, byte);
        }
        // The bytes before the index that publishes them.
        fence(Ordering::SeqCst);
        page.store(self.producer, producer.wrapping_add(count as u32));
        count
    }

    /// Takes up to `buffer.len()` bytes, as the consumer; how many came.
    pub(super) fn consume(&self, page: &FrameSlot, buffer: &mut [u8]) -> usize {
        let (consumer, producer) = self.indices(page);
        let waiting = producer.wrapping_sub(consumer).min(self.size) as usize;
        let count = waiting.min(buffer.len());
        for (index, byte) in buffer.iter_mut().take(count).enumerate() {
            let position = consumer.wrapping_add(index as u32) & (self.size - 1);
            *byte = page.load(self.data + position as usize).unwrap_or(0);
        }
        fence(Ordering::SeqCst);
        page.store(self.consumer, consumer.wrapping_add(count as u32));
        count
    }
}

/// Our ends of the two rings, from the HVM params Dom0 set.
struct Rings {
    store: FrameSlot,
    store_port: Port,
    console: FrameSlot,
    console_port: Port,
}

fn rings(context: &Context) -> Result<Rings, Detail> {
    let param = |index: HvmParamIndex, what: &str| ok(what, hvm::get_param(DomainId::SELF, index));
    let store = param(HvmParamIndex::STORE_PFN, "get_param(STORE_PFN)")?;
    let store_port = param(HvmParamIndex::STORE_EVTCHN, "get_param(STORE_EVTCHN)")?;
    let console = param(HvmParamIndex::CONSOLE_PFN, "get_param(CONSOLE_PFN)")?;
    let console_port = param(HvmParamIndex::CONSOLE_EVTCHN, "get_param(CONSOLE_EVTCHN)")?;
    Ok(Rings {
        store: ring_page(context, store, "xenstore")?,
        store_port: ring_port(store_port, "xenstore")?,
        console: ring_page(context, console, "console")?,
        console_port: ring_port(console_port, "console")?,
    })
}

/// The ring page at `frame`, which the memory map must reserve.
pub(super) fn ring_page(context: &Context, frame: u64, what: &str) -> Result<FrameSlot, Detail> {
    ensure!(frame != 0, "no {what} ring: its HVM param is 0");
    let start = frame.saturating_mul(4096);
    let end = start.saturating_add(4096);
    ensure!(
        context.start.overlaps(start, end) && !context.start.ram_covers(start, end),
        "the {what} ring at {start:#x} is not a reserved page of the memory map"
    );
    memory::shared_ring_slot(frame).ok_or_else(|| {
        detail(format_args!(
            "the {what} ring at {start:#x} is outside the identity map or inside the image"
        ))
    })
}

pub(super) fn ring_port(value: u64, what: &str) -> Result<Port, Detail> {
    match u32::try_from(value) {
        Ok(port) if port != 0 => Ok(Port(port)),
        _ => fail!("no {what} event channel: its HVM param is {value}"),
    }
}

fn notify(port: Port) -> Outcome {
    ok("EVTCHNOP_send", event_channel::send(port))
}

/// Waits up to `timeout` ns for `done`, sleeping on `port` (which Dom0
/// signals) between looks; whether `done` came true.
fn wait(
    context: &Context,
    port: Port,
    timeout: u64,
    mut done: impl FnMut() -> bool,
) -> Result<bool, Detail> {
    let shared = context.shared()?;
    let start = context.clock()?;
    for _ in 0..WAIT_ROUNDS_MAX {
        shared.clear_pending(port);
        if done() {
            return Ok(true);
        }
        if context.clock()?.since(start) >= timeout {
            break;
        }
        context.pause(Some(port), POLL_SLICE);
    }
    Ok(done())
}

/// A xenstore message: header and payload.
pub(super) fn message<const N: usize>(
    kind: u32,
    request: u32,
    transaction: u32,
    length: u32,
    payload: &[u8],
) -> ArrayVec<u8, N> {
    let mut bytes = ArrayVec::new();
    for word in [kind, request, transaction, length] {
        let _ = bytes.try_extend_from_slice(&word.to_le_bytes());
    }
    let _ = bytes.try_extend_from_slice(payload);
    bytes
}

/// One reply off the response queue (the start of its payload kept).
#[derive(Clone, Debug, Default)]
struct Reply {
    kind: u32,
    request: u32,
    payload: ArrayVec<u8, 64>,
}

/// Splits the response byte stream into replies.
#[derive(Default)]
struct ReplyReader {
    header: [u8; HEADER_SIZE],
    filled: usize,
    /// Payload bytes still to come of the current reply.
    remaining: u32,
    current: Reply,
}

impl ReplyReader {
    fn feed(&mut self, bytes: &[u8], mut reply: impl FnMut(&Reply)) {
        for &byte in bytes {
            if self.filled < HEADER_SIZE {
                self.header[self.filled] = byte;
                self.filled += 1;
                if self.filled == HEADER_SIZE {
                    let word = |index: usize| {
                        let mut word = [0; 4];
                        word.copy_from_slice(&self.header[index * 4..index * 4 + 4]);
                        u32::from_le_bytes(word)
                    };
                    self.current = Reply {
                        kind: word(0),
                        request: word(1),
                        payload: ArrayVec::new(),
                    };
                    self.remaining = word(3);
                }
            } else {
                let _ = self.current.payload.try_push(byte);
                self.remaining = self.remaining.saturating_sub(1);
            }
            if self.filled == HEADER_SIZE && self.remaining == 0 {
                reply(&self.current);
                self.filled = 0;
            }
        }
    }
}

/// Moves every waiting response into `reader`; whether any came.
fn drain_responses(rings: &Rings, reader: &mut ReplyReader, reply: impl FnMut(&Reply)) -> bool {
    let mut buffer = [0u8; 1024];
    let count = RESPONSES.consume(&rings.store, &mut buffer);
    reader.feed(&buffer[..count], reply);
    count > 0
}

/// Sends a `READ domid` request and returns the reply, if one comes.
fn read_domid(context: &Context, rings: &Rings, timeout: u64) -> Result<Option<Reply>, Detail> {
    let request: ArrayVec<u8, 32> = message(XS_READ, 0x5e1f, 0, 6, b"domid\0");
    let written = REQUESTS.produce(&rings.store, &request);
    ensure!(
        written == request.len(),
        "the request queue had room for {written} of {} bytes",
        request.len()
    );
    notify(rings.store_port)?;
    let mut reader = ReplyReader::default();
    let mut answer = None;
    wait(context, rings.store_port, timeout, || {
        if drain_responses(rings, &mut reader, |reply| answer = Some(reply.clone())) {
            let _ = event_channel::send(rings.store_port);
        }
        answer.is_some()
    })?;
    Ok(answer)
}

pub fn store_read(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    let domain = context.domain()?;
    let Some(reply) = read_domid(context, &rings, REACTION_TIMEOUT)? else {
        fail!("no reply to READ domid within 10 s");
    };
    let mut expected = ArrayString::<8>::new();
    let _ = write!(expected, "{}", domain.0);
    ensure!(
        reply.kind == XS_READ && reply.request == 0x5e1f,
        "reply type {} id {:#x}, expected READ ({XS_READ}) id 0x5e1f",
        reply.kind,
        reply.request
    );
    ensure!(
        reply.payload.as_slice() == expected.as_bytes(),
        "READ domid gave {:?}, expected {:?}",
        reply.payload.as_slice(),
        expected.as_str()
    );
    Ok(())
}

/// Writes `text` on the console ring and waits until Dom0 took it.
fn console_write(context: &Context, rings: &Rings, text: &[u8]) -> Outcome {
    let written = CONSOLE_OUTPUT.produce(&rings.console, text);
    ensure!(
        written == text.len(),
        "the console ring had room for {written} of {} bytes",
        text.len()
    );
    notify(rings.console_port)?;
    let taken = wait(context, rings.console_port, REACTION_TIMEOUT, || {
        CONSOLE_OUTPUT.waiting(&rings.console) == 0
    })?;
    ensure!(
        taken,
        "Dom0 did not take the console output within 10 s (indices {:?})",
        CONSOLE_OUTPUT.indices(&rings.console)
    );
    Ok(())
}

pub fn console_line(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    console_write(context, &rings, b"console ring: hello\n")
}

pub fn console_indices(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    let (consumer, _) = CONSOLE_OUTPUT.indices(&rings.console);
    // Far more than the queue holds: the producer cannot be there.
    let impossible = consumer.wrapping_add(CONSOLE_OUTPUT.size * 64 + 5);
    rings.console.store(CONSOLE_OUTPUT.producer, impossible);
    notify(rings.console_port)?;
    let discarded = wait(context, rings.console_port, REACTION_TIMEOUT, || {
        CONSOLE_OUTPUT.indices(&rings.console).0 == impossible
    })?;
    ensure!(
        discarded,
        "Dom0 did not discard the output behind impossible indices within 10 s \
         (consumer {:#x}, producer {impossible:#x})",
        CONSOLE_OUTPUT.indices(&rings.console).0
    );
    // And the console goes on working.
    console_write(context, &rings, b"console ring: served again\n")
}

/// Waits for Dom0 to set the xenstore ring's `error` field to `expected`.
fn expect_store_error(context: &Context, rings: &Rings, expected: u32) -> Outcome {
    let flagged = wait(context, rings.store_port, REACTION_TIMEOUT, || {
        rings.store.load::<u32>(STORE_ERROR) == Some(expected)
    })?;
    ensure!(
        flagged,
        "the ring's error field is {:?} after 10 s, expected {expected}",
        rings.store.load::<u32>(STORE_ERROR)
    );
    Ok(())
}

pub fn store_indices(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    let (consumer, _) = REQUESTS.indices(&rings.store);
    rings.store.store(
        REQUESTS.producer,
        consumer.wrapping_add(REQUESTS.size + 1000),
    );
    notify(rings.store_port)?;
    expect_store_error(context, &rings, STORE_ERROR_RING_INDEX)
}

/// Garbage request number `index`: an unknown type, any transaction id,
/// up to 60 bytes of noise.
fn garbage(index: u32) -> ArrayVec<u8, 96> {
    let mut state = u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut noise = [0u8; 60];
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let length = (index * 37 % 61) as usize;
    message(
        0x4000 + index * 7919 % 0x1000,
        index,
        state as u32,
        length as u32,
        &noise[..length],
    )
}

pub fn store_flood(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    let start = context.clock()?;
    let mut reader = ReplyReader::default();
    let mut replies = 0u32;
    let mut wrong: Option<(u32, u32, u32)> = None;
    let mut sent = 0u32;
    let mut pending = ArrayVec::<u8, 96>::new();
    let mut offset = 0;
    for _ in 0..WAIT_ROUNDS_MAX {
        // As much of the flood as the queue takes.
        loop {
            if offset == pending.len() {
                if sent == FLOOD_REQUESTS {
                    break;
                }
                pending = garbage(sent);
                offset = 0;
                sent += 1;
            }
            let count = REQUESTS.produce(&rings.store, &pending[offset..]);
            offset += count;
            if count == 0 {
                break;
            }
        }
        notify(rings.store_port)?;
        let got = drain_responses(&rings, &mut reader, |reply| {
            if wrong.is_none() && (reply.kind != XS_ERROR || reply.request != replies) {
                wrong = Some((replies, reply.kind, reply.request));
            }
            replies += 1;
        });
        if got {
            notify(rings.store_port)?;
        }
        if replies >= FLOOD_REQUESTS || context.clock()?.since(start) >= FLOOD_TIMEOUT {
            break;
        }
        if !got {
            rings_pause(context, &rings);
        }
    }
    if let Some((index, kind, request)) = wrong {
        fail!(
            "reply {index} is type {kind} for request {request}, expected ERROR ({XS_ERROR}) \
             for request {index}"
        );
    }
    ensure!(
        replies == FLOOD_REQUESTS,
        "{replies} replies to {sent} garbage requests within 30 s"
    );
    ensure!(
        rings.store.load::<u32>(STORE_ERROR) == Some(0),
        "garbage requests with sane framing broke the ring: error field {:?}",
        rings.store.load::<u32>(STORE_ERROR)
    );
    Ok(())
}

/// Sleeps one slice on the xenstore port.
fn rings_pause(context: &Context, rings: &Rings) {
    if let Ok(shared) = context.shared() {
        shared.clear_pending(rings.store_port);
    }
    context.pause(Some(rings.store_port), POLL_SLICE);
}

pub fn store_oversized(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    let request: ArrayVec<u8, 32> = message(XS_WRITE, 0xb16, 0, PAYLOAD_MAX * 256, b"data/x\0");
    let written = REQUESTS.produce(&rings.store, &request);
    ensure!(
        written == request.len(),
        "the request queue had room for {written} of {} bytes",
        request.len()
    );
    notify(rings.store_port)?;
    expect_store_error(context, &rings, STORE_ERROR_PROTOCOL)
}

pub fn store_not_served(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    // Sane indices again, and a well-formed request: Dom0 must still
    // leave the ring alone.
    let (consumer, _) = REQUESTS.indices(&rings.store);
    rings.store.store(REQUESTS.producer, consumer);
    let (_, responses) = RESPONSES.indices(&rings.store);
    rings.store.store(RESPONSES.consumer, responses);
    ensure!(
        read_domid(context, &rings, SILENCE)?.is_none(),
        "Dom0 answered on a ring it had stopped serving"
    );
    ensure!(
        REQUESTS.indices(&rings.store).0 == consumer,
        "Dom0 took requests from a ring it had stopped serving"
    );
    Ok(())
}

pub fn console_input(context: &mut Context) -> Outcome {
    let rings = rings(context)?;
    report::line(format_args!("waiting for a byte typed on the console"));
    let typed = wait(context, rings.console_port, INPUT_TIMEOUT, || {
        CONSOLE_INPUT.waiting(&rings.console) != 0
    })?;
    ensure!(typed, "nothing was typed on the console within 120 s");
    let mut bytes = [0u8; 64];
    CONSOLE_INPUT.consume(&rings.console, &mut bytes);
    notify(rings.console_port)
}
