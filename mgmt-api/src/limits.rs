//! Bounds on everything a peer controls: sizes, counts and waits.

use crate::time::Duration;

/// The server's bounds. [`Limits::DEFAULT`] suits an appliance with a
/// handful of operators and scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers, in bytes (431 beyond it).
    pub max_head_bytes: usize,
    /// Request line alone, in bytes (414 beyond it).
    pub max_request_line_bytes: usize,
    /// Header fields per request (431 beyond it).
    pub max_headers: usize,
    /// Request body, in bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// Open connections; more are refused with 503.
    pub max_connections: usize,
    /// Console bytes in one answer.
    pub max_console_bytes: usize,
    /// From a request's first byte to the end of its headers (408 after).
    pub header_timeout: Duration,
    /// From a request's first byte to the end of its body (408 after).
    pub request_timeout: Duration,
    /// A kept-alive connection with nothing to do is closed after this.
    pub idle_timeout: Duration,
    /// How long a console read waits for new bytes before answering with
    /// none (the long-poll).
    pub console_wait: Duration,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Limits = Limits {
        max_head_bytes: 8 * 1024,
        max_request_line_bytes: 2 * 1024,
        max_headers: 32,
        max_body_bytes: 64 * 1024,
        max_connections: 16,
        max_console_bytes: 16 * 1024,
        header_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        console_wait: Duration::from_secs(25),
    };

    /// The most bytes a connection buffers: one whole request.
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_head_bytes.saturating_add(self.max_body_bytes)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}
