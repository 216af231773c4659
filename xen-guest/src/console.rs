//! The hypervisor's debug console (`console_io`, hypercall 18, write
//! only), a line buffer so each message leaves in one hypercall, and the
//! output half of the PV console ring (for hypervisors that refuse
//! `console_io` to DomUs, as release builds of Xen do).

use core::fmt;
use core::sync::atomic::{Ordering, fence};

use crate::error::XenError;
use crate::raw::{self, FrameSlot};

/// Writes `bytes` to the hypervisor's console (`CONSOLEIO_write`).
pub fn write(bytes: &[u8]) -> Result<(), XenError> {
    XenError::check(raw::console_write(bytes)).map(drop)
}

/// Gathers text so a line reaches the console in one write; when it fills
/// up it writes what it holds and carries on.
#[derive(Clone, Debug)]
pub struct LineBuffer<const N: usize> {
    bytes: [u8; N],
    length: usize,
}

impl<const N: usize> LineBuffer<N> {
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            length: 0,
        }
    }

    /// What has been gathered and not yet written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }

    /// Forgets what has been gathered.
    pub fn clear(&mut self) {
        self.length = 0;
    }

    /// Writes what has been gathered to the console and empties the buffer.
    pub fn flush(&mut self) -> Result<(), XenError> {
        let result = if self.length == 0 {
            Ok(())
        } else {
            write(self.as_bytes())
        };
        self.length = 0;
        result
    }
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for LineBuffer<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.length == N {
                self.flush().map_err(|_| fmt::Error)?;
            }
            if let Some(slot) = self.bytes.get_mut(self.length) {
                *slot = byte;
                self.length += 1;
            }
        }
        Ok(())
    }
}

/// The output queue of a PV console page (`struct xencons_interface`:
/// `in[1024]`, `out[2048]`, then `in_cons`, `in_prod`, `out_cons`,
/// `out_prod` as free-running u32s; XEN-ABI.md §9).
const OUT_DATA: usize = 1024;
const OUT_SIZE: u32 = 2048;
const OUT_CONSUMER: usize = 3080;
const OUT_PRODUCER: usize = 3084;

/// Our end of the PV console ring: we produce output, the console back
/// end (xenconsoled, or Xenolith's Dom0) consumes it. The back end is
/// another domain, so its index is trusted for nothing but room.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleRing {
    page: FrameSlot,
}

impl ConsoleRing {
    /// The ring on `page` (the frame HVM_PARAM_CONSOLE_PFN names).
    pub const fn new(page: FrameSlot) -> Self {
        Self { page }
    }

    /// (consumer, producer), each read once.
    fn indices(&self) -> (u32, u32) {
        (
            self.page.load::<u32>(OUT_CONSUMER).unwrap_or(0),
            self.page.load::<u32>(OUT_PRODUCER).unwrap_or(0),
        )
    }

    /// Bytes free for us now; 0 if the consumer index is impossible (a
    /// back end claiming more than the ring holds is not believed).
    pub fn room(&self) -> usize {
        let (consumer, producer) = self.indices();
        OUT_SIZE.saturating_sub(producer.wrapping_sub(consumer)) as usize
    }

    /// Appends as much of `bytes` as fits and publishes it; how many went.
    /// The caller notifies the back end.
    pub fn produce(&self, bytes: &[u8]) -> usize {
        let (_, producer) = self.indices();
        // The consumer's index before the bytes it frees are overwritten.
        fence(Ordering::SeqCst);
        let count = bytes.len().min(self.room());
        for (index, &byte) in bytes.iter().take(count).enumerate() {
            let position = producer.wrapping_add(index as u32) & (OUT_SIZE - 1);
            self.page.store(OUT_DATA + position as usize, byte);
        }
        // The bytes before the index that publishes them.
        fence(Ordering::SeqCst);
        self.page
            .store(OUT_PRODUCER, producer.wrapping_add(count as u32));
        count
    }

    /// Writes all of `bytes`, calling `kick` (notify the back end and let
    /// it run) after each part; when the ring stays full for `patience`
    /// kicks in a row, drops the rest. How many bytes were dropped.
    pub fn write_all(&self, bytes: &[u8], patience: u32, mut kick: impl FnMut()) -> usize {
        let mut rest = bytes;
        let mut idle = 0;
        while !rest.is_empty() {
            let count = self.produce(rest);
            rest = rest.get(count..).unwrap_or(&[]);
            kick();
            if count == 0 {
                idle += 1;
                if idle >= patience {
                    return rest.len();
                }
            } else {
                idle = 0;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::test_page;
    use core::fmt::Write;

    fn consume(page: &FrameSlot, taken: &mut Vec<u8>, most: usize) {
        let consumer = page.load::<u32>(OUT_CONSUMER).unwrap();
        let producer = page.load::<u32>(OUT_PRODUCER).unwrap();
        let count = (producer.wrapping_sub(consumer) as usize).min(most);
        for index in 0..count {
            let position = consumer.wrapping_add(index as u32) & (OUT_SIZE - 1);
            taken.push(page.load(OUT_DATA + position as usize).unwrap());
        }
        page.store(OUT_CONSUMER, consumer.wrapping_add(count as u32));
    }

    #[test]
    fn ring_output_reaches_a_consumer_across_the_wrap() {
        let page = test_page();
        // Indices near u32's wrap, as a long-running console has.
        page.store(OUT_CONSUMER, u32::MAX - 10);
        page.store(OUT_PRODUCER, u32::MAX - 10);
        let ring = ConsoleRing::new(page);
        let text: Vec<u8> = (0..5000u32)
            .map(|index| b'a' + (index % 26) as u8)
            .collect();
        let mut taken = Vec::new();
        let dropped = ring.write_all(&text, 3, || consume(&page, &mut taken, 700));
        assert_eq!(dropped, 0);
        // What the last kick left, as the back end's next run would take.
        consume(&page, &mut taken, usize::MAX);
        assert_eq!(taken.len(), text.len());
        assert!(taken == text, "the bytes arrived changed or reordered");
    }

    #[test]
    fn a_full_ring_drops_the_rest_after_its_patience() {
        let page = test_page();
        let ring = ConsoleRing::new(page);
        let mut kicks = 0;
        // Nobody consumes: the first 2048 bytes fit, the rest is dropped.
        let dropped = ring.write_all(&[b'x'; 3000], 5, || kicks += 1);
        assert_eq!(dropped, 3000 - 2048);
        assert_eq!(kicks, 1 + 5);
        assert_eq!(ring.room(), 0);
        assert_eq!(ring.write_all(b"more", 2, || {}), 4);
    }

    #[test]
    fn an_impossible_consumer_index_gives_no_room() {
        let page = test_page();
        // A back end claiming to have consumed bytes never produced.
        page.store(OUT_CONSUMER, 100u32);
        page.store(OUT_PRODUCER, 0u32);
        let ring = ConsoleRing::new(page);
        assert_eq!(ring.room(), 0);
        assert_eq!(ring.produce(b"hello"), 0);
        assert_eq!(page.load::<u32>(OUT_PRODUCER), Some(0));
    }

    #[test]
    fn gathers_until_flushed() {
        let mut line = LineBuffer::<64>::new();
        let name = "name";
        write!(line, "test-guest: PASS {name}").unwrap();
        assert_eq!(line.as_bytes(), b"test-guest: PASS name");
        line.clear();
        assert!(line.as_bytes().is_empty());
    }
}
