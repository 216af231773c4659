//! Address newtypes: a host-physical, a guest-physical and a guest-virtual
//! address never mix by accident.

use core::fmt;

/// Size of a small page and of a frame.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (2 MiB) page.
pub const LARGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;
/// Size of a huge (1 GiB) page.
pub const HUGE_PAGE_SIZE: u64 = 1024 * 1024 * 1024;

macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(value) => Some(Self(value)),
                    None => None,
                }
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }

            /// Rounds up to a multiple of `align` (a power of two), or `None` on overflow.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(value) => Some(Self(value & !(align - 1))),
                    None => None,
                }
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// Offset inside its 4 KiB page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// A host-physical address: what the memory controller sees.
    HostPhysAddr
);
address_type!(
    /// A guest-physical address: what a guest's page tables point at.
    GuestPhysAddr
);
address_type!(
    /// A guest-virtual (linear) address: what a guest's instructions use.
    GuestVirtAddr
);

/// A half-open range of host-physical memory `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostRange {
    pub start: HostPhysAddr,
    pub end: HostPhysAddr,
}

impl HostRange {
    /// The range `[start, start + len)`, or `None` if it wraps.
    pub const fn new(start: HostPhysAddr, len: u64) -> Option<Self> {
        match start.checked_add(len) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `self` and `other` share at least one byte.
    pub const fn overlaps(&self, other: &HostRange) -> bool {
        self.start.0 < other.end.0 && other.start.0 < self.end.0
    }

    /// Whether `other` lies wholly inside `self`.
    pub const fn contains_range(&self, other: &HostRange) -> bool {
        self.start.0 <= other.start.0 && other.end.0 <= self.end.0
    }

    /// Whether `address` lies inside the range.
    pub const fn contains(&self, address: HostPhysAddr) -> bool {
        self.start.0 <= address.0 && address.0 < self.end.0
    }
}

impl fmt::Display for HostRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

/// Reads host-physical memory. The hypervisor implements it over its
/// identity map; tests implement it over a byte vector.
pub trait PhysicalMemory {
    /// Fills `buffer` from `address`; fails if any byte is outside memory
    /// the reader may touch.
    fn read(&self, address: HostPhysAddr, buffer: &mut [u8]) -> Result<(), OutOfBounds>;

    /// Reads a little-endian `u32`.
    fn read_u32(&self, address: HostPhysAddr) -> Result<u32, OutOfBounds> {
        let mut bytes = [0; 4];
        self.read(address, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&self, address: HostPhysAddr) -> Result<u64, OutOfBounds> {
        let mut bytes = [0; 8];
        self.read(address, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

/// A read reached memory outside what the reader may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    pub address: HostPhysAddr,
    pub len: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at {:#x} are out of bounds",
            self.len, self.address.0
        )
    }
}
