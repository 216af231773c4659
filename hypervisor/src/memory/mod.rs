//! Host memory: addresses, the frame allocator and page tables.

pub mod address;
pub mod frames;
pub mod guest_walk;
pub mod paging;

pub use address::{
    GuestPhysAddr, GuestVirtAddr, HostPhysAddr, HostRange, OutOfBounds, PAGE_SIZE, PhysicalMemory,
};
