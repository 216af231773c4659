//! GET_INFO's answer: what the hypervisor says about a domain, written by
//! the hypervisor and read by Dom0 through the one layout here.

use super::{PAYLOAD, Request, put_u32, put_u64, u32_at, u64_at};
use crate::domain::DomainId;

/// 4 KiB pages in a MiB.
const PAGES_PER_MIB: u64 = 256;

/// Why a domain stopped (Xen's `SHUTDOWN_*` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    Other(u32),
}

impl StopReason {
    /// xl's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
            Self::Suspend => "suspend",
            Self::Crash => "crash",
            Self::Watchdog => "watchdog",
            Self::Other(_) => "unknown",
        }
    }
}

/// GET_INFO's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The domain described (the first at or above the one asked for).
    pub domain: DomainId,
    /// Xen's getdomaininfo bits: 2 shutdown, 3 paused, 4 blocked (every
    /// online vCPU waits for an event), 5 running (one may run: Xenolith
    /// sets it for a vCPU waiting for the CPU too); the shutdown reason in
    /// 23:16.
    pub flags: u32,
    pub vcpus: u32,
    /// Pages it holds now: fewer than it was given once it has handed
    /// frames back (Dom0 gives some up as slots for grant mappings).
    pub pages: u64,
    /// Pages it was given.
    pub max_pages: u64,
    pub cpu_time_ns: u64,
}

impl DomainInfo {
    /// Reads GET_INFO's answer (docs/control-interface.md).
    pub fn decode(answer: &Request) -> Self {
        Self {
            domain: DomainId(u16::from_le_bytes([answer[8], answer[9]])),
            flags: u32_at(answer, PAYLOAD),
            vcpus: u32_at(answer, PAYLOAD + 4),
            pages: u64_at(answer, PAYLOAD + 8),
            max_pages: u64_at(answer, PAYLOAD + 16),
            cpu_time_ns: u64_at(answer, PAYLOAD + 24),
        }
    }

    /// Writes it into the request as GET_INFO's answer.
    pub fn encode(&self, request: &mut Request) {
        request[8..10].copy_from_slice(&self.domain.0.to_le_bytes());
        put_u32(request, PAYLOAD, self.flags);
        put_u32(request, PAYLOAD + 4, self.vcpus);
        put_u64(request, PAYLOAD + 8, self.pages);
        put_u64(request, PAYLOAD + 16, self.max_pages);
        put_u64(request, PAYLOAD + 24, self.cpu_time_ns);
    }

    /// The memory it was given, in MiB rounded down as xl does. Not
    /// `pages`: that drops below the allocation as soon as the domain
    /// hands a frame back (Domain-0 was listed with 255 of its 256 MiB).
    pub fn memory_mib(&self) -> u64 {
        self.max_pages / PAGES_PER_MIB
    }

    /// Why it stopped, if it did.
    pub fn stopped(&self) -> Option<StopReason> {
        if self.flags & (1 << 2) == 0 {
            return None;
        }
        Some(match (self.flags >> 16) & 0xff {
            0 => StopReason::Poweroff,
            1 => StopReason::Reboot,
            2 => StopReason::Suspend,
            3 => StopReason::Crash,
            4 => StopReason::Watchdog,
            other => StopReason::Other(other),
        })
    }

    pub fn paused(&self) -> bool {
        self.flags & (1 << 3) != 0
    }

    pub fn blocked(&self) -> bool {
        self.flags & (1 << 4) != 0
    }

    pub fn running(&self) -> bool {
        self.flags & (1 << 5) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::REQUEST_SIZE;

    fn answer(domain: u16) -> Request {
        let mut answer = [0; REQUEST_SIZE];
        answer[8..10].copy_from_slice(&domain.to_le_bytes());
        answer
    }

    #[test]
    fn a_domain_reports_the_memory_it_was_given_not_what_it_still_holds() {
        // Domain-0 given 256 MiB and holding six pages fewer, handed back
        // as grant-mapping slots.
        let mut answer = answer(0);
        put_u32(&mut answer, 16, 1 << 5);
        put_u32(&mut answer, 20, 1);
        put_u64(&mut answer, 24, 65_530);
        put_u64(&mut answer, 32, 65_536);
        put_u64(&mut answer, 40, 7_000_000);
        let info = DomainInfo::decode(&answer);
        assert_eq!(info.domain, DomainId::DOM0);
        assert!(info.running() && !info.paused() && !info.blocked());
        assert_eq!(info.stopped(), None);
        assert_eq!((info.vcpus, info.pages), (1, 65_530));
        assert_eq!(info.cpu_time_ns, 7_000_000);
        assert_eq!(info.memory_mib(), 256);
    }

    #[test]
    fn what_the_hypervisor_writes_dom0_reads() {
        let info = DomainInfo {
            domain: DomainId(4),
            flags: (1 << 2) | (3 << 16),
            vcpus: 2,
            pages: 8_000,
            max_pages: 8_192,
            cpu_time_ns: 99,
        };
        let mut answer = answer(0);
        info.encode(&mut answer);
        assert_eq!(DomainInfo::decode(&answer), info);
        assert_eq!(u64_at(&answer, 40), 99, "cpu_time_ns @40");
        assert_eq!(u64_at(&answer, 32), 8_192, "max_pages @32");
    }

    #[test]
    fn an_idle_domain_is_blocked_not_running() {
        let mut answer = answer(2);
        put_u32(&mut answer, 16, 1 << 4);
        let info = DomainInfo::decode(&answer);
        assert!(info.blocked() && !info.running() && !info.paused());
        assert_eq!(info.stopped(), None);
    }

    #[test]
    fn memory_is_counted_in_whole_mib_rounded_down() {
        let mut answer = answer(3);
        for (max_pages, mib) in [(0, 0), (255, 0), (256, 1), (8_191, 31), (786_432, 3072)] {
            put_u64(&mut answer, 32, max_pages);
            assert_eq!(
                DomainInfo::decode(&answer).memory_mib(),
                mib,
                "{max_pages} pages"
            );
        }
    }

    #[test]
    fn the_shutdown_reason_is_read_from_bits_23_to_16() {
        let mut answer = answer(5);
        for (code, reason) in [
            (0, StopReason::Poweroff),
            (1, StopReason::Reboot),
            (3, StopReason::Crash),
            (9, StopReason::Other(9)),
        ] {
            put_u32(&mut answer, 16, (1 << 2) | (1 << 3) | (code << 16));
            let info = DomainInfo::decode(&answer);
            assert_eq!(info.domain, DomainId(5));
            assert_eq!(info.stopped(), Some(reason));
            assert!(info.paused() && !info.running());
        }
    }
}
