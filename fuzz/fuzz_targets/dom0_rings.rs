//! Fuzzes Dom0's side of the byte rings it shares with guests
//! (`dom0::ring`: the xenstore and console queues) against a guest that
//! writes arbitrary indices and bytes between Dom0's steps, and the console
//! log (`dom0::console_log`) fed arbitrary output. A queue must never hand
//! out more than its size, must refuse exactly the impossible index pairs,
//! must deliver produced bytes intact and in order across the index wrap,
//! and must never write outside its own data and index words; the log's
//! history stays within its bound and holds the newest bytes, and the
//! lines it mirrors are short and free of control characters.
#![no_main]

use std::collections::VecDeque;

use dom0::console_log::{ConsoleLog, HISTORY_BYTES, LINE_BYTES};
use dom0::ring::{
    BadIndices, CONSOLE_INPUT, CONSOLE_OUTPUT, FakePage, Queue, SharedPage, XENSTORE_REQUESTS,
    XENSTORE_RESPONSES,
};
use libfuzzer_sys::fuzz_target;

/// Operations read from the input: a code byte and a little-endian u32.
struct Operations<'a>(&'a [u8]);

impl<'a> Operations<'a> {
    fn next(&mut self) -> Option<(u8, u32)> {
        let (&code, rest) = self.0.split_first()?;
        let mut value = [0u8; 4];
        let taken = rest.len().min(4);
        value[..taken].copy_from_slice(&rest[..taken]);
        self.0 = &rest[taken..];
        Some((code, u32::from_le_bytes(value)))
    }

    /// Up to `count` more input bytes, as data.
    fn bytes(&mut self, count: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(count.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// (consumer, producer) as the page holds them now.
fn indices(queue: &Queue, page: &FakePage) -> (u32, u32) {
    (page.load(queue.consumer), page.load(queue.producer))
}

/// Whether the guest's indices are ones a queue may trust.
fn possible(queue: &Queue, page: &FakePage) -> bool {
    let (consumer, producer) = indices(queue, page);
    producer.wrapping_sub(consumer) <= queue.size
}

/// The bytes waiting in `queue`, read the way the guest would (no
/// library code): for checking what the queue hands out.
fn model_waiting(queue: &Queue, page: &FakePage) -> Vec<u8> {
    let (consumer, producer) = indices(queue, page);
    let used = producer.wrapping_sub(consumer);
    (0..used)
        .map(|index| {
            let position = consumer.wrapping_add(index) & (queue.size - 1);
            page.0[queue.data + position as usize]
        })
        .collect()
}

/// Fails unless the page differs from `before` only inside the queue's
/// data bytes and its two index words.
fn assert_stays_inside(queue: &Queue, before: &FakePage, after: &FakePage) {
    let data = queue.data..queue.data + queue.size as usize;
    let consumer = queue.consumer..queue.consumer + 4;
    let producer = queue.producer..queue.producer + 4;
    for (offset, (old, new)) in before.0.iter().zip(&after.0).enumerate() {
        let allowed =
            data.contains(&offset) || consumer.contains(&offset) || producer.contains(&offset);
        assert!(
            old == new || allowed,
            "a queue at {:?} wrote offset {offset}",
            data
        );
    }
    assert_eq!(before.0.len(), after.0.len());
}

fn check_refusal(queue: &Queue, page: &FakePage, error: BadIndices) {
    assert!(
        !possible(queue, page),
        "refused possible indices {error:?} (size {})",
        queue.size
    );
    assert_eq!((error.consumer, error.producer), indices(queue, page));
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let queue = [
        XENSTORE_REQUESTS,
        XENSTORE_RESPONSES,
        CONSOLE_INPUT,
        CONSOLE_OUTPUT,
    ][usize::from(selector % 4)];
    let size = queue.size as usize;
    let mut page = FakePage::default();
    let mut log = ConsoleLog::new();
    // The newest bytes pushed into the log, at most its history's worth.
    let mut pushed: VecDeque<u8> = VecDeque::new();
    let mut pushed_total = 0u64;
    let mut operations = Operations(rest);
    while let Some((code, value)) = operations.next() {
        let before = page.clone();
        match code % 11 {
            // The guest writes an index: anything at all.
            0 => page.store(queue.producer, value),
            1 => page.store(queue.consumer, value),
            // The guest moves its producer near the limit: just inside it,
            // exactly on it, or just past it.
            9 => {
                let (consumer, _) = indices(&queue, &page);
                let ahead = value % (2 * queue.size + 2);
                page.store(queue.producer, consumer.wrapping_add(ahead));
            }
            // The guest writes any word anywhere in the page.
            2 => {
                let offset = value as usize % (4096 - 4);
                page.store(offset, value.rotate_left(7));
            }
            // Dom0 looks without consuming.
            3 => {
                let limit = value as usize % (2 * size + 2);
                match queue.peek(&page, limit) {
                    Ok(bytes) => {
                        assert!(possible(&queue, &page));
                        assert!(bytes.len() <= size && bytes.len() <= limit);
                        let waiting = model_waiting(&queue, &page);
                        assert_eq!(bytes, waiting[..limit.min(waiting.len())]);
                    }
                    Err(error) => check_refusal(&queue, &page, error),
                }
                assert_eq!(before.0, page.0, "peek changed the page");
            }
            // Dom0 takes.
            4 => {
                let limit = value as usize % (2 * size + 2);
                let waiting = possible(&queue, &page).then(|| model_waiting(&queue, &page));
                let (consumer, producer) = indices(&queue, &page);
                match queue.take(&mut page, limit) {
                    Ok(bytes) => {
                        let waiting = waiting.expect("took from impossible indices");
                        assert!(bytes.len() <= size && bytes.len() <= limit);
                        assert_eq!(bytes, waiting[..limit.min(waiting.len())]);
                        assert_eq!(
                            indices(&queue, &page),
                            (consumer.wrapping_add(bytes.len() as u32), producer)
                        );
                    }
                    Err(error) => {
                        check_refusal(&queue, &page, error);
                        assert_eq!(before.0, page.0, "a refused take changed the page");
                    }
                }
                assert_stays_inside(&queue, &before, &page);
            }
            // Dom0 asks for room.
            5 => match queue.space(&page) {
                Ok(space) => {
                    let (consumer, producer) = indices(&queue, &page);
                    assert_eq!(space + producer.wrapping_sub(consumer) as usize, size);
                }
                Err(error) => check_refusal(&queue, &page, error),
            },
            // Dom0 produces: what fits goes in, intact, after what waits.
            6 => {
                let bytes = operations.bytes(value as usize % (2 * size + 2));
                let waiting = possible(&queue, &page).then(|| model_waiting(&queue, &page));
                let (consumer, producer) = indices(&queue, &page);
                match queue.produce(&mut page, bytes) {
                    Ok(count) => {
                        let mut expected = waiting.expect("produced into impossible indices");
                        assert_eq!(count, bytes.len().min(size - expected.len()));
                        assert_eq!(
                            indices(&queue, &page),
                            (consumer, producer.wrapping_add(count as u32))
                        );
                        expected.extend_from_slice(&bytes[..count]);
                        assert!(expected.len() <= size);
                        assert_eq!(model_waiting(&queue, &page), expected);
                    }
                    Err(error) => {
                        check_refusal(&queue, &page, error);
                        assert_eq!(before.0, page.0, "a refused produce changed the page");
                    }
                }
                assert_stays_inside(&queue, &before, &page);
            }
            // Dom0 discards what waits (after a refusal).
            7 => {
                queue.reset(&mut page);
                assert!(possible(&queue, &page));
                assert_eq!(queue.peek(&page, usize::MAX), Ok(Vec::new()));
                assert_stays_inside(&queue, &before, &page);
            }
            // Dom0 marks bytes read.
            8 => {
                let count = value as usize % (size + 1);
                let (consumer, producer) = indices(&queue, &page);
                queue.consume(&mut page, count);
                assert_eq!(
                    indices(&queue, &page),
                    (consumer.wrapping_add(count as u32), producer)
                );
                assert_stays_inside(&queue, &before, &page);
            }
            // The guest's console output reaches the log.
            _ => {
                let bytes = operations.bytes(value as usize % (3 * HISTORY_BYTES / 2));
                log.push(bytes, |line| {
                    assert!(line.len() <= LINE_BYTES, "a {}-byte line", line.len());
                    assert!(
                        line.chars().all(|c| c == '\t' || (' '..='~').contains(&c)),
                        "a control or non-ASCII character reached the serial line: {line:?}"
                    );
                });
                pushed.extend(bytes);
                pushed_total += bytes.len() as u64;
                let excess = pushed.len().saturating_sub(HISTORY_BYTES);
                pushed.drain(..excess);
                let history = log.history();
                assert!(history.len() <= HISTORY_BYTES);
                assert_eq!(history, Vec::from(pushed.clone()));
                assert_eq!(log.dropped(), pushed_total - history.len() as u64);
                assert!(log.partial_line().len() <= LINE_BYTES);
            }
        }
    }
});
