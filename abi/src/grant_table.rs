//! `grant_table_op` hypercall (number 20), version-1 grant entries and the
//! GNTST status codes (`grant_table.h`). Layouts are x86_64 offsets and
//! sizes; the code that reads them lives with its owner.

/// A grant reference: an index into the granting domain's grant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GrantRef(pub u32);

/// A mapping handle: what `map_grant_ref` returns and `unmap_grant_ref`
/// takes back (an index into the mapping domain's maptrack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GrantHandle(pub u32);

// GNTTABOP_* sub-commands.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
pub const GNTTABOP_TRANSFER: u32 = 4;
pub const GNTTABOP_COPY: u32 = 5;
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
pub const GNTTABOP_SET_VERSION: u32 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
pub const GNTTABOP_GET_VERSION: u32 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// `grant_entry_v1`: flags u16 @0, domid u16 @2, frame u32 @4.
pub mod entry_v1 {
    pub const SIZE: usize = 8;
    pub const FLAGS: usize = 0;
    pub const DOMID: usize = 2;
    pub const FRAME: usize = 4;
    /// Version-1 entries in one 4 KiB grant-table frame.
    pub const PER_FRAME: u32 = 4096 / SIZE as u32;
}

// GTF_* bits of a grant entry's `flags`.
/// The two type bits.
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
pub const GTF_TRANSITIVE: u16 = 3;
/// Set by the granter: read-only access only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the entry is in use.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the entry is in use for writing.
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
/// Sub-page grant (version 2 only; never mappable).
pub const GTF_SUB_PAGE: u16 = 1 << 8;

/// Entries the toolstack reserves; grants start after them.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry for the console ring.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Reserved entry for the xenstore ring.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

// GNTMAP_* flags of `map_grant_ref`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

// GNTCOPY_* flags of `copy`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `XENMEM_add_to_physmap` space that maps a grant-table frame (`memory.h`).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// Bit of `idx` in that space selecting a version-2 status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// A per-operation status (`GNTST_*`), written into each element's
/// `status` field as an `i16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantStatus {
    Okay,
    GeneralError,
    BadDomain,
    BadGntref,
    BadHandle,
    BadVirtAddr,
    BadDevAddr,
    NoDeviceSpace,
    PermissionDenied,
    BadPage,
    BadCopyArg,
    AddressTooBig,
    Eagain,
    NoSpace,
}

impl GrantStatus {
    /// The value as the guest sees it.
    pub const fn as_raw(self) -> i16 {
        match self {
            Self::Okay => 0,
            Self::GeneralError => -1,
            Self::BadDomain => -2,
            Self::BadGntref => -3,
            Self::BadHandle => -4,
            Self::BadVirtAddr => -5,
            Self::BadDevAddr => -6,
            Self::NoDeviceSpace => -7,
            Self::PermissionDenied => -8,
            Self::BadPage => -9,
            Self::BadCopyArg => -10,
            Self::AddressTooBig => -11,
            Self::Eagain => -12,
            Self::NoSpace => -13,
        }
    }

    /// Decodes a status field; `None` for values Xen never writes.
    pub const fn from_raw(raw: i16) -> Option<Self> {
        Some(match raw {
            0 => Self::Okay,
            -1 => Self::GeneralError,
            -2 => Self::BadDomain,
            -3 => Self::BadGntref,
            -4 => Self::BadHandle,
            -5 => Self::BadVirtAddr,
            -6 => Self::BadDevAddr,
            -7 => Self::NoDeviceSpace,
            -8 => Self::PermissionDenied,
            -9 => Self::BadPage,
            -10 => Self::BadCopyArg,
            -11 => Self::AddressTooBig,
            -12 => Self::Eagain,
            -13 => Self::NoSpace,
            _ => return None,
        })
    }
}

/// `gnttab_map_grant_ref` (32 bytes).
pub mod map_grant_ref {
    pub const SIZE: usize = 32;
    pub const HOST_ADDR: usize = 0;
    pub const FLAGS: usize = 8;
    pub const REF: usize = 12;
    pub const DOM: usize = 16;
    pub const STATUS: usize = 18;
    pub const HANDLE: usize = 20;
    pub const DEV_BUS_ADDR: usize = 24;
}

/// `gnttab_unmap_grant_ref` (24 bytes).
pub mod unmap_grant_ref {
    pub const SIZE: usize = 24;
    pub const HOST_ADDR: usize = 0;
    pub const DEV_BUS_ADDR: usize = 8;
    pub const HANDLE: usize = 16;
    pub const STATUS: usize = 20;
}

/// `gnttab_setup_table` (24 bytes); `frame_list` points at `u64`s.
pub mod setup_table {
    pub const SIZE: usize = 24;
    pub const DOM: usize = 0;
    pub const NR_FRAMES: usize = 4;
    pub const STATUS: usize = 8;
    pub const FRAME_LIST: usize = 16;
}

/// `gnttab_copy` (40 bytes): two `gnttab_copy_ptr`s, then len, flags, status.
pub mod copy {
    pub const SIZE: usize = 40;
    pub const SOURCE: usize = 0;
    pub const DEST: usize = 16;
    pub const LEN: usize = 32;
    pub const FLAGS: usize = 34;
    pub const STATUS: usize = 36;

    /// Offsets inside a `gnttab_copy_ptr` (16 bytes).
    pub mod pointer {
        pub const SIZE: usize = 16;
        /// A union: `ref` (u32) or `gmfn` (u64).
        pub const REF_OR_GMFN: usize = 0;
        pub const DOMID: usize = 8;
        pub const OFFSET: usize = 10;
    }
}

/// `gnttab_query_size` (16 bytes).
pub mod query_size {
    pub const SIZE: usize = 16;
    pub const DOM: usize = 0;
    pub const NR_FRAMES: usize = 4;
    pub const MAX_NR_FRAMES: usize = 8;
    pub const STATUS: usize = 12;
}

/// `gnttab_set_version` (4 bytes, in/out).
pub mod set_version {
    pub const SIZE: usize = 4;
    pub const VERSION: usize = 0;
}

/// `gnttab_get_version` (8 bytes).
pub mod get_version {
    pub const SIZE: usize = 8;
    pub const DOM: usize = 0;
    pub const VERSION: usize = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for raw in -13..=0 {
            let status = GrantStatus::from_raw(raw).expect("known status");
            assert_eq!(status.as_raw(), raw);
        }
        assert_eq!(GrantStatus::from_raw(-14), None);
        assert_eq!(GrantStatus::from_raw(1), None);
    }

    #[test]
    fn copy_layout_is_two_pointers_then_scalars() {
        assert_eq!(copy::DEST, copy::SOURCE + copy::pointer::SIZE);
        assert_eq!(copy::LEN, copy::DEST + copy::pointer::SIZE);
        assert_eq!(entry_v1::PER_FRAME, 512);
    }
}
