//! The blkif back end as a pure state machine: xenbus handshake, request validation, reads, writes, flushes, discards and indirect requests against a block device trait.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
