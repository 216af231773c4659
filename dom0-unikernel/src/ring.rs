//! Byte rings shared with a guest: the xenstore ring (`xs_wire.h`) and
//! the console ring (`console.h`). Both are two one-way byte queues in one
//! page, each with free-running 32-bit producer and consumer indices; only
//! the offsets differ. The page is guest memory: it is reached only through
//! [`SharedPage`] (volatile copies in the binary, a plain buffer in tests),
//! each index is read once in one 32-bit access (never byte by byte: the
//! other side may be mid-update), and a producer that runs more than a
//! queue's size ahead of its consumer is reported, never trusted.

use alloc::vec::Vec;

/// A page shared with a guest, reached only by copies.
pub trait SharedPage {
    /// Copies `buffer.len()` bytes from `offset`.
    fn read(&self, offset: usize, buffer: &mut [u8]);
    /// Copies `data` to `offset`.
    fn write(&mut self, offset: usize, data: &[u8]);
    /// Reads the little-endian u32 index at `offset` (4-aligned) in ONE
    /// 32-bit access, and orders it before every later access (acquire).
    /// The guest may change it at any time: read once, check, use the copy.
    ///
    /// Never a byte-wise copy: the guest updates an index with one 32-bit
    /// store, and four one-byte reads can straddle it and see half of each
    /// value (rsp_cons going 0x5fc -> 0x60f read as 0x6fc, a consumer
    /// "ahead" of its producer, which cut a healthy guest off).
    fn load(&self, offset: usize) -> u32;
    /// Publishes `value` at `offset` (4-aligned) in ONE 32-bit access,
    /// after every earlier access (release). A byte-wise store would let
    /// the guest read an index that was never written (0x1ee -> 0x201 seen
    /// as 0x101), which Linux answers by resetting the ring.
    fn store(&mut self, offset: usize, value: u32);
}

/// Where one queue of a ring lives in the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    /// Offset of the data bytes.
    pub data: usize,
    /// Size of the data bytes (a power of two).
    pub size: u32,
    /// Offset of the consumer index.
    pub consumer: usize,
    /// Offset of the producer index.
    pub producer: usize,
}

/// The xenstore ring: the guest's requests.
pub const XENSTORE_REQUESTS: Queue = Queue {
    data: 0,
    size: 1024,
    consumer: 2048,
    producer: 2052,
};
/// The xenstore ring: replies and watch events to the guest.
pub const XENSTORE_RESPONSES: Queue = Queue {
    data: 1024,
    size: 1024,
    consumer: 2056,
    producer: 2060,
};
/// Offset of the xenstore page's `server_features` word.
pub const XENSTORE_SERVER_FEATURES: usize = 2064;
/// The console ring: input to the guest.
pub const CONSOLE_INPUT: Queue = Queue {
    data: 0,
    size: 1024,
    consumer: 3072,
    producer: 3076,
};
/// The console ring: the guest's output.
pub const CONSOLE_OUTPUT: Queue = Queue {
    data: 1024,
    size: 2048,
    consumer: 3080,
    producer: 3084,
};

/// The guest left indices that cannot be: its producer is more than the
/// queue's size ahead of the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadIndices {
    pub consumer: u32,
    pub producer: u32,
}

impl Queue {
    /// Bytes waiting between the two indices, checked.
    fn used(&self, consumer: u32, producer: u32) -> Result<u32, BadIndices> {
        let used = producer.wrapping_sub(consumer);
        if used > self.size {
            return Err(BadIndices { consumer, producer });
        }
        Ok(used)
    }

    /// Copies up to `limit` waiting bytes out without consuming them (the
    /// caller consumes what it could use with [`Queue::consume`]).
    pub fn peek(&self, page: &impl SharedPage, limit: usize) -> Result<Vec<u8>, BadIndices> {
        let consumer = page.load(self.consumer);
        let producer = page.load(self.producer);
        let used = self.used(consumer, producer)? as usize;
        let mut bytes = alloc::vec![0; used.min(limit)];
        self.copy_out(page, consumer, &mut bytes);
        Ok(bytes)
    }

    /// Marks `count` bytes read (at most what [`Queue::peek`] returned).
    pub fn consume(&self, page: &mut impl SharedPage, count: usize) {
        let consumer = page.load(self.consumer);
        page.store(self.consumer, consumer.wrapping_add(count as u32));
    }

    /// Takes up to `limit` waiting bytes.
    pub fn take(&self, page: &mut impl SharedPage, limit: usize) -> Result<Vec<u8>, BadIndices> {
        let bytes = self.peek(page, limit)?;
        self.consume(page, bytes.len());
        Ok(bytes)
    }

    /// Free space for the producer.
    pub fn space(&self, page: &impl SharedPage) -> Result<usize, BadIndices> {
        let consumer = page.load(self.consumer);
        let producer = page.load(self.producer);
        Ok((self.size - self.used(consumer, producer)?) as usize)
    }

    /// Appends as much of `bytes` as fits and publishes it; returns how
    /// many bytes went in.
    pub fn produce(&self, page: &mut impl SharedPage, bytes: &[u8]) -> Result<usize, BadIndices> {
        let consumer = page.load(self.consumer);
        let producer = page.load(self.producer);
        let free = (self.size - self.used(consumer, producer)?) as usize;
        let count = bytes.len().min(free);
        let mut done = 0;
        while done < count {
            let position = (producer.wrapping_add(done as u32) & (self.size - 1)) as usize;
            let length = (count - done).min(self.size as usize - position);
            page.write(self.data + position, &bytes[done..done + length]);
            done += length;
        }
        page.store(self.producer, producer.wrapping_add(count as u32));
        Ok(count)
    }

    /// Discards everything waiting (after [`BadIndices`]: the consumer
    /// catches up with the producer).
    pub fn reset(&self, page: &mut impl SharedPage) {
        let producer = page.load(self.producer);
        page.store(self.consumer, producer);
    }

    fn copy_out(&self, page: &impl SharedPage, consumer: u32, bytes: &mut [u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let position = (consumer.wrapping_add(done as u32) & (self.size - 1)) as usize;
            let length = (bytes.len() - done).min(self.size as usize - position);
            page.read(self.data + position, &mut bytes[done..done + length]);
            done += length;
        }
    }
}

/// A page in ordinary memory, for tests and fuzzing.
#[derive(Clone, Debug)]
pub struct FakePage(pub Vec<u8>);

impl Default for FakePage {
    fn default() -> Self {
        Self(alloc::vec![0; 4096])
    }
}

impl SharedPage for FakePage {
    fn read(&self, offset: usize, buffer: &mut [u8]) {
        if let Some(source) = self.0.get(offset..offset + buffer.len()) {
            buffer.copy_from_slice(source);
        }
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        if let Some(target) = self.0.get_mut(offset..offset + data.len()) {
            target.copy_from_slice(data);
        }
    }

    fn load(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        self.read(offset, &mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn store(&mut self, offset: usize, value: u32) {
        self.write(offset, &value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    /// A guest producing into `queue` as Linux does.
    fn guest_produce(page: &mut FakePage, queue: Queue, bytes: &[u8]) {
        queue.produce(page, bytes).expect("indices");
    }

    #[test]
    fn bytes_cross_the_wrap_in_order() {
        let mut page = FakePage::default();
        // Indices start anywhere, near the u32 wrap here.
        page.store(CONSOLE_OUTPUT.consumer, u32::MAX - 5);
        page.store(CONSOLE_OUTPUT.producer, u32::MAX - 5);
        let mut expected = Vec::new();
        for round in 0..50u32 {
            let chunk: Vec<u8> = (0..(round * 37 % 1500))
                .map(|i| (i + round) as u8)
                .collect();
            guest_produce(&mut page, CONSOLE_OUTPUT, &chunk);
            expected.extend_from_slice(&chunk);
            let got = CONSOLE_OUTPUT.take(&mut page, usize::MAX).expect("indices");
            let want: Vec<u8> = expected.drain(..got.len()).collect();
            assert_eq!(got, want);
        }
        assert!(expected.is_empty());
    }

    #[test]
    fn a_full_queue_takes_what_fits() {
        let mut page = FakePage::default();
        let written = XENSTORE_RESPONSES.produce(&mut page, &[7; 1500]).unwrap();
        assert_eq!(written, 1024);
        assert_eq!(XENSTORE_RESPONSES.space(&page).unwrap(), 0);
        assert_eq!(XENSTORE_RESPONSES.produce(&mut page, &[1]).unwrap(), 0);
        let bytes = XENSTORE_RESPONSES.take(&mut page, 100).unwrap();
        assert_eq!(bytes, [7; 100]);
        assert_eq!(XENSTORE_RESPONSES.space(&page).unwrap(), 100);
    }

    #[test]
    fn peeking_consumes_nothing() {
        let mut page = FakePage::default();
        guest_produce(&mut page, XENSTORE_REQUESTS, b"hello");
        assert_eq!(XENSTORE_REQUESTS.peek(&page, 3).unwrap(), b"hel");
        XENSTORE_REQUESTS.consume(&mut page, 2);
        assert_eq!(XENSTORE_REQUESTS.peek(&page, 10).unwrap(), b"llo");
    }

    #[test]
    fn a_producer_too_far_ahead_is_reported_and_can_be_reset() {
        let mut page = FakePage::default();
        page.store(CONSOLE_OUTPUT.producer, 5000);
        assert_eq!(
            CONSOLE_OUTPUT.take(&mut page, usize::MAX),
            Err(BadIndices {
                consumer: 0,
                producer: 5000
            })
        );
        assert!(CONSOLE_OUTPUT.space(&page).is_err());
        // A consumer "ahead" of the producer is the same lie.
        page.store(CONSOLE_OUTPUT.consumer, 6000);
        assert!(CONSOLE_OUTPUT.peek(&page, 10).is_err());
        CONSOLE_OUTPUT.reset(&mut page);
        assert_eq!(CONSOLE_OUTPUT.take(&mut page, 10).unwrap(), b"");
    }

    /// A page shared with a concurrently running guest, touched the way
    /// `GuestPage` touches memory: a byte copy is one access per byte, an
    /// index load or store one access. Before each access the guest makes
    /// zero to two of its own (word-sized, as Linux's), as a seeded
    /// schedule says.
    struct Interleaved<Guest> {
        page: core::cell::RefCell<FakePage>,
        guest: core::cell::RefCell<Guest>,
        schedule: core::cell::Cell<u64>,
    }

    impl<Guest: FnMut(&mut FakePage)> Interleaved<Guest> {
        fn step(&self) {
            // xorshift64: reproducible, and varied enough to land guest
            // stores between any two of Dom0's accesses.
            let mut state = self.schedule.get();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            self.schedule.set(state);
            for _ in 0..state % 3 {
                (self.guest.borrow_mut())(&mut self.page.borrow_mut());
            }
        }
    }

    impl<Guest: FnMut(&mut FakePage)> SharedPage for Interleaved<Guest> {
        fn read(&self, offset: usize, buffer: &mut [u8]) {
            for (index, byte) in buffer.iter_mut().enumerate() {
                self.step();
                *byte = self.page.borrow().0[offset + index];
            }
        }

        fn write(&mut self, offset: usize, data: &[u8]) {
            for (index, &byte) in data.iter().enumerate() {
                self.step();
                self.page.borrow_mut().0[offset + index] = byte;
            }
        }

        fn load(&self, offset: usize) -> u32 {
            self.step();
            self.page.borrow().load(offset)
        }

        fn store(&mut self, offset: usize, value: u32) {
            self.step();
            self.page.borrow_mut().store(offset, value);
        }
    }

    /// One word-sized access per step, as Linux's xenbus_comms.c: it
    /// consumes every reply Dom0 published and writes a 19-byte request
    /// whenever there is room, checking the indices each time as Linux's
    /// `check_indexes` does. Returns the failures it saw.
    fn linux_frontend() -> (
        impl FnMut(&mut FakePage),
        alloc::rc::Rc<core::cell::RefCell<Vec<String>>>,
    ) {
        let failures = alloc::rc::Rc::new(core::cell::RefCell::new(Vec::new()));
        let seen = failures.clone();
        let mut step = 0u32;
        let (mut consumer, mut producer) = (0u32, 0u32);
        let mut next_byte = 0u8;
        let guest = move |page: &mut FakePage| {
            let responses = XENSTORE_RESPONSES;
            let requests = XENSTORE_REQUESTS;
            match step % 6 {
                0 => consumer = page.load(responses.consumer),
                1 => {
                    producer = page.load(responses.producer);
                    if producer.wrapping_sub(consumer) > responses.size {
                        seen.borrow_mut().push(alloc::format!(
                            "guest saw responses {consumer:#x}..{producer:#x}"
                        ));
                    }
                }
                2 => {
                    if producer != consumer && producer.wrapping_sub(consumer) <= responses.size {
                        page.store(responses.consumer, producer);
                    }
                }
                3 => consumer = page.load(requests.consumer),
                4 => {
                    producer = page.load(requests.producer);
                    if producer.wrapping_sub(consumer) > requests.size {
                        seen.borrow_mut().push(alloc::format!(
                            "guest saw requests {consumer:#x}..{producer:#x}"
                        ));
                    }
                }
                _ => {
                    if requests
                        .size
                        .saturating_sub(producer.wrapping_sub(consumer))
                        >= 19
                    {
                        for index in 0..19u32 {
                            let position = producer.wrapping_add(index) & (requests.size - 1);
                            page.0[requests.data + position as usize] = next_byte;
                            next_byte = next_byte.wrapping_add(1);
                        }
                        page.store(requests.producer, producer.wrapping_add(19));
                    }
                }
            }
            step = step.wrapping_add(1);
        };
        (guest, failures)
    }

    /// Dom0 serving a Linux guest that runs alongside it, from indices
    /// `start` (near a byte boundary of the index, or the u32 wrap): every
    /// request byte arrives in order, and neither side ever sees a consumer
    /// ahead of its producer. Half-read or half-written indices (an index
    /// copied a byte at a time while the other side updates it) are what
    /// this catches: the bench's `BadIndices { consumer: 1788, producer:
    /// 1551 }` is rsp_cons read as its low byte before the guest moved it
    /// from 0x5fc to 0x60f and its high byte after.
    fn serve_alongside_linux(start: u32, seed: u64, rounds: usize) -> Result<(), String> {
        let (guest, failures) = linux_frontend();
        let mut fake = FakePage::default();
        for queue in [XENSTORE_REQUESTS, XENSTORE_RESPONSES] {
            fake.store(queue.consumer, start);
            fake.store(queue.producer, start);
        }
        let mut page = Interleaved {
            page: core::cell::RefCell::new(fake),
            guest: core::cell::RefCell::new(guest),
            schedule: core::cell::Cell::new(seed),
        };
        let mut expected = 0u8;
        for round in 0..rounds {
            let bytes = XENSTORE_REQUESTS
                .peek(&page, usize::MAX)
                .map_err(|bad| alloc::format!("round {round}: requests {bad:?}"))?;
            for &byte in &bytes {
                if byte != expected {
                    return Err(alloc::format!(
                        "round {round}: request byte {byte}, not {expected}"
                    ));
                }
                expected = expected.wrapping_add(1);
            }
            XENSTORE_REQUESTS.consume(&mut page, bytes.len());
            let space = XENSTORE_RESPONSES
                .space(&page)
                .map_err(|bad| alloc::format!("round {round}: responses {bad:?}"))?;
            let reply = [round as u8; 19];
            let count = reply.len().min(space);
            let written = XENSTORE_RESPONSES
                .produce(&mut page, &reply[..count])
                .map_err(|bad| alloc::format!("round {round}: responses {bad:?}"))?;
            if written != count {
                return Err(alloc::format!("round {round}: wrote {written} of {count}"));
            }
            if let Some(failure) = failures.borrow().first() {
                return Err(alloc::format!("round {round}: {failure}"));
            }
        }
        Ok(())
    }

    #[test]
    fn serving_a_concurrent_guest_never_tears_an_index() {
        for start in [0, 0x5f0, 0xfff0, 0x00ff_fff0, u32::MAX - 40] {
            for seed in 1..=4 {
                assert_eq!(
                    serve_alongside_linux(start, seed, 800),
                    Ok(()),
                    "from {start:#x}, schedule {seed}"
                );
            }
        }
    }

    #[test]
    fn a_full_ring_across_the_u32_wrap() {
        for queue in [XENSTORE_REQUESTS, XENSTORE_RESPONSES] {
            let mut page = FakePage::default();
            let start = u32::MAX - 3;
            page.store(queue.consumer, start);
            page.store(queue.producer, start);
            let bytes: Vec<u8> = (0..1100u32).map(|i| i as u8).collect();
            assert_eq!(queue.produce(&mut page, &bytes), Ok(1024));
            // The producer wrapped past zero and is exactly a ring ahead.
            assert_eq!(page.load(queue.producer), 1020);
            assert_eq!(queue.space(&page), Ok(0));
            assert_eq!(queue.produce(&mut page, b"x"), Ok(0));
            assert_eq!(
                queue.take(&mut page, usize::MAX),
                Ok(bytes[..1024].to_vec())
            );
            assert_eq!(page.load(queue.consumer), 1020);
            assert_eq!(queue.space(&page), Ok(1024));
            // One past full, on either side of the wrap, is a lie.
            page.store(queue.consumer, u32::MAX - 4);
            assert_eq!(
                queue.peek(&page, 1),
                Err(BadIndices {
                    consumer: u32::MAX - 4,
                    producer: 1020
                })
            );
            // A consumer one ahead of its producer (the bench's failure).
            page.store(queue.consumer, 1021);
            assert!(queue.space(&page).is_err());
            assert!(queue.peek(&page, 1).is_err());
        }
    }

    #[test]
    fn queues_of_one_page_do_not_overlap() {
        for queues in [
            [XENSTORE_REQUESTS, XENSTORE_RESPONSES],
            [CONSOLE_INPUT, CONSOLE_OUTPUT],
        ] {
            let [first, second] = queues;
            assert!(first.data + first.size as usize <= second.data);
            assert!(second.data + second.size as usize <= first.consumer);
            for queue in queues {
                assert!(queue.size.is_power_of_two());
                assert!(queue.producer + 4 <= 4096);
            }
        }
    }
}
