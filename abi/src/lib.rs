//! The Xen guest ABI as Rust types and constants, shared by the hypervisor
//! and Dom0. Layouts and numbers only: the logic that reads or writes them
//! lives with its owner. Source of truth: Xen's `xen/include/public/`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod console_io;
pub mod control;
pub mod cpuid;
pub mod domain;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall;
pub mod sched;
pub mod start_info;
pub mod version;
pub mod xenbus;
