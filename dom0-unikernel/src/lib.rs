//! Dom0's logic, testable on the host: reading what the hypervisor hands
//! it at boot, its command line, guest building, the rings it shares with
//! guests, their consoles and xenstore nodes, the management shell, and
//! Dom0's own address and the management API's sockets on it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod api_service;
pub mod cmdline;
pub mod console_log;
pub mod create_error;
pub mod dom0_ip;
pub mod domain_nodes;
pub mod guest_builder;
pub mod kernel_cache;
pub mod pci;
pub mod ring;
pub mod shell;
pub mod start_info;
pub mod virtio_blk;
pub mod virtio_net;
