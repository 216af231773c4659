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

pub use ram::{Extent, GuestRam};

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

impl DomainState {
    /// Xen's getdomaininfo flag bits for this state.
    pub fn info_flags(self) -> u32 {
        const SHUTDOWN: u32 = 1 << 2;
        const PAUSED: u32 = 1 << 3;
        const RUNNING: u32 = 1 << 5;
        match self {
            Self::Paused => PAUSED,
            Self::Running => RUNNING,
            Self::Shutdown(reason) => SHUTDOWN | (reason.as_raw() << 16),
        }
    }
}

/// The guest type, as the control interface names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// PVH: hardware virtualization, Xen ABI, LAPIC only.
    Pvh,
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
}

/// Number of HVM parameters kept.
pub const HVM_PARAMS: usize = 40;

impl Domain {
    /// A new paused domain without memory.
    pub fn new(
        id: DomainId,
        privileged: bool,
        kind: GuestKind,
        vcpu_count: u32,
        max_pages: u64,
    ) -> Self {
        Self {
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
        }
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
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchDomain(id) => write!(f, "no domain {}", id.0),
            Self::TooManyDomains => write!(f, "too many domains (at most {MAX_DOMAINS})"),
            Self::BadVcpuCount(count) => write!(f, "{count} vCPUs (1 to {MAX_VCPUS} allowed)"),
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
                slot.insert(Domain::new(candidate, false, kind, vcpu_count, max_pages));
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

    #[test]
    fn ids_count_up_and_skip_live_ones() {
        let mut table = DomainTable::new();
        let first = table.create(GuestKind::Pvh, 1, 256).unwrap();
        let second = table.create(GuestKind::Pvh, 2, 256).unwrap();
        assert_eq!((first, second), (DomainId(1), DomainId(2)));
        table.remove(first).unwrap();
        assert_eq!(table.create(GuestKind::Pvh, 1, 256).unwrap(), DomainId(3));
        assert_eq!(
            table.get(DomainId(9)).unwrap_err(),
            DomainError::NoSuchDomain(DomainId(9))
        );
    }

    #[test]
    fn vcpu_counts_are_bounded() {
        let mut table = DomainTable::new();
        assert_eq!(
            table.create(GuestKind::Pvh, 0, 1),
            Err(DomainError::BadVcpuCount(0))
        );
        assert_eq!(
            table.create(GuestKind::Pvh, 33, 1),
            Err(DomainError::BadVcpuCount(33))
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = DomainTable::new();
        for _ in 0..=MAX_DOMAINS {
            table.create(GuestKind::Pvh, 1, 1).unwrap();
        }
        assert_eq!(
            table.create(GuestKind::Pvh, 1, 1),
            Err(DomainError::TooManyDomains)
        );
    }

    #[test]
    fn state_flags_match_getdomaininfo() {
        assert_eq!(DomainState::Running.info_flags(), 1 << 5);
        assert_eq!(
            DomainState::Shutdown(ShutdownReason::Crash).info_flags(),
            (1 << 2) | (3 << 16)
        );
    }
}
