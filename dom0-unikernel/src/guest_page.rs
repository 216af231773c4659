//! A guest page mapped into Dom0 (MAP_FRAMES): the one place Dom0 touches
//! memory a guest can change under it: bytes by volatile copies, ring
//! indices by single 32-bit atomic accesses.

use core::sync::atomic::{AtomicU32, Ordering, fence};

use dom0::ring::SharedPage;
use xenolith_abi::domain::DomainId;

use crate::control::{self, Errno};

const PAGE: usize = 4096;

/// One guest frame, mapped into Dom0 for as long as this lives (the
/// hypervisor also drops the mapping when the guest is destroyed).
pub struct GuestPage {
    domain: DomainId,
    frame: u64,
    address: usize,
}

impl GuestPage {
    /// Maps guest frame `frame` of `domain`.
    pub fn map(domain: DomainId, frame: u64) -> Result<Self, Errno> {
        let mut address = [0u64];
        control::map_frames(domain, frame, &mut address)?;
        // Dom0's own page tables cover the first 4 GiB only.
        if address[0] == 0 || !address[0].is_multiple_of(PAGE as u64) || address[0] >= 1 << 32 {
            let _ = control::unmap_frames(domain, frame, 1);
            return Err(-12);
        }
        Ok(Self {
            domain,
            frame,
            address: address[0] as usize,
        })
    }
}

impl Drop for GuestPage {
    fn drop(&mut self) {
        // Fails harmlessly when the guest is already gone.
        let _ = control::unmap_frames(self.domain, self.frame, 1);
    }
}

impl SharedPage for GuestPage {
    fn read(&self, offset: usize, buffer: &mut [u8]) {
        let Some(end) = offset.checked_add(buffer.len()) else {
            return;
        };
        if end > PAGE {
            return;
        }
        fence(Ordering::Acquire);
        for (index, byte) in buffer.iter_mut().enumerate() {
            // SAFETY: `address` is a page the hypervisor mapped into Dom0
            // for this guest frame, and `offset + index` is inside it.
            // Volatile: the guest may change it at any time.
            *byte =
                unsafe { core::ptr::read_volatile((self.address + offset + index) as *const u8) };
        }
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        let Some(end) = offset.checked_add(data.len()) else {
            return;
        };
        if end > PAGE {
            return;
        }
        for (index, &byte) in data.iter().enumerate() {
            // SAFETY: as in `read`; the page is the guest's and Dom0's to
            // share, and no Rust reference to it exists.
            unsafe { core::ptr::write_volatile((self.address + offset + index) as *mut u8, byte) };
        }
        // Data before the index that publishes it.
        fence(Ordering::Release);
    }

    fn load(&self, offset: usize) -> u32 {
        let Some(word) = self.index_word(offset) else {
            return 0;
        };
        // One 32-bit load (a byte-wise copy can straddle the guest's store
        // and see half of each value); acquire: the bytes it covers are
        // read after it.
        word.load(Ordering::Acquire)
    }

    fn store(&mut self, offset: usize, value: u32) {
        let Some(word) = self.index_word(offset) else {
            return;
        };
        // Everything Dom0 did to the page before (the bytes this index
        // publishes, the bytes it read before freeing them) is visible
        // first; then one 32-bit store, never seen half-written.
        fence(Ordering::Release);
        word.store(value, Ordering::Release);
    }
}

impl GuestPage {
    /// The index word at `offset`, if it is aligned and inside the page.
    fn index_word(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4)? > PAGE {
            return None;
        }
        let pointer = (self.address + offset) as *mut u32;
        // SAFETY: `address` is a page the hypervisor mapped into Dom0 for
        // this guest frame and stays mapped while `self` lives; `offset` is
        // 4-aligned and the word inside the page. The guest changes it
        // concurrently, which is what an atomic is for; Dom0 never makes a
        // plain reference to these bytes.
        Some(unsafe { AtomicU32::from_ptr(pointer) })
    }
}
