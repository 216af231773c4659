//! Guest console output on the hypervisor's serial line: bytes from a
//! guest are gathered into lines, stripped of control characters (a guest
//! must not drive the operator's terminal) and emitted whole, so lines from
//! the hypervisor and from guests never interleave mid-line.

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
