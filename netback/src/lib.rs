//! The netif back end as a pure state machine: xenbus handshake, TX and RX rings, validation and per-vif counters.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
