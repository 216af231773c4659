//! How netback reaches the front end's pages: grant copies, which Dom0
//! implements with batched `GNTTABOP_copy` and tests fake.

use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::GrantRef;

use crate::wire::PAGE_SIZE;

/// A byte range inside one granted page. Construction checks that it stays
/// inside the page, so an implementation never sees a copy Xen would
/// refuse with `GNTST_bad_copy_arg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantSegment {
    reference: GrantRef,
    offset: u16,
    length: u16,
}

impl GrantSegment {
    /// `length` bytes at `offset` in the page `reference` grants; `None` if
    /// they would cross the end of the page.
    pub fn new(reference: GrantRef, offset: u16, length: u16) -> Option<Self> {
        let end = usize::from(offset).checked_add(usize::from(length))?;
        (end <= PAGE_SIZE).then_some(Self {
            reference,
            offset,
            length,
        })
    }

    /// The grant.
    pub const fn reference(&self) -> GrantRef {
        self.reference
    }

    /// Offset in the page.
    pub const fn offset(&self) -> u16 {
        self.offset
    }

    /// Bytes.
    pub const fn length(&self) -> u16 {
        self.length
    }
}

/// A `GNTST_*` status from a failed copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus(pub i16);

impl GrantStatus {
    /// `GNTST_general_error`.
    pub const GENERAL_ERROR: Self = Self(-1);
    /// `GNTST_bad_gntref`.
    pub const BAD_GRANT_REF: Self = Self(-3);
    /// `GNTST_permission_denied` (e.g. writing a read-only grant).
    pub const PERMISSION_DENIED: Self = Self(-8);
    /// `GNTST_bad_copy_arg`.
    pub const BAD_COPY_ARGUMENT: Self = Self(-10);
}

/// A grant copy that failed: which segment, and Xen's status for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantCopyError {
    /// Index into the segment list.
    pub segment: usize,
    /// The `GNTST_*` code.
    pub status: GrantStatus,
}

/// Grant copies between Dom0's memory and a front end's granted pages.
///
/// Each call is one packet: Dom0 turns it into one `GNTTABOP_copy` batch
/// (a segment per element, `GNTCOPY_source_gref` or `GNTCOPY_dest_gref` on
/// the guest's side, its own frame with `DOMID_SELF` on the other) and
/// reports the first element that failed. Segments never cross a page;
/// Dom0 splits its own side where its buffer crosses a page.
pub trait Grants {
    /// Copies the segments of `domain`'s pages, in order, into consecutive
    /// bytes of `destination`, whose length is the segments' total.
    fn copy_from_guest(
        &mut self,
        domain: DomainId,
        segments: &[GrantSegment],
        destination: &mut [u8],
    ) -> Result<(), GrantCopyError>;

    /// Copies consecutive bytes of `source`, whose length is the segments'
    /// total, into the segments of `domain`'s pages, in order.
    fn copy_to_guest(
        &mut self,
        domain: DomainId,
        source: &[u8],
        segments: &[GrantSegment],
    ) -> Result<(), GrantCopyError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_stay_inside_their_page() {
        assert!(GrantSegment::new(GrantRef(1), 0, 4096).is_some());
        assert!(GrantSegment::new(GrantRef(1), 4095, 1).is_some());
        assert!(GrantSegment::new(GrantRef(1), 4096, 0).is_some());
        assert!(GrantSegment::new(GrantRef(1), 4095, 2).is_none());
        assert!(GrantSegment::new(GrantRef(1), u16::MAX, u16::MAX).is_none());
        let segment = GrantSegment::new(GrantRef(7), 100, 200).unwrap();
        assert_eq!(
            (segment.reference(), segment.offset(), segment.length()),
            (GrantRef(7), 100, 200)
        );
    }
}
