//! A guest's console as Dom0 keeps it: the recent output in a bounded
//! history (for `console` and for post-mortems), and whole lines for the
//! appliance's serial line, prefixed with the guest's name and stripped of
//! control characters so a guest cannot drive the operator's terminal.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// Bytes of history kept per guest.
pub const HISTORY_BYTES: usize = 16 * 1024;
/// Longest line assembled before it is emitted anyway.
pub const LINE_BYTES: usize = 240;

/// One guest's console output.
#[derive(Clone, Debug, Default)]
pub struct ConsoleLog {
    history: VecDeque<u8>,
    line: Vec<u8>,
    /// History bytes dropped to stay within [`HISTORY_BYTES`].
    dropped: u64,
}

impl ConsoleLog {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            history: VecDeque::new(),
            line: Vec::new(),
            dropped: 0,
        }
    }

    /// Records guest output; `emit` receives every completed line,
    /// sanitised (without its newline).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        let overflow = (self.history.len() + bytes.len()).saturating_sub(HISTORY_BYTES);
        let from_history = overflow.min(self.history.len());
        self.history.drain(..from_history);
        let skipped = overflow - from_history;
        self.history.extend(&bytes[skipped.min(bytes.len())..]);
        self.dropped += overflow as u64;
        for &byte in bytes {
            match byte {
                b'\n' => self.end_line(&mut emit),
                b'\r' => {}
                _ => {
                    if self.line.len() == LINE_BYTES {
                        self.end_line(&mut emit);
                    }
                    self.line.push(byte);
                }
            }
        }
    }

    /// Emits the unfinished line, if any (when the guest stops).
    pub fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if !self.line.is_empty() {
            self.end_line(&mut emit);
        }
    }

    /// The unfinished last line (a shell prompt), sanitised.
    pub fn partial_line(&self) -> String {
        sanitise(&self.line)
    }

    /// The recent output, oldest first.
    pub fn history(&self) -> Vec<u8> {
        self.history.iter().copied().collect()
    }

    /// Bytes of output no longer in the history.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes written since the guest started: the offset just after the
    /// newest byte of history.
    pub fn written(&self) -> u64 {
        self.dropped.saturating_add(self.history.len() as u64)
    }

    /// Up to `max_bytes` of output from offset `since` (bytes since the
    /// guest started) on: the offset of the first byte returned and the
    /// bytes. Output older than the history starts at its oldest byte;
    /// an offset past the end gives nothing, at the end.
    pub fn read_from(&self, since: u64, max_bytes: usize) -> (u64, Vec<u8>) {
        let start = since.clamp(self.dropped, self.written());
        let skip = usize::try_from(start - self.dropped).unwrap_or(usize::MAX);
        let bytes = self.history.iter().skip(skip).take(max_bytes).copied();
        (start, bytes.collect())
    }

    fn end_line(&mut self, emit: &mut impl FnMut(&str)) {
        emit(&sanitise(&self.line));
        self.line.clear();
    }
}

/// Printable ASCII and tabs stay; escape sequences lose their ESC, other
/// control and non-ASCII bytes become `?`.
pub fn sanitise(bytes: &[u8]) -> String {
    bytes
        .iter()
        .filter(|&&byte| byte != 0x1b)
        .map(|&byte| match byte {
            b'\t' | b' '..=b'~' => char::from(byte),
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(log: &mut ConsoleLog, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        log.push(bytes, |line| out.push(line.to_string()));
        out
    }

    #[test]
    fn output_becomes_sanitised_lines() {
        let mut log = ConsoleLog::new();
        assert_eq!(
            lines(&mut log, b"[    0.1] Linux\r\nhel"),
            ["[    0.1] Linux"]
        );
        assert_eq!(log.partial_line(), "hel");
        assert_eq!(
            lines(&mut log, b"lo\x1b[1mbold\x07\xff\n"),
            ["hello[1mbold??"]
        );
        assert_eq!(lines(&mut log, b"~ # "), Vec::<String>::new());
        let mut flushed = Vec::new();
        log.flush(|line| flushed.push(line.to_string()));
        assert_eq!(flushed, ["~ # "]);
    }

    #[test]
    fn a_line_without_end_is_cut_at_the_bound() {
        let mut log = ConsoleLog::new();
        let out = lines(&mut log, &[b'x'; LINE_BYTES * 2 + 3]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|line| line.len() == LINE_BYTES));
        assert_eq!(log.partial_line().len(), 3);
    }

    #[test]
    fn reads_by_offset_follow_the_output_past_the_history_bound() {
        let mut log = ConsoleLog::new();
        log.push(b"hello world", |_| {});
        assert_eq!(log.read_from(0, 5), (0, b"hello".to_vec()));
        assert_eq!(log.read_from(6, 100), (6, b"world".to_vec()));
        assert_eq!(log.read_from(11, 100), (11, Vec::new()));
        // Past the end: nothing, at the end (not a hole).
        assert_eq!(log.read_from(500, 100), (11, Vec::new()));
        log.push(&vec![b'x'; HISTORY_BYTES], |_| {});
        assert_eq!(log.written(), 11 + HISTORY_BYTES as u64);
        // "hello world" fell out: a read from 0 starts at the oldest kept.
        let (start, bytes) = log.read_from(0, 4);
        assert_eq!((start, bytes), (11, b"xxxx".to_vec()));
    }

    #[test]
    fn history_keeps_the_newest_bytes_within_its_bound() {
        let mut log = ConsoleLog::new();
        for round in 0..100u32 {
            let chunk: Vec<u8> = (0..700).map(|i| (i + round) as u8).collect();
            log.push(&chunk, |_| {});
            assert!(log.history().len() <= HISTORY_BYTES);
        }
        assert_eq!(log.history().len(), HISTORY_BYTES);
        assert_eq!(log.dropped(), 100 * 700 - HISTORY_BYTES as u64);
        assert_eq!(*log.history().last().unwrap(), (699 + 99) as u8);
        // One push bigger than the whole history keeps its tail.
        log.push(&vec![9; HISTORY_BYTES * 2], |_| {});
        assert_eq!(log.history(), vec![9; HISTORY_BYTES]);
    }
}
