//! The Xenolith hypervisor's logic: everything that can be reasoned about
//! and tested without the machine. The binary (`main.rs` and `hw/`) wires it
//! to the hardware.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod boot;
pub mod console;
pub mod control;
pub mod dom0;
pub mod domain;
pub mod event_channel;
pub mod grant_table;
pub mod hvm_platform;
pub mod hypercall;
pub mod memory;
pub mod scheduler;
pub mod svm;
pub mod time;
pub mod vcpu;
pub mod vlapic;
