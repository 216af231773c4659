//! Xenolith's management API: HTTP/1.1 + JSON for listing, creating and
//! controlling domains, reading consoles, host information and Prometheus
//! metrics.
//!
//! Everything here is a pure state machine, as in smoltcp: the caller (Dom0,
//! or a host test) hands received bytes and the time to
//! [`Server::receive`], calls [`Server::poll`] when a deadline passes, and
//! writes out whatever [`Output`]s come back. Domain operations go through
//! the [`Backend`] trait, which Dom0 implements over its toolstack and tests
//! fake (`test-utils` feature: [`fake::FakeBackend`]).
//!
//! Network input is parsed in two steps: [`http::parse_request`] finds and
//! checks a request's framing, then [`route::route`] turns it into a
//! validated [`ApiRequest`]. Every size, count and wait is bounded by
//! [`Limits`]; faults become HTTP errors with a JSON body
//! `{"error": "...", "code": N}` and never panics.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod auth;
pub mod backend;
pub mod connection;
pub mod create;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
pub mod http;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod response;
pub mod route;
pub mod server;
pub mod service;
pub mod time;

#[cfg(test)]
mod tests;

pub use auth::{Access, Token};
pub use backend::{
    Backend, BackendError, BuildStatus, ConsoleChunk, ConsoleOffset, DomainAction, DomainInfo,
    DomainRef, DomainState, HostInfo,
};
pub use connection::{Connection, Output};
pub use limits::Limits;
pub use route::ApiRequest;
pub use server::{ConnectionId, Refused, Server, ServerConfig};
pub use time::{Duration, Instant};

/// The API's version, as it appears in paths (`/v1/...`) and `GET /v1/host`.
pub const API_VERSION: &str = "1";
