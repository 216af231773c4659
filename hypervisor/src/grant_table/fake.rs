//! Fakes for grant-table tests: grant-entry memory a "guest" can change
//! between the hypervisor's load and compare-exchange, a host with tables,
//! physmaps and RAM, and guest-virtual memory for hypercall arguments.

use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::{GrantRef, GrantStatus, entry_v1};

use super::hypercall::{CopyPlan, GrantHost};
use super::{
    Access, EntryHeader, GrantEntryMemory, GrantTable, GrantTableLimits, GuestFrame, MapAction,
    Mapping,
};
use crate::hypercall::{GuestAccess, GuestFault};
use crate::memory::{GuestVirtAddr, HostPhysAddr};

/// A write the guest makes just before the hypervisor's next
/// compare-exchange (the race a real guest can win).
#[derive(Clone, Copy, Debug)]
pub struct Interference {
    pub address: HostPhysAddr,
    pub value: u32,
}

/// Grant-entry memory: sparse 32-bit words.
#[derive(Debug, Default)]
pub struct FakeEntryMemory {
    words: BTreeMap<u64, u32>,
    pub interference: VecDeque<Interference>,
    pub compare_exchanges: usize,
}

impl FakeEntryMemory {
    pub fn word(&self, address: HostPhysAddr) -> u32 {
        self.words.get(&address.0).copied().unwrap_or(0)
    }

    pub fn set_word(&mut self, address: HostPhysAddr, value: u32) {
        self.words.insert(address.0, value);
    }
}

impl GrantEntryMemory for FakeEntryMemory {
    fn load(&self, address: HostPhysAddr) -> u32 {
        assert_eq!(address.0 % 4, 0, "unaligned grant-entry access");
        self.word(address)
    }

    fn compare_exchange(
        &mut self,
        address: HostPhysAddr,
        current: u32,
        new: u32,
    ) -> Result<(), u32> {
        self.compare_exchanges += 1;
        if let Some(write) = self.interference.pop_front() {
            self.set_word(write.address, write.value);
        }
        let found = self.word(address);
        if found != current {
            return Err(found);
        }
        self.set_word(address, new);
        Ok(())
    }

    fn clear_flags(&mut self, address: HostPhysAddr, mask: u16) {
        let word = self.word(address);
        self.set_word(address, word & !u32::from(mask));
    }
}

/// The guest side of a table: writes entries the way Linux does.
pub fn write_entry(
    memory: &mut FakeEntryMemory,
    table: &GrantTable,
    gref: GrantRef,
    flags: u16,
    domid: DomainId,
    frame: u32,
) {
    let address = table.entry_address(gref).expect("gref inside table");
    memory.set_word(HostPhysAddr(address.0 + entry_v1::FRAME as u64), frame);
    memory.set_word(address, EntryHeader { flags, domid }.to_raw());
}

/// The header of entry `gref`.
pub fn read_header(memory: &FakeEntryMemory, table: &GrantTable, gref: GrantRef) -> EntryHeader {
    EntryHeader::from_raw(memory.word(table.entry_address(gref).expect("gref inside table")))
}

/// Linux's revoke: clear the flags unless the hypervisor has them in use.
pub fn try_revoke(memory: &mut FakeEntryMemory, table: &GrantTable, gref: GrantRef) -> bool {
    use xenolith_abi::grant_table::{GTF_READING, GTF_WRITING};
    let address = table.entry_address(gref).expect("gref inside table");
    let current = memory.word(address);
    let header = EntryHeader::from_raw(current);
    if header.flags & (GTF_READING | GTF_WRITING) != 0 {
        return false;
    }
    memory.set_word(address, EntryHeader { flags: 0, ..header }.to_raw());
    true
}

/// What a physmap slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Ram,
    Grant {
        granter: DomainId,
        frame: GuestFrame,
        access: Access,
    },
}

/// Things the host was asked to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Mapped(MapAction),
    Unmapped(DomainId, Mapping),
    /// Flushed a mapper's TLBs while this many entries were pinned overall.
    Flushed {
        mapper: DomainId,
        pinned: usize,
    },
    Copied(CopyPlan),
}

/// A host with domains, their tables, physmaps and RAM contents.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub tables: BTreeMap<DomainId, GrantTable>,
    pub memory: FakeEntryMemory,
    pub physmaps: BTreeMap<(DomainId, GuestFrame), Slot>,
    pub ram: BTreeMap<(DomainId, GuestFrame), Vec<u8>>,
    pub events: Vec<Event>,
    next_frame: u64,
    /// Frames left to allocate; `None` is unlimited.
    pub frame_budget: Option<usize>,
    pub freed: Vec<HostPhysAddr>,
}

impl FakeHost {
    pub fn new() -> Self {
        Self {
            next_frame: 0x10_0000,
            ..Self::default()
        }
    }

    fn fresh_frame(&mut self) -> HostPhysAddr {
        let frame = HostPhysAddr(self.next_frame);
        self.next_frame += 0x1000;
        frame
    }

    /// Adds a domain with default limits but `max_frames`, and RAM frames
    /// `ram` (each filled with its frame number's low byte).
    pub fn add_domain(&mut self, domain: DomainId, max_frames: u32, ram: &[u64]) {
        let limits = GrantTableLimits {
            max_frames,
            ..GrantTableLimits::default()
        };
        let first = self.fresh_frame();
        self.tables.insert(domain, GrantTable::new(&limits, first));
        for &frame in ram {
            self.physmaps.insert((domain, GuestFrame(frame)), Slot::Ram);
            self.ram
                .insert((domain, GuestFrame(frame)), vec![frame as u8; 4096]);
        }
    }

    pub fn table(&self, domain: DomainId) -> &GrantTable {
        &self.tables[&domain]
    }

    /// Writes entry `gref` of `granter`'s table as its guest would.
    pub fn grant(
        &mut self,
        granter: DomainId,
        gref: u32,
        flags: u16,
        grantee: DomainId,
        frame: u32,
    ) {
        let table = &self.tables[&granter];
        write_entry(
            &mut self.memory,
            table,
            GrantRef(gref),
            flags,
            grantee,
            frame,
        );
    }

    pub fn header(&self, granter: DomainId, gref: u32) -> EntryHeader {
        read_header(&self.memory, &self.tables[&granter], GrantRef(gref))
    }

    pub fn total_pinned(&self) -> usize {
        self.tables.values().map(GrantTable::pinned_entries).sum()
    }

    fn page(&self, domain: DomainId, frame: GuestFrame) -> Option<(DomainId, GuestFrame)> {
        match self.physmaps.get(&(domain, frame))? {
            Slot::Ram => Some((domain, frame)),
            // Copies through a grant mapping are not needed by the tests.
            Slot::Grant { .. } => None,
        }
    }
}

impl GrantHost for FakeHost {
    type Memory = FakeEntryMemory;

    fn with_table<R>(
        &mut self,
        domain: DomainId,
        f: impl FnOnce(&mut GrantTable, &mut FakeEntryMemory) -> R,
    ) -> Option<R> {
        let table = self.tables.get_mut(&domain)?;
        Some(f(table, &mut self.memory))
    }

    fn allocate_frame(&mut self) -> Option<HostPhysAddr> {
        match &mut self.frame_budget {
            Some(0) => None,
            Some(left) => {
                *left -= 1;
                Some(self.fresh_frame())
            }
            None => Some(self.fresh_frame()),
        }
    }

    fn free_frame(&mut self, frame: HostPhysAddr) {
        self.freed.push(frame);
    }

    fn setup_table_frame(&mut self, _domain: DomainId, _index: u32, frame: HostPhysAddr) -> u64 {
        frame.0 >> 12
    }

    fn map_grant(&mut self, action: &MapAction) -> Result<(), GrantStatus> {
        if self.page(action.granter, action.granter_frame).is_none() {
            return Err(GrantStatus::BadPage);
        }
        let slot = (action.mapper, action.mapper_frame);
        if matches!(self.physmaps.get(&slot), Some(Slot::Grant { .. })) {
            return Err(GrantStatus::GeneralError);
        }
        self.physmaps.insert(
            slot,
            Slot::Grant {
                granter: action.granter,
                frame: action.granter_frame,
                access: action.access,
            },
        );
        self.events.push(Event::Mapped(*action));
        Ok(())
    }

    fn unmap_grant(&mut self, mapper: DomainId, mapping: &Mapping) -> Result<(), GrantStatus> {
        let slot = (mapper, mapping.mapper_frame);
        let expected = Slot::Grant {
            granter: mapping.granter,
            frame: mapping.granter_frame,
            access: mapping.access,
        };
        if self.physmaps.get(&slot) != Some(&expected) {
            return Err(GrantStatus::GeneralError);
        }
        self.physmaps.remove(&slot);
        self.events.push(Event::Unmapped(mapper, *mapping));
        Ok(())
    }

    fn flush_mappings(&mut self, mapper: DomainId) {
        let pinned = self.total_pinned();
        self.events.push(Event::Flushed { mapper, pinned });
    }

    fn copy(&mut self, plan: &CopyPlan) -> Result<(), GrantStatus> {
        let source = self
            .page(plan.source.domain, plan.source.frame)
            .ok_or(GrantStatus::BadPage)?;
        let dest = self
            .page(plan.dest.domain, plan.dest.frame)
            .ok_or(GrantStatus::BadPage)?;
        let len = usize::from(plan.len);
        let from = usize::from(plan.source.offset);
        let to = usize::from(plan.dest.offset);
        let bytes = self.ram[&source][from..from + len].to_vec();
        self.ram.get_mut(&dest).expect("RAM page")[to..to + len].copy_from_slice(&bytes);
        self.events.push(Event::Copied(*plan));
        Ok(())
    }
}

/// Guest-virtual memory: one flat buffer at `base`, optionally read-only
/// from some address on.
#[derive(Debug)]
pub struct FakeGuest {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Writes at or above this address fault.
    pub read_only_from: Option<u64>,
}

impl FakeGuest {
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
            read_only_from: None,
        }
    }

    fn range(
        &self,
        address: GuestVirtAddr,
        len: usize,
    ) -> Result<core::ops::Range<usize>, GuestFault> {
        let fault = GuestFault { address };
        let start = address.0.checked_sub(self.base).ok_or(fault)? as usize;
        let end = start.checked_add(len).ok_or(fault)?;
        if end > self.bytes.len() {
            return Err(fault);
        }
        Ok(start..end)
    }

    pub fn put(&mut self, address: u64, data: &[u8]) {
        let range = self
            .range(GuestVirtAddr(address), data.len())
            .expect("inside");
        self.bytes[range].copy_from_slice(data);
    }

    pub fn get(&self, address: u64, len: usize) -> &[u8] {
        let range = self.range(GuestVirtAddr(address), len).expect("inside");
        &self.bytes[range]
    }

    pub fn u16_at(&self, address: u64) -> u16 {
        u16::from_le_bytes(self.get(address, 2).try_into().expect("2 bytes"))
    }

    pub fn i16_at(&self, address: u64) -> i16 {
        self.u16_at(address) as i16
    }

    pub fn u32_at(&self, address: u64) -> u32 {
        u32::from_le_bytes(self.get(address, 4).try_into().expect("4 bytes"))
    }

    pub fn u64_at(&self, address: u64) -> u64 {
        u64::from_le_bytes(self.get(address, 8).try_into().expect("8 bytes"))
    }
}

impl GuestAccess for FakeGuest {
    fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), GuestFault> {
        let range = self.range(address, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, address: GuestVirtAddr, data: &[u8]) -> Result<(), GuestFault> {
        let range = self.range(address, data.len())?;
        if let Some(limit) = self.read_only_from
            && address.0 + data.len() as u64 > limit
        {
            return Err(GuestFault { address });
        }
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}
