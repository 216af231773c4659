//! virtio-drivers' `Hal` for Dom0: DMA memory comes from Dom0's heap and
//! buffers are shared as they are, because Dom0 is identity-mapped twice
//! over (its virtual addresses are its guest-physical addresses, which the
//! hypervisor's nested tables make its host-physical ones) and there is no
//! IOMMU. MMIO addresses are used as they are for the same reason.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use super::config::MAPPED_LIMIT;

/// Dom0's `Hal`.
pub struct Dom0Hal;

fn layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory nothing else
// uses until `dma_dealloc`; addresses below 4 GiB are the same to Dom0 and
// to devices (see the module notes), and `mmio_phys_to_virt` is only given
// BAR ranges checked to lie below 4 GiB.
unsafe impl Hal for Dom0Hal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = layout(pages).filter(|layout| layout.size() > 0) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: a non-zero-sized layout.
        let pointer = unsafe { alloc_zeroed(layout) };
        match NonNull::new(pointer) {
            // Heap memory lies in Dom0's RAM, below 4 GiB.
            Some(pointer) => (pointer.as_ptr() as PhysAddr, pointer),
            // virtio-drivers reads address 0 as "no memory".
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes what `dma_alloc` returned for `pages`,
        // which allocated it with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // Identity: the callers checked the BAR lies below MAPPED_LIMIT.
        debug_assert!(paddr.saturating_add(size as u64) <= MAPPED_LIMIT);
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
