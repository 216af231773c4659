//! The Xen services a guest reaches with hypercalls that touch per-domain
//! state: memory_op, vcpu_op, hvm_op, event_channel_op, the blocking forms
//! of sched_op, and the time and event delivery that goes with them.

use alloc::vec::Vec;

use hypervisor::domain::{DomainState, VcpuXenState, Wait};
use hypervisor::event_channel::{self, Delivery, Domains, EventChannels, Port, VcpuId, Virq};
use hypervisor::hypercall::GuestAccess;
use hypervisor::memory::paging::{PageFlags, PageSize};
use hypervisor::memory::{GuestPhysAddr, GuestVirtAddr, HostPhysAddr, HostRange, PAGE_SIZE};
use hypervisor::time::{SystemTime, TSC_STABLE, publish};
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;
use xenolith_abi::hypercall::{HypercallArgs, HypercallNumber};
use xenolith_abi::sched;

use super::guest_memory::{GuestView, IdentityScrub, RamAccess};
use super::shared::{GuestTimeRecord, SharedPages, TIME_OFFSET, TimeRecord, store};
use super::vcpu::RunState;
use super::{Machine, Next, VcpuRef};
use crate::hw::memory::{self as physical, ChargedTableFrames, TableFrames};

/// `XENMEM_*` commands.
const XENMEM_DECREASE_RESERVATION: u64 = 1;
const XENMEM_CURRENT_RESERVATION: u64 = 3;
const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
const XENMEM_POPULATE_PHYSMAP: u64 = 6;
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
const XENMEM_MEMORY_MAP: u64 = 9;
/// `XENMAPSPACE_*` spaces.
const SPACE_SHARED_INFO: u32 = 0;
const SPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPIDX_grant_table_status`: v2 status frames, not offered.
const GRANT_STATUS_FRAME: u64 = 1 << 31;
/// `VCPUOP_*` commands.
const VCPUOP_IS_UP: u64 = 3;
const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
/// `HVMOP_*` commands and parameters.
const HVMOP_SET_PARAM: u64 = 0;
const HVMOP_GET_PARAM: u64 = 1;
const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
const HVM_PARAM_STORE_PFN: u32 = 1;
const HVM_PARAM_STORE_EVTCHN: u32 = 2;
const HVM_PARAM_CONSOLE_PFN: u32 = 17;
const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// Most extents one populate/decrease call handles (the rest: call again).
const EXTENTS_PER_CALL: u64 = 512;
/// Offsets of the wallclock in shared_info.
const WALLCLOCK: u64 = 3072;

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut value = [0; 4];
    value.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(value)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut value = [0; 8];
    value.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(value)
}

/// Other domains' event channel tables, for interdomain operations.
struct OtherDomains<'a> {
    domains: &'a mut hypervisor::domain::DomainTable,
}

impl Domains for OtherDomains<'_> {
    fn with_channels<R>(
        &mut self,
        domain: DomainId,
        f: impl FnOnce(&mut EventChannels) -> R,
    ) -> Option<R> {
        self.domains
            .get_mut(domain)
            .ok()
            .map(|entry| f(&mut entry.events))
    }
}

fn errno_value(result: Result<u64, Errno>) -> u64 {
    match result {
        Ok(value) => value,
        Err(errno) => errno.as_return(),
    }
}

impl Machine<'_> {
    /// Handles the stateful hypercalls; `None` for the others.
    pub(super) fn service_hypercall(
        &mut self,
        current: VcpuRef,
        number: HypercallNumber,
        args: HypercallArgs,
    ) -> Option<Next> {
        let value = match number {
            HypercallNumber::MEMORY_OP => self.memory_op(current, args),
            HypercallNumber::VCPU_OP => self.vcpu_op(current, args),
            HypercallNumber::HVM_OP => self.hvm_op(current, args),
            HypercallNumber::EVENT_CHANNEL_OP => Ok(self.event_channel_op(current, args)),
            HypercallNumber::GRANT_TABLE_OP => return Some(self.grant_table_op(current, args)),
            HypercallNumber::SET_TIMER_OP => {
                let now = self.now();
                let entry = self.domains.get_mut(current.domain).ok()?;
                entry
                    .vcpus
                    .get_mut(current.index)?
                    .timers
                    .set_timer_op(args.rdi, now);
                Ok(0)
            }
            HypercallNumber::VM_ASSIST => Err(Errno::EINVAL),
            HypercallNumber::SCHED_OP if args.rdi == sched::SCHEDOP_BLOCK => {
                return Some(self.block(current, Wait::Event));
            }
            HypercallNumber::SCHED_OP if args.rdi == sched::SCHEDOP_POLL => {
                return Some(self.poll(current, args));
            }
            _ => return None,
        };
        let vcpu = self.vcpu_mut(current)?;
        vcpu.vmcb.set_rax(errno_value(value));
        Some(Next::Resume)
    }

    /// Runs `f` with the calling vCPU's view of its memory.
    fn read_argument(
        &mut self,
        current: VcpuRef,
        address: u64,
        buffer: &mut [u8],
    ) -> Result<(), Errno> {
        self.with_guest(current, |guest| guest.read(GuestVirtAddr(address), buffer))
            .ok_or(Errno::ESRCH)?
            .map_err(|_| Errno::EFAULT)
    }

    fn write_argument(&mut self, current: VcpuRef, address: u64, data: &[u8]) -> Result<(), Errno> {
        self.with_guest(current, |guest| guest.write(GuestVirtAddr(address), data))
            .ok_or(Errno::ESRCH)?
            .map_err(|_| Errno::EFAULT)
    }

    /// The target of a `domid` argument: the caller, or (for Dom0) another.
    fn target(&self, current: VcpuRef, domid: u16) -> Result<DomainId, Errno> {
        let domid = DomainId(domid);
        if domid == DomainId::SELF || domid == current.domain {
            return Ok(current.domain);
        }
        // Like Xen: an unknown domain is ESRCH before a refusal is EPERM.
        self.domains.get(domid).map_err(|_| Errno::ESRCH)?;
        let privileged = self
            .domains
            .get(current.domain)
            .is_ok_and(|entry| entry.privileged);
        if !privileged {
            return Err(Errno::EPERM);
        }
        Ok(domid)
    }

    fn memory_op(&mut self, current: VcpuRef, args: HypercallArgs) -> Result<u64, Errno> {
        match args.rdi & 0x3f {
            XENMEM_ADD_TO_PHYSMAP => {
                let mut request = [0u8; 24];
                self.read_argument(current, args.rsi, &mut request)?;
                let domain = self.target(current, u16::from_le_bytes([request[0], request[1]]))?;
                let space = u32_at(&request, 4);
                let index = u64_at(&request, 8);
                let gfn = u64_at(&request, 16);
                match space {
                    SPACE_SHARED_INFO if index == 0 => {
                        self.map_shared_info(domain, gfn).map(|()| 0)
                    }
                    SPACE_SHARED_INFO => Err(Errno::EINVAL),
                    SPACE_GRANT_TABLE if index & GRANT_STATUS_FRAME == 0 => {
                        self.map_grant_frame(domain, index, gfn).map(|()| 0)
                    }
                    SPACE_GRANT_TABLE => Err(Errno::EINVAL),
                    // gmfn, gmfn_range, gmfn_foreign, dev_mmio: not yet.
                    2..=5 => Err(Errno::ENOSYS),
                    _ => Err(Errno::EINVAL),
                }
            }
            XENMEM_MEMORY_MAP => {
                let mut request = [0u8; 16];
                self.read_argument(current, args.rsi, &mut request)?;
                let capacity = u32_at(&request, 0) as usize;
                let buffer = u64_at(&request, 8);
                let entry = self.domains.get(current.domain).map_err(|_| Errno::ESRCH)?;
                let mut map: Vec<(u64, u64)> = Vec::new();
                for (gfn, host) in entry.ram.layout() {
                    let start = gfn * PAGE_SIZE;
                    match map.last_mut() {
                        Some(last) if last.0 + last.1 == start => last.1 += host.len(),
                        _ => map.push((start, host.len())),
                    }
                }
                if map.len() > capacity {
                    return Err(Errno::EINVAL);
                }
                for (index, (address, size)) in map.iter().enumerate() {
                    let mut e820 = [0u8; 20];
                    e820[0..8].copy_from_slice(&address.to_le_bytes());
                    e820[8..16].copy_from_slice(&size.to_le_bytes());
                    e820[16..20].copy_from_slice(&1u32.to_le_bytes());
                    self.write_argument(current, buffer + 20 * index as u64, &e820)?;
                }
                self.write_argument(current, args.rsi, &(map.len() as u32).to_le_bytes())?;
                Ok(0)
            }
            XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
                let mut domid = [0u8; 2];
                self.read_argument(current, args.rsi, &mut domid)?;
                let domain = self.target(current, u16::from_le_bytes(domid))?;
                let entry = self.domains.get(domain).map_err(|_| Errno::ESRCH)?;
                Ok(if args.rdi & 0x3f == XENMEM_CURRENT_RESERVATION {
                    entry.ram.pages()
                } else {
                    entry.max_pages
                })
            }
            XENMEM_POPULATE_PHYSMAP | XENMEM_DECREASE_RESERVATION => {
                self.reservation(current, args)
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    /// XENMEM_populate_physmap / decrease_reservation of 4 KiB extents.
    fn reservation(&mut self, current: VcpuRef, args: HypercallArgs) -> Result<u64, Errno> {
        let mut request = [0u8; 32];
        self.read_argument(current, args.rsi, &mut request)?;
        let list = u64_at(&request, 0);
        let count = u64_at(&request, 8);
        let order = u32_at(&request, 16);
        let domain = self.target(current, u16::from_le_bytes([request[24], request[25]]))?;
        if order != 0 {
            return Err(Errno::EINVAL);
        }
        if domain == DomainId::DOM0 {
            // Dom0's RAM is identity-mapped; it does not balloon.
            return Err(Errno::EPERM);
        }
        let populate = args.rdi & 0x3f == XENMEM_POPULATE_PHYSMAP;
        let mut done = 0;
        while done < count.min(EXTENTS_PER_CALL) {
            let mut gfn = [0u8; 8];
            if self
                .read_argument(current, list.wrapping_add(done * 8), &mut gfn)
                .is_err()
            {
                break;
            }
            let gfn = u64::from_le_bytes(gfn);
            let ok = if populate {
                self.populate_page(domain, gfn)
            } else {
                self.release_page(domain, gfn)
            };
            if !ok {
                break;
            }
            done += 1;
        }
        Ok(done)
    }

    /// Backs guest frame `gfn` with a fresh zeroed page, within the
    /// domain's allowance.
    fn populate_page(&mut self, domain: DomainId, gfn: u64) -> bool {
        let Some(hardware) = self.hardware.get(&domain) else {
            return false;
        };
        let nested = hardware.nested;
        let Ok(entry) = self.domains.get_mut(domain) else {
            return false;
        };
        if entry.ram.pages() >= entry.max_pages || entry.ram.contains(gfn) || gfn >= (1 << 36) {
            return false;
        }
        let Ok(frame) = self
            .frames
            .allocate(PAGE_SIZE, PAGE_SIZE, HostPhysAddr(u64::MAX))
        else {
            return false;
        };
        // SAFETY: just allocated; a guest must not see a former owner's data.
        unsafe { physical::zero(frame) };
        let mut memory = ChargedTableFrames {
            frames: &mut self.frames,
            budget: &mut entry.table_budget,
        };
        let mapped = nested.map(
            &mut memory,
            GuestPhysAddr(gfn * PAGE_SIZE),
            frame.start,
            PAGE_SIZE,
            PageFlags::WRITABLE,
            PageSize::Small,
        );
        if mapped.is_err() || entry.ram.add(gfn, frame).is_err() {
            let _ = nested.unmap_page(
                &mut TableFrames {
                    frames: &mut self.frames,
                },
                GuestPhysAddr(gfn * PAGE_SIZE),
            );
            let _ = self.frames.free(frame);
            return false;
        }
        true
    }

    /// Gives guest frame `gfn` back to the hypervisor.
    fn release_page(&mut self, domain: DomainId, gfn: u64) -> bool {
        self.unmap_from_dom0(domain, gfn);
        let Some(hardware) = self.hardware.get(&domain) else {
            return false;
        };
        let nested = hardware.nested;
        let Ok(entry) = self.domains.get_mut(domain) else {
            return false;
        };
        let Ok(Some(frame)) = entry.ram.remove_page(gfn) else {
            return false;
        };
        let _ = nested.unmap_page(
            &mut TableFrames {
                frames: &mut self.frames,
            },
            GuestPhysAddr(gfn * PAGE_SIZE),
        );
        // The frame may sit in a TLB until the next flush.
        self.flush_tlb(domain);
        let _ = self.frames.free(HostRange {
            start: frame,
            end: HostPhysAddr(frame.0 + PAGE_SIZE),
        });
        true
    }

    /// Every vCPU of `domain` flushes its TLB at its next VMRUN.
    pub(super) fn flush_tlb(&mut self, domain: DomainId) {
        if let Some(hardware) = self.hardware.get_mut(&domain) {
            for vcpu in &mut hardware.vcpus {
                vcpu.vmcb.write_u8(
                    hypervisor::svm::vmcb::control::TLB_CONTROL,
                    hypervisor::svm::vmcb::TLB_FLUSH_ALL,
                );
            }
        }
    }

    /// Puts the domain's shared_info frame at guest frame `gfn`, replacing
    /// whatever was there (a RAM page goes back to the hypervisor).
    fn map_shared_info(&mut self, domain: DomainId, gfn: u64) -> Result<(), Errno> {
        let nested = self.hardware.get(&domain).ok_or(Errno::ESRCH)?.nested;
        let entry = self.domains.get_mut(domain).map_err(|_| Errno::ESRCH)?;
        let frame = entry.shared_info;
        if let Some(old) = entry.shared_info_gfn.take() {
            let _ = nested.unmap_page(
                &mut TableFrames {
                    frames: &mut self.frames,
                },
                GuestPhysAddr(old * PAGE_SIZE),
            );
        }
        self.place_frame(domain, gfn, frame)?;
        if let Ok(entry) = self.domains.get_mut(domain) {
            entry.shared_info_gfn = Some(gfn);
        }
        Ok(())
    }

    /// Puts hypervisor frame `frame` at guest frame `gfn` of `domain`,
    /// replacing whatever was there (a RAM page goes back to the
    /// hypervisor).
    pub(super) fn place_frame(
        &mut self,
        domain: DomainId,
        gfn: u64,
        frame: HostPhysAddr,
    ) -> Result<(), Errno> {
        if gfn >= (1 << 36) {
            return Err(Errno::EINVAL);
        }
        self.unmap_from_dom0(domain, gfn);
        let nested = self.hardware.get(&domain).ok_or(Errno::ESRCH)?.nested;
        let entry = self.domains.get_mut(domain).map_err(|_| Errno::ESRCH)?;
        let mut memory = ChargedTableFrames {
            frames: &mut self.frames,
            budget: &mut entry.table_budget,
        };
        let displaced = entry.ram.remove_page(gfn).ok().flatten();
        let _ = nested.unmap_page(&mut memory, GuestPhysAddr(gfn * PAGE_SIZE));
        nested
            .map(
                &mut memory,
                GuestPhysAddr(gfn * PAGE_SIZE),
                frame,
                PAGE_SIZE,
                PageFlags::WRITABLE,
                PageSize::Small,
            )
            .map_err(|_| Errno::ENOMEM)?;
        // Dom0's RAM is identity-mapped from a range the allocator never
        // hands out: its displaced page stays Dom0's, unused.
        if let Some(frame) = displaced
            && domain != DomainId::DOM0
        {
            let _ = self.frames.free(HostRange {
                start: frame,
                end: HostPhysAddr(frame.0 + PAGE_SIZE),
            });
        }
        self.flush_tlb(domain);
        Ok(())
    }

    /// A vCPU's Xen-ABI state; `index` was checked against the domain.
    fn xen_state(&mut self, domain: DomainId, index: usize) -> Result<&mut VcpuXenState, Errno> {
        self.domains
            .get_mut(domain)
            .map_err(|_| Errno::ESRCH)?
            .vcpus
            .get_mut(index)
            .ok_or(Errno::ENOENT)
    }

    /// The guest-virtual address a register_*_memory_area call names;
    /// 0 unregisters, as in Xen (a null handle).
    fn read_area(
        &mut self,
        current: VcpuRef,
        argument: u64,
    ) -> Result<Option<GuestVirtAddr>, Errno> {
        let mut address = [0u8; 8];
        self.read_argument(current, argument, &mut address)?;
        let address = u64::from_le_bytes(address);
        Ok((address != 0).then_some(GuestVirtAddr(address)))
    }

    fn vcpu_op(&mut self, current: VcpuRef, args: HypercallArgs) -> Result<u64, Errno> {
        let target = args.rsi as usize;
        let count = self
            .domains
            .get(current.domain)
            .map_err(|_| Errno::ESRCH)?
            .vcpus
            .len();
        if target >= count {
            return Err(Errno::ENOENT);
        }
        let now = self.now();
        match args.rdi {
            VCPUOP_IS_UP => Ok(u64::from(
                self.vcpu_mut(VcpuRef {
                    domain: current.domain,
                    index: target,
                })
                .is_some_and(|vcpu| vcpu.state != RunState::NotStarted),
            )),
            VCPUOP_REGISTER_VCPU_INFO => {
                let mut request = [0u8; 16];
                self.read_argument(current, args.rdx, &mut request)?;
                let gfn = u64_at(&request, 0);
                let offset = u64::from(u32_at(&request, 8));
                if offset + 64 > PAGE_SIZE || offset % 8 != 0 {
                    return Err(Errno::EINVAL);
                }
                let entry = self
                    .domains
                    .get_mut(current.domain)
                    .map_err(|_| Errno::ESRCH)?;
                if entry.vcpus[target].vcpu_info.is_some() {
                    return Err(Errno::EBUSY);
                }
                let frame = entry
                    .ram
                    .host_frame(gfn, &IdentityScrub)
                    .ok_or(Errno::EINVAL)?;
                let address = HostPhysAddr(frame.0 + offset);
                // Start from the legacy slot's contents, then force a
                // (harmless) upcall so nothing pending is missed.
                let mut slot = [0u8; 64];
                if target < 32 {
                    let source = entry.shared_info.0 + 64 * target as u64;
                    for (index, byte) in slot.iter_mut().enumerate() {
                        // SAFETY: inside the domain's shared_info frame.
                        *byte = unsafe {
                            core::ptr::read_volatile((source + index as u64) as *const u8)
                        };
                    }
                }
                slot[0] = 1;
                slot[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                store(address.0, &slot);
                entry.vcpus[target].vcpu_info = Some(address);
                self.publish_time(VcpuRef {
                    domain: current.domain,
                    index: target,
                });
                Ok(0)
            }
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
                let area = self.read_area(current, args.rdx)?;
                self.xen_state(current.domain, target)?.runstate_area = area;
                // Like Xen, fill it in at once for the calling vCPU.
                if target == current.index {
                    self.publish_runstate(current);
                }
                Ok(0)
            }
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => {
                let area = self.read_area(current, args.rdx)?;
                self.xen_state(current.domain, target)?.time_area = area;
                // Linux checks the record's flags at once, so fill it now.
                if target == current.index {
                    self.publish_time(current);
                }
                Ok(0)
            }
            VCPUOP_SET_SINGLESHOT_TIMER => {
                if target != current.index {
                    return Err(Errno::EINVAL);
                }
                let mut request = [0u8; 16];
                self.read_argument(current, args.rdx, &mut request)?;
                self.xen_state(current.domain, target)?
                    .timers
                    .set_singleshot(SystemTime(u64_at(&request, 0)), u32_at(&request, 8), now)
                    .map(|()| 0)
                    .map_err(|_| Errno::ETIME)
            }
            VCPUOP_STOP_SINGLESHOT_TIMER => {
                if target != current.index {
                    return Err(Errno::EINVAL);
                }
                self.xen_state(current.domain, target)?
                    .timers
                    .stop_singleshot();
                Ok(0)
            }
            VCPUOP_SET_PERIODIC_TIMER => {
                let mut period = [0u8; 8];
                self.read_argument(current, args.rdx, &mut period)?;
                self.xen_state(current.domain, target)?
                    .timers
                    .set_periodic(u64::from_le_bytes(period))
                    .map(|()| 0)
                    .map_err(|_| Errno::EINVAL)
            }
            VCPUOP_STOP_PERIODIC_TIMER => {
                self.xen_state(current.domain, target)?
                    .timers
                    .stop_periodic();
                Ok(0)
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    fn hvm_op(&mut self, current: VcpuRef, args: HypercallArgs) -> Result<u64, Errno> {
        match args.rdi {
            HVMOP_SET_PARAM | HVMOP_GET_PARAM => {
                let mut request = [0u8; 16];
                self.read_argument(current, args.rsi, &mut request)?;
                let domain = self.target(current, u16::from_le_bytes([request[0], request[1]]))?;
                let index = u32_at(&request, 4);
                let privileged = self
                    .domains
                    .get(current.domain)
                    .is_ok_and(|entry| entry.privileged);
                let entry = self.domains.get_mut(domain).map_err(|_| Errno::ESRCH)?;
                let slot = entry
                    .hvm_params
                    .get_mut(index as usize)
                    .ok_or(Errno::EINVAL)?;
                let readable = matches!(
                    index,
                    HVM_PARAM_CALLBACK_IRQ
                        | HVM_PARAM_STORE_PFN
                        | HVM_PARAM_STORE_EVTCHN
                        | HVM_PARAM_CONSOLE_PFN
                        | HVM_PARAM_CONSOLE_EVTCHN
                );
                let writable = matches!(
                    index,
                    HVM_PARAM_CALLBACK_IRQ | HVM_PARAM_STORE_EVTCHN | HVM_PARAM_CONSOLE_EVTCHN
                );
                if args.rdi == HVMOP_SET_PARAM {
                    if !writable && !privileged {
                        return Err(Errno::EPERM);
                    }
                    *slot = u64_at(&request, 8);
                    Ok(0)
                } else {
                    if !readable && !privileged {
                        return Err(Errno::EPERM);
                    }
                    let value = *slot;
                    self.write_argument(current, args.rsi + 8, &value.to_le_bytes())?;
                    Ok(0)
                }
            }
            HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
                let mut request = [0u8; 8];
                self.read_argument(current, args.rsi, &mut request)?;
                let vcpu = u32_at(&request, 0) as usize;
                let vector = request[4];
                if vector < 0x10 {
                    return Err(Errno::EINVAL);
                }
                let entry = self
                    .domains
                    .get_mut(current.domain)
                    .map_err(|_| Errno::ESRCH)?;
                entry
                    .vcpus
                    .get_mut(vcpu)
                    .ok_or(Errno::ENOENT)?
                    .upcall_vector = Some(vector);
                Ok(0)
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    fn event_channel_op(&mut self, current: VcpuRef, args: HypercallArgs) -> u64 {
        let domain = current.domain;
        let Ok(mut caller) = self.domains.remove(domain) else {
            return Errno::ESRCH.as_return();
        };
        let mut memory = SharedPages::of(&caller);
        let response = {
            let Some(vcpu) = self
                .hardware
                .get(&domain)
                .and_then(|hardware| hardware.vcpus.get(current.index))
            else {
                self.domains.insert(caller);
                return Errno::ESRCH.as_return();
            };
            let mut guest = GuestView::new(vcpu.vmcb, RamAccess { ram: &caller.ram });
            let mut others = OtherDomains {
                domains: &mut self.domains,
            };
            event_channel::event_channel_op(
                args.rdi,
                GuestVirtAddr(args.rsi),
                caller.privileged,
                &mut caller.events,
                &mut memory,
                &mut guest,
                &mut others,
            )
        };
        self.domains.insert(caller);
        match response.effect {
            event_channel::Effect::None => {}
            event_channel::Effect::Local(delivery) => self.deliver(domain, delivery),
            event_channel::Effect::Remote(notify) => self.raise(notify.domain, notify.port),
        }
        response.return_value()
    }

    /// Raises `port` in `domain` and wakes whoever it concerns.
    pub(super) fn raise(&mut self, domain: DomainId, port: Port) {
        let Ok(entry) = self.domains.get(domain) else {
            return;
        };
        let mut memory = SharedPages::of(entry);
        let delivery = entry.events.raise(port, &mut memory);
        self.deliver(domain, delivery);
    }

    /// Raises a VIRQ on one of `domain`'s vCPUs, if the guest bound it.
    pub(super) fn raise_virq(&mut self, domain: DomainId, virq: Virq, vcpu: usize) {
        let Ok(entry) = self.domains.get(domain) else {
            return;
        };
        let mut memory = SharedPages::of(entry);
        let delivery = entry
            .events
            .raise_virq(virq, VcpuId(vcpu as u32), &mut memory);
        self.deliver(domain, delivery);
    }

    /// Wakes the vCPUs a delivery concerns.
    pub(super) fn deliver(&mut self, domain: DomainId, delivery: Delivery) {
        if let Some(vcpu) = delivery.upcall {
            self.wake(VcpuRef {
                domain,
                index: vcpu.0 as usize,
            });
        }
        if let Some(port) = delivery.newly_pending {
            let Ok(entry) = self.domains.get(domain) else {
                return;
            };
            let pollers: Vec<usize> = entry
                .vcpus
                .iter()
                .enumerate()
                .filter(|(_, state)| matches!(&state.wait, Some(Wait::Poll { ports, .. }) if ports.contains(&port)))
                .map(|(index, _)| index)
                .collect();
            for index in pollers {
                self.wake(VcpuRef { domain, index });
            }
        }
    }

    /// Makes a blocked vCPU runnable again.
    pub(super) fn wake(&mut self, which: VcpuRef) {
        let Ok(entry) = self.domains.get_mut(which.domain) else {
            return;
        };
        let Some(state) = entry.vcpus.get_mut(which.index) else {
            return;
        };
        if state.wait.take().is_none() {
            return;
        }
        if let Some(vcpu) = self.vcpu_mut(which)
            && vcpu.state == RunState::Blocked
        {
            vcpu.state = RunState::Runnable;
        }
        self.make_runnable(which);
    }

    /// Blocks the calling vCPU until `wait` is satisfied (or returns at
    /// once when an event is already pending for it).
    pub(super) fn block(&mut self, current: VcpuRef, wait: Wait) -> Next {
        if let Some(vcpu) = self.vcpu_mut(current) {
            vcpu.vmcb.set_rax(0);
        }
        let Ok(entry) = self.domains.get_mut(current.domain) else {
            return Next::Switch;
        };
        let pages = SharedPages::of(entry);
        // As Xen's local_events_need_delivery(): a pending upcall the vCPU
        // can take now (interrupts on) means no sleep at all.
        let interrupts_on = self
            .hardware
            .get(&current.domain)
            .and_then(|hardware| hardware.vcpus.get(current.index))
            .is_some_and(|vcpu| vcpu.vmcb.rflags() & (1 << 9) != 0);
        // Nor does an APIC interrupt it may take (an IPI that came while
        // it ran with interrupts off, then `sti; hlt`).
        let lapic_pending = entry
            .vcpus
            .get(current.index)
            .and_then(|state| state.lapic.as_ref())
            .is_some_and(|lapic| lapic.pending_vector().is_some());
        if interrupts_on && (pages.upcall_pending(current.index) || lapic_pending) {
            return Next::Resume;
        }
        if let Some(state) = entry.vcpus.get_mut(current.index) {
            state.wait = Some(wait);
        }
        if let Some(vcpu) = self.vcpu_mut(current) {
            vcpu.state = RunState::Blocked;
        }
        let now = self.now();
        let _ = self.scheduler.block(current, now);
        Next::Switch
    }

    /// SCHEDOP_poll: block until one of the ports is pending or the
    /// timeout passes.
    fn poll(&mut self, current: VcpuRef, args: HypercallArgs) -> Next {
        let mut request = [0u8; 24];
        let result = self
            .read_argument(current, args.rsi, &mut request)
            .and_then(|()| {
                let ports_address = u64_at(&request, 0);
                let count = u32_at(&request, 8);
                let deadline = u64_at(&request, 16);
                let ports = self
                    .with_guest(current, |guest| {
                        event_channel::read_poll_ports(guest, GuestVirtAddr(ports_address), count)
                    })
                    .ok_or(Errno::ESRCH)??;
                let entry = self.domains.get(current.domain).map_err(|_| Errno::ESRCH)?;
                let pages = SharedPages::of(entry);
                let pending = entry.events.poll(&ports, &pages)?;
                Ok((pending, ports.to_vec(), deadline))
            });
        match result {
            Err(errno) => {
                if let Some(vcpu) = self.vcpu_mut(current) {
                    vcpu.vmcb.set_rax(errno.as_return());
                }
                Next::Resume
            }
            Ok((true, _, _)) => {
                if let Some(vcpu) = self.vcpu_mut(current) {
                    vcpu.vmcb.set_rax(0);
                }
                Next::Resume
            }
            Ok((false, ports, deadline)) => {
                if deadline != 0 && SystemTime(deadline) <= self.now() {
                    if let Some(vcpu) = self.vcpu_mut(current) {
                        vcpu.vmcb.set_rax(0);
                    }
                    return Next::Resume;
                }
                let deadline = (deadline != 0).then_some(SystemTime(deadline));
                self.block(current, Wait::Poll { ports, deadline })
            }
        }
    }

    /// Xen system time now.
    pub(super) fn now(&self) -> SystemTime {
        self.clock.now(baremetal::cpu::rdtsc())
    }

    /// Fires due timers (VIRQ_TIMER) and ends expired polls; returns the
    /// next deadline.
    pub(super) fn run_timers(&mut self) -> Option<SystemTime> {
        let now = self.now();
        let mut fired: Vec<VcpuRef> = Vec::new();
        let mut timed_out: Vec<VcpuRef> = Vec::new();
        let mut next: Option<SystemTime> = None;
        for entry in self.domains.iter_mut() {
            if entry.state != DomainState::Running {
                continue;
            }
            for (index, state) in entry.vcpus.iter_mut().enumerate() {
                let which = VcpuRef {
                    domain: entry.id,
                    index,
                };
                if state.timers.expire(now) {
                    fired.push(which);
                }
                if let Some(Wait::Poll {
                    deadline: Some(deadline),
                    ..
                }) = &state.wait
                {
                    if *deadline <= now {
                        timed_out.push(which);
                    } else {
                        next = Some(next.map_or(*deadline, |next: SystemTime| next.min(*deadline)));
                    }
                }
                if let Some(deadline) = state.timers.next_deadline() {
                    next = Some(next.map_or(deadline, |next: SystemTime| next.min(deadline)));
                }
            }
        }
        for which in fired {
            self.raise_virq(which.domain, Virq::TIMER, which.index);
        }
        for which in timed_out {
            self.wake(which);
        }
        next
    }

    /// Writes the vCPU's current time record (shared_info slot and
    /// registered vcpu_info) before it runs.
    pub(super) fn publish_time(&mut self, which: VcpuRef) {
        let tsc_offset = self.vcpu_mut(which).map_or(0, |vcpu| {
            vcpu.vmcb
                .read_u64(hypervisor::svm::vmcb::control::TSC_OFFSET)
        });
        let Ok(entry) = self.domains.get(which.domain) else {
            return;
        };
        let pages = SharedPages::of(entry);
        let time_area = entry
            .vcpus
            .get(which.index)
            .and_then(|state| state.time_area);
        let record = self
            .clock
            .time_info(baremetal::cpu::rdtsc(), tsc_offset, TSC_STABLE)
            .encode();
        for address in [
            pages.legacy_slot(which.index),
            pages
                .registered
                .get(which.index)
                .copied()
                .flatten()
                .map(|address| address.0),
        ]
        .into_iter()
        .flatten()
        {
            publish(
                &mut TimeRecord {
                    address: address + TIME_OFFSET,
                },
                &record,
            );
        }
        if let Some(address) = time_area {
            // A bad area is the guest's loss: its writes are dropped.
            let _ = self.with_guest(which, |guest| {
                publish(&mut GuestTimeRecord { guest, address }, &record)
            });
        }
    }

    /// Writes the vCPU's runstate (time running, runnable, blocked,
    /// offline) into the area it registered, through its own page tables,
    /// as it is about to run. A bad area is the guest's loss: ignored.
    pub(super) fn publish_runstate(&mut self, which: VcpuRef) {
        let Some(area) = self
            .domains
            .get(which.domain)
            .ok()
            .and_then(|entry| entry.vcpus.get(which.index))
            .and_then(|state| state.runstate_area)
        else {
            return;
        };
        let Some(runstate) = self.scheduler.runstate(which) else {
            return;
        };
        let record = runstate.at(self.now()).encode(false);
        let _ = self.with_guest(which, |guest| guest.write(area, &record));
    }

    /// Writes the wallclock into a new domain's shared_info.
    pub(super) fn publish_wallclock(&self, shared_info: HostPhysAddr) {
        store(shared_info.0 + WALLCLOCK, &self.wallclock.encode(2));
    }

    /// The vector to deliver an upcall with: the vCPU's own, or the
    /// domain's callback vector (CALLBACK_IRQ of type "vector").
    pub(super) fn upcall_vector(&self, which: VcpuRef) -> Option<u8> {
        let entry = self.domains.get(which.domain).ok()?;
        if let Some(vector) = entry.vcpus.get(which.index)?.upcall_vector {
            return Some(vector);
        }
        let callback = entry.hvm_params[HVM_PARAM_CALLBACK_IRQ as usize];
        (callback >> 56 == 2).then_some(callback as u8)
    }

    /// Whether the vCPU has an upcall pending.
    pub(super) fn upcall_pending(&self, which: VcpuRef) -> bool {
        let Ok(entry) = self.domains.get(which.domain) else {
            return false;
        };
        SharedPages::of(entry).upcall_pending(which.index)
    }
}
