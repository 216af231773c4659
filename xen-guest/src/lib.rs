//! The guest side of the Xen ABI, for any Rust guest of Xenolith (or of
//! Xen): typed hypercall wrappers that return `Result<_, XenError>`, the
//! `repr(C)` argument structures they pass, and views of the pages the
//! hypervisor shares (shared_info, vcpu_info, grant-table frames).
//!
//! All `unsafe` code lives in [`raw`]: the VMMCALL instruction and the
//! volatile/atomic accesses to shared pages. Everything else is safe and
//! builds argument structures only from borrowed memory, so the hypervisor
//! can write nothing the borrow checker does not know about.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

pub mod console;
pub mod cpuid;
pub mod error;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod memory;
#[allow(unsafe_code)]
pub mod raw;
pub mod sched;
pub mod shared;
pub mod time;
pub mod types;
pub mod vcpu;
pub mod version;
pub mod vm_assist;

pub use error::{GrantError, GrantStatus, XenError};
pub use raw::{FrameSlot, GuestHandle, RunstateArea, TimeArea};
pub use types::{
    DomainId, GrantHandle, GrantRef, GuestFrame, GuestPhysAddr, PAGE_SIZE, Port, SystemTime,
    VcpuId, Virq,
};
