//! PVH boot, shared by the hypervisor (which boots Dom0) and Dom0 (which
//! builds guests): reading a kernel's ELF image and writing the
//! `hvm_start_info` block it finds in EBX; and for HVM guests, the Linux
//! boot protocol's zero page (`linux_boot`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod bzimage;
pub mod image;
pub mod linux_boot;
pub mod start_info;

pub use image::{ImageError, MAX_SEGMENTS, PvhImage, Segment};
