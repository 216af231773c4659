//! x86_64 long-mode plumbing the two bare-metal binaries (hypervisor and
//! Dom0) share: the 32-bit entry, descriptor tables and exception reports.
//! Everything here touches the CPU directly; the binaries stay thin.
#![no_std]

pub mod cpu;
pub mod descriptors;
pub mod entry;
pub mod exceptions;
