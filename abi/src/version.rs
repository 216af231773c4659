//! `xen_version` hypercall (number 17): sub-commands, the version Xenolith
//! reports, and the XENFEAT bits of `features.h`.

pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
pub const XENVER_COMPILE_INFO: u64 = 2;
pub const XENVER_CAPABILITIES: u64 = 3;
pub const XENVER_CHANGESET: u64 = 4;
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
pub const XENVER_GET_FEATURES: u64 = 6;
pub const XENVER_PAGESIZE: u64 = 7;
pub const XENVER_GUEST_HANDLE: u64 = 8;
pub const XENVER_COMMANDLINE: u64 = 9;

/// The Xen interface version Xenolith speaks. Linux skips XS_RESET_WATCHES
/// below major 4, so report at least 4.x.
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;
/// `XENVER_extraversion` answer: 16 bytes, NUL-terminated.
pub const EXTRAVERSION: &[u8; 16] = b"-xenolith\0\0\0\0\0\0\0";
/// `XENVER_capabilities` answer (1024-byte buffer in the ABI).
pub const CAPABILITIES: &[u8] = b"hvm-3.0-x86_64";
/// Size of the `xen_capabilities_info_t` and `xen_commandline_t` buffers.
pub const LONG_STRING_SIZE: usize = 1024;
/// Size of `xen_extraversion_t` and `xen_changeset_info_t`.
pub const SHORT_STRING_SIZE: usize = 16;
/// Size of `xen_changeset_info_t` (64 bytes).
pub const CHANGESET_SIZE: usize = 64;

/// `XENVER_version` packs major in bits 31:16 and minor in 15:0.
pub const fn packed_version() -> u64 {
    ((XEN_MAJOR as u64) << 16) | XEN_MINOR as u64
}

/// XENFEAT bit numbers (submap 0).
pub mod feature {
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    pub const HVM_CALLBACK_VECTOR: u32 = 8;
    pub const HVM_SAFE_PVCLOCK: u32 = 9;
    pub const HVM_PIRQS: u32 = 10;
    pub const DOM0: u32 = 11;
}
