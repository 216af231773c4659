//! The hypervisor's debug console (`console_io`, hypercall 18, write
//! only), and a line buffer so each message leaves in one hypercall.

use core::fmt;

use crate::error::XenError;
use crate::raw;

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

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

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
