//! Dom0's logic, testable on the host: reading what the hypervisor hands
//! it at boot, and its command line.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod cmdline;
pub mod guest_builder;
pub mod start_info;
