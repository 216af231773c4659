//! Event-channel tests, with fakes for guest memory, the shared_info page
//! and the other domains.

mod console_input;
mod delivery;
mod hypercall;
mod random;
mod table;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::layout;

use super::*;
use crate::hypercall::{GuestAccess, GuestFault};
use crate::memory::GuestVirtAddr;

/// A domain's shared memory as bytes laid out like the real thing: the
/// 4 KiB `shared_info` page (with the `vcpu_info` slots of vCPUs 0..32)
/// and, for higher vCPUs, separately registered `vcpu_info`s.
pub(super) struct FakeSharedInfo {
    page: Vec<u8>,
    registered: BTreeMap<u32, [u8; layout::VCPU_INFO_SIZE as usize]>,
}

impl FakeSharedInfo {
    pub(super) fn new() -> Self {
        Self {
            page: vec![0; 4096],
            registered: BTreeMap::new(),
        }
    }

    fn bitmap_word(&self, base: u64, port: Port) -> (usize, u64) {
        let offset = (base + u64::from(port.word()) * 8) as usize;
        let word = u64::from_le_bytes(self.page[offset..offset + 8].try_into().unwrap());
        (offset, word)
    }

    fn bitmap_bit(&self, base: u64, port: Port) -> bool {
        let (_, word) = self.bitmap_word(base, port);
        word & (1 << port.bit()) != 0
    }

    /// Sets or clears a bitmap bit; returns its old value.
    fn set_bitmap_bit(&mut self, base: u64, port: Port, value: bool) -> bool {
        let (offset, word) = self.bitmap_word(base, port);
        let mask = 1u64 << port.bit();
        let new = if value { word | mask } else { word & !mask };
        self.page[offset..offset + 8].copy_from_slice(&new.to_le_bytes());
        word & mask != 0
    }

    fn vcpu_info(&self, vcpu: VcpuId) -> [u8; layout::VCPU_INFO_SIZE as usize] {
        if vcpu.0 < layout::LEGACY_MAX_VCPUS {
            let start = (layout::SHARED_INFO_VCPU_INFO + u64::from(vcpu.0) * layout::VCPU_INFO_SIZE)
                as usize;
            self.page[start..start + layout::VCPU_INFO_SIZE as usize]
                .try_into()
                .unwrap()
        } else {
            self.registered
                .get(&vcpu.0)
                .copied()
                .unwrap_or([0; layout::VCPU_INFO_SIZE as usize])
        }
    }

    fn vcpu_info_mut(&mut self, vcpu: VcpuId) -> &mut [u8] {
        if vcpu.0 < layout::LEGACY_MAX_VCPUS {
            let start = (layout::SHARED_INFO_VCPU_INFO + u64::from(vcpu.0) * layout::VCPU_INFO_SIZE)
                as usize;
            &mut self.page[start..start + layout::VCPU_INFO_SIZE as usize]
        } else {
            self.registered
                .entry(vcpu.0)
                .or_insert([0; layout::VCPU_INFO_SIZE as usize])
        }
    }

    /// The guest masks or unmasks a port in memory.
    pub(super) fn set_masked(&mut self, port: Port, masked: bool) {
        self.set_bitmap_bit(layout::SHARED_INFO_EVTCHN_MASK, port, masked);
    }

    pub(super) fn selector(&self, vcpu: VcpuId) -> u64 {
        let offset = layout::VCPU_INFO_PENDING_SEL as usize;
        u64::from_le_bytes(self.vcpu_info(vcpu)[offset..offset + 8].try_into().unwrap())
    }

    pub(super) fn upcall_pending(&self, vcpu: VcpuId) -> bool {
        self.vcpu_info(vcpu)[layout::VCPU_INFO_UPCALL_PENDING as usize] != 0
    }

    /// What Linux's upcall handler does on `vcpu`: clear the upcall flag,
    /// take the selector, and consume every unmasked pending port in the
    /// words it names (whoever they are bound to). Returns those ports.
    pub(super) fn guest_handle_upcall(&mut self, vcpu: VcpuId) -> Vec<Port> {
        let info = self.vcpu_info_mut(vcpu);
        info[layout::VCPU_INFO_UPCALL_PENDING as usize] = 0;
        let offset = layout::VCPU_INFO_PENDING_SEL as usize;
        let selector = u64::from_le_bytes(info[offset..offset + 8].try_into().unwrap());
        info[offset..offset + 8].copy_from_slice(&0u64.to_le_bytes());
        let mut handled = Vec::new();
        for word in 0..64u32 {
            if selector & (1 << word) == 0 {
                continue;
            }
            for bit in 0..64 {
                let port = Port(word * 64 + bit);
                if self.is_pending(port) && !self.is_masked(port) {
                    self.set_bitmap_bit(layout::SHARED_INFO_EVTCHN_PENDING, port, false);
                    handled.push(port);
                }
            }
        }
        handled
    }
}

impl EventMemory for FakeSharedInfo {
    fn test_and_set_pending(&mut self, port: Port) -> bool {
        self.set_bitmap_bit(layout::SHARED_INFO_EVTCHN_PENDING, port, true)
    }

    fn clear_pending(&mut self, port: Port) {
        self.set_bitmap_bit(layout::SHARED_INFO_EVTCHN_PENDING, port, false);
    }

    fn is_pending(&self, port: Port) -> bool {
        self.bitmap_bit(layout::SHARED_INFO_EVTCHN_PENDING, port)
    }

    fn is_masked(&self, port: Port) -> bool {
        self.bitmap_bit(layout::SHARED_INFO_EVTCHN_MASK, port)
    }

    fn test_and_clear_mask(&mut self, port: Port) -> bool {
        self.set_bitmap_bit(layout::SHARED_INFO_EVTCHN_MASK, port, false)
    }

    fn test_and_set_selector(&mut self, vcpu: VcpuId, word: u32) -> bool {
        let offset = layout::VCPU_INFO_PENDING_SEL as usize;
        let info = self.vcpu_info_mut(vcpu);
        let old = u64::from_le_bytes(info[offset..offset + 8].try_into().unwrap());
        info[offset..offset + 8].copy_from_slice(&(old | 1 << word).to_le_bytes());
        old & (1 << word) != 0
    }

    fn test_and_set_upcall_pending(&mut self, vcpu: VcpuId) -> bool {
        let flag = &mut self.vcpu_info_mut(vcpu)[layout::VCPU_INFO_UPCALL_PENDING as usize];
        let old = *flag != 0;
        *flag = 1;
        old
    }
}

/// Where fake guests keep hypercall arguments.
pub(super) const ARGUMENT: GuestVirtAddr = GuestVirtAddr(0x1000);

/// Guest memory: `bytes` at [`ARGUMENT`]; anything else faults, and so do
/// writes when `read_only`.
pub(super) struct FakeGuest {
    pub(super) bytes: Vec<u8>,
    pub(super) read_only: bool,
}

impl FakeGuest {
    pub(super) fn new(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.to_vec(),
            read_only: false,
        }
    }

    fn range(
        &self,
        address: GuestVirtAddr,
        length: usize,
    ) -> Result<core::ops::Range<usize>, GuestFault> {
        let fault = GuestFault { address };
        let start = address.0.checked_sub(ARGUMENT.0).ok_or(fault)? as usize;
        let end = start.checked_add(length).ok_or(fault)?;
        if end > self.bytes.len() {
            return Err(fault);
        }
        Ok(start..end)
    }
}

impl GuestAccess for FakeGuest {
    fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), GuestFault> {
        let range = self.range(address, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, address: GuestVirtAddr, data: &[u8]) -> Result<(), GuestFault> {
        if self.read_only {
            return Err(GuestFault { address });
        }
        let range = self.range(address, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

/// The tables of the domains other than the caller.
pub(super) struct FakeDomains<'a>(pub(super) &'a mut BTreeMap<DomainId, EventChannels>);

impl Domains for FakeDomains<'_> {
    fn with_channels<R>(
        &mut self,
        domain: DomainId,
        f: impl FnOnce(&mut EventChannels) -> R,
    ) -> Option<R> {
        self.0.get_mut(&domain).map(f)
    }
}

/// Several domains, each with a table and shared memory, calling
/// `event_channel_op` the way the hypervisor will.
pub(super) struct World {
    pub(super) tables: BTreeMap<DomainId, EventChannels>,
    pub(super) memories: BTreeMap<DomainId, FakeSharedInfo>,
}

/// What one hypercall did, seen from outside.
pub(super) struct Call {
    pub(super) response: Response,
    /// The argument struct after the call.
    pub(super) bytes: Vec<u8>,
    /// Where an [`Effect::Remote`] was carried out, and what it asked for.
    pub(super) remote: Option<(DomainId, Delivery)>,
}

impl World {
    pub(super) fn new(domains: &[(DomainId, Limits)]) -> Self {
        let mut world = Self {
            tables: BTreeMap::new(),
            memories: BTreeMap::new(),
        };
        for &(domain, limits) in domains {
            world
                .tables
                .insert(domain, EventChannels::new(domain, limits).unwrap());
            world.memories.insert(domain, FakeSharedInfo::new());
        }
        world
    }

    pub(super) fn table(&self, domain: DomainId) -> &EventChannels {
        &self.tables[&domain]
    }

    pub(super) fn memory(&mut self, domain: DomainId) -> &mut FakeSharedInfo {
        self.memories.get_mut(&domain).unwrap()
    }

    /// `event_channel_op(command, argument)` from `caller`; an
    /// [`Effect::Remote`] is raised in the other domain at once.
    pub(super) fn call(
        &mut self,
        caller: DomainId,
        privileged: bool,
        command: u64,
        argument: &[u8],
    ) -> Call {
        let mut guest = FakeGuest::new(argument);
        self.call_with(caller, privileged, command, &mut guest)
    }

    pub(super) fn call_with(
        &mut self,
        caller: DomainId,
        privileged: bool,
        command: u64,
        guest: &mut FakeGuest,
    ) -> Call {
        let mut local = self.tables.remove(&caller).unwrap();
        let response = event_channel_op(
            command,
            ARGUMENT,
            privileged,
            &mut local,
            self.memories.get_mut(&caller).unwrap(),
            guest,
            &mut FakeDomains(&mut self.tables),
        );
        self.tables.insert(caller, local);
        let remote = match response.effect {
            Effect::Remote(notify) => {
                let memory = self.memories.get_mut(&notify.domain).unwrap();
                Some((
                    notify.domain,
                    self.tables[&notify.domain].raise(notify.port, memory),
                ))
            }
            Effect::None | Effect::Local(_) => None,
        };
        Call {
            response,
            bytes: guest.bytes.clone(),
            remote,
        }
    }
}

/// Little-endian argument structs.
pub(super) mod args {
    use alloc::vec::Vec;

    use xenolith_abi::event_channel::{
        alloc_unbound, bind_interdomain, bind_ipi, bind_vcpu, bind_virq, port_only, reset, status,
    };

    fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
        bytes[offset..offset + value.len()].copy_from_slice(value);
    }

    pub(in crate::event_channel) fn alloc_unbound(dom: u16, remote: u16) -> Vec<u8> {
        let mut bytes = vec![0; alloc_unbound::SIZE];
        put(&mut bytes, alloc_unbound::DOM, &dom.to_le_bytes());
        put(&mut bytes, alloc_unbound::REMOTE_DOM, &remote.to_le_bytes());
        bytes
    }

    pub(in crate::event_channel) fn bind_interdomain(remote: u16, remote_port: u32) -> Vec<u8> {
        let mut bytes = vec![0; bind_interdomain::SIZE];
        put(
            &mut bytes,
            bind_interdomain::REMOTE_DOM,
            &remote.to_le_bytes(),
        );
        put(
            &mut bytes,
            bind_interdomain::REMOTE_PORT,
            &remote_port.to_le_bytes(),
        );
        bytes
    }

    pub(in crate::event_channel) fn bind_virq(virq: u32, vcpu: u32) -> Vec<u8> {
        let mut bytes = vec![0; bind_virq::SIZE];
        put(&mut bytes, bind_virq::VIRQ, &virq.to_le_bytes());
        put(&mut bytes, bind_virq::VCPU, &vcpu.to_le_bytes());
        bytes
    }

    pub(in crate::event_channel) fn bind_ipi(vcpu: u32) -> Vec<u8> {
        let mut bytes = vec![0; bind_ipi::SIZE];
        put(&mut bytes, bind_ipi::VCPU, &vcpu.to_le_bytes());
        bytes
    }

    pub(in crate::event_channel) fn bind_vcpu(port: u32, vcpu: u32) -> Vec<u8> {
        let mut bytes = vec![0; bind_vcpu::SIZE];
        put(&mut bytes, bind_vcpu::PORT, &port.to_le_bytes());
        put(&mut bytes, bind_vcpu::VCPU, &vcpu.to_le_bytes());
        bytes
    }

    /// For close, send and unmask.
    pub(in crate::event_channel) fn port(port: u32) -> Vec<u8> {
        let mut bytes = vec![0; port_only::SIZE];
        put(&mut bytes, port_only::PORT, &port.to_le_bytes());
        bytes
    }

    /// The output fields start as 0xAA so untouched ones show.
    pub(in crate::event_channel) fn status(dom: u16, port: u32) -> Vec<u8> {
        let mut bytes = vec![0xaa; status::SIZE];
        put(&mut bytes, status::DOM, &dom.to_le_bytes());
        put(&mut bytes, status::PORT, &port.to_le_bytes());
        bytes
    }

    pub(in crate::event_channel) fn reset(dom: u16) -> Vec<u8> {
        let mut bytes = vec![0; reset::SIZE];
        put(&mut bytes, reset::DOM, &dom.to_le_bytes());
        bytes
    }

    pub(in crate::event_channel) fn u32_at(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    pub(in crate::event_channel) fn u16_at(bytes: &[u8], offset: usize) -> u16 {
        u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
    }
}
