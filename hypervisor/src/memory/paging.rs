//! Builds x86_64 four-level page tables: the hypervisor's own and the AMD
//! nested page tables that map a guest's physical memory onto the host's.
//!
//! Both share one format. Nested tables differ in one rule: the processor
//! treats every nested walk as a user access, so every entry at every level
//! carries the User bit. [`PageTables`] takes the kind as a type parameter,
//! so the rule cannot be forgotten and a guest-physical address cannot be
//! mapped into the hypervisor's tables by mistake.
//!
//! The tables live in host memory the library cannot touch: the binary
//! implements [`TableMemory`] over real frames, tests over a vector.

use core::fmt;
use core::marker::PhantomData;
use core::ops::BitOr;

use super::address::{
    GuestPhysAddr, HUGE_PAGE_SIZE, HostPhysAddr, HostRange, LARGE_PAGE_SIZE, PAGE_SIZE,
};

/// Entries in one table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// First input address four-level tables cannot map (48 bits). Only the
/// lower half is mapped: nothing here needs the upper canonical half.
pub const INPUT_ADDRESS_LIMIT: u64 = 1 << 48;
/// First physical address an entry cannot hold (architectural 52 bits).
pub const PHYSICAL_ADDRESS_LIMIT: u64 = 1 << 52;

/// Bits 12..52 of an entry: the frame it points at.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Page size bit: a level-2 or level-3 entry is a leaf, not a table.
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Levels of a four-level walk, root first.
const ROOT_LEVEL: u8 = 4;

/// Interface to the memory holding page tables. The binary implements it
/// over its identity map of host RAM.
pub trait TableMemory {
    /// Reads entry `index` (below [`ENTRIES_PER_TABLE`]) of the table at `table`.
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64;

    /// Writes entry `index` (below [`ENTRIES_PER_TABLE`]) of the table at `table`.
    fn write_entry(&mut self, table: HostPhysAddr, index: usize, entry: u64);

    /// A zeroed 4 KiB frame for a new table, or `None` when out of frames.
    fn allocate_table(&mut self) -> Option<HostPhysAddr>;
}

/// Attributes of a mapping, at the bit positions a page-table entry uses.
///
/// Without flags a mapping is present, read-only, supervisor-only,
/// executable and write-back cached. Combine with `|`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PageFlags(u64);

impl PageFlags {
    /// Read-only, executable, supervisor, write-back.
    pub const EMPTY: Self = Self(0);
    /// The entry is valid. [`PageTables::map`] always sets it.
    pub const PRESENT: Self = Self(1 << 0);
    /// Writes are allowed.
    pub const WRITABLE: Self = Self(1 << 1);
    /// User-mode accesses are allowed. Nested tables always set it.
    pub const USER: Self = Self(1 << 2);
    /// Uncached (PCD | PWT, PAT entry 3 with the reset PAT): for device MMIO.
    pub const UNCACHED: Self = Self((1 << 3) | (1 << 4));
    /// The translation survives CR3 reloads.
    pub const GLOBAL: Self = Self(1 << 8);
    /// Instruction fetches fault. Needs EFER.NXE on the host, or the bit is
    /// reserved and every walk through the entry faults.
    pub const NO_EXECUTE: Self = Self(1 << 63);

    /// Hypervisor code: read and execute.
    pub const TEXT: Self = Self::EMPTY;
    /// Hypervisor constants: read only.
    pub const READ_ONLY_DATA: Self = Self::NO_EXECUTE;
    /// Hypervisor data, stacks and RAM: read and write, never execute.
    pub const DATA: Self = Self(Self::WRITABLE.0 | Self::NO_EXECUTE.0);
    /// Device registers: read and write, uncached, never execute.
    pub const DEVICE: Self = Self(Self::DATA.0 | Self::UNCACHED.0);

    /// Every bit this type may hold.
    const ALL: u64 = Self::PRESENT.0
        | Self::WRITABLE.0
        | Self::USER.0
        | Self::UNCACHED.0
        | Self::GLOBAL.0
        | Self::NO_EXECUTE.0;

    /// The raw entry bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags of a raw entry; address and unknown bits are dropped.
    pub const fn from_entry(entry: u64) -> Self {
        Self(entry & Self::ALL)
    }
}

impl BitOr for PageFlags {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for PageFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::PRESENT, "PRESENT"),
            (Self::WRITABLE, "WRITABLE"),
            (Self::USER, "USER"),
            (Self::UNCACHED, "UNCACHED"),
            (Self::GLOBAL, "GLOBAL"),
            (Self::NO_EXECUTE, "NO_EXECUTE"),
        ];
        write!(f, "PageFlags(")?;
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    write!(f, " | ")?;
                }
                write!(f, "{name}")?;
                first = false;
            }
        }
        if first {
            write!(f, "EMPTY")?;
        }
        write!(f, ")")
    }
}

/// Size of the page a leaf entry maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, a level-1 leaf.
    Small,
    /// 2 MiB, a level-2 leaf.
    Large,
    /// 1 GiB, a level-3 leaf.
    Huge,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Small => PAGE_SIZE,
            Self::Large => LARGE_PAGE_SIZE,
            Self::Huge => HUGE_PAGE_SIZE,
        }
    }

    /// The size a leaf at `level` maps, if a leaf may sit there.
    const fn at_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(Self::Small),
            2 => Some(Self::Large),
            3 => Some(Self::Huge),
            _ => None,
        }
    }
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or the length is not a multiple of 4 KiB.
    Unaligned,
    /// The input range ends beyond 48 bits or the physical range beyond 52.
    OutOfRange,
    /// Part of the range is already mapped. Nothing was changed.
    AlreadyMapped,
    /// No frame was left for a table. A prefix of the range may be mapped.
    OutOfFrames,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unaligned => "address or length is not 4 KiB aligned",
            Self::OutOfRange => "range exceeds the addressable space",
            Self::AlreadyMapped => "range overlaps an existing mapping",
            Self::OutOfFrames => "no frame left for a page table",
        })
    }
}

/// What a leaf maps an input address to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The host-physical address the input address itself maps to.
    pub physical: HostPhysAddr,
    /// The leaf's flags (intermediate entries are permissive).
    pub flags: PageFlags,
    /// The leaf's page size.
    pub size: PageSize,
}

/// A host-virtual address: what the hypervisor's own instructions use. RAM
/// and devices are identity-mapped, so there it equals the host-physical
/// address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HostVirtAddr(pub u64);

impl HostVirtAddr {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for HostVirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostVirtAddr({:#x})", self.0)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Which tables a [`PageTables`] is: the hypervisor's or a guest's nested ones.
pub trait TableKind: sealed::Sealed {
    /// The address space the tables translate from.
    type Input: Copy;
    /// Bits set in every entry at every level.
    const ALWAYS_SET: u64;
    /// The raw input address.
    fn raw(input: Self::Input) -> u64;
}

/// The hypervisor's own tables: host-virtual to host-physical.
#[derive(Debug)]
pub enum Hypervisor {}

/// AMD nested page tables: guest-physical to host-physical. Every entry
/// carries User, because the processor walks them as user accesses.
#[derive(Debug)]
pub enum Nested {}

impl sealed::Sealed for Hypervisor {}
impl sealed::Sealed for Nested {}

impl TableKind for Hypervisor {
    type Input = HostVirtAddr;
    const ALWAYS_SET: u64 = PageFlags::PRESENT.0;

    fn raw(input: HostVirtAddr) -> u64 {
        input.raw()
    }
}

impl TableKind for Nested {
    type Input = GuestPhysAddr;
    const ALWAYS_SET: u64 = PageFlags::PRESENT.0 | PageFlags::USER.0;

    fn raw(input: GuestPhysAddr) -> u64 {
        input.raw()
    }
}

/// The hypervisor's own page tables, loaded into CR3.
pub type HypervisorPageTables = PageTables<Hypervisor>;
/// A guest's nested page tables, loaded into the VMCB's nCR3.
pub type NestedPageTables = PageTables<Nested>;

/// A four-level page-table tree, named by its root table.
#[derive(Debug)]
pub struct PageTables<K: TableKind> {
    root: HostPhysAddr,
    kind: PhantomData<K>,
}

impl<K: TableKind> Clone for PageTables<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: TableKind> Copy for PageTables<K> {}

impl<K: TableKind> PageTables<K> {
    /// An empty tree: one zeroed root table.
    pub fn new_root(memory: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = memory.allocate_table().ok_or(MapError::OutOfFrames)?;
        Ok(Self::from_root(root))
    }

    /// The tree whose root table is at `root` (built earlier by this type).
    pub const fn from_root(root: HostPhysAddr) -> Self {
        Self {
            root,
            kind: PhantomData,
        }
    }

    /// The root table's address, for CR3 or nCR3.
    pub const fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// Maps `[input, input + len)` to `[physical, physical + len)` with
    /// `flags`, using the largest pages up to `largest` that both addresses'
    /// alignment and the remaining length allow.
    ///
    /// Zero length does nothing. If any page of the range is already mapped
    /// nothing changes. Intermediate entries are created present and
    /// writable (and user in nested tables), so the leaf alone decides.
    pub fn map(
        &self,
        memory: &mut impl TableMemory,
        input: K::Input,
        physical: HostPhysAddr,
        len: u64,
        flags: PageFlags,
        largest: PageSize,
    ) -> Result<(), MapError> {
        let request = Request {
            input: K::raw(input),
            physical: physical.raw(),
            len,
            leaf_bits: flags.bits() | K::ALWAYS_SET,
            table_bits: PageFlags::WRITABLE.bits() | K::ALWAYS_SET,
            largest,
            leaves: true,
        };
        self.build(memory, &request)
    }

    /// Allocates every table a later [`map`](Self::map) of the same range
    /// with the same `largest` will need, and maps nothing: that later map
    /// then only writes leaf entries and cannot run out of frames. For
    /// memory that is mapped on first use. Fails as `map` would.
    pub fn prepare(
        &self,
        memory: &mut impl TableMemory,
        input: K::Input,
        physical: HostPhysAddr,
        len: u64,
        largest: PageSize,
    ) -> Result<(), MapError> {
        let request = Request {
            input: K::raw(input),
            physical: physical.raw(),
            len,
            leaf_bits: K::ALWAYS_SET,
            table_bits: PageFlags::WRITABLE.bits() | K::ALWAYS_SET,
            largest,
            leaves: false,
        };
        self.build(memory, &request)
    }

    /// [`map`](Self::map), writing the leaves only when the request says.
    fn build(&self, memory: &mut impl TableMemory, request: &Request) -> Result<(), MapError> {
        let len = request.len;
        if len == 0 {
            return Ok(());
        }
        if !request.input.is_multiple_of(PAGE_SIZE)
            || !request.physical.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Unaligned);
        }
        let fits = |start: u64, limit: u64| start.checked_add(len).is_some_and(|end| end <= limit);
        if !fits(request.input, INPUT_ADDRESS_LIMIT)
            || !fits(request.physical, PHYSICAL_ADDRESS_LIMIT)
        {
            return Err(MapError::OutOfRange);
        }
        // Check the whole range before writing anything, so a conflict
        // leaves the tables as they were.
        if any_leaf(memory, self.root, ROOT_LEVEL, request.input, len) {
            return Err(MapError::AlreadyMapped);
        }
        map_level(memory, self.root, ROOT_LEVEL, request)
    }

    /// What `input` maps to, or `None` if it is not mapped.
    pub fn translate(&self, memory: &impl TableMemory, input: K::Input) -> Option<Mapping> {
        let input = K::raw(input);
        if input >= INPUT_ADDRESS_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in (1..=ROOT_LEVEL).rev() {
            let entry = memory.read_entry(table, table_index(input, level));
            if entry & PageFlags::PRESENT.bits() == 0 {
                return None;
            }
            if is_leaf(entry, level) {
                let size = PageSize::at_level(level)?;
                let offset = input & (size.bytes() - 1);
                let base = entry & ADDRESS_MASK & !(size.bytes() - 1);
                return Some(Mapping {
                    physical: HostPhysAddr(base | offset),
                    flags: PageFlags::from_entry(entry),
                    size,
                });
            }
            table = HostPhysAddr(entry & ADDRESS_MASK);
        }
        None
    }
}

impl<K: TableKind> PageTables<K> {
    /// Removes the 4 KiB mapping of `input` and returns what it mapped to.
    /// A large page around it is first split into smaller ones with the
    /// same attributes, so only this page goes. `Ok(None)` when nothing was
    /// mapped there.
    pub fn unmap_page(
        &self,
        memory: &mut impl TableMemory,
        input: K::Input,
    ) -> Result<Option<HostPhysAddr>, MapError> {
        let input = K::raw(input) & !(PAGE_SIZE - 1);
        if input >= INPUT_ADDRESS_LIMIT {
            return Err(MapError::OutOfRange);
        }
        let mut table = self.root;
        for level in (1..=ROOT_LEVEL).rev() {
            let index = table_index(input, level);
            let entry = memory.read_entry(table, index);
            if entry & PageFlags::PRESENT.bits() == 0 {
                return Ok(None);
            }
            if level == 1 {
                memory.write_entry(table, index, 0);
                return Ok(Some(HostPhysAddr(entry & ADDRESS_MASK)));
            }
            if is_leaf(entry, level) {
                split_leaf(memory, table, index, entry, level)?;
            }
            table = HostPhysAddr(memory.read_entry(table, index) & ADDRESS_MASK);
        }
        Ok(None)
    }
}

impl<K: TableKind> PageTables<K> {
    /// Every table frame of this tree, the root included, so the owner can
    /// free them when the address space goes away. The walk visits each
    /// table once (at most 512 entries per table and four levels).
    pub fn table_frames(&self, memory: &impl TableMemory) -> alloc::vec::Vec<HostPhysAddr> {
        let mut frames = alloc::vec![self.root];
        collect_tables(memory, self.root, ROOT_LEVEL, &mut frames);
        frames
    }
}

fn collect_tables(
    memory: &impl TableMemory,
    table: HostPhysAddr,
    level: u8,
    frames: &mut alloc::vec::Vec<HostPhysAddr>,
) {
    if level == 1 {
        return;
    }
    for index in 0..ENTRIES_PER_TABLE {
        let entry = memory.read_entry(table, index);
        if entry & PageFlags::PRESENT.bits() != 0 && !is_leaf(entry, level) {
            let child = HostPhysAddr(entry & ADDRESS_MASK);
            frames.push(child);
            collect_tables(memory, child, level - 1, frames);
        }
    }
}

/// Replaces the large leaf `entry` (slot `index` of `table`, at `level`)
/// with a table of next-level leaves covering the same range.
fn split_leaf(
    memory: &mut impl TableMemory,
    table: HostPhysAddr,
    index: usize,
    entry: u64,
    level: u8,
) -> Result<(), MapError> {
    let child = memory.allocate_table().ok_or(MapError::OutOfFrames)?;
    let span = entry_span(level - 1);
    let base = entry & ADDRESS_MASK & !(entry_span(level) - 1);
    // The attribute bits are shared; the page-size bit stays only where the
    // children are themselves large pages. (Bit 12, the large-page PAT bit,
    // is cleared as part of the address.)
    let attributes = entry & !ADDRESS_MASK & !PAGE_SIZE_BIT;
    let child_size_bit = if level - 1 > 1 { PAGE_SIZE_BIT } else { 0 };
    for slot in 0..ENTRIES_PER_TABLE {
        memory.write_entry(
            child,
            slot,
            (base + slot as u64 * span) | attributes | child_size_bit,
        );
    }
    let table_bits =
        (entry & (PageFlags::PRESENT.bits() | PageFlags::USER.bits())) | PageFlags::WRITABLE.bits();
    memory.write_entry(table, index, child.raw() | table_bits);
    Ok(())
}

impl PageTables<Hypervisor> {
    /// Maps `range` at the same virtual address: the identity map of RAM
    /// and devices.
    pub fn identity_map(
        &self,
        memory: &mut impl TableMemory,
        range: HostRange,
        flags: PageFlags,
        largest: PageSize,
    ) -> Result<(), MapError> {
        self.map(
            memory,
            HostVirtAddr(range.start.raw()),
            range.start,
            range.len(),
            flags,
            largest,
        )
    }
}

/// One validated mapping request, passed down the levels.
struct Request {
    input: u64,
    physical: u64,
    len: u64,
    leaf_bits: u64,
    table_bits: u64,
    largest: PageSize,
    /// Whether to write the leaves, or only the tables above them.
    leaves: bool,
}

/// Bytes one entry at `level` covers.
const fn entry_span(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Bit position of the lowest input-address bit that indexes `level`.
const fn level_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

/// The entry of the `level` table that translates `input`.
const fn table_index(input: u64, level: u8) -> usize {
    ((input >> level_shift(level)) & (ENTRIES_PER_TABLE as u64 - 1)) as usize
}

/// Whether a present `entry` at `level` maps a page rather than a table.
const fn is_leaf(entry: u64, level: u8) -> bool {
    match level {
        1 => true,
        2 | 3 => entry & PAGE_SIZE_BIT != 0,
        _ => false,
    }
}

/// Whether any present leaf under `table` (at `level`) overlaps
/// `[input, input + len)`.
fn any_leaf(
    memory: &impl TableMemory,
    table: HostPhysAddr,
    level: u8,
    input: u64,
    len: u64,
) -> bool {
    let mut offset = 0;
    while offset < len {
        let address = input + offset;
        let chunk = chunk_in_entry(address, len - offset, level);
        let entry = memory.read_entry(table, table_index(address, level));
        if entry & PageFlags::PRESENT.bits() != 0 {
            if is_leaf(entry, level) {
                return true;
            }
            let child = HostPhysAddr(entry & ADDRESS_MASK);
            if level > 1 && any_leaf(memory, child, level - 1, address, chunk) {
                return true;
            }
        }
        offset += chunk;
    }
    false
}

/// Bytes of `[address, address + remaining)` inside the `level` entry that
/// holds `address`.
fn chunk_in_entry(address: u64, remaining: u64, level: u8) -> u64 {
    let span = entry_span(level);
    let to_entry_end = span - (address & (span - 1));
    remaining.min(to_entry_end)
}

/// Maps the part of `request` under `table` (at `level`). The caller has
/// checked that no leaf overlaps, so only allocation can fail.
fn map_level(
    memory: &mut impl TableMemory,
    table: HostPhysAddr,
    level: u8,
    request: &Request,
) -> Result<(), MapError> {
    let mut offset = 0;
    while offset < request.len {
        let input = request.input + offset;
        let physical = request.physical + offset;
        let chunk = chunk_in_entry(input, request.len - offset, level);
        let index = table_index(input, level);
        let entry = memory.read_entry(table, index);
        let present = entry & PageFlags::PRESENT.bits() != 0;
        let span = entry_span(level);
        let leaf_size = PageSize::at_level(level).filter(|size| *size <= request.largest);
        // A whole entry, physically aligned, with no table under it yet
        // (a table there means smaller pages were mapped nearby).
        if leaf_size.is_some() && !present && chunk == span && physical.is_multiple_of(span) {
            if request.leaves {
                let size_bit = if level > 1 { PAGE_SIZE_BIT } else { 0 };
                memory.write_entry(table, index, physical | request.leaf_bits | size_bit);
            }
        } else if level == 1 || (present && is_leaf(entry, level)) {
            return Err(MapError::AlreadyMapped);
        } else {
            let child = if present {
                HostPhysAddr(entry & ADDRESS_MASK)
            } else {
                let child = memory.allocate_table().ok_or(MapError::OutOfFrames)?;
                memory.write_entry(table, index, child.raw() | request.table_bits);
                child
            };
            let part = Request {
                input,
                physical,
                len: chunk,
                ..*request
            };
            map_level(memory, child, level - 1, &part)?;
        }
        offset += chunk;
    }
    Ok(())
}

#[cfg(test)]
// A failed unwrap is a failed test.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    /// Page-table memory as a vector of frames at a fixed base address.
    struct FakeTables {
        base: u64,
        frames: Vec<[u64; ENTRIES_PER_TABLE]>,
        limit: usize,
    }

    impl FakeTables {
        fn new() -> Self {
            Self::with_limit(usize::MAX)
        }

        fn with_limit(limit: usize) -> Self {
            Self {
                base: 0x10_0000_0000,
                frames: Vec::new(),
                limit,
            }
        }

        fn frame(&self, table: HostPhysAddr) -> &[u64; ENTRIES_PER_TABLE] {
            let number = (table.raw() - self.base) / PAGE_SIZE;
            &self.frames[number as usize]
        }

        /// Every present entry of every table.
        fn all_present_entries(&self) -> Vec<u64> {
            self.frames
                .iter()
                .flatten()
                .copied()
                .filter(|entry| entry & 1 != 0)
                .collect()
        }
    }

    impl TableMemory for FakeTables {
        fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
            self.frame(table)[index]
        }

        fn write_entry(&mut self, table: HostPhysAddr, index: usize, entry: u64) {
            assert_eq!(table.raw() % PAGE_SIZE, 0);
            let number = (table.raw() - self.base) / PAGE_SIZE;
            self.frames[number as usize][index] = entry;
        }

        fn allocate_table(&mut self) -> Option<HostPhysAddr> {
            if self.frames.len() >= self.limit {
                return None;
            }
            self.frames.push([0; ENTRIES_PER_TABLE]);
            Some(HostPhysAddr(
                self.base + (self.frames.len() as u64 - 1) * PAGE_SIZE,
            ))
        }
    }

    fn hypervisor_tables() -> (FakeTables, HypervisorPageTables) {
        let mut memory = FakeTables::new();
        let tables = HypervisorPageTables::new_root(&mut memory).unwrap();
        (memory, tables)
    }

    fn nested_tables() -> (FakeTables, NestedPageTables) {
        let mut memory = FakeTables::new();
        let tables = NestedPageTables::new_root(&mut memory).unwrap();
        (memory, tables)
    }

    fn identity(
        memory: &mut FakeTables,
        tables: &HypervisorPageTables,
        start: u64,
        len: u64,
        flags: PageFlags,
        largest: PageSize,
    ) -> Result<(), MapError> {
        tables.map(
            memory,
            HostVirtAddr(start),
            HostPhysAddr(start),
            len,
            flags,
            largest,
        )
    }

    fn lookup(memory: &FakeTables, tables: &HypervisorPageTables, address: u64) -> Option<Mapping> {
        tables.translate(memory, HostVirtAddr(address))
    }

    fn size_at(
        memory: &FakeTables,
        tables: &HypervisorPageTables,
        address: u64,
    ) -> Option<PageSize> {
        lookup(memory, tables, address).map(|mapping| mapping.size)
    }

    #[test]
    fn new_root_allocates_one_empty_table() {
        let (memory, tables) = hypervisor_tables();
        assert_eq!(memory.frames.len(), 1);
        assert_eq!(tables.root(), HostPhysAddr(memory.base));
        assert_eq!(lookup(&memory, &tables, 0x1000), None);
    }

    #[test]
    fn new_root_without_frames_fails() {
        let mut memory = FakeTables::with_limit(0);
        assert_eq!(
            NestedPageTables::new_root(&mut memory).unwrap_err(),
            MapError::OutOfFrames
        );
    }

    #[test]
    fn identity_map_uses_mixed_page_sizes() {
        let (mut memory, tables) = hypervisor_tables();
        // 4 KiB up to 2 MiB, 2 MiB pages up to 1 GiB, one 1 GiB page,
        // 2 MiB pages, then a 4 KiB tail.
        let start = 2 * MIB - 3 * PAGE_SIZE;
        let end = 2 * GIB + 4 * MIB + 2 * PAGE_SIZE;
        identity(
            &mut memory,
            &tables,
            start,
            end - start,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();

        assert_eq!(size_at(&memory, &tables, start - PAGE_SIZE), None);
        assert_eq!(size_at(&memory, &tables, start), Some(PageSize::Small));
        assert_eq!(
            size_at(&memory, &tables, 2 * MIB - PAGE_SIZE),
            Some(PageSize::Small)
        );
        assert_eq!(size_at(&memory, &tables, 2 * MIB), Some(PageSize::Large));
        assert_eq!(size_at(&memory, &tables, GIB - 1), Some(PageSize::Large));
        assert_eq!(size_at(&memory, &tables, GIB), Some(PageSize::Huge));
        assert_eq!(size_at(&memory, &tables, 2 * GIB - 1), Some(PageSize::Huge));
        assert_eq!(size_at(&memory, &tables, 2 * GIB), Some(PageSize::Large));
        assert_eq!(
            size_at(&memory, &tables, 2 * GIB + 4 * MIB),
            Some(PageSize::Small)
        );
        assert_eq!(size_at(&memory, &tables, end - 1), Some(PageSize::Small));
        assert_eq!(size_at(&memory, &tables, end), None);

        for address in [start, 2 * MIB + 0x1234, GIB + 0x12_3456, end - 1] {
            let mapping = lookup(&memory, &tables, address).unwrap();
            assert_eq!(mapping.physical, HostPhysAddr(address));
            assert_eq!(mapping.flags, PageFlags::PRESENT | PageFlags::DATA);
        }
    }

    #[test]
    fn largest_caps_the_page_size() {
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            0,
            2 * GIB,
            PageFlags::DATA,
            PageSize::Large,
        )
        .unwrap();
        assert_eq!(size_at(&memory, &tables, GIB), Some(PageSize::Large));

        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            0,
            4 * MIB,
            PageFlags::DATA,
            PageSize::Small,
        )
        .unwrap();
        assert_eq!(size_at(&memory, &tables, 2 * MIB), Some(PageSize::Small));
        // Root, one table per level below it, two level-1 tables.
        assert_eq!(memory.frames.len(), 5);
    }

    #[test]
    fn misaligned_physical_address_forces_small_pages() {
        let (mut memory, tables) = hypervisor_tables();
        let physical = HostPhysAddr(4 * MIB + PAGE_SIZE);
        tables
            .map(
                &mut memory,
                HostVirtAddr(2 * MIB),
                physical,
                2 * MIB,
                PageFlags::DATA,
                PageSize::Huge,
            )
            .unwrap();
        let mapping = lookup(&memory, &tables, 2 * MIB + 0x10).unwrap();
        assert_eq!(mapping.size, PageSize::Small);
        assert_eq!(mapping.physical, HostPhysAddr(4 * MIB + PAGE_SIZE + 0x10));
        let last = lookup(&memory, &tables, 4 * MIB - 1).unwrap();
        assert_eq!(last.physical, HostPhysAddr(6 * MIB + PAGE_SIZE - 1));
    }

    #[test]
    fn ranges_straddling_boundaries() {
        // Two small pages either side of a 2 MiB boundary.
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            2 * MIB - PAGE_SIZE,
            2 * PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        assert_eq!(
            size_at(&memory, &tables, 2 * MIB - PAGE_SIZE),
            Some(PageSize::Small)
        );
        assert_eq!(size_at(&memory, &tables, 2 * MIB), Some(PageSize::Small));
        assert_eq!(size_at(&memory, &tables, 2 * MIB + PAGE_SIZE), None);

        // Two large pages either side of a 1 GiB boundary, in two level-2 tables.
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            GIB - 2 * MIB,
            4 * MIB,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        assert_eq!(
            size_at(&memory, &tables, GIB - 2 * MIB),
            Some(PageSize::Large)
        );
        assert_eq!(
            size_at(&memory, &tables, GIB + 2 * MIB - 1),
            Some(PageSize::Large)
        );
        assert_eq!(size_at(&memory, &tables, GIB + 2 * MIB), None);
        assert_eq!(memory.frames.len(), 4);

        // Across a 512 GiB boundary: two level-3 tables.
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            512 * GIB - GIB,
            2 * GIB,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        assert_eq!(size_at(&memory, &tables, 512 * GIB), Some(PageSize::Huge));
        assert_eq!(memory.frames.len(), 3);
    }

    #[test]
    fn four_gib_of_large_pages_uses_six_tables() {
        let (mut memory, tables) = hypervisor_tables();
        let range = HostRange::new(HostPhysAddr(0), 4 * GIB).unwrap();
        tables
            .identity_map(&mut memory, range, PageFlags::DATA, PageSize::Large)
            .unwrap();
        assert_eq!(memory.frames.len(), 1 + 1 + 4);
        assert_eq!(
            size_at(&memory, &tables, 4 * GIB - 1),
            Some(PageSize::Large)
        );
    }

    #[test]
    fn hypervisor_image_is_write_xor_execute() {
        let (mut memory, tables) = hypervisor_tables();
        let text = 0x20_0000;
        let rodata = text + 0x5000;
        let data = rodata + 0x2000;
        let end = data + 0x3000;
        identity(
            &mut memory,
            &tables,
            PAGE_SIZE,
            text - PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        identity(
            &mut memory,
            &tables,
            text,
            rodata - text,
            PageFlags::TEXT,
            PageSize::Small,
        )
        .unwrap();
        identity(
            &mut memory,
            &tables,
            rodata,
            data - rodata,
            PageFlags::READ_ONLY_DATA,
            PageSize::Small,
        )
        .unwrap();
        identity(
            &mut memory,
            &tables,
            data,
            end - data,
            PageFlags::DATA,
            PageSize::Small,
        )
        .unwrap();

        assert_eq!(lookup(&memory, &tables, 0), None);
        assert_eq!(lookup(&memory, &tables, PAGE_SIZE - 1), None);
        let flags_at = |address| lookup(&memory, &tables, address).unwrap().flags;
        assert_eq!(flags_at(text), PageFlags::PRESENT);
        assert_eq!(flags_at(rodata - 1), PageFlags::PRESENT);
        assert_eq!(flags_at(rodata), PageFlags::PRESENT | PageFlags::NO_EXECUTE);
        assert_eq!(
            flags_at(data),
            PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::NO_EXECUTE
        );
        assert_eq!(flags_at(end - 1), flags_at(data));
        assert_eq!(lookup(&memory, &tables, end), None);
        for address in (PAGE_SIZE..end).step_by(PAGE_SIZE as usize) {
            let flags = flags_at(address);
            assert!(!flags.contains(PageFlags::WRITABLE) || flags.contains(PageFlags::NO_EXECUTE));
            assert_eq!(size_at(&memory, &tables, address), Some(PageSize::Small));
        }
    }

    #[test]
    fn hypervisor_tables_leave_user_clear_and_intermediates_permissive() {
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            0x1000,
            0x1000,
            PageFlags::TEXT,
            PageSize::Small,
        )
        .unwrap();
        let entries = memory.all_present_entries();
        assert_eq!(entries.len(), 4);
        for entry in &entries {
            assert_eq!(entry & PageFlags::USER.bits(), 0);
        }
        // Three intermediates, all present and writable; the leaf read-only.
        let writable = entries.iter().filter(|entry| *entry & 0b11 == 0b11).count();
        assert_eq!(writable, 3);
    }

    #[test]
    fn nested_tables_set_user_at_every_level() {
        let (mut memory, tables) = nested_tables();
        tables
            .map(
                &mut memory,
                GuestPhysAddr(0),
                HostPhysAddr(8 * GIB),
                2 * GIB,
                PageFlags::EMPTY,
                PageSize::Huge,
            )
            .unwrap();
        tables
            .map(
                &mut memory,
                GuestPhysAddr(3 * GIB),
                HostPhysAddr(0x1234_5000),
                2 * MIB + PAGE_SIZE,
                PageFlags::WRITABLE | PageFlags::NO_EXECUTE,
                PageSize::Huge,
            )
            .unwrap();
        tables
            .map(
                &mut memory,
                GuestPhysAddr(0xfee0_0000),
                HostPhysAddr(0xfee0_0000),
                PAGE_SIZE,
                PageFlags::DEVICE,
                PageSize::Huge,
            )
            .unwrap();
        let entries = memory.all_present_entries();
        assert!(entries.len() > 8);
        for entry in entries {
            assert_ne!(
                entry & PageFlags::USER.bits(),
                0,
                "entry {entry:#x} lacks User"
            );
        }
        let mapping = tables.translate(&memory, GuestPhysAddr(GIB + 5)).unwrap();
        assert_eq!(mapping.physical, HostPhysAddr(9 * GIB + 5));
        assert_eq!(mapping.size, PageSize::Huge);
        let mapping = tables
            .translate(&memory, GuestPhysAddr(3 * GIB + 2 * MIB))
            .unwrap();
        assert_eq!(mapping.physical, HostPhysAddr(0x1234_5000 + 2 * MIB));
        assert_eq!(mapping.size, PageSize::Small);
        assert_eq!(
            tables.translate(&memory, GuestPhysAddr(3 * GIB + 2 * MIB + PAGE_SIZE)),
            None
        );
    }

    #[test]
    fn device_mapping_is_uncached_and_global_is_kept() {
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            0xfec0_0000,
            PAGE_SIZE,
            PageFlags::DEVICE,
            PageSize::Huge,
        )
        .unwrap();
        identity(
            &mut memory,
            &tables,
            0x40_0000,
            2 * MIB,
            PageFlags::TEXT | PageFlags::GLOBAL,
            PageSize::Huge,
        )
        .unwrap();
        let device = lookup(&memory, &tables, 0xfec0_0000).unwrap();
        assert!(device.flags.contains(PageFlags::UNCACHED));
        assert_eq!(device.flags.bits() & 0b1_1000, 0b1_1000);
        let code = lookup(&memory, &tables, 0x40_0000).unwrap();
        assert_eq!(code.size, PageSize::Large);
        assert_eq!(code.flags, PageFlags::PRESENT | PageFlags::GLOBAL);
        assert!(!code.flags.contains(PageFlags::UNCACHED));
    }

    #[test]
    fn unaligned_inputs_are_refused() {
        let (mut memory, tables) = hypervisor_tables();
        let unaligned = Err(MapError::Unaligned);
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                0x1000,
                0x1800,
                PageFlags::DATA,
                PageSize::Huge
            ),
            unaligned
        );
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                0x1001,
                0x1000,
                PageFlags::DATA,
                PageSize::Huge
            ),
            unaligned
        );
        let result = tables.map(
            &mut memory,
            HostVirtAddr(0x1000),
            HostPhysAddr(0x2010),
            PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        );
        assert_eq!(result, unaligned);
        assert_eq!(memory.frames.len(), 1);
    }

    #[test]
    fn zero_length_is_a_no_op() {
        let (mut memory, tables) = hypervisor_tables();
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                0x1234,
                0,
                PageFlags::DATA,
                PageSize::Huge
            ),
            Ok(())
        );
        assert_eq!(memory.frames.len(), 1);
        assert!(memory.all_present_entries().is_empty());
    }

    #[test]
    fn ranges_beyond_the_address_space_are_refused() {
        let (mut memory, tables) = hypervisor_tables();
        let out = Err(MapError::OutOfRange);
        let top = INPUT_ADDRESS_LIMIT;
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                top - PAGE_SIZE,
                2 * PAGE_SIZE,
                PageFlags::DATA,
                PageSize::Huge
            ),
            out
        );
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                top,
                PAGE_SIZE,
                PageFlags::DATA,
                PageSize::Huge
            ),
            out
        );
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                0xffff_ffff_ffff_f000,
                PAGE_SIZE,
                PageFlags::DATA,
                PageSize::Huge
            ),
            out
        );
        let result = tables.map(
            &mut memory,
            HostVirtAddr(0),
            HostPhysAddr(PHYSICAL_ADDRESS_LIMIT - PAGE_SIZE),
            2 * PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        );
        assert_eq!(result, out);
        // The last page below the limits is fine.
        let result = tables.map(
            &mut memory,
            HostVirtAddr(top - PAGE_SIZE),
            HostPhysAddr(PHYSICAL_ADDRESS_LIMIT - PAGE_SIZE),
            PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        );
        assert_eq!(result, Ok(()));
        let mapping = lookup(&memory, &tables, top - 1).unwrap();
        assert_eq!(mapping.physical, HostPhysAddr(PHYSICAL_ADDRESS_LIMIT - 1));
        assert_eq!(lookup(&memory, &tables, top), None);
    }

    #[test]
    fn overlapping_mappings_are_refused_without_changes() {
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            4 * MIB,
            2 * MIB,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        identity(
            &mut memory,
            &tables,
            8 * MIB,
            PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        let frames = memory.frames.clone();

        let conflict = Err(MapError::AlreadyMapped);
        // Small page inside a large one.
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                5 * MIB,
                PAGE_SIZE,
                PageFlags::DATA,
                PageSize::Huge
            ),
            conflict
        );
        // Large page over a small one.
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                8 * MIB,
                2 * MIB,
                PageFlags::DATA,
                PageSize::Huge
            ),
            conflict
        );
        // A range whose start is free but whose end overlaps.
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                0,
                4 * MIB + PAGE_SIZE,
                PageFlags::DATA,
                PageSize::Huge
            ),
            conflict
        );
        // A huge page over everything.
        assert_eq!(
            identity(
                &mut memory,
                &tables,
                0,
                GIB,
                PageFlags::DATA,
                PageSize::Huge
            ),
            conflict
        );
        assert_eq!(memory.frames, frames);
    }

    #[test]
    fn neighbouring_mappings_share_tables() {
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            8 * MIB,
            PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        identity(
            &mut memory,
            &tables,
            8 * MIB + PAGE_SIZE,
            PAGE_SIZE,
            PageFlags::TEXT,
            PageSize::Huge,
        )
        .unwrap();
        // The rest of that 2 MiB must use small pages in the existing table.
        identity(
            &mut memory,
            &tables,
            8 * MIB + 2 * PAGE_SIZE,
            2 * MIB - 2 * PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        // A whole 2 MiB next to it becomes a large page in the same level-2 table.
        identity(
            &mut memory,
            &tables,
            10 * MIB,
            2 * MIB,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        assert_eq!(memory.frames.len(), 4);
        assert_eq!(
            size_at(&memory, &tables, 10 * MIB - 1),
            Some(PageSize::Small)
        );
        assert_eq!(size_at(&memory, &tables, 10 * MIB), Some(PageSize::Large));
    }

    #[test]
    fn running_out_of_frames_is_reported() {
        let mut memory = FakeTables::with_limit(3);
        let tables = HypervisorPageTables::new_root(&mut memory).unwrap();
        let result = identity(
            &mut memory,
            &tables,
            0,
            PAGE_SIZE,
            PageFlags::DATA,
            PageSize::Huge,
        );
        assert_eq!(result, Err(MapError::OutOfFrames));
        // A large page needs no level-1 table, so it fits.
        identity(
            &mut memory,
            &tables,
            2 * MIB,
            2 * MIB,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
    }

    #[test]
    fn translate_rejects_addresses_beyond_48_bits() {
        let (mut memory, tables) = hypervisor_tables();
        identity(
            &mut memory,
            &tables,
            0,
            GIB,
            PageFlags::DATA,
            PageSize::Huge,
        )
        .unwrap();
        assert_eq!(lookup(&memory, &tables, INPUT_ADDRESS_LIMIT), None);
        assert_eq!(lookup(&memory, &tables, u64::MAX), None);
    }

    #[test]
    fn flags_debug_names_bits() {
        assert_eq!(
            format!("{:?}", PageFlags::DEVICE),
            "PageFlags(WRITABLE | UNCACHED | NO_EXECUTE)"
        );
        assert_eq!(format!("{:?}", PageFlags::EMPTY), "PageFlags(EMPTY)");
    }

    #[test]
    fn unmapping_one_page_of_a_large_page_keeps_the_rest() {
        let mut memory = FakeTables::new();
        let tables = NestedPageTables::new_root(&mut memory).unwrap();
        let base = 0x4000_0000;
        tables
            .map(
                &mut memory,
                GuestPhysAddr(0),
                HostPhysAddr(base),
                HUGE_PAGE_SIZE,
                PageFlags::WRITABLE,
                PageSize::Huge,
            )
            .unwrap();
        let gone = tables
            .unmap_page(&mut memory, GuestPhysAddr(0x20_3000))
            .unwrap();
        assert_eq!(gone, Some(HostPhysAddr(base + 0x20_3000)));
        assert_eq!(tables.translate(&memory, GuestPhysAddr(0x20_3000)), None);
        let kept = tables.translate(&memory, GuestPhysAddr(0x20_4000)).unwrap();
        assert_eq!(kept.physical, HostPhysAddr(base + 0x20_4000));
        assert_eq!(kept.size, PageSize::Small);
        assert!(kept.flags.contains(PageFlags::WRITABLE | PageFlags::USER));
        let far = tables
            .translate(&memory, GuestPhysAddr(0x3000_0000))
            .unwrap();
        assert_eq!(far.physical, HostPhysAddr(base + 0x3000_0000));
        assert_eq!(far.size, PageSize::Large);
        assert_eq!(
            tables
                .unmap_page(&mut memory, GuestPhysAddr(0x20_3000))
                .unwrap(),
            None
        );
        // The hole can be mapped again, elsewhere.
        tables
            .map(
                &mut memory,
                GuestPhysAddr(0x20_3000),
                HostPhysAddr(0x9000),
                PAGE_SIZE,
                PageFlags::WRITABLE,
                PageSize::Small,
            )
            .unwrap();
        assert_eq!(
            tables
                .translate(&memory, GuestPhysAddr(0x20_3000))
                .unwrap()
                .physical,
            HostPhysAddr(0x9000)
        );
    }

    #[test]
    fn prepared_ranges_map_later_without_new_tables() {
        let mut memory = FakeTables::new();
        let tables = NestedPageTables::new_root(&mut memory).unwrap();
        // A large-page stretch, one at a 4 KiB-aligned host address (small
        // pages), and one in another GiB.
        let ranges = [
            (0, 0x4000_0000, 4 * MIB),
            (4 * MIB, 0x5000_1000, 2 * MIB),
            (GIB, 0x6000_0000, 2 * MIB),
        ];
        for (input, physical, len) in ranges {
            tables
                .prepare(
                    &mut memory,
                    GuestPhysAddr(input),
                    HostPhysAddr(physical),
                    len,
                    PageSize::Large,
                )
                .unwrap();
            assert_eq!(tables.translate(&memory, GuestPhysAddr(input)), None);
        }
        assert!(
            memory
                .all_present_entries()
                .iter()
                .all(|entry| entry & PAGE_SIZE_BIT == 0),
            "tables only, no leaves"
        );
        // Root, one level-3, one level-2 per GiB, one level-1 table.
        let prepared = memory.frames.len();
        assert_eq!(prepared, 5);
        memory.limit = prepared;
        for (input, physical, len) in ranges {
            tables
                .map(
                    &mut memory,
                    GuestPhysAddr(input),
                    HostPhysAddr(physical),
                    len,
                    PageFlags::WRITABLE,
                    PageSize::Large,
                )
                .unwrap();
        }
        let large = tables
            .translate(&memory, GuestPhysAddr(2 * MIB + 8))
            .unwrap();
        assert_eq!(large.size, PageSize::Large);
        assert_eq!(large.physical, HostPhysAddr(0x4020_0008));
        let small = tables.translate(&memory, GuestPhysAddr(5 * MIB)).unwrap();
        assert_eq!(small.size, PageSize::Small);
        assert_eq!(small.physical, HostPhysAddr(0x5010_1000));
        assert!(tables.translate(&memory, GuestPhysAddr(GIB)).is_some());
        // Preparing what is mapped fails as mapping it would.
        assert_eq!(
            tables.prepare(
                &mut memory,
                GuestPhysAddr(0),
                HostPhysAddr(0x4000_0000),
                PAGE_SIZE,
                PageSize::Large
            ),
            Err(MapError::AlreadyMapped)
        );
    }

    #[test]
    fn table_frames_lists_root_and_every_table_once() {
        let mut memory = FakeTables::new();
        let tables = NestedPageTables::new_root(&mut memory).unwrap();
        tables
            .map(
                &mut memory,
                GuestPhysAddr(0),
                HostPhysAddr(0),
                4 * LARGE_PAGE_SIZE,
                PageFlags::WRITABLE,
                PageSize::Large,
            )
            .unwrap();
        tables
            .map(
                &mut memory,
                GuestPhysAddr(1 << 39),
                HostPhysAddr(0x1000),
                PAGE_SIZE,
                PageFlags::WRITABLE,
                PageSize::Small,
            )
            .unwrap();
        let frames = tables.table_frames(&memory);
        // Root; PDPT + PD for the 2 MiB pages; PDPT + PD + PT for the page.
        assert_eq!(frames.len(), 6);
        let mut unique = frames.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 6);
    }
}
