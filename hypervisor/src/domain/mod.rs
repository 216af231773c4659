//! Domains: what the hypervisor knows about each guest — its id, state,
//! memory and vCPUs — and the table of all of them. The per-domain event
//! channels and grant table live beside this state (see `event_channel`
//! and `grant_table`); the hardware side (VMCBs, nested tables) is the
//! binary's.

pub mod ram;

use alloc::collections::BTreeMap;
use core::fmt;

use xenolith_abi::domain::DomainId;
use xenolith_abi::sched::ShutdownReason;

pub use ram::{Backing, GuestRam, Scrub};

use crate::event_channel::{EventChannels, Limits, Port};
use crate::grant_table::{GrantTable, GrantTableLimits, Maptrack};
use crate::memory::{GuestVirtAddr, HostPhysAddr};
use crate::time::{SystemTime, VcpuTimers};
use alloc::vec::Vec;

/// Most vCPUs one domain may have.
pub const MAX_VCPUS: u32 = 32;
/// Most domains at once (ids 1..=MAX_DOMAINS for guests).
pub const MAX_DOMAINS: usize = 64;

/// Where a domain is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Created, not yet started, or paused by the control domain.
    Paused,
    /// Its vCPUs may run.
    Running,
    /// It asked to stop (or crashed); its memory stays until destroyed.
    Shutdown(ShutdownReason),
}

/// What a domain's online vCPUs (started, not down) are doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuActivity {
    /// At least one may run: on the CPU or waiting for it.
    Busy,
    /// Every one waits for an event (halted, blocked or polling).
    Idle,
    /// None is online.
    Offline,
}

impl DomainState {
    /// Xen's getdomaininfo flag bits for this state, a running domain's
    /// `running` or `blocked` bit from its vCPUs' `activity`. Unlike Xen,
    /// `running` means "may run" rather than "on a CPU now": with one CPU
    /// the control domain asking is always the one on it, so Xen's meaning
    /// would show every guest blocked or waiting alike.
    pub fn info_flags(self, activity: VcpuActivity) -> u32 {
        const SHUTDOWN: u32 = 1 << 2;
        const PAUSED: u32 = 1 << 3;
        const BLOCKED: u32 = 1 << 4;
        const RUNNING: u32 = 1 << 5;
        match (self, activity) {
            (Self::Paused, _) => PAUSED,
            (Self::Running, VcpuActivity::Busy) => RUNNING,
            (Self::Running, VcpuActivity::Idle) => BLOCKED,
            (Self::Running, VcpuActivity::Offline) => 0,
            (Self::Shutdown(reason), _) => SHUTDOWN | (reason.as_raw() << 16),
        }
    }
}

/// The guest type, as the control interface names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// PVH: hardware virtualization, Xen ABI, LAPIC only.
    Pvh,
    /// HVM: vCPU 0 starts as a PC's would after firmware, by the Linux
    /// boot protocol (ESI = zero page); Xen's platform I/O ports answer.
    /// No other emulated devices.
    Hvm,
}

/// One domain's bookkeeping.
#[derive(Debug)]
pub struct Domain {
    pub id: DomainId,
    pub privileged: bool,
    pub kind: GuestKind,
    pub state: DomainState,
    pub vcpu_count: u32,
    pub ram: GuestRam,
    /// Pages the domain may hold at most.
    pub max_pages: u64,
    /// Guest frame of its shared_info page, once it mapped one.
    pub shared_info_gfn: Option<u64>,
    /// HVM parameters by index (Xen's HVM_NR_PARAMS is 39).
    pub hvm_params: [u64; HVM_PARAMS],
    /// CPU time its vCPUs have used, in TSC ticks.
    pub cpu_ticks: u64,
    /// Its event channels (2-level ABI).
    pub events: EventChannels,
    /// The hypervisor frame holding its shared_info page (mapped into the
    /// guest when it asks, at `shared_info_gfn`).
    pub shared_info: HostPhysAddr,
    /// Per-vCPU Xen state.
    pub vcpus: Vec<VcpuXenState>,
    /// Its grant table (entries it grants to others).
    pub grants: GrantTable,
    /// The grants of others it has mapped.
    pub maptrack: Maptrack,
    /// Where it mapped each of its grant-table frames (index → guest frame).
    pub grant_frame_gfns: BTreeMap<u32, u64>,
    /// Its frames Dom0 has mapped (guest frame → host frame), unmapped
    /// from Dom0 before they can be freed.
    pub mapped_by_dom0: BTreeMap<u64, HostPhysAddr>,
    /// Nested page-table frames its own requests may still cause the
    /// hypervisor to allocate (mappings at far-apart guest frames).
    pub table_budget: u64,
}

/// Nested page tables a guest's requests may add beyond those of its RAM
/// (4 MiB of tables: room for thousands of scattered mappings).
pub const GUEST_TABLE_BUDGET: u64 = 1024;

/// The hypervisor frames a new domain starts with.
#[derive(Clone, Copy, Debug)]
pub struct DomainFrames {
    /// Its shared_info page.
    pub shared_info: HostPhysAddr,
    /// The first frame of its grant table.
    pub grant_table: HostPhysAddr,
}

/// Most grant mappings one guest may hold at once (Dom0 gets more).
pub const GUEST_MAPTRACK: u32 = 1024;

/// What a vCPU set up through the Xen ABI.
#[derive(Clone, Debug, Default)]
pub struct VcpuXenState {
    /// Host address of its registered vcpu_info (VCPUOP_register_vcpu_info);
    /// `None` means its slot in shared_info.
    pub vcpu_info: Option<HostPhysAddr>,
    /// Its per-vCPU upcall vector (HVMOP_set_evtchn_upcall_vector).
    pub upcall_vector: Option<u8>,
    /// Its single-shot and periodic timers.
    pub timers: VcpuTimers,
    /// Its runstate area (a guest-virtual address).
    pub runstate_area: Option<GuestVirtAddr>,
    /// Its extra time record for user space (a guest-virtual address,
    /// VCPUOP_register_vcpu_time_memory_area).
    pub time_area: Option<GuestVirtAddr>,
    /// What it waits for while blocked.
    pub wait: Option<Wait>,
    /// Its virtual local APIC (guests; Dom0 has none).
    pub lapic: Option<crate::vlapic::VirtualLapic>,
    /// The local-APIC vector offered through the VMCB at the last entry.
    pub lapic_offered: Option<u8>,
}

/// Why a vCPU is blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// SCHEDOP_block or HLT: any event.
    Event,
    /// SCHEDOP_poll: one of these ports pending, or the deadline.
    Poll {
        ports: Vec<Port>,
        deadline: Option<SystemTime>,
    },
}

/// Limit on ports per guest (Xen's default `max_event_channels` is 1023).
pub const GUEST_MAX_PORTS: u32 = 1024;

/// Number of HVM parameters (Xen's `HVM_NR_PARAMS`).
pub const HVM_PARAMS: usize = 39;

impl Domain {
    /// A new paused domain without memory; `shared_info` is the zeroed
    /// frame the hypervisor gave it.
    pub fn new(
        id: DomainId,
        privileged: bool,
        kind: GuestKind,
        vcpu_count: u32,
        max_pages: u64,
        frames: DomainFrames,
    ) -> Result<Self, DomainError> {
        let limits = Limits {
            max_ports: if privileged { 4096 } else { GUEST_MAX_PORTS },
            vcpu_count,
            global_virq_handler: privileged,
        };
        let events = EventChannels::new(id, limits).map_err(|_| DomainError::OutOfMemory)?;
        Ok(Self {
            id,
            privileged,
            kind,
            state: DomainState::Paused,
            vcpu_count,
            ram: GuestRam::default(),
            max_pages,
            shared_info_gfn: None,
            hvm_params: [0; HVM_PARAMS],
            cpu_ticks: 0,
            events,
            shared_info: frames.shared_info,
            vcpus: alloc::vec![VcpuXenState::default(); vcpu_count as usize],
            grants: GrantTable::new(&GrantTableLimits::default(), frames.grant_table),
            maptrack: Maptrack::new(if privileged {
                16 * GUEST_MAPTRACK
            } else {
                GUEST_MAPTRACK
            }),
            grant_frame_gfns: BTreeMap::new(),
            mapped_by_dom0: BTreeMap::new(),
            table_budget: if privileged {
                u64::MAX
            } else {
                GUEST_TABLE_BUDGET
            },
        })
    }
}

/// Why a domain could not be created or found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// No domain with that id.
    NoSuchDomain(DomainId),
    /// All domain ids or slots are in use.
    TooManyDomains,
    /// vCPU count zero or above [`MAX_VCPUS`].
    BadVcpuCount(u32),
    /// No memory for its bookkeeping.
    OutOfMemory,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchDomain(id) => write!(f, "no domain {}", id.0),
            Self::TooManyDomains => write!(f, "too many domains (at most {MAX_DOMAINS})"),
            Self::BadVcpuCount(count) => write!(f, "{count} vCPUs (1 to {MAX_VCPUS} allowed)"),
            Self::OutOfMemory => write!(f, "out of hypervisor memory"),
        }
    }
}

/// Every domain, by id.
#[derive(Debug, Default)]
pub struct DomainTable {
    domains: BTreeMap<DomainId, Domain>,
    next_id: u16,
}

impl DomainTable {
    pub fn new() -> Self {
        Self {
            domains: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Adds Dom0 (id 0, privileged).
    pub fn insert_dom0(&mut self, dom0: Domain) {
        self.domains.insert(DomainId::DOM0, dom0);
    }

    /// Creates a paused guest domain under the lowest free id from the
    /// last one handed out (ids are not reused at once, like Xen).
    pub fn create(
        &mut self,
        kind: GuestKind,
        vcpu_count: u32,
        max_pages: u64,
        frames: DomainFrames,
    ) -> Result<DomainId, DomainError> {
        if vcpu_count == 0 || vcpu_count > MAX_VCPUS {
            return Err(DomainError::BadVcpuCount(vcpu_count));
        }
        if self.domains.len() > MAX_DOMAINS {
            return Err(DomainError::TooManyDomains);
        }
        let first_reserved = DomainId::FIRST_RESERVED.0;
        for _ in 0..first_reserved {
            let candidate = DomainId(self.next_id);
            self.next_id = if self.next_id + 1 >= first_reserved {
                1
            } else {
                self.next_id + 1
            };
            if let alloc::collections::btree_map::Entry::Vacant(slot) =
                self.domains.entry(candidate)
            {
                slot.insert(Domain::new(
                    candidate, false, kind, vcpu_count, max_pages, frames,
                )?);
                return Ok(candidate);
            }
        }
        Err(DomainError::TooManyDomains)
    }

    pub fn get(&self, id: DomainId) -> Result<&Domain, DomainError> {
        self.domains.get(&id).ok_or(DomainError::NoSuchDomain(id))
    }

    pub fn get_mut(&mut self, id: DomainId) -> Result<&mut Domain, DomainError> {
        self.domains
            .get_mut(&id)
            .ok_or(DomainError::NoSuchDomain(id))
    }

    /// Removes a domain; its memory must already have been returned.
    pub fn remove(&mut self, id: DomainId) -> Result<Domain, DomainError> {
        self.domains
            .remove(&id)
            .ok_or(DomainError::NoSuchDomain(id))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.domains.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Domain> {
        self.domains.values_mut()
    }

    /// Puts back a domain taken out with [`DomainTable::remove`] (to
    /// borrow it beside the others).
    pub fn insert(&mut self, domain: Domain) {
        self.domains.insert(domain.id, domain);
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: DomainFrames = DomainFrames {
        shared_info: HostPhysAddr(0x1000),
        grant_table: HostPhysAddr(0x2000),
    };

    #[test]
    fn ids_count_up_and_skip_live_ones() {
        let mut table = DomainTable::new();
        let first = table.create(GuestKind::Pvh, 1, 256, FRAME).unwrap();
        let second = table.create(GuestKind::Pvh, 2, 256, FRAME).unwrap();
        assert_eq!((first, second), (DomainId(1), DomainId(2)));
        table.remove(first).unwrap();
        assert_eq!(
            table.create(GuestKind::Pvh, 1, 256, FRAME).unwrap(),
            DomainId(3)
        );
        assert_eq!(
            table.get(DomainId(9)).unwrap_err(),
            DomainError::NoSuchDomain(DomainId(9))
        );
    }

    #[test]
    fn vcpu_counts_are_bounded() {
        let mut table = DomainTable::new();
        assert_eq!(
            table.create(GuestKind::Pvh, 0, 1, FRAME),
            Err(DomainError::BadVcpuCount(0))
        );
        assert_eq!(
            table.create(GuestKind::Pvh, 33, 1, FRAME),
            Err(DomainError::BadVcpuCount(33))
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = DomainTable::new();
        for _ in 0..=MAX_DOMAINS {
            table.create(GuestKind::Pvh, 1, 1, FRAME).unwrap();
        }
        assert_eq!(
            table.create(GuestKind::Pvh, 1, 1, FRAME),
            Err(DomainError::TooManyDomains)
        );
    }

    #[test]
    fn state_flags_match_getdomaininfo() {
        use VcpuActivity::{Busy, Idle, Offline};
        assert_eq!(DomainState::Running.info_flags(Busy), 1 << 5);
        assert_eq!(DomainState::Running.info_flags(Idle), 1 << 4, "blocked");
        assert_eq!(DomainState::Running.info_flags(Offline), 0);
        for activity in [Busy, Idle, Offline] {
            assert_eq!(DomainState::Paused.info_flags(activity), 1 << 3);
            assert_eq!(
                DomainState::Shutdown(ShutdownReason::Crash).info_flags(activity),
                (1 << 2) | (3 << 16)
            );
        }
    }
}
