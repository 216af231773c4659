//! The serial console in the running machine: where each domain's console
//! output goes (Dom0's straight through, guests' as rate-limited lines),
//! and typed input, polled from COM1 while Dom0 listens for it and handed
//! to Dom0 with VIRQ_CONSOLE and `CONSOLEIO_read`.

use hypervisor::console::input::{self, INPUT_CAPACITY, InputBuffer};
use hypervisor::console::{LINES_PER_SECOND, LineBuffer, LineVerdict, RateLimiter};
use hypervisor::hypercall::Console;
use hypervisor::time::SystemTime;
use log::{info, warn};
use xenolith_abi::domain::DomainId;

use super::Machine;
use super::shared::SharedPages;
use crate::hw::serial;

/// Most bytes taken from the UART in one look (its FIFO holds 16).
const RECEIVE_BATCH: usize = 64;

/// Sends a domain's console output on its way: Dom0's bytes go out as they
/// come (its shell's prompt, echo and escape sequences, and the guest
/// consoles it mirrors); a guest's are gathered into sanitised lines
/// prefixed "(dN) " and held to the console rate limit.
pub(super) fn domain_output(
    domain: DomainId,
    bytes: &[u8],
    lines: &mut LineBuffer,
    limit: &mut RateLimiter,
    now_ns: u64,
) {
    if domain == DomainId::DOM0 {
        serial::write_bytes(bytes);
        return;
    }
    lines.push(bytes, |line| emit_guest_line(domain, line, limit, now_ns));
}

/// Prints one line of a guest's console, held to the console rate limit.
fn emit_guest_line(domain: DomainId, line: &str, limit: &mut RateLimiter, now_ns: u64) {
    match limit.check(now_ns) {
        LineVerdict::Print => info!("(d{}) {line}", domain.0),
        LineVerdict::PrintAfterDropping(dropped) => {
            warn!(
                "(d{}) {dropped} console lines dropped: more than {LINES_PER_SECOND} a second",
                domain.0
            );
            info!("(d{}) {line}", domain.0);
        }
        LineVerdict::Drop => {}
    }
}

/// The console as one domain's `console_io` hypercall sees it.
pub(super) struct DomainConsole<'a> {
    pub(super) domain: DomainId,
    pub(super) lines: &'a mut LineBuffer,
    pub(super) limit: &'a mut RateLimiter,
    pub(super) now_ns: u64,
    pub(super) input: &'a mut InputBuffer,
}

impl Console for DomainConsole<'_> {
    fn write(&mut self, bytes: &[u8]) {
        domain_output(self.domain, bytes, self.lines, self.limit, self.now_ns);
    }

    fn peek_input(&self, skip: usize, into: &mut [u8]) -> usize {
        self.input.peek(skip, into)
    }

    fn consume_input(&mut self, count: usize) {
        self.input.consume(count);
    }
}

impl Machine<'_> {
    /// Looks at the serial receiver when it is time to, if Dom0 listens
    /// for console input; returns when to look next (`None`: Dom0 does not
    /// listen, so no timer is needed for it).
    pub(super) fn poll_console_input(&mut self) -> Option<SystemTime> {
        let listening = self
            .domains
            .get(DomainId::DOM0)
            .is_ok_and(|entry| input::listening(&entry.events));
        if !listening {
            return None;
        }
        let now = self.now();
        if self.input_polling.due(now) {
            let found_input = self.receive_console_input();
            self.input_polling.polled(now, found_input);
        }
        Some(self.input_polling.next())
    }

    /// Moves bytes typed on the serial line into the input buffer and
    /// raises VIRQ_CONSOLE in Dom0 (if bound) when any arrived; returns
    /// whether any did.
    pub(super) fn receive_console_input(&mut self) -> bool {
        let mut typed = [0u8; RECEIVE_BATCH];
        let count = serial::receive(&mut typed);
        if count == 0 {
            return false;
        }
        let Ok(entry) = self.domains.get(DomainId::DOM0) else {
            return true;
        };
        let mut memory = SharedPages::of(entry);
        let (pushed, delivery) = input::receive(
            &mut self.console_input,
            &typed[..count],
            &entry.events,
            &mut memory,
        );
        if pushed.overflow_began {
            warn!(
                "console input: {INPUT_CAPACITY} bytes wait for dom0; more typing is dropped until it reads"
            );
        }
        self.deliver(DomainId::DOM0, delivery);
        true
    }
}
