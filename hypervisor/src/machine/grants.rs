//! Grant tables wired to the machine: entries reached with atomics in the
//! table frames, granted frames inserted into (and removed from) the
//! mapper's nested page tables, grant copies between domains' RAM.

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use hypervisor::domain::{DomainTable, GuestRam};
use hypervisor::grant_table::{
    self, Access, CopyPlan, GrantCaller, GrantEntryMemory, GrantHost, GrantOutcome, GrantTable,
    MapAction, Mapping,
};
use hypervisor::memory::frames::FrameAllocator;
use hypervisor::memory::paging::{PageFlags, PageSize};
use hypervisor::memory::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE};
use xenolith_abi::domain::DomainId;
use xenolith_abi::grant_table::GrantStatus;
use xenolith_abi::hypercall::HypercallArgs;

use super::guest_memory::{GuestView, IdentityScrub, RamAccess};
use super::{GuestHardware, Machine, Next, VcpuRef};
use crate::hw::memory::{self as physical, ChargedTableFrames, TableFrames};

/// Grant entries in hypervisor-owned table frames.
pub struct EntryMemory;

impl GrantEntryMemory for EntryMemory {
    fn load(&self, address: HostPhysAddr) -> u32 {
        // SAFETY: the grant-table code only passes 4-byte-aligned entry
        // addresses inside the table's own frames, which the hypervisor
        // owns and identity-maps.
        unsafe { &*(address.0 as *const AtomicU32) }.load(Ordering::Acquire)
    }

    fn compare_exchange(
        &mut self,
        address: HostPhysAddr,
        current: u32,
        new: u32,
    ) -> Result<(), u32> {
        // SAFETY: as for `load`.
        let word = unsafe { &*(address.0 as *const AtomicU32) };
        word.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
    }

    fn clear_flags(&mut self, address: HostPhysAddr, mask: u16) {
        // SAFETY: as for `load`; the flags are the entry's first 16 bits.
        let flags = unsafe { &*(address.0 as *const AtomicU16) };
        flags.fetch_and(!mask, Ordering::AcqRel);
    }
}

/// What grant operations may touch: every domain's tables and RAM, their
/// nested tables, and the frame allocator.
pub struct Host<'a> {
    pub domains: &'a mut DomainTable,
    pub hardware: &'a mut BTreeMap<DomainId, GuestHardware>,
    pub frames: &'a mut FrameAllocator,
    /// The calling domain's RAM map, taken out of its entry while the
    /// caller's own view of its memory borrows it too.
    pub caller_ram: Option<(DomainId, &'a GuestRam)>,
}

impl Host<'_> {
    fn ram(&self, domain: DomainId) -> Option<&GuestRam> {
        match self.caller_ram {
            Some((caller, ram)) if caller == domain => Some(ram),
            _ => self.domains.get(domain).ok().map(|entry| &entry.ram),
        }
    }

    fn ram_frame(&self, domain: DomainId, frame: u64) -> Option<HostPhysAddr> {
        self.ram(domain)?.host_frame(frame, &IdentityScrub)
    }
}

impl GrantHost for Host<'_> {
    type Memory = EntryMemory;

    fn with_table<R>(
        &mut self,
        domain: DomainId,
        f: impl FnOnce(&mut GrantTable, &mut EntryMemory) -> R,
    ) -> Option<R> {
        let entry = self.domains.get_mut(domain).ok()?;
        Some(f(&mut entry.grants, &mut EntryMemory))
    }

    fn allocate_frame(&mut self) -> Option<HostPhysAddr> {
        let frame = self
            .frames
            .allocate(PAGE_SIZE, PAGE_SIZE, HostPhysAddr(u64::MAX))
            .ok()?;
        // SAFETY: freshly allocated to the hypervisor.
        unsafe { physical::zero(frame) };
        Some(frame.start)
    }

    fn free_frame(&mut self, frame: HostPhysAddr) {
        let _ = self.frames.free(HostRange {
            start: frame,
            end: HostPhysAddr(frame.0 + PAGE_SIZE),
        });
    }

    fn setup_table_frame(&mut self, domain: DomainId, index: u32, _frame: HostPhysAddr) -> u64 {
        self.domains
            .get(domain)
            .ok()
            .and_then(|entry| entry.grant_frame_gfns.get(&index).copied())
            .unwrap_or(u64::MAX)
    }

    fn map_grant(&mut self, action: &MapAction) -> Result<(), GrantStatus> {
        let host = self
            .ram_frame(action.granter, action.granter_frame.0)
            .ok_or(GrantStatus::BadPage)?;
        let over_ram = self
            .ram(action.mapper)
            .is_none_or(|ram| ram.contains(action.mapper_frame.0));
        if over_ram {
            return Err(GrantStatus::GeneralError);
        }
        let mapper = self
            .domains
            .get_mut(action.mapper)
            .map_err(|_| GrantStatus::GeneralError)?;
        let nested = self
            .hardware
            .get(&action.mapper)
            .ok_or(GrantStatus::GeneralError)?
            .nested;
        let address = action
            .mapper_frame
            .address()
            .ok_or(GrantStatus::GeneralError)?;
        let flags = match action.access {
            Access::Writable => PageFlags::WRITABLE,
            Access::ReadOnly => PageFlags::EMPTY,
        };
        let mut memory = ChargedTableFrames {
            frames: self.frames,
            budget: &mut mapper.table_budget,
        };
        nested
            .map(
                &mut memory,
                address,
                host,
                PAGE_SIZE,
                flags,
                PageSize::Small,
            )
            .map_err(|_| GrantStatus::GeneralError)
    }

    fn unmap_grant(&mut self, mapper: DomainId, mapping: &Mapping) -> Result<(), GrantStatus> {
        let host = self.ram_frame(mapping.granter, mapping.granter_frame.0);
        let nested = self
            .hardware
            .get(&mapper)
            .ok_or(GrantStatus::GeneralError)?
            .nested;
        let address = mapping
            .mapper_frame
            .address()
            .ok_or(GrantStatus::GeneralError)?;
        let mut memory = TableFrames {
            frames: self.frames,
        };
        let current = nested
            .translate(&memory, address)
            .map(|mapped| mapped.physical);
        if current.is_none() || current != host {
            return Err(GrantStatus::GeneralError);
        }
        nested
            .unmap_page(&mut memory, address)
            .map_err(|_| GrantStatus::GeneralError)?;
        Ok(())
    }

    fn flush_mappings(&mut self, mapper: DomainId) {
        if let Some(hardware) = self.hardware.get_mut(&mapper) {
            for vcpu in &mut hardware.vcpus {
                vcpu.vmcb.write_u8(
                    hypervisor::svm::vmcb::control::TLB_CONTROL,
                    hypervisor::svm::vmcb::TLB_FLUSH_ALL,
                );
            }
        }
    }

    fn copy(&mut self, plan: &CopyPlan) -> Result<(), GrantStatus> {
        let source = self
            .ram_frame(plan.source.domain, plan.source.frame.0)
            .ok_or(GrantStatus::BadPage)?;
        let dest = self
            .ram_frame(plan.dest.domain, plan.dest.frame.0)
            .ok_or(GrantStatus::BadPage)?;
        let length = u64::from(plan.len);
        if u64::from(plan.source.offset) + length > PAGE_SIZE
            || u64::from(plan.dest.offset) + length > PAGE_SIZE
        {
            return Err(GrantStatus::GeneralError);
        }
        let to = HostPhysAddr(dest.0 + u64::from(plan.dest.offset));
        let from = HostPhysAddr(source.0 + u64::from(plan.source.offset));
        if length == 4 {
            // A ring index (Dom0's back ends read and write them by grant
            // copy): one 32-bit access, never seen half-updated.
            // SAFETY: as below.
            unsafe { physical::copy_word(to, from) };
            return Ok(());
        }
        // SAFETY: both are RAM frames of their domains, identity-mapped;
        // offsets and length stay inside the pages (checked above).
        unsafe { physical::copy(to, from, length) };
        Ok(())
    }
}

impl Machine<'_> {
    /// grant_table_op for the calling vCPU.
    pub(super) fn grant_table_op(&mut self, current: VcpuRef, args: HypercallArgs) -> Next {
        let domain = current.domain;
        let Ok(caller) = self.domains.get_mut(domain) else {
            return Next::Switch;
        };
        let privileged = caller.privileged;
        let mut maptrack = core::mem::replace(&mut caller.maptrack, grant_table::Maptrack::new(0));
        // The caller's RAM map, taken out while the op runs: the caller's
        // view of its memory borrows it, and the host below needs every
        // domain mutably (grant operations never change a RAM map). One
        // map, not a copy: a copy would lose track of what was zeroed.
        let ram = core::mem::take(&mut caller.ram);
        let guest = self
            .hardware
            .get(&domain)
            .and_then(|hardware| hardware.vcpus.get(current.index))
            .map(|vcpu| GuestView::new(vcpu.vmcb, RamAccess { ram: &ram }));
        let outcome = guest.map(|mut guest| {
            let mut host = Host {
                domains: &mut self.domains,
                hardware: &mut self.hardware,
                frames: &mut self.frames,
                caller_ram: Some((domain, &ram)),
            };
            grant_table::grant_table_op(
                args,
                &GrantCaller { domain, privileged },
                &mut guest,
                &mut maptrack,
                &mut host,
            )
        });
        if let Ok(caller) = self.domains.get_mut(domain) {
            caller.maptrack = maptrack;
            caller.ram = ram;
        }
        let (Some(outcome), Some(vcpu)) = (outcome, self.vcpu_mut(current)) else {
            return Next::Switch;
        };
        match outcome {
            GrantOutcome::Return(value) => vcpu.vmcb.set_rax(value),
            GrantOutcome::Continue(rest) => {
                // Re-issue the call for the remaining elements.
                vcpu.registers.rdi = rest.rdi;
                vcpu.registers.rsi = rest.rsi;
                vcpu.registers.rdx = rest.rdx;
                vcpu.advance(3u64.wrapping_neg());
            }
        }
        Next::Resume
    }

    /// Maps grant-table frame `index` of `domain` at guest frame `gfn`.
    pub(super) fn map_grant_frame(
        &mut self,
        domain: DomainId,
        index: u64,
        gfn: u64,
    ) -> Result<(), xenolith_abi::errno::Errno> {
        let frame = {
            let mut host = Host {
                domains: &mut self.domains,
                hardware: &mut self.hardware,
                frames: &mut self.frames,
                caller_ram: None,
            };
            grant_table::shared_frame_for_physmap(&mut host, domain, index)?
        };
        self.place_frame(domain, gfn, frame)?;
        let moved = self
            .domains
            .get_mut(domain)
            .ok()
            .and_then(|entry| entry.grant_frame_gfns.insert(index as u32, gfn))
            .filter(|&old| old != gfn);
        // The frame left its old place in the guest's physmap.
        if let (Some(old), Some(hardware)) = (moved, self.hardware.get(&domain)) {
            let nested = hardware.nested;
            let _ = nested.unmap_page(
                &mut TableFrames {
                    frames: &mut self.frames,
                },
                GuestPhysAddr(old * PAGE_SIZE),
            );
        }
        Ok(())
    }
}
