//! The appliance disk: GPT (CRC-checked, backup fallback) and the Xenolith volume store (named volumes of extents, crash-safe metadata).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
