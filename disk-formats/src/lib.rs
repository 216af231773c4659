//! Guest disk image formats served by blkback and the host tool: raw and qcow2.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
