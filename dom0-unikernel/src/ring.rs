//! Byte rings shared with a guest: the xenstore ring (`xs_wire.h`) and
//! the console ring (`console.h`). Both are two one-way byte queues in one
//! page, each with free-running 32-bit producer and consumer indices; only
//! the offsets differ. The page is guest memory: it is reached only through
//! [`SharedPage`] (volatile copies in the binary, a plain buffer in tests),
//! each index is read once, and a producer that runs more than a queue's
//! size ahead of its consumer is reported, never trusted.

use alloc::vec::Vec;

/// A page shared with a guest, reached only by copies.
pub trait SharedPage {
    /// Copies `buffer.len()` bytes from `offset`.
    fn read(&self, offset: usize, buffer: &mut [u8]);
    /// Copies `data` to `offset`.
    fn write(&mut self, offset: usize, data: &[u8]);
    /// Reads the little-endian u32 at `offset` (the guest may change it at
    /// any time: read once, check, use the copy).
    fn load(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        self.read(offset, &mut bytes);
        u32::from_le_bytes(bytes)
    }
    /// Publishes `value` at `offset`, after every earlier write.
    fn store(&mut self, offset: usize, value: u32) {
        self.write(offset, &value.to_le_bytes());
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
