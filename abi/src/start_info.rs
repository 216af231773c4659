//! `hvm_start_info` (`arch-x86/hvm/start_info.h`): what a PVH kernel finds
//! at the physical address in EBX on entry. Version 1 adds the memory map.

/// "xEn3" with bit 7 of 'E' set.
pub const MAGIC: u32 = 0x336e_c578;
/// The version Xenolith writes.
pub const VERSION: u32 = 1;
/// `flags`: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `flags`: the domain is the initial (control) domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;

/// The start info block, 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// One module (32 bytes). Module 0 of a Linux guest is its initrd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// One memory-map entry (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

/// Memory-map entry types (the e820 numbering).
pub mod memmap_type {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;
    pub const ACPI: u32 = 3;
    pub const NVS: u32 = 4;
    pub const UNUSABLE: u32 = 5;
    pub const DISABLED: u32 = 6;
    pub const PMEM: u32 = 7;
}

const _: () = assert!(core::mem::size_of::<HvmStartInfo>() == 56);
const _: () = assert!(core::mem::size_of::<HvmModlistEntry>() == 32);
const _: () = assert!(core::mem::size_of::<HvmMemmapEntry>() == 24);
