//! Newtypes for the addresses, frames, ids and times that cross the guest
//! ABI, so no bare integer leaves a module.

pub use xenolith_abi::domain::DomainId;
pub use xenolith_abi::event_channel::{Port, VcpuId, Virq};

/// Bytes in a guest page (x86 small page).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestPhysAddr(pub u64);

/// A guest frame number (`xen_pfn_t` for an auto-translated guest): a
/// guest-physical address shifted right by 12.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestFrame(pub u64);

impl GuestFrame {
    /// The frame holding `address`.
    pub const fn containing(address: GuestPhysAddr) -> Self {
        Self(address.0 >> PAGE_SHIFT)
    }

    /// The first address of the frame.
    pub const fn address(self) -> GuestPhysAddr {
        GuestPhysAddr(self.0 << PAGE_SHIFT)
    }
}

/// A grant reference: an index into the granting domain's grant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GrantRef(pub u32);

/// The handle `GNTTABOP_map_grant_ref` returns, needed to unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GrantHandle(pub u32);

/// Hypervisor system time: nanoseconds since an arbitrary epoch (usually
/// the hypervisor's boot), as `vcpu_time_info` publishes it and as timers
/// and `SCHEDOP_poll` timeouts expect it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SystemTime(pub u64);

impl SystemTime {
    /// The raw nanosecond count.
    pub const fn nanoseconds(self) -> u64 {
        self.0
    }

    /// This time plus `nanoseconds`, saturating.
    pub const fn after(self, nanoseconds: u64) -> Self {
        Self(self.0.saturating_add(nanoseconds))
    }

    /// This time minus `nanoseconds`, saturating at 0.
    pub const fn before(self, nanoseconds: u64) -> Self {
        Self(self.0.saturating_sub(nanoseconds))
    }

    /// Nanoseconds from `earlier` to this time (0 if `earlier` is later).
    pub const fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_addresses_convert() {
        assert_eq!(
            GuestFrame::containing(GuestPhysAddr(0x8000_0fff)),
            GuestFrame(0x80000)
        );
        assert_eq!(GuestFrame(0x100).address(), GuestPhysAddr(0x10_0000));
    }

    #[test]
    fn system_time_saturates() {
        assert_eq!(SystemTime(5).before(10), SystemTime(0));
        assert_eq!(SystemTime(u64::MAX).after(1), SystemTime(u64::MAX));
        assert_eq!(SystemTime(10).since(SystemTime(4)), 6);
        assert_eq!(SystemTime(4).since(SystemTime(10)), 0);
    }
}
