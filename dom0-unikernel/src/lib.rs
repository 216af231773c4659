//! Dom0's logic, testable on the host: reading what the hypervisor hands
//! it at boot, its command line, guest building, the rings it shares with
//! guests, their consoles and xenstore nodes, and the management shell.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmdline;
pub mod console_log;
pub mod domain_nodes;
pub mod guest_builder;
pub mod kernel_cache;
pub mod pci;
pub mod ring;
pub mod shell;
pub mod start_info;
pub mod virtio_blk;
pub mod virtio_net;
