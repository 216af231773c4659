//! Translates guest-virtual addresses through the guest's own page tables,
//! as the hypervisor must for pointers passed in hypercalls, and copies
//! bytes to and from guest-virtual memory.
//!
//! Every table entry is guest-controlled: nothing read here is trusted, no
//! value can make the walk panic, and a walk reads at most four entries
//! however the tables point at each other. Page-table memory is reached only
//! through [`GuestPhysicalMemory`], which the hypervisor implements over the
//! domain's nested tables.
//!
//! Simplifications, all in the permissive direction except the first:
//! - Writes always need every level writable, as if CR0.WP were set. A guest
//!   kernel that relies on WP=0 to write through read-only mappings gets a
//!   fault from a hypercall where the processor would have written.
//! - SMEP, SMAP and protection keys are ignored: supervisor accesses to user
//!   pages succeed.
//! - Accessed and dirty bits are not set. Setting them safely would need an
//!   atomic update of guest memory the trait does not offer.
//! - Guest MAXPHYADDR is taken as 52, so no address bit of an entry is
//!   reserved; the reserved bits checked are those the format itself fixes.
//! - 5-level paging (CR4.LA57) is not modelled: the hypervisor must not
//!   offer it to guests.

use core::fmt;

use super::address::{GuestPhysAddr, GuestVirtAddr, PAGE_SIZE};

/// Guest physical-address width assumed when checking entries.
pub const MAX_PHYSICAL_ADDRESS_BITS: u32 = 52;

const CR0_PAGING: u64 = 1 << 31;
const CR4_PAGE_SIZE_EXTENSION: u64 = 1 << 4;
const CR4_PHYSICAL_ADDRESS_EXTENSION: u64 = 1 << 5;
const EFER_LONG_MODE_ACTIVE: u64 = 1 << 10;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;

/// First guest-physical address beyond [`MAX_PHYSICAL_ADDRESS_BITS`].
const PHYSICAL_LIMIT: u64 = 1 << MAX_PHYSICAL_ADDRESS_BITS;
/// Bits 12 up to MAXPHYADDR of a 64-bit entry: the frame it points at.
const ADDRESS_MASK: u64 = (PHYSICAL_LIMIT - 1) & !0xfff;
/// Bits MAXPHYADDR..=51 of a 64-bit entry: reserved when MAXPHYADDR < 52.
const BEYOND_MAX_PHYSICAL: u64 = ((1 << 52) - 1) & !(PHYSICAL_LIMIT - 1);
/// Bits 52..=62: reserved in PAE entries (long mode leaves them to software).
const PAE_HIGH_BITS: u64 = 0x7ff0_0000_0000_0000;
/// Bits 1, 2 and 5..=8: reserved in a PAE page-directory-pointer entry.
const PAE_POINTER_LOW_RESERVED: u64 = 0b1_1110_0110;
/// Bits 13..=20: reserved in a 2 MiB leaf (bit 12 is PAT).
const LARGE_LEAF_RESERVED: u64 = 0x1f_e000;
/// Bits 13..=29: reserved in a 1 GiB leaf.
const HUGE_LEAF_RESERVED: u64 = 0x3fff_e000;
/// Bit 21: reserved in a 32-bit 4 MiB leaf (bits 13..=20 hold address bits 32..=39).
const PSE_LEAF_RESERVED: u32 = 1 << 21;

/// Highest address a 32-bit mode can form.
const LIMIT_32: u64 = u32::MAX as u64;

/// How the guest's processor translates linear addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG clear: linear addresses are physical (32-bit).
    Disabled,
    /// Two-level 32-bit paging; 4 MiB pages when CR4.PSE is set.
    Protected32 {
        /// CR4.PSE: a page-directory entry with PS set maps 4 MiB.
        page_size_extension: bool,
    },
    /// Three-level PAE paging of a 32-bit address space; 2 MiB pages.
    Pae,
    /// Four-level long-mode paging; 2 MiB and 1 GiB pages.
    Long4,
}

impl PagingMode {
    /// The mode the guest's control registers select.
    pub fn from_registers(cr0: u64, cr4: u64, efer: u64) -> Self {
        if cr0 & CR0_PAGING == 0 {
            Self::Disabled
        } else if efer & EFER_LONG_MODE_ACTIVE != 0 {
            Self::Long4
        } else if cr4 & CR4_PHYSICAL_ADDRESS_EXTENSION != 0 {
            Self::Pae
        } else {
            Self::Protected32 {
                page_size_extension: cr4 & CR4_PAGE_SIZE_EXTENSION != 0,
            }
        }
    }
}

/// A guest-physical access reached memory the domain does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMemoryError {
    /// The first guest-physical address that is not backed.
    pub address: GuestPhysAddr,
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest-physical {} is not backed", self.address)
    }
}

/// A domain's guest-physical memory. The hypervisor implements it through
/// the domain's nested tables; accesses may span several frames.
pub trait GuestPhysicalMemory {
    /// Fills `buffer` from `address` onwards.
    fn read(&self, address: GuestPhysAddr, buffer: &mut [u8]) -> Result<(), GuestMemoryError>;

    /// Stores `data` from `address` onwards.
    fn write(&mut self, address: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError>;
}

/// The kind of access a translation is for; the walk checks the rights it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Access {
    /// A store: every level must be writable.
    pub write: bool,
    /// At CPL 3: every level must allow user access.
    pub user: bool,
    /// An instruction fetch: no level may set NX.
    pub execute: bool,
}

impl Access {
    /// A kernel load, the usual access for a hypercall argument.
    pub const SUPERVISOR_READ: Self = Self {
        write: false,
        user: false,
        execute: false,
    };
    /// A kernel store.
    pub const SUPERVISOR_WRITE: Self = Self {
        write: true,
        user: false,
        execute: false,
    };
    /// A user-mode load.
    pub const USER_READ: Self = Self {
        write: false,
        user: true,
        execute: false,
    };
    /// A user-mode store.
    pub const USER_WRITE: Self = Self {
        write: true,
        user: true,
        execute: false,
    };
}

/// A right the walk found missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A user access met an entry without U/S.
    SupervisorOnly,
    /// A write met an entry without R/W.
    ReadOnly,
    /// An instruction fetch met an entry with NX.
    NoExecute,
}

/// Why a guest-virtual address could not be translated: the page fault the
/// guest's own processor would take, or memory the domain lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The entry at `level` (4 = PML4 … 1 = page table) is not present.
    NotPresent { level: u8 },
    /// The page is present but the access lacks a right.
    Protection(Violation),
    /// A long-mode address whose bits 63..47 are not all equal.
    NonCanonical,
    /// A 32-bit mode was asked about an address beyond 4 GiB, or a range
    /// ran past the end of the address space.
    OutsideAddressSpace,
    /// The entry at `level` sets a bit the format reserves.
    ReservedBit { level: u8 },
    /// A table or data page lies in guest-physical memory that is not backed.
    Unbacked(GuestMemoryError),
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPresent { level } => write!(f, "level-{level} entry not present"),
            Self::Protection(violation) => write!(f, "protection violation: {violation:?}"),
            Self::NonCanonical => f.write_str("non-canonical address"),
            Self::OutsideAddressSpace => f.write_str("address outside the guest's address space"),
            Self::ReservedBit { level } => write!(f, "reserved bit set in level-{level} entry"),
            Self::Unbacked(error) => write!(f, "{error}"),
        }
    }
}

/// A copy to or from guest-virtual memory stopped part way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyError {
    /// The guest-virtual address that failed: CR2 if the guest is to see a
    /// page fault.
    pub address: GuestVirtAddr,
    /// Bytes copied before it; a write has stored exactly these.
    pub copied: usize,
    /// Why it failed.
    pub error: WalkError,
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest-virtual {} after {} bytes: {}",
            self.address, self.copied, self.error
        )
    }
}

/// Translates `address` as the guest's processor would for `access`, given
/// its paging `mode`, CR3 and EFER.NXE. Reads at most four table entries.
pub fn translate(
    mode: PagingMode,
    cr3: u64,
    address: GuestVirtAddr,
    access: Access,
    efer_nxe: bool,
    memory: &impl GuestPhysicalMemory,
) -> Result<GuestPhysAddr, WalkError> {
    let walker = Walker {
        mode,
        cr3,
        access,
        efer_nxe,
    };
    walker.walk(address.raw(), memory).map(|page| page.physical)
}

/// Copies guest-virtual memory from `address` into `buffer`, walking each
/// page once and reading each byte once. On failure the bytes before
/// [`CopyError::copied`] are filled.
pub fn read_virtual(
    mode: PagingMode,
    cr3: u64,
    address: GuestVirtAddr,
    access: Access,
    efer_nxe: bool,
    memory: &impl GuestPhysicalMemory,
    buffer: &mut [u8],
) -> Result<(), CopyError> {
    let walker = Walker {
        mode,
        cr3,
        access,
        efer_nxe,
    };
    let mut copied = 0;
    let mut rest = buffer;
    while !rest.is_empty() {
        let (at, physical, len) = walker.next_chunk(address, copied, rest.len(), memory)?;
        // `next_chunk` keeps `len` within `rest`.
        let (chunk, tail) = core::mem::take(&mut rest).split_at_mut(len);
        memory.read(physical, chunk).map_err(|error| CopyError {
            address: at,
            copied,
            error: WalkError::Unbacked(error),
        })?;
        copied += len;
        rest = tail;
    }
    Ok(())
}

/// Copies `data` to guest-virtual memory at `address`, checking write
/// rights whatever `access.write` says. Pages are written in order as they
/// are translated, so on failure the first [`CopyError::copied`] bytes are
/// stored and nothing past the failing page: what a faulting `rep movs`
/// would leave.
pub fn write_virtual(
    mode: PagingMode,
    cr3: u64,
    address: GuestVirtAddr,
    access: Access,
    efer_nxe: bool,
    memory: &mut impl GuestPhysicalMemory,
    data: &[u8],
) -> Result<(), CopyError> {
    let walker = Walker {
        mode,
        cr3,
        access: Access {
            write: true,
            ..access
        },
        efer_nxe,
    };
    let mut copied = 0;
    let mut rest = data;
    while !rest.is_empty() {
        let (at, physical, len) = walker.next_chunk(address, copied, rest.len(), memory)?;
        // `next_chunk` keeps `len` within `rest`.
        let (chunk, tail) = rest.split_at(len);
        memory.write(physical, chunk).map_err(|error| CopyError {
            address: at,
            copied,
            error: WalkError::Unbacked(error),
        })?;
        copied += len;
        rest = tail;
    }
    Ok(())
}

/// One translation context: the guest's registers and the access checked.
#[derive(Clone, Copy)]
struct Walker {
    mode: PagingMode,
    cr3: u64,
    access: Access,
    efer_nxe: bool,
}

impl Walker {
    /// Translates the byte `copied` bytes past `start` and returns its
    /// address, its guest-physical address, and how many of the
    /// `remaining` (non-zero) bytes lie in the same page: 1 to `remaining`.
    fn next_chunk(
        &self,
        start: GuestVirtAddr,
        copied: usize,
        remaining: usize,
        memory: &impl GuestPhysicalMemory,
    ) -> Result<(GuestVirtAddr, GuestPhysAddr, usize), CopyError> {
        let fail = |address, error| CopyError {
            address,
            copied,
            error,
        };
        let at = u64::try_from(copied)
            .ok()
            .and_then(|offset| start.checked_add(offset))
            .ok_or(fail(start, WalkError::OutsideAddressSpace))?;
        let page = self
            .walk(at.raw(), memory)
            .map_err(|error| fail(at, error))?;
        let len = usize::try_from(page.bytes_left).map_or(remaining, |left| left.min(remaining));
        Ok((at, page.physical, len))
    }

    fn walk(&self, address: u64, memory: &impl GuestPhysicalMemory) -> Result<Page, WalkError> {
        match self.mode {
            PagingMode::Disabled => {
                if address > LIMIT_32 {
                    return Err(WalkError::OutsideAddressSpace);
                }
                Ok(Page::new(address, PAGE_SIZE, address))
            }
            PagingMode::Protected32 {
                page_size_extension,
            } => walk_protected32(self.cr3, address, self.access, page_size_extension, memory),
            PagingMode::Pae => walk_pae(self.cr3, address, self.access, self.efer_nxe, memory),
            PagingMode::Long4 => walk_long4(self.cr3, address, self.access, self.efer_nxe, memory),
        }
    }
}

/// Where a walk ended.
struct Page {
    /// The guest-physical address of the translated byte.
    physical: GuestPhysAddr,
    /// Bytes from it to the end of its page (1 up to the page size).
    bytes_left: u64,
}

impl Page {
    /// The byte at `offset` into the page of `size` bytes at `base`.
    fn new(base: u64, size: u64, address: u64) -> Self {
        let offset = address & (size - 1);
        Self {
            physical: GuestPhysAddr((base & !(size - 1)) | offset),
            bytes_left: size - offset,
        }
    }
}

/// The rights granted by every level walked so far.
#[derive(Clone, Copy)]
struct Rights {
    writable: bool,
    user: bool,
    executable: bool,
}

impl Rights {
    const ALL: Self = Self {
        writable: true,
        user: true,
        executable: true,
    };

    /// Narrows the rights by one entry's R/W, U/S and (if enabled) NX bits.
    fn restrict(&mut self, entry: u64, no_execute_enabled: bool) {
        self.writable &= entry & WRITABLE != 0;
        self.user &= entry & USER != 0;
        if no_execute_enabled && entry & NO_EXECUTE != 0 {
            self.executable = false;
        }
    }

    fn check(self, access: Access) -> Result<(), WalkError> {
        if access.user && !self.user {
            Err(WalkError::Protection(Violation::SupervisorOnly))
        } else if access.write && !self.writable {
            Err(WalkError::Protection(Violation::ReadOnly))
        } else if access.execute && !self.executable {
            Err(WalkError::Protection(Violation::NoExecute))
        } else {
            Ok(())
        }
    }
}

/// Four levels of 512 eight-byte entries over a 48-bit canonical address.
fn walk_long4(
    cr3: u64,
    address: u64,
    access: Access,
    efer_nxe: bool,
    memory: &impl GuestPhysicalMemory,
) -> Result<Page, WalkError> {
    let sign_extended = (((address << 16) as i64) >> 16) as u64;
    if sign_extended != address {
        return Err(WalkError::NonCanonical);
    }
    let levels = Levels {
        top: 4,
        always_reserved: 0,
    };
    walk_tables(
        cr3 & ADDRESS_MASK,
        levels,
        address,
        access,
        efer_nxe,
        memory,
    )
}

/// A four-entry pointer table, then two levels of 512 eight-byte entries,
/// over a 32-bit address.
fn walk_pae(
    cr3: u64,
    address: u64,
    access: Access,
    efer_nxe: bool,
    memory: &impl GuestPhysicalMemory,
) -> Result<Page, WalkError> {
    if address > LIMIT_32 {
        return Err(WalkError::OutsideAddressSpace);
    }
    // The pointer table is 32-byte aligned below 4 GiB.
    let pointer_table = cr3 & 0xffff_ffe0;
    let pointer = read_u64(memory, pointer_table + (address >> 30) * 8)?;
    if pointer & PRESENT == 0 {
        return Err(WalkError::NotPresent { level: 3 });
    }
    if pointer & (PAE_POINTER_LOW_RESERVED | NO_EXECUTE | PAE_HIGH_BITS | BEYOND_MAX_PHYSICAL) != 0
    {
        return Err(WalkError::ReservedBit { level: 3 });
    }
    let levels = Levels {
        top: 2,
        always_reserved: PAE_HIGH_BITS,
    };
    walk_tables(
        pointer & ADDRESS_MASK,
        levels,
        address,
        access,
        efer_nxe,
        memory,
    )
}

/// The shape of the eight-byte-entry tables below CR3 (long mode) or below
/// the PAE pointer table.
struct Levels {
    /// The level of the first table: 4 in long mode, 2 under PAE.
    top: u8,
    /// Bits that must be clear in every entry (PAE's bits above 51).
    always_reserved: u64,
}

/// Walks 512-entry tables from `table` down to a leaf. Long mode and PAE
/// share this: they differ only in how many levels there are and in which
/// bits are reserved everywhere.
fn walk_tables(
    mut table: u64,
    levels: Levels,
    address: u64,
    access: Access,
    efer_nxe: bool,
    memory: &impl GuestPhysicalMemory,
) -> Result<Page, WalkError> {
    let no_execute_reserved = if efer_nxe { 0 } else { NO_EXECUTE };
    let mut rights = Rights::ALL;
    for level in (1..=levels.top).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let index = (address >> shift) & 0x1ff;
        let entry = read_u64(memory, table + index * 8)?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent { level });
        }
        let leaf = level == 1 || (matches!(level, 2 | 3) && entry & PAGE_SIZE_BIT != 0);
        let format_reserved = match (level, leaf) {
            (4, _) => PAGE_SIZE_BIT,
            (3, true) => HUGE_LEAF_RESERVED,
            (2, true) => LARGE_LEAF_RESERVED,
            _ => 0,
        };
        let reserved =
            format_reserved | no_execute_reserved | levels.always_reserved | BEYOND_MAX_PHYSICAL;
        if entry & reserved != 0 {
            return Err(WalkError::ReservedBit { level });
        }
        rights.restrict(entry, efer_nxe);
        if leaf {
            rights.check(access)?;
            return Ok(Page::new(entry & ADDRESS_MASK, 1 << shift, address));
        }
        table = entry & ADDRESS_MASK;
    }
    // Level 1 always returns above; kept so the loop needs no panic.
    Err(WalkError::NotPresent { level: 1 })
}

/// Two levels of 1024 four-byte entries over a 32-bit address; no NX.
fn walk_protected32(
    cr3: u64,
    address: u64,
    access: Access,
    page_size_extension: bool,
    memory: &impl GuestPhysicalMemory,
) -> Result<Page, WalkError> {
    if address > LIMIT_32 {
        return Err(WalkError::OutsideAddressSpace);
    }
    let mut rights = Rights::ALL;
    let directory = cr3 & 0xffff_f000;
    let directory_entry = read_u32(memory, directory + (address >> 22) * 4)?;
    if directory_entry & PRESENT as u32 == 0 {
        return Err(WalkError::NotPresent { level: 2 });
    }
    if page_size_extension && directory_entry & PAGE_SIZE_BIT as u32 != 0 {
        if directory_entry & PSE_LEAF_RESERVED != 0 {
            return Err(WalkError::ReservedBit { level: 2 });
        }
        rights.restrict(u64::from(directory_entry), false);
        rights.check(access)?;
        // PSE-40: bits 13..=20 carry physical-address bits 32..=39.
        let low = u64::from(directory_entry & 0xffc0_0000);
        let high = u64::from((directory_entry >> 13) & 0xff) << 32;
        return Ok(Page::new(high | low, 1 << 22, address));
    }
    rights.restrict(u64::from(directory_entry), false);
    let table = u64::from(directory_entry & 0xffff_f000);
    let entry = read_u32(memory, table + ((address >> 12) & 0x3ff) * 4)?;
    if entry & PRESENT as u32 == 0 {
        return Err(WalkError::NotPresent { level: 1 });
    }
    rights.restrict(u64::from(entry), false);
    rights.check(access)?;
    Ok(Page::new(
        u64::from(entry & 0xffff_f000),
        PAGE_SIZE,
        address,
    ))
}

fn read_u64(memory: &impl GuestPhysicalMemory, address: u64) -> Result<u64, WalkError> {
    let mut bytes = [0; 8];
    memory
        .read(GuestPhysAddr(address), &mut bytes)
        .map_err(WalkError::Unbacked)?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_u32(memory: &impl GuestPhysicalMemory, address: u64) -> Result<u32, WalkError> {
    let mut bytes = [0; 4];
    memory
        .read(GuestPhysAddr(address), &mut bytes)
        .map_err(WalkError::Unbacked)?;
    Ok(u32::from_le_bytes(bytes))
}

#[cfg(test)]
// A failed unwrap is a failed test.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const P: u64 = PRESENT;
    const RW: u64 = WRITABLE;
    const US: u64 = USER;
    const PS: u64 = PAGE_SIZE_BIT;
    const NX: u64 = NO_EXECUTE;
    const TABLE: u64 = P | RW | US;
    const GIB: u64 = 1 << 30;
    const LONG: PagingMode = PagingMode::Long4;
    const READ: Access = Access::SUPERVISOR_READ;
    const EXECUTE: Access = Access {
        write: false,
        user: false,
        execute: true,
    };

    /// Guest-physical memory as sparse 4 KiB frames, logging every read.
    #[derive(Default)]
    struct FakeGuestMemory {
        frames: HashMap<u64, [u8; 4096]>,
        next_table: u64,
        reads: RefCell<Vec<(u64, usize)>>,
    }

    impl FakeGuestMemory {
        fn new() -> Self {
            Self {
                next_table: 0x10_0000,
                ..Self::default()
            }
        }

        fn add_frame(&mut self, frame: u64) {
            self.frames.entry(frame & !0xfff).or_insert([0; 4096]);
        }

        fn allocate_table(&mut self) -> u64 {
            let table = self.next_table;
            self.next_table += PAGE_SIZE;
            self.add_frame(table);
            table
        }

        fn byte_mut(&mut self, address: u64) -> Option<&mut u8> {
            let frame = self.frames.get_mut(&(address & !0xfff))?;
            Some(&mut frame[(address & 0xfff) as usize])
        }

        fn set_u64(&mut self, address: u64, value: u64) {
            self.write(GuestPhysAddr(address), &value.to_le_bytes())
                .unwrap();
        }

        fn set_u32(&mut self, address: u64, value: u32) {
            self.write(GuestPhysAddr(address), &value.to_le_bytes())
                .unwrap();
        }

        fn get_u64(&self, address: u64) -> u64 {
            let mut bytes = [0; 8];
            self.read(GuestPhysAddr(address), &mut bytes).unwrap();
            u64::from_le_bytes(bytes)
        }

        fn bytes(&self, address: u64, len: usize) -> Vec<u8> {
            let mut buffer = vec![0; len];
            self.read(GuestPhysAddr(address), &mut buffer).unwrap();
            buffer
        }

        /// Maps `virt` to `physical` with a leaf at `leaf_level`, creating
        /// tables (TABLE flags) on the way. `mode` picks the format.
        fn map(
            &mut self,
            mode: PagingMode,
            root: u64,
            virt: u64,
            physical: u64,
            leaf_level: u8,
            flags: u64,
        ) {
            let (top, bits, entry_size) = match mode {
                PagingMode::Long4 => (4, 9, 8),
                PagingMode::Pae => (3, 9, 8),
                _ => (2, 10, 4),
            };
            let mut table = root;
            for level in (leaf_level..=top).rev() {
                let shift = 12 + bits * u32::from(level - 1);
                let index = (virt >> shift) & ((1 << bits) - 1);
                let slot = table + index * entry_size;
                if level == leaf_level {
                    let size_bit = if level > 1 { PS } else { 0 };
                    self.set_entry(slot, entry_size, physical | flags | size_bit);
                    return;
                }
                let mut entry = self.get_entry(slot, entry_size);
                if entry & P == 0 {
                    // PAE pointer entries take no rights bits.
                    let bits = if mode == PagingMode::Pae && level == 3 {
                        P
                    } else {
                        TABLE
                    };
                    entry = self.allocate_table() | bits;
                    self.set_entry(slot, entry_size, entry);
                }
                table = entry & ADDRESS_MASK;
            }
        }

        fn set_entry(&mut self, slot: u64, entry_size: u64, value: u64) {
            if entry_size == 8 {
                self.set_u64(slot, value);
            } else {
                self.set_u32(slot, value as u32);
            }
        }

        fn get_entry(&self, slot: u64, entry_size: u64) -> u64 {
            let value = self.get_u64(slot);
            if entry_size == 8 {
                value
            } else {
                value & 0xffff_ffff
            }
        }

        /// The slot of the `level` entry translating `virt` in long mode.
        fn long_slot(&self, root: u64, virt: u64, level: u8) -> u64 {
            let mut table = root;
            for current in (level..=4).rev() {
                let slot = table + ((virt >> (12 + 9 * u32::from(current - 1))) & 0x1ff) * 8;
                if current == level {
                    return slot;
                }
                table = self.get_u64(slot) & ADDRESS_MASK;
            }
            unreachable!()
        }

        /// Sets `bits` in the `level` long-mode entry translating `virt`.
        fn set_bits(&mut self, root: u64, virt: u64, level: u8, bits: u64) {
            let slot = self.long_slot(root, virt, level);
            let entry = self.get_u64(slot);
            self.set_u64(slot, entry | bits);
        }

        fn clear_bits(&mut self, root: u64, virt: u64, level: u8, bits: u64) {
            let slot = self.long_slot(root, virt, level);
            let entry = self.get_u64(slot);
            self.set_u64(slot, entry & !bits);
        }
    }

    impl GuestPhysicalMemory for FakeGuestMemory {
        fn read(&self, address: GuestPhysAddr, buffer: &mut [u8]) -> Result<(), GuestMemoryError> {
            self.reads.borrow_mut().push((address.raw(), buffer.len()));
            for (offset, byte) in buffer.iter_mut().enumerate() {
                let at = address.raw() + offset as u64;
                let frame = self.frames.get(&(at & !0xfff)).ok_or(GuestMemoryError {
                    address: GuestPhysAddr(at),
                })?;
                *byte = frame[(at & 0xfff) as usize];
            }
            Ok(())
        }

        fn write(&mut self, address: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
            for (offset, byte) in data.iter().enumerate() {
                let at = address.raw() + offset as u64;
                *self.byte_mut(at).ok_or(GuestMemoryError {
                    address: GuestPhysAddr(at),
                })? = *byte;
            }
            Ok(())
        }
    }

    fn long_guest() -> (FakeGuestMemory, u64) {
        let mut memory = FakeGuestMemory::new();
        let root = memory.allocate_table();
        (memory, root)
    }

    fn long(
        memory: &FakeGuestMemory,
        cr3: u64,
        virt: u64,
        access: Access,
    ) -> Result<GuestPhysAddr, WalkError> {
        translate(LONG, cr3, GuestVirtAddr(virt), access, true, memory)
    }

    #[test]
    fn mode_follows_the_control_registers() {
        let paging = 1 << 31;
        let pse = 1 << 4;
        let pae = 1 << 5;
        let lma = 1 << 10;
        assert_eq!(
            PagingMode::from_registers(0, pae, lma),
            PagingMode::Disabled
        );
        assert_eq!(
            PagingMode::from_registers(paging, 0, 0),
            PagingMode::Protected32 {
                page_size_extension: false
            }
        );
        assert_eq!(
            PagingMode::from_registers(paging | 1, pse, 0),
            PagingMode::Protected32 {
                page_size_extension: true
            }
        );
        assert_eq!(
            PagingMode::from_registers(paging, pae | pse, 0),
            PagingMode::Pae
        );
        assert_eq!(
            PagingMode::from_registers(paging, pae, lma | 1 << 8),
            PagingMode::Long4
        );
    }

    #[test]
    fn disabled_paging_is_the_identity_below_4_gib() {
        let memory = FakeGuestMemory::new();
        let translate_disabled = |virt| {
            translate(
                PagingMode::Disabled,
                0,
                GuestVirtAddr(virt),
                READ,
                false,
                &memory,
            )
        };
        assert_eq!(translate_disabled(0xb8123), Ok(GuestPhysAddr(0xb8123)));
        assert_eq!(
            translate_disabled(0xffff_ffff),
            Ok(GuestPhysAddr(0xffff_ffff))
        );
        assert_eq!(
            translate_disabled(1 << 32),
            Err(WalkError::OutsideAddressSpace)
        );
        assert!(memory.reads.borrow().is_empty());
    }

    #[test]
    fn long_mode_small_large_and_huge_pages() {
        let (mut memory, root) = long_guest();
        memory.map(LONG, root, 0x40_1000, 0x7_3000, 1, P | RW);
        memory.map(LONG, root, 0xffff_8000_0020_0000, 0x60_0000, 2, P);
        memory.map(LONG, root, 0x7f_4000_0000, 3 * GIB, 3, P | US);
        assert_eq!(
            long(&memory, root, 0x40_1abc, READ),
            Ok(GuestPhysAddr(0x7_3abc))
        );
        assert_eq!(
            long(&memory, root, 0xffff_8000_003f_fff0, READ),
            Ok(GuestPhysAddr(0x7f_fff0))
        );
        assert_eq!(
            long(
                &memory,
                root,
                0x7f_4000_0000 + 0x1234_5678,
                Access::USER_READ
            ),
            Ok(GuestPhysAddr(3 * GIB + 0x1234_5678))
        );
        // PCID and flag bits of CR3 are not part of the table address.
        let cr3 = root | 0x18 | 0x5 | 1 << 63;
        assert_eq!(
            long(&memory, cr3, 0x40_1abc, READ),
            Ok(GuestPhysAddr(0x7_3abc))
        );
        // Bits 52..=62 are software bits in long mode, not address bits.
        memory.set_bits(root, 0x40_1000, 1, 0x7ff << 52);
        assert_eq!(
            long(&memory, root, 0x40_1abc, READ),
            Ok(GuestPhysAddr(0x7_3abc))
        );
    }

    #[test]
    fn pae_small_and_large_pages() {
        let mut memory = FakeGuestMemory::new();
        let frame = memory.allocate_table();
        let root = frame + 0x40; // 32-byte aligned, not page aligned
        memory.map(PagingMode::Pae, root, 0xc010_2000, 0x1_2345_6000, 1, P | RW);
        memory.map(PagingMode::Pae, root, 0x0060_0000, 0x20_0000, 2, P | US);
        let pae = |virt, access| {
            translate(
                PagingMode::Pae,
                root,
                GuestVirtAddr(virt),
                access,
                true,
                &memory,
            )
        };
        assert_eq!(pae(0xc010_2fff, READ), Ok(GuestPhysAddr(0x1_2345_6fff)));
        assert_eq!(
            pae(0x0061_2345, Access::USER_READ),
            Ok(GuestPhysAddr(0x21_2345))
        );
        assert_eq!(
            pae(0x8000_0000, READ),
            Err(WalkError::NotPresent { level: 3 })
        );
        assert_eq!(
            pae(0xc020_0000, READ),
            Err(WalkError::NotPresent { level: 2 })
        );
        assert_eq!(
            pae(0xc010_3000, READ),
            Err(WalkError::NotPresent { level: 1 })
        );
        assert_eq!(pae(1 << 32, READ), Err(WalkError::OutsideAddressSpace));
    }

    #[test]
    fn protected32_small_and_4_mib_pages() {
        let mut memory = FakeGuestMemory::new();
        let root = memory.allocate_table();
        let with_pse = PagingMode::Protected32 {
            page_size_extension: true,
        };
        let without_pse = PagingMode::Protected32 {
            page_size_extension: false,
        };
        memory.map(with_pse, root, 0xc000_5000, 0x9000, 1, P | RW);
        // A 4 MiB page whose bits 13..=20 carry address bits 32..=39.
        memory.map(with_pse, root, 0x0080_0000, 0x0040_0000 | 0x3 << 13, 2, P);
        let walk = |mode, virt| translate(mode, root, GuestVirtAddr(virt), READ, false, &memory);
        assert_eq!(walk(with_pse, 0xc000_5123), Ok(GuestPhysAddr(0x9123)));
        assert_eq!(
            walk(with_pse, 0x0093_4567),
            Ok(GuestPhysAddr(0x3_0053_4567))
        );
        assert_eq!(
            walk(with_pse, 0xc040_0000),
            Err(WalkError::NotPresent { level: 2 })
        );
        assert_eq!(
            walk(with_pse, 0xc000_6000),
            Err(WalkError::NotPresent { level: 1 })
        );
        assert_eq!(walk(with_pse, 1 << 32), Err(WalkError::OutsideAddressSpace));
        // Without PSE the PS bit is ignored: the entry points at a page table
        // (frame 0x40_6000, absent here).
        assert_eq!(
            walk(without_pse, 0x0093_4567),
            Err(WalkError::Unbacked(GuestMemoryError {
                address: GuestPhysAddr(0x40_6000 + 0x134 * 4)
            }))
        );
        // Bit 21 of a 4 MiB entry is reserved.
        memory.set_u32(root + 2 * 4, 0x0040_0000 | 1 << 21 | (P | PS) as u32);
        assert_eq!(
            translate(
                with_pse,
                root,
                GuestVirtAddr(0x0080_0000),
                READ,
                false,
                &memory
            ),
            Err(WalkError::ReservedBit { level: 2 })
        );
    }

    #[test]
    fn not_present_names_the_level() {
        let (mut memory, root) = long_guest();
        let virt = 0x12_3456_7000;
        memory.map(LONG, root, virt, 0x5000, 1, P);
        for level in 1..=4 {
            let (mut memory, root) = long_guest();
            memory.map(LONG, root, virt, 0x5000, 1, P);
            memory.clear_bits(root, virt, level, P);
            assert_eq!(
                long(&memory, root, virt, READ),
                Err(WalkError::NotPresent { level })
            );
        }
        assert_eq!(
            long(&memory, root, virt + PAGE_SIZE, READ),
            Err(WalkError::NotPresent { level: 1 })
        );
        assert_eq!(
            long(&memory, root, 0x7f80_0000_0000, READ),
            Err(WalkError::NotPresent { level: 4 })
        );
    }

    #[test]
    fn writes_need_every_level_writable() {
        let (mut memory, root) = long_guest();
        memory.map(LONG, root, 0x1000, 0x5000, 1, P);
        memory.map(LONG, root, 0x40_0000, 0x6000, 1, P | RW);
        let read_only = Err(WalkError::Protection(Violation::ReadOnly));
        assert_eq!(long(&memory, root, 0x1000, READ), Ok(GuestPhysAddr(0x5000)));
        // Even the kernel: the walk behaves as if CR0.WP were set.
        assert_eq!(
            long(&memory, root, 0x1000, Access::SUPERVISOR_WRITE),
            read_only
        );
        assert_eq!(
            long(&memory, root, 0x40_0000, Access::SUPERVISOR_WRITE),
            Ok(GuestPhysAddr(0x6000))
        );
        memory.clear_bits(root, 0x40_0000, 3, RW);
        assert_eq!(
            long(&memory, root, 0x40_0000, Access::SUPERVISOR_WRITE),
            read_only
        );
    }

    #[test]
    fn user_accesses_need_every_level_user() {
        let (mut memory, root) = long_guest();
        memory.map(LONG, root, 0x1000, 0x5000, 1, P | RW);
        memory.map(LONG, root, 0x2000, 0x6000, 1, P | RW | US);
        let supervisor_only = Err(WalkError::Protection(Violation::SupervisorOnly));
        assert_eq!(
            long(&memory, root, 0x1000, Access::USER_READ),
            supervisor_only
        );
        assert_eq!(long(&memory, root, 0x1000, READ), Ok(GuestPhysAddr(0x5000)));
        // Supervisor accesses to user pages are allowed (SMAP is not modelled).
        assert_eq!(
            long(&memory, root, 0x2000, Access::SUPERVISOR_WRITE),
            Ok(GuestPhysAddr(0x6000))
        );
        assert_eq!(
            long(&memory, root, 0x2000, Access::USER_WRITE),
            Ok(GuestPhysAddr(0x6000))
        );
        memory.clear_bits(root, 0x2000, 4, US);
        assert_eq!(
            long(&memory, root, 0x2000, Access::USER_READ),
            supervisor_only
        );
    }

    #[test]
    fn no_execute_is_a_right_with_nxe_and_reserved_without() {
        let (mut memory, root) = long_guest();
        memory.map(LONG, root, 0x1000, 0x5000, 1, P | NX);
        memory.map(LONG, root, 0x40_0000, 0x6000, 1, P);
        let no_execute = Err(WalkError::Protection(Violation::NoExecute));
        assert_eq!(long(&memory, root, 0x1000, EXECUTE), no_execute);
        assert_eq!(long(&memory, root, 0x1000, READ), Ok(GuestPhysAddr(0x5000)));
        assert_eq!(
            long(&memory, root, 0x40_0000, EXECUTE),
            Ok(GuestPhysAddr(0x6000))
        );
        memory.set_bits(root, 0x40_0000, 2, NX);
        assert_eq!(long(&memory, root, 0x40_0000, EXECUTE), no_execute);
        let without_nxe = translate(LONG, root, GuestVirtAddr(0x1000), READ, false, &memory);
        assert_eq!(without_nxe, Err(WalkError::ReservedBit { level: 1 }));

        let mut memory = FakeGuestMemory::new();
        let root = memory.allocate_table();
        memory.map(PagingMode::Pae, root, 0x1000, 0x5000, 1, P | NX);
        let pae = |access, nxe| {
            translate(
                PagingMode::Pae,
                root,
                GuestVirtAddr(0x1000),
                access,
                nxe,
                &memory,
            )
        };
        assert_eq!(pae(EXECUTE, true), no_execute);
        assert_eq!(pae(READ, true), Ok(GuestPhysAddr(0x5000)));
        assert_eq!(pae(READ, false), Err(WalkError::ReservedBit { level: 1 }));
    }

    #[test]
    fn non_canonical_addresses_fault_before_any_read() {
        let (memory, root) = long_guest();
        for virt in [
            1 << 47,
            0x0000_8000_0000_1000,
            0xffff_7fff_ffff_f000,
            0x8000_0000_0000_0000,
        ] {
            assert_eq!(
                long(&memory, root, virt, READ),
                Err(WalkError::NonCanonical)
            );
        }
        assert!(memory.reads.borrow().is_empty());
        assert_eq!(
            long(&memory, root, 0xffff_8000_0000_0000, READ),
            Err(WalkError::NotPresent { level: 4 })
        );
    }

    #[test]
    fn reserved_bits_fault() {
        let virt = 0x4000_0000;
        let check = |level, bits, leaf_level| {
            let (mut memory, root) = long_guest();
            memory.map(LONG, root, virt, 2 * GIB, leaf_level, P | RW);
            memory.set_bits(root, virt, level, bits);
            long(&memory, root, virt, READ)
        };
        assert_eq!(check(4, PS, 1), Err(WalkError::ReservedBit { level: 4 }));
        assert_eq!(
            check(3, 1 << 13, 3),
            Err(WalkError::ReservedBit { level: 3 })
        );
        assert_eq!(
            check(3, 1 << 29, 3),
            Err(WalkError::ReservedBit { level: 3 })
        );
        assert_eq!(
            check(2, 1 << 20, 2),
            Err(WalkError::ReservedBit { level: 2 })
        );
        // Bit 12 of a large leaf is PAT, not reserved.
        assert_eq!(check(2, 1 << 12, 2), Ok(GuestPhysAddr(2 * GIB)));
        // The same bits in a table entry or a small leaf are address bits.
        assert!(matches!(check(2, 1 << 16, 1), Err(WalkError::Unbacked(_))));

        let mut memory = FakeGuestMemory::new();
        let root = memory.allocate_table();
        memory.map(PagingMode::Pae, root, virt, 0x5000, 1, P | RW);
        let pae = |memory: &FakeGuestMemory| {
            translate(
                PagingMode::Pae,
                root,
                GuestVirtAddr(virt),
                READ,
                true,
                memory,
            )
        };
        assert_eq!(pae(&memory), Ok(GuestPhysAddr(0x5000)));
        let pointer = memory.get_u64(root + 8);
        memory.set_u64(root + 8, pointer | RW);
        assert_eq!(pae(&memory), Err(WalkError::ReservedBit { level: 3 }));
        memory.set_u64(root + 8, pointer);
        let directory = pointer & ADDRESS_MASK;
        let entry = memory.get_u64(directory);
        memory.set_u64(directory, entry | 1 << 52);
        assert_eq!(pae(&memory), Err(WalkError::ReservedBit { level: 2 }));
    }

    #[test]
    fn self_referencing_tables_terminate() {
        // Every long-mode entry points back at the root: a recursive map.
        let (mut memory, root) = long_guest();
        for index in 0..512 {
            memory.set_u64(root + index * 8, root | TABLE);
        }
        assert_eq!(
            long(&memory, root, 0xffff_ffff_ffff_f008, READ),
            Ok(GuestPhysAddr(root + 8))
        );
        assert_eq!(
            long(&memory, root, 0x1234_5678, READ),
            Ok(GuestPhysAddr(root + 0x678))
        );
        assert_eq!(memory.reads.borrow().len(), 8);

        // The same with PS set at the middle levels: a large leaf at the root.
        for index in 0..512 {
            memory.set_u64(root + index * 8, root | TABLE | PS);
        }
        assert_eq!(
            long(&memory, root, 0x1000, READ),
            Err(WalkError::ReservedBit { level: 4 })
        );

        // A 32-bit directory that is its own page table.
        let mut memory = FakeGuestMemory::new();
        let root = memory.allocate_table();
        for index in 0..1024 {
            memory.set_u32(root + index * 4, (root | TABLE) as u32);
        }
        let mode = PagingMode::Protected32 {
            page_size_extension: true,
        };
        assert_eq!(
            translate(mode, root, GuestVirtAddr(0xffff_f004), READ, false, &memory),
            Ok(GuestPhysAddr(root + 4))
        );
    }

    #[test]
    fn unbacked_tables_name_the_address() {
        let (mut memory, root) = long_guest();
        assert_eq!(
            long(&memory, 0x4000_0000, 0x1000, READ),
            Err(WalkError::Unbacked(GuestMemoryError {
                address: GuestPhysAddr(0x4000_0000)
            }))
        );
        memory.set_u64(root, 0x7_7000 | TABLE);
        assert_eq!(
            long(&memory, root, 0x8000_1000, READ),
            Err(WalkError::Unbacked(GuestMemoryError {
                address: GuestPhysAddr(0x7_7000 + 2 * 8)
            }))
        );
    }

    /// A guest with three scattered data pages at 0x40_0000..0x40_3000 and
    /// a 2 MiB page at 0x60_0000.
    fn copy_guest() -> (FakeGuestMemory, u64) {
        let (mut memory, root) = long_guest();
        for (page, frame) in [(0u64, 0x9000u64), (1, 0x3000), (2, 0x7000)] {
            memory.map(LONG, root, 0x40_0000 + page * PAGE_SIZE, frame, 1, P | RW);
            memory.add_frame(frame);
        }
        memory.map(LONG, root, 0x60_0000, 0x80_0000, 2, P | RW);
        for frame in (0x80_0000..0xa0_0000).step_by(PAGE_SIZE as usize) {
            memory.add_frame(frame);
        }
        (memory, root)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|index| (index * 7 + 3) as u8).collect()
    }

    #[test]
    fn copies_span_pages() {
        let (mut memory, root) = copy_guest();
        let data = pattern(PAGE_SIZE as usize + 0x20);
        let start = GuestVirtAddr(0x40_0ff0);
        write_virtual(LONG, root, start, READ, true, &mut memory, &data).unwrap();
        assert_eq!(memory.bytes(0x9ff0, 0x10), data[..0x10]);
        assert_eq!(memory.bytes(0x3000, 0x1000), data[0x10..0x1010]);
        assert_eq!(memory.bytes(0x7000, 0x10), data[0x1010..0x1020]);

        let mut back = vec![0; data.len()];
        read_virtual(LONG, root, start, READ, true, &memory, &mut back).unwrap();
        assert_eq!(back, data);

        // Through a large page, across several 4 KiB frames in one chunk.
        let data = pattern(3 * PAGE_SIZE as usize);
        write_virtual(
            LONG,
            root,
            GuestVirtAddr(0x60_0800),
            READ,
            true,
            &mut memory,
            &data,
        )
        .unwrap();
        assert_eq!(memory.bytes(0x80_0800, data.len()), data);
    }

    #[test]
    fn copies_read_each_byte_once() {
        let (memory, root) = copy_guest();
        memory.reads.borrow_mut().clear();
        let mut buffer = vec![0; 0x2100];
        read_virtual(
            LONG,
            root,
            GuestVirtAddr(0x40_0f00),
            READ,
            true,
            &memory,
            &mut buffer,
        )
        .unwrap();
        let reads = memory.reads.borrow();
        let data_reads: Vec<_> = reads.iter().filter(|(_, len)| *len != 8).copied().collect();
        assert_eq!(
            data_reads,
            [(0x9f00, 0x100), (0x3000, 0x1000), (0x7000, 0x1000)]
        );
        // Four table entries per page walked, nothing more.
        assert_eq!(reads.len(), 3 + 3 * 4);
    }

    #[test]
    fn failed_write_stops_at_the_faulting_page() {
        let (mut memory, root) = copy_guest();
        memory.clear_bits(root, 0x40_1000, 1, RW);
        let data = pattern(0x1800);
        let error = write_virtual(
            LONG,
            root,
            GuestVirtAddr(0x40_0800),
            READ,
            true,
            &mut memory,
            &data,
        );
        assert_eq!(
            error,
            Err(CopyError {
                address: GuestVirtAddr(0x40_1000),
                copied: 0x800,
                error: WalkError::Protection(Violation::ReadOnly),
            })
        );
        assert_eq!(memory.bytes(0x9800, 0x800), data[..0x800]);
        assert_eq!(memory.bytes(0x3000, 0x1000), vec![0; 0x1000]);
        // Reading the same range is allowed.
        let mut back = vec![0; 0x1800];
        read_virtual(
            LONG,
            root,
            GuestVirtAddr(0x40_0800),
            READ,
            true,
            &memory,
            &mut back,
        )
        .unwrap();
    }

    #[test]
    fn copy_errors_report_the_failing_address() {
        let (mut memory, root) = copy_guest();
        let mut buffer = [0; 0x20];
        let error = read_virtual(
            LONG,
            root,
            GuestVirtAddr(0x40_2ff0),
            READ,
            true,
            &memory,
            &mut buffer,
        );
        assert_eq!(
            error,
            Err(CopyError {
                address: GuestVirtAddr(0x40_3000),
                copied: 0x10,
                error: WalkError::NotPresent { level: 1 },
            })
        );
        // A mapped page whose frame the domain does not have.
        memory.map(LONG, root, 0x40_3000, 0xdead_0000, 1, P | RW);
        let error = read_virtual(
            LONG,
            root,
            GuestVirtAddr(0x40_2ff0),
            READ,
            true,
            &memory,
            &mut buffer,
        );
        assert_eq!(
            error.unwrap_err().error,
            WalkError::Unbacked(GuestMemoryError {
                address: GuestPhysAddr(0xdead_0000)
            })
        );
    }

    #[test]
    fn copies_stop_at_the_end_of_the_address_space() {
        let (mut memory, root) = long_guest();
        memory.map(LONG, root, 0x7fff_ffff_f000, 0x5000, 1, P | RW);
        memory.map(LONG, root, 0xffff_ffff_ffff_f000, 0x6000, 1, P | RW);
        memory.add_frame(0x5000);
        memory.add_frame(0x6000);
        let mut buffer = [0; 0x20];
        let error = read_virtual(
            LONG,
            root,
            GuestVirtAddr(0x7fff_ffff_fff0),
            READ,
            true,
            &memory,
            &mut buffer,
        );
        assert_eq!(error.unwrap_err().error, WalkError::NonCanonical);
        let error = read_virtual(
            LONG,
            root,
            GuestVirtAddr(0xffff_ffff_ffff_fff0),
            READ,
            true,
            &memory,
            &mut buffer,
        );
        assert_eq!(
            error,
            Err(CopyError {
                address: GuestVirtAddr(0xffff_ffff_ffff_fff0),
                copied: 0x10,
                error: WalkError::OutsideAddressSpace,
            })
        );
        let mut buffer = [0; 0x10];
        read_virtual(
            LONG,
            root,
            GuestVirtAddr(0xffff_ffff_ffff_fff0),
            READ,
            true,
            &memory,
            &mut buffer,
        )
        .unwrap();

        let mut memory = FakeGuestMemory::new();
        memory.add_frame(0xffff_f000);
        let mut buffer = [0; 0x20];
        let error = read_virtual(
            PagingMode::Disabled,
            0,
            GuestVirtAddr(0xffff_fff0),
            READ,
            false,
            &memory,
            &mut buffer,
        );
        assert_eq!(error.unwrap_err().error, WalkError::OutsideAddressSpace);
    }

    #[test]
    fn empty_copies_touch_nothing() {
        let (mut memory, root) = long_guest();
        read_virtual(
            LONG,
            root,
            GuestVirtAddr(1 << 47),
            READ,
            true,
            &memory,
            &mut [],
        )
        .unwrap();
        write_virtual(
            LONG,
            root,
            GuestVirtAddr(1 << 47),
            READ,
            true,
            &mut memory,
            &[],
        )
        .unwrap();
        assert!(memory.reads.borrow().is_empty());
    }

    /// Random tables must never panic, and a translation keeps the page offset.
    #[test]
    fn random_tables_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let frames = [0x1000, 0x2000, 0x3000, 0x20_0000, 0xffff_f000];
        for _ in 0..100 {
            let mut memory = FakeGuestMemory::new();
            for frame in frames {
                memory.add_frame(frame);
                for index in 0..512 {
                    let random = next();
                    // Mostly entries pointing at the frames above, some noise.
                    let entry = if random % 4 == 0 {
                        random
                    } else {
                        frames[(random >> 8) as usize % frames.len()]
                            | (random & 0xfff)
                            | (random & (0xfff << 52))
                    };
                    memory.set_u64(frame + index * 8, entry);
                }
            }
            for _ in 0..100 {
                let random = next();
                let mode = match random % 5 {
                    0 => PagingMode::Disabled,
                    1 => PagingMode::Protected32 {
                        page_size_extension: random & 8 != 0,
                    },
                    2 => PagingMode::Pae,
                    _ => PagingMode::Long4,
                };
                let access = Access {
                    write: random & 16 != 0,
                    user: random & 32 != 0,
                    execute: random & 64 != 0,
                };
                let cr3 = frames[(random >> 8) as usize % frames.len()] | (next() & 0xfff);
                let virt = if random & 128 != 0 {
                    next()
                } else {
                    next() & 0xffff_ffff
                };
                memory.reads.borrow_mut().clear();
                let result = translate(
                    mode,
                    cr3,
                    GuestVirtAddr(virt),
                    access,
                    random & 256 != 0,
                    &memory,
                );
                if let Ok(physical) = result {
                    assert_eq!(physical.page_offset(), virt & 0xfff);
                }
                assert!(memory.reads.borrow().len() <= 4);
                let mut buffer = [0; 64];
                let _ = read_virtual(
                    mode,
                    cr3,
                    GuestVirtAddr(virt),
                    access,
                    true,
                    &memory,
                    &mut buffer,
                );
            }
        }
    }
}
