//! Xen shared rings (io/ring.h) from the back end's side: request and response slots in granted pages, free-running indices checked against the ring size, and the notification hold-off rules.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
