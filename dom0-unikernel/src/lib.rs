//! Dom0's logic, testable on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
