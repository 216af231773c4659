//! Console input: bytes typed on the hypervisor's serial line, kept for
//! Dom0 until it reads them with `CONSOLEIO_read`, and the VIRQ_CONSOLE
//! that tells Dom0 they are there.

use xenolith_abi::event_channel::{VcpuId, Virq};

use crate::event_channel::{Delivery, EventChannels, EventMemory};
use crate::time::SystemTime;

/// How many typed bytes wait for Dom0 at most. Typing is slow and Dom0
/// reads on VIRQ_CONSOLE; 4 KiB holds a pasted screenful.
pub const INPUT_CAPACITY: usize = 4096;

/// How often the hypervisor looks at the serial receiver while someone
/// types (Dom0 listening for input): echo within 20 ms feels immediate.
pub const TYPING_POLL_INTERVAL_NS: u64 = 20_000_000;
/// How often it looks when nothing has been typed for
/// [`TYPING_PAUSE_NS`]: the first key after a pause waits at most 50 ms,
/// and an idle appliance wakes 20 times a second instead of 50.
pub const QUIET_POLL_INTERVAL_NS: u64 = 50_000_000;
/// How long after the last typed byte polling stays fast.
pub const TYPING_PAUSE_NS: u64 = 5_000_000_000;

/// When to look at the serial receiver next: polling is fast while the
/// operator types and slows down when the line is quiet.
#[derive(Clone, Copy, Debug, Default)]
pub struct InputPolling {
    next: SystemTime,
    last_input: Option<SystemTime>,
}

impl InputPolling {
    /// Polling that is due at once.
    pub const fn new() -> Self {
        Self {
            next: SystemTime(0),
            last_input: None,
        }
    }

    /// Whether it is time to look at the receiver.
    pub fn due(&self, now: SystemTime) -> bool {
        now >= self.next
    }

    /// Records a look at `now` (which found input or not) and returns when
    /// the next one is due.
    pub fn polled(&mut self, now: SystemTime, found_input: bool) -> SystemTime {
        if found_input {
            self.last_input = Some(now);
        }
        let typing = self
            .last_input
            .is_some_and(|last| now.0.saturating_sub(last.0) < TYPING_PAUSE_NS);
        let interval = if typing {
            TYPING_POLL_INTERVAL_NS
        } else {
            QUIET_POLL_INTERVAL_NS
        };
        self.next = SystemTime(now.0.saturating_add(interval));
        self.next
    }

    /// When the next look is due.
    pub fn next(&self) -> SystemTime {
        self.next
    }
}

/// Typed bytes waiting for Dom0: a ring that drops new bytes (and counts
/// them) when full, so what Dom0 reads is always a prefix of what was
/// typed.
pub struct InputBuffer {
    bytes: [u8; INPUT_CAPACITY],
    /// Index of the oldest waiting byte.
    start: usize,
    /// Bytes waiting.
    length: usize,
    /// Bytes dropped because the buffer was full, since boot.
    dropped: u64,
    /// Whether bytes were dropped since Dom0 last read.
    overflowing: bool,
}

/// What [`InputBuffer::push`] did with a batch of typed bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Bytes kept for Dom0.
    pub accepted: usize,
    /// Bytes dropped for want of room.
    pub dropped: usize,
    /// Whether this is the first drop since Dom0 last read (worth one log
    /// line; the rest of an overflow is only counted).
    pub overflow_began: bool,
}

impl Default for InputBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl InputBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            bytes: [0; INPUT_CAPACITY],
            start: 0,
            length: 0,
            dropped: 0,
            overflowing: false,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Bytes dropped because the buffer was full, since boot.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends typed bytes; those that do not fit are dropped and counted.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        let room = INPUT_CAPACITY - self.length;
        let accepted = bytes.len().min(room);
        for (offset, &byte) in bytes[..accepted].iter().enumerate() {
            let index = (self.start + self.length + offset) % INPUT_CAPACITY;
            self.bytes[index] = byte;
        }
        self.length += accepted;
        let dropped = bytes.len() - accepted;
        self.dropped = self.dropped.saturating_add(dropped as u64);
        let overflow_began = dropped > 0 && !self.overflowing;
        if dropped > 0 {
            self.overflowing = true;
        }
        Pushed {
            accepted,
            dropped,
            overflow_began,
        }
    }

    /// Copies waiting bytes, from the `skip`th oldest on, into `into`
    /// without taking them; returns how many were copied.
    pub fn peek(&self, skip: usize, into: &mut [u8]) -> usize {
        let available = self.length.saturating_sub(skip);
        let count = available.min(into.len());
        for (offset, slot) in into[..count].iter_mut().enumerate() {
            *slot = self.bytes[(self.start + skip + offset) % INPUT_CAPACITY];
        }
        count
    }

    /// Takes the `count` oldest bytes (all of them if fewer wait): Dom0 has
    /// them now.
    pub fn consume(&mut self, count: usize) {
        let count = count.min(self.length);
        self.start = (self.start + count) % INPUT_CAPACITY;
        self.length -= count;
        self.overflowing = false;
    }
}

/// Whether Dom0 listens for console input (bound VIRQ_CONSOLE).
pub fn listening(dom0_events: &EventChannels) -> bool {
    dom0_events.virq_port(Virq::CONSOLE, VcpuId::BOOT).is_some()
}

/// Takes bytes typed on the serial line: keeps them for Dom0 and, when
/// any wait, raises VIRQ_CONSOLE in Dom0 if Dom0 bound it (as Xen does for
/// serial input). Returns what was kept and whom the event concerns.
pub fn receive(
    input: &mut InputBuffer,
    typed: &[u8],
    dom0_events: &EventChannels,
    dom0_memory: &mut impl EventMemory,
) -> (Pushed, Delivery) {
    let pushed = input.push(typed);
    if typed.is_empty() || input.is_empty() {
        return (pushed, Delivery::NONE);
    }
    let delivery = dom0_events.raise_virq(Virq::CONSOLE, VcpuId::BOOT, dom0_memory);
    (pushed, delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(buffer: &mut InputBuffer) -> Vec<u8> {
        let mut out = vec![0; INPUT_CAPACITY + 10];
        let count = buffer.peek(0, &mut out);
        out.truncate(count);
        buffer.consume(count);
        out
    }

    #[test]
    fn polling_is_fast_while_typing_and_slow_when_quiet() {
        let mut polling = InputPolling::new();
        assert!(polling.due(SystemTime(0)));
        let next = polling.polled(SystemTime(1000), false);
        assert_eq!(next, SystemTime(1000 + QUIET_POLL_INTERVAL_NS));
        assert!(!polling.due(SystemTime(1000 + QUIET_POLL_INTERVAL_NS - 1)));
        assert!(polling.due(next));
        // A key: fast from now on, even when the next look finds nothing.
        let typed_at = SystemTime(2_000_000_000);
        assert_eq!(
            polling.polled(typed_at, true),
            SystemTime(typed_at.0 + TYPING_POLL_INTERVAL_NS)
        );
        let pause = SystemTime(typed_at.0 + TYPING_PAUSE_NS - 1);
        assert_eq!(
            polling.polled(pause, false),
            SystemTime(pause.0 + TYPING_POLL_INTERVAL_NS)
        );
        // After the pause, slow again.
        let quiet = SystemTime(typed_at.0 + TYPING_PAUSE_NS);
        assert_eq!(
            polling.polled(quiet, false),
            SystemTime(quiet.0 + QUIET_POLL_INTERVAL_NS)
        );
        assert_eq!(polling.next(), SystemTime(quiet.0 + QUIET_POLL_INTERVAL_NS));
        // Time near the end of the range does not wrap.
        assert_eq!(
            polling.polled(SystemTime(u64::MAX - 1), true),
            SystemTime(u64::MAX)
        );
    }

    #[test]
    fn keeps_bytes_in_order_across_the_wrap() {
        let mut buffer = InputBuffer::new();
        let first: Vec<u8> = (0..3000).map(|index| index as u8).collect();
        assert_eq!(buffer.push(&first).accepted, 3000);
        assert_eq!(drain(&mut buffer), first);
        // The ring's start is now at 3000: this batch wraps.
        let second: Vec<u8> = (0..2000).map(|index| (index * 7) as u8).collect();
        buffer.push(&second);
        assert_eq!(buffer.len(), 2000);
        let mut head = [0u8; 5];
        assert_eq!(buffer.peek(1500, &mut head), 5);
        assert_eq!(head, second[1500..1505]);
        assert_eq!(drain(&mut buffer), second);
        assert!(buffer.is_empty());
    }

    #[test]
    fn overflow_drops_the_newest_bytes_and_counts_them() {
        let mut buffer = InputBuffer::new();
        let pushed = buffer.push(&vec![b'a'; INPUT_CAPACITY - 2]);
        assert_eq!(pushed.dropped, 0);
        let pushed = buffer.push(b"xyz!");
        assert_eq!(
            pushed,
            Pushed {
                accepted: 2,
                dropped: 2,
                overflow_began: true
            }
        );
        let pushed = buffer.push(b"more");
        assert_eq!((pushed.dropped, pushed.overflow_began), (4, false));
        assert_eq!(buffer.dropped(), 6);
        let read = drain(&mut buffer);
        assert_eq!(read.len(), INPUT_CAPACITY);
        assert_eq!(&read[INPUT_CAPACITY - 3..], b"axy");
        // After a read, the next overflow is news again.
        buffer.push(&vec![0; INPUT_CAPACITY]);
        assert!(buffer.push(b"!").overflow_began);
    }

    #[test]
    fn peek_past_the_end_and_consume_too_much_are_harmless() {
        let mut buffer = InputBuffer::new();
        buffer.push(b"hi");
        let mut out = [0u8; 4];
        assert_eq!(buffer.peek(2, &mut out), 0);
        assert_eq!(buffer.peek(usize::MAX, &mut out), 0);
        assert_eq!(buffer.peek(1, &mut out), 1);
        assert_eq!(out[0], b'i');
        buffer.consume(usize::MAX);
        assert!(buffer.is_empty());
        assert_eq!(buffer.peek(0, &mut out), 0);
    }
}
