//! What the loader hands the hypervisor, in one shape whichever loader it
//! was: GRUB through multiboot2, or QEMU's `-kernel` through the PVH note.

pub mod cmdline;
pub mod memory_map;
pub mod multiboot2;
pub mod pvh;

use arrayvec::{ArrayString, ArrayVec};
use core::fmt;

use crate::memory::{HostPhysAddr, HostRange, OutOfBounds};

/// Most memory-map entries kept; firmware rarely gives more than ~30.
pub const MAX_MEMORY_REGIONS: usize = 128;
/// Most boot modules kept.
pub const MAX_MODULES: usize = 16;
/// Longest command line kept (hypervisor's or a module's), in bytes.
pub const MAX_CMDLINE: usize = 1024;

/// Which loader started us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    /// GRUB or another multiboot2 loader (EAX = 0x36d76289).
    Multiboot2,
    /// A PVH loader such as QEMU's `-kernel` (EBX = `hvm_start_info`).
    Pvh,
}

/// What a memory-map range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Free RAM.
    Usable,
    /// Firmware or device space.
    Reserved,
    /// ACPI tables, reclaimable once read.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Defective RAM.
    Bad,
}

impl MemoryKind {
    /// Maps an e820-style type number (multiboot2 and PVH share it).
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => Self::Usable,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Bad,
            _ => Self::Reserved,
        }
    }
}

/// One range of the firmware memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub range: HostRange,
    pub kind: MemoryKind,
}

/// A command line, copied out of loader memory.
pub type CmdLine = ArrayString<MAX_CMDLINE>;

/// A file the loader placed in memory beside the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub range: HostRange,
    pub cmdline: CmdLine,
}

/// Everything the hypervisor needs from its loader.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub loader: Loader,
    pub cmdline: CmdLine,
    /// Sorted by start address, non-overlapping.
    pub memory: ArrayVec<MemoryRegion, MAX_MEMORY_REGIONS>,
    /// In loader order.
    pub modules: ArrayVec<Module, MAX_MODULES>,
    /// The ACPI root pointer, when the loader passed one.
    pub rsdp: Option<HostPhysAddr>,
    /// The loader's own structure (to keep it from being overwritten).
    pub info_range: HostRange,
}

/// Why the loader's information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// EAX held neither the multiboot2 magic nor a PVH start.
    UnknownLoader { magic: u32 },
    /// The structure's magic number was wrong.
    BadMagic { found: u32 },
    /// A structure or tag lies outside readable memory.
    Unreadable(OutOfBounds),
    /// A tag or table has an impossible size or alignment.
    Malformed { what: &'static str },
    /// No memory map was passed.
    NoMemoryMap,
}

impl From<OutOfBounds> for BootInfoError {
    fn from(error: OutOfBounds) -> Self {
        Self::Unreadable(error)
    }
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLoader { magic } => {
                write!(
                    f,
                    "unknown loader (boot magic {magic:#x}); boot with multiboot2 or PVH"
                )
            }
            Self::BadMagic { found } => write!(f, "boot information has bad magic {found:#x}"),
            Self::Unreadable(error) => write!(f, "boot information unreadable: {error}"),
            Self::Malformed { what } => write!(f, "boot information malformed: {what}"),
            Self::NoMemoryMap => write!(f, "the loader passed no memory map"),
        }
    }
}
