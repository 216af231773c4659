//! The hypervisor's serial console: guest output gathered into lines,
//! stripped of control characters (a guest must not drive the operator's
//! terminal) and emitted whole, so lines from the hypervisor and from
//! guests never interleave mid-line; Dom0's output passed through as it
//! comes (Dom0 runs the operator's shell); and typed input ([`input`]).

pub mod input;

use arrayvec::ArrayString;

/// Longest line kept before it is emitted anyway.
pub const LINE_MAX: usize = 200;

/// One domain's partial output line.
#[derive(Default)]
pub struct LineBuffer {
    line: ArrayString<LINE_MAX>,
}

impl LineBuffer {
    pub const fn new() -> Self {
        Self {
            line: ArrayString::new_const(),
        }
    }

    /// Adds guest bytes; `emit` receives every completed line (without its
    /// newline).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &byte in bytes {
            match byte {
                b'\n' => self.flush(&mut emit),
                b'\r' => {}
                b'\t' | b' '..=b'~' => {
                    if self.line.is_full() {
                        self.flush(&mut emit);
                    }
                    self.line.push(char::from(byte));
                }
                _ => {
                    if self.line.is_full() {
                        self.flush(&mut emit);
                    }
                    self.line.push('?');
                }
            }
        }
    }

    /// Emits the partial line, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        emit(&self.line);
        self.line.clear();
    }

    /// Whether a partial line is waiting.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut buffer = LineBuffer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.push(chunk, |line| out.push(line.to_string()));
        }
        out
    }

    #[test]
    fn joins_chunks_into_lines() {
        assert_eq!(
            lines(&[b"dom0 re", b"ady\r\nnext\n"]),
            ["dom0 ready", "next"]
        );
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(lines(&[b"\x1b[2Jhi\x07\n"]), ["?[2Jhi?"]);
    }

    #[test]
    fn splits_overlong_lines() {
        let long = vec![b'a'; LINE_MAX + 5];
        let out = lines(&[&long, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1], "aaaaa");
    }
}

/// Lines a guest may print per second before the rest are dropped (a
/// guest must not be able to flood the operator's console or stall the
/// hypervisor on a slow serial line).
pub const LINES_PER_SECOND: u64 = 50;
/// Lines a guest may print in a burst.
pub const BURST_LINES: u64 = 200;

/// A token bucket over guest console lines.
#[derive(Clone, Copy, Debug)]
pub struct RateLimiter {
    tokens: u64,
    refilled_at_ns: u64,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineVerdict {
    /// Print it.
    Print,
    /// Print it, after a note that this many lines were dropped.
    PrintAfterDropping(u64),
    /// Drop it.
    Drop,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub const fn new() -> Self {
        Self {
            tokens: BURST_LINES,
            refilled_at_ns: 0,
            suppressed: 0,
        }
    }

    /// Lines dropped since the last printed one (and forgets them).
    pub fn take_suppressed(&mut self) -> u64 {
        core::mem::take(&mut self.suppressed)
    }

    /// Decides about a line printed at `now_ns`.
    pub fn check(&mut self, now_ns: u64) -> LineVerdict {
        let elapsed = now_ns.saturating_sub(self.refilled_at_ns);
        let earned = elapsed.saturating_mul(LINES_PER_SECOND) / 1_000_000_000;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(BURST_LINES);
            self.refilled_at_ns = now_ns;
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return LineVerdict::Drop;
        }
        self.tokens -= 1;
        match core::mem::take(&mut self.suppressed) {
            0 => LineVerdict::Print,
            dropped => LineVerdict::PrintAfterDropping(dropped),
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate() {
        let mut limiter = RateLimiter::new();
        let printed = (0..1000)
            .filter(|_| limiter.check(0) != LineVerdict::Drop)
            .count();
        assert_eq!(printed as u64, BURST_LINES);
        // One second later: fifty more, the first with the drop count.
        assert_eq!(
            limiter.check(1_000_000_000),
            LineVerdict::PrintAfterDropping(800)
        );
        let more = (0..100)
            .filter(|_| limiter.check(1_000_000_000) != LineVerdict::Drop)
            .count();
        assert_eq!(more as u64, LINES_PER_SECOND - 1);
    }

    #[test]
    fn a_quiet_guest_is_never_limited() {
        let mut limiter = RateLimiter::new();
        for second in 0..100u64 {
            for line in 0..10 {
                assert_eq!(
                    limiter.check(second * 1_000_000_000 + line),
                    LineVerdict::Print
                );
            }
        }
    }
}

/// The bytes that go out on the serial line, and where its cursor is. The
/// log's lines and Dom0's passed-through output share the line: a lone
/// "\n" goes out as "\r\n" (a "\r\n" the writer sent itself stays as it
/// is), and a log line that would start in the middle of Dom0's output
/// (after a prompt, say) starts on a fresh line instead.
#[derive(Clone, Copy, Debug)]
pub struct SerialLine {
    previous: u8,
}

impl Default for SerialLine {
    fn default() -> Self {
        Self::new()
    }
}

impl SerialLine {
    /// A line at its start.
    pub const fn new() -> Self {
        Self { previous: b'\n' }
    }

    /// Sends `byte` through `send`, with a carriage return before a lone
    /// line feed.
    pub fn put(&mut self, byte: u8, mut send: impl FnMut(u8)) {
        if byte == b'\n' && self.previous != b'\r' {
            send(b'\r');
        }
        send(byte);
        self.previous = byte;
    }

    /// Whether the cursor is at the start of a line (nothing sent yet, or
    /// the last byte ended a line).
    pub fn at_line_start(&self) -> bool {
        self.previous == b'\n'
    }

    /// Ends a partial line, so that what follows starts on its own.
    pub fn start_line(&mut self, mut send: impl FnMut(u8)) {
        if !self.at_line_start() {
            self.put(b'\n', &mut send);
        }
    }
}

#[cfg(test)]
mod serial_line_tests {
    use super::*;

    fn sent(line: &mut SerialLine, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in bytes {
            line.put(byte, |sent| out.push(sent));
        }
        out
    }

    #[test]
    fn lone_line_feeds_get_a_carriage_return_and_others_pass() {
        let mut line = SerialLine::new();
        assert_eq!(sent(&mut line, b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(
            sent(&mut line, b"\x08 \x08\x1b[2J\r"),
            b"\x08 \x08\x1b[2J\r"
        );
    }

    #[test]
    fn a_new_line_is_started_only_after_a_partial_one() {
        let mut line = SerialLine::new();
        let mut out = Vec::new();
        line.start_line(|byte| out.push(byte));
        assert!(out.is_empty());
        out = sent(&mut line, b"xenolith# ");
        assert!(!line.at_line_start());
        line.start_line(|byte| out.push(byte));
        assert_eq!(out, b"xenolith# \r\n");
        assert!(line.at_line_start());
        // A carriage return alone leaves the prompt on the line.
        sent(&mut line, b"x\r");
        assert!(!line.at_line_start());
    }
}
