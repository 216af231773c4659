//! One client connection as a state machine: bytes and the time go in
//! ([`Connection::receive`], [`Connection::poll`]), bytes to send and a
//! close come out. Requests are answered in order, so pipelining is safe;
//! a console long-poll holds later requests until it is answered.

use alloc::vec::Vec;

use crate::backend::{Backend, ConsoleOffset, DomainRef};
use crate::http::{self, Parsed};
use crate::limits::Limits;
use crate::response::Response;
use crate::service::{Handled, Service};
use crate::time::Instant;

/// What the caller must do for the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes, after any earlier ones.
    Send(Vec<u8>),
    /// Close the connection once everything before has been written.
    Close,
}

/// A console read waiting for bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Waiting {
    domain: DomainRef,
    since: ConsoleOffset,
    deadline: Instant,
    keep_alive: bool,
}

/// One connection's state.
#[derive(Debug)]
pub struct Connection {
    buffer: Vec<u8>,
    /// When the first byte of the request being read arrived.
    request_started: Option<Instant>,
    last_activity: Instant,
    waiting: Option<Waiting>,
    /// Whether the current request's complete head was checked for
    /// `Expect: 100-continue` (and the interim answer sent if asked).
    continue_checked: bool,
    closed: bool,
}

impl Connection {
    /// A connection accepted at `now`.
    pub fn new(now: Instant) -> Connection {
        Connection {
            buffer: Vec::new(),
            request_started: None,
            last_activity: now,
            waiting: None,
            continue_checked: false,
            closed: false,
        }
    }

    /// Whether the connection has asked to be closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether a console read is waiting for bytes.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Takes bytes received at `now` and answers every complete request.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        now: Instant,
        service: &mut Service,
        backend: &mut dyn Backend,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        if self.closed || bytes.is_empty() {
            return outputs;
        }
        self.last_activity = now;
        self.buffer.extend_from_slice(bytes);
        self.process(now, service, backend, &mut outputs);
        if !self.closed && self.buffer.len() > service.config.limits.max_buffered_bytes() {
            // Only reachable while a long-poll holds pipelined requests: no
            // answer can go out of order, so the connection just ends.
            self.close(&mut outputs);
        }
        outputs
    }

    /// Checks timeouts and waiting console reads at `now`.
    pub fn poll(
        &mut self,
        now: Instant,
        service: &mut Service,
        backend: &mut dyn Backend,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        if self.closed {
            return outputs;
        }
        if let Some(waiting) = self.waiting.clone() {
            let expired = now >= waiting.deadline;
            if let Some(response) =
                service.console_again(&waiting.domain, waiting.since, expired, backend)
            {
                self.waiting = None;
                self.send(&response, waiting.keep_alive, now, service, &mut outputs);
                self.process(now, service, backend, &mut outputs);
            }
            return outputs;
        }
        let limits = service.config.limits;
        if let Some(started) = self.request_started {
            if now >= self.request_deadline(started, &limits) {
                service.statistics.timeouts = service.statistics.timeouts.saturating_add(1);
                self.fail(408, "request not received in time", service, &mut outputs);
            }
        } else if now.since(self.last_activity) >= limits.idle_timeout {
            self.close(&mut outputs);
        }
        outputs
    }

    /// When [`Connection::poll`] next has something to do, if ever.
    pub fn next_deadline(&self, service: &Service) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let limits = &service.config.limits;
        if let Some(waiting) = &self.waiting {
            // Console bytes may arrive at any time; the caller also polls
            // when a console grows.
            return Some(waiting.deadline);
        }
        Some(match self.request_started {
            Some(started) => self.request_deadline(started, limits),
            None => self.last_activity + limits.idle_timeout,
        })
    }

    /// When the request that started at `started` times out: the header
    /// timeout until its head is complete, then the request timeout (a
    /// deadline already passed would have the caller poll in a loop).
    fn request_deadline(&self, started: Instant, limits: &Limits) -> Instant {
        let skipped = http::leading_blank_lines(&self.buffer);
        let head_complete = self
            .buffer
            .get(skipped..)
            .and_then(|rest| http::head_end(rest, limits))
            .is_some();
        if head_complete {
            started + limits.request_timeout
        } else {
            started + limits.header_timeout.min(limits.request_timeout)
        }
    }

    fn process(
        &mut self,
        now: Instant,
        service: &mut Service,
        backend: &mut dyn Backend,
        outputs: &mut Vec<Output>,
    ) {
        while !self.closed && self.waiting.is_none() {
            let skipped = http::leading_blank_lines(&self.buffer);
            if skipped == self.buffer.len() {
                self.buffer.clear();
                self.request_started = None;
                return;
            }
            if self.request_started.is_none() {
                self.request_started = Some(now);
            }
            match http::parse_request(&self.buffer, &service.config.limits) {
                Ok(Parsed::Incomplete) => {
                    if !self.continue_checked
                        && let Some(expected) =
                            http::continue_expected(&self.buffer, &service.config.limits)
                    {
                        self.continue_checked = true;
                        if expected {
                            outputs.push(Output::Send(Vec::from(http::CONTINUE)));
                        }
                    }
                    return;
                }
                Err(error) => {
                    self.fail(error.status(), error.message(), service, outputs);
                    return;
                }
                Ok(Parsed::Complete { request, consumed }) => {
                    self.buffer.drain(..consumed.min(self.buffer.len()));
                    self.request_started = None;
                    self.continue_checked = false;
                    let keep_alive = request.keep_alive();
                    match service.handle(&request, backend) {
                        Handled::Respond(response) => {
                            self.send(&response, keep_alive, now, service, outputs);
                        }
                        Handled::WaitForConsole { domain, since } => {
                            self.waiting = Some(Waiting {
                                domain,
                                since,
                                deadline: now + service.config.limits.console_wait,
                                keep_alive,
                            });
                        }
                    }
                }
            }
        }
    }

    fn send(
        &mut self,
        response: &Response,
        keep_alive: bool,
        now: Instant,
        service: &mut Service,
        outputs: &mut Vec<Output>,
    ) {
        service.record(response.status);
        outputs.push(Output::Send(response.to_bytes(keep_alive)));
        self.last_activity = now;
        if !keep_alive {
            self.close(outputs);
        }
    }

    /// Answers a framing fault and closes: after one, the stream's request
    /// boundaries are unknown.
    fn fail(
        &mut self,
        status: u16,
        message: &str,
        service: &mut Service,
        outputs: &mut Vec<Output>,
    ) {
        service.record(status);
        outputs.push(Output::Send(
            Response::error(status, message).to_bytes(false),
        ));
        self.close(outputs);
    }

    fn close(&mut self, outputs: &mut Vec<Output>) {
        self.closed = true;
        self.buffer = Vec::new();
        self.waiting = None;
        self.request_started = None;
        outputs.push(Output::Close);
    }
}
