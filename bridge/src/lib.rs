//! Dom0's L2 bridge: MAC learning with aging, flooding, per-port counters and a spoofing guard.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
