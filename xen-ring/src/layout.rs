//! Where things are in a shared ring: the header offsets, the slot size and
//! count for a given number of pages, and the free-running index type.

use crate::error::RingError;

/// Bytes in one granted page.
pub const PAGE_SIZE: usize = 4096;

/// Bytes before the first slot (the four indices, `pvt` and padding).
pub const HEADER_SIZE: usize = 64;

/// Most pages one ring may span: 16, blkif's `max-ring-page-order` 4
/// (`XENBUS_MAX_RING_GRANT_ORDER`).
pub const MAX_PAGES: usize = 16;

/// Largest slot this crate copies out ([`crate::RequestSlot`] holds one
/// inline). blkif's 112-byte request is the largest ring.h user Xenolith
/// serves; raise this for a ring with larger slots.
pub const MAX_SLOT_SIZE: usize = 128;

/// Offsets of the shared ring header fields (`struct *_sring`).
pub mod offsets {
    /// Front end's published request producer index (u32).
    pub const REQ_PROD: usize = 0;
    /// Back end asks to be notified when `req_prod` passes this (u32).
    pub const REQ_EVENT: usize = 4;
    /// Back end's published response producer index (u32).
    pub const RSP_PROD: usize = 8;
    /// Front end asks to be notified when `rsp_prod` passes this (u32).
    pub const RSP_EVENT: usize = 12;
    /// First slot.
    pub const RING: usize = super::HEADER_SIZE;
}

/// A free-running ring index (`RING_IDX`): it wraps at 2^32 and names slot
/// `index & (slots - 1)`. Differences are taken with wrapping arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RingIndex(pub u32);

impl RingIndex {
    /// The index `count` entries later (wrapping).
    #[must_use]
    pub const fn add(self, count: u32) -> Self {
        Self(self.0.wrapping_add(count))
    }

    /// How many entries `self` is ahead of `earlier` (wrapping).
    #[must_use]
    pub const fn distance_from(self, earlier: Self) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }
}

/// The geometry of one ring: pages, request and response sizes, and the
/// derived slot size and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    pages: usize,
    request_size: usize,
    response_size: usize,
    slot_size: usize,
    slots: u32,
}

impl RingLayout {
    /// A ring over `pages` pages (1 to [`MAX_PAGES`]) whose slots are the
    /// union of a `request_size`-byte request and a `response_size`-byte
    /// response. Slot size is the larger of the two (C's union; every ring.h
    /// user has sizes that are already multiples of its alignment).
    pub fn new(pages: usize, request_size: usize, response_size: usize) -> Result<Self, RingError> {
        if pages == 0 || pages > MAX_PAGES {
            return Err(RingError::InvalidPageCount { pages });
        }
        let slot_size = request_size.max(response_size);
        if request_size == 0 || response_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(RingError::InvalidSlotSize {
                request_size,
                response_size,
            });
        }
        let fitting = (pages * PAGE_SIZE - HEADER_SIZE) / slot_size;
        // Round down to a power of two (ring.h's __RD32).
        let slots = match fitting {
            0 => {
                return Err(RingError::InvalidSlotSize {
                    request_size,
                    response_size,
                });
            }
            n => 1usize << (usize::BITS - 1 - n.leading_zeros()),
        };
        let slots = u32::try_from(slots).map_err(|_| RingError::InvalidPageCount { pages })?;
        Ok(Self {
            pages,
            request_size,
            response_size,
            slot_size,
            slots,
        })
    }

    /// A ring of `2^order` pages (`ring-page-order`), order 0 to 4.
    pub fn with_order(
        order: u32,
        request_size: usize,
        response_size: usize,
    ) -> Result<Self, RingError> {
        if order > 4 {
            return Err(RingError::InvalidPageCount {
                pages: 1usize.checked_shl(order).unwrap_or(usize::MAX),
            });
        }
        Self::new(1 << order, request_size, response_size)
    }

    /// Number of granted pages.
    pub const fn pages(&self) -> usize {
        self.pages
    }

    /// Bytes of the ring's memory (`pages * 4096`).
    pub const fn size(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// Bytes of one request.
    pub const fn request_size(&self) -> usize {
        self.request_size
    }

    /// Bytes of one response.
    pub const fn response_size(&self) -> usize {
        self.response_size
    }

    /// Stride between slots: the larger of request and response.
    pub const fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Number of slots (`RING_SIZE`), a power of two.
    pub const fn slots(&self) -> u32 {
        self.slots
    }

    /// Byte offset of the slot that `index` names.
    pub const fn slot_offset(&self, index: RingIndex) -> usize {
        HEADER_SIZE + (index.0 & (self.slots - 1)) as usize * self.slot_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts_match_xen_abi_table() {
        let blkif = |pages| RingLayout::new(pages, 112, 16).map(|l| l.slots());
        assert_eq!(blkif(1), Ok(32));
        assert_eq!(blkif(2), Ok(64));
        assert_eq!(blkif(4), Ok(128));
        assert_eq!(blkif(8), Ok(256));
        assert_eq!(blkif(16), Ok(512));
        // netif TX: 12-byte requests, 4-byte responses; RX: 8 and 8.
        assert_eq!(RingLayout::new(1, 12, 4).map(|l| l.slots()), Ok(256));
        assert_eq!(RingLayout::new(1, 8, 8).map(|l| l.slots()), Ok(256));
        assert_eq!(RingLayout::new(1, 12, 4).map(|l| l.slot_size()), Ok(12));
    }

    #[test]
    fn orders_map_to_pages() {
        for order in 0..=4 {
            let layout = RingLayout::with_order(order, 112, 16).expect("valid order");
            assert_eq!(layout.pages(), 1 << order);
            assert_eq!(layout.size(), (1 << order) * PAGE_SIZE);
        }
        assert!(matches!(
            RingLayout::with_order(5, 112, 16),
            Err(RingError::InvalidPageCount { .. })
        ));
        assert!(matches!(
            RingLayout::with_order(200, 112, 16),
            Err(RingError::InvalidPageCount { .. })
        ));
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(RingLayout::new(0, 112, 16).is_err());
        assert!(RingLayout::new(17, 112, 16).is_err());
        assert!(RingLayout::new(1, 0, 16).is_err());
        assert!(RingLayout::new(1, 16, 0).is_err());
        assert!(RingLayout::new(1, MAX_SLOT_SIZE + 1, 16).is_err());
    }

    #[test]
    fn slots_stay_inside_the_memory() {
        for pages in 1..=MAX_PAGES {
            for size in [1, 4, 8, 12, 16, 56, 64, 100, 112, 128] {
                let layout = RingLayout::new(pages, size, 1).expect("valid");
                let last = layout.slot_offset(RingIndex(layout.slots() - 1));
                assert!(last + layout.slot_size() <= layout.size());
                assert!(
                    u64::from(layout.slots()) * 2 > ((layout.size() - HEADER_SIZE) / size) as u64
                );
            }
        }
    }

    #[test]
    fn index_arithmetic_wraps() {
        let near_end = RingIndex(u32::MAX - 1);
        assert_eq!(near_end.add(3), RingIndex(1));
        assert_eq!(RingIndex(1).distance_from(near_end), 3);
    }
}
