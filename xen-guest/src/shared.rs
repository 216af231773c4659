//! Views of the pages the hypervisor shares with a guest: shared_info
//! (the 2-level event bitmaps, the legacy vcpu_info slots, the wallclock)
//! and a vcpu_info (upcall flag, pending selector, pvclock). Every access
//! is atomic or volatile through a [`FrameSlot`].

use core::sync::atomic::{Ordering, fence};

use xenolith_abi::event_channel::{BITS_PER_WORD, MAX_PORTS_2_LEVEL, layout};

use crate::error::XenError;
use crate::memory::{self, MapSpace};
use crate::raw::{self, FrameSlot};
use crate::time::{self, VcpuTime, Wallclock};
use crate::types::{Port, SystemTime, VcpuId};

/// Size of `struct vcpu_info`.
pub const VCPU_INFO_SIZE: usize = layout::VCPU_INFO_SIZE as usize;
/// `vcpu_info.time`: the pvclock record.
const VCPU_INFO_TIME: usize = 32;
const UPCALL_PENDING: usize = layout::VCPU_INFO_UPCALL_PENDING as usize;
const PENDING_SELECTOR: usize = layout::VCPU_INFO_PENDING_SEL as usize;
const EVTCHN_PENDING: usize = layout::SHARED_INFO_EVTCHN_PENDING as usize;
const EVTCHN_MASK: usize = layout::SHARED_INFO_EVTCHN_MASK as usize;
const WC_VERSION: usize = 3072;
const WC_SEC: usize = 3076;
const WC_NSEC: usize = 3080;
const WC_SEC_HI: usize = 3084;

/// How often a reader retries a record the hypervisor is rewriting.
const CONSISTENT_READ_TRIES: usize = 64;

/// Where port `port`'s bit lives in a 2-level bitmap: the byte offset of
/// its 64-bit word from the bitmap's start, and the bit mask. `None` for
/// ports the 2-level ABI cannot address.
pub const fn bit_location(port: Port) -> Option<(usize, u64)> {
    if port.0 >= MAX_PORTS_2_LEVEL {
        return None;
    }
    Some((port.word() as usize * 8, 1 << port.bit()))
}

/// The selector bit (in `evtchn_pending_sel`) that covers `port`.
pub const fn selector_bit(port: Port) -> u64 {
    1 << (port.0 / BITS_PER_WORD % 64)
}

/// The shared_info page, once mapped at a slot.
#[derive(Clone, Copy, Debug)]
pub struct SharedInfo {
    slot: FrameSlot,
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info, 0)` at `slot`.
pub fn map_shared_info(slot: FrameSlot) -> Result<SharedInfo, XenError> {
    memory::add_to_physmap(MapSpace::SHARED_INFO, 0, &slot)?;
    Ok(SharedInfo::new(slot))
}

impl SharedInfo {
    /// A view of `slot`, which holds shared_info.
    pub const fn new(slot: FrameSlot) -> Self {
        Self { slot }
    }

    pub const fn slot(&self) -> FrameSlot {
        self.slot
    }

    /// The legacy vcpu_info slot of `vcpu` (only vCPUs 0..32 have one).
    pub fn vcpu_info(&self, vcpu: VcpuId) -> Option<VcpuInfo> {
        (vcpu.0 < layout::LEGACY_MAX_VCPUS)
            .then(|| VcpuInfo::new(self.slot, vcpu.0 as usize * VCPU_INFO_SIZE))
    }

    fn bit(&self, bitmap: usize, port: Port) -> Option<(&core::sync::atomic::AtomicU64, u64)> {
        let (offset, mask) = bit_location(port)?;
        Some((self.slot.atomic_u64(bitmap + offset)?, mask))
    }

    /// Whether `port` is pending.
    pub fn is_pending(&self, port: Port) -> bool {
        self.bit(EVTCHN_PENDING, port)
            .is_some_and(|(word, mask)| word.load(Ordering::Acquire) & mask != 0)
    }

    /// Clears `port`'s pending bit; returns whether it was set.
    pub fn clear_pending(&self, port: Port) -> bool {
        self.bit(EVTCHN_PENDING, port)
            .is_some_and(|(word, mask)| word.fetch_and(!mask, Ordering::AcqRel) & mask != 0)
    }

    /// Whether `port` is masked.
    pub fn is_masked(&self, port: Port) -> bool {
        self.bit(EVTCHN_MASK, port)
            .is_some_and(|(word, mask)| word.load(Ordering::Acquire) & mask != 0)
    }

    /// Sets `port`'s mask bit; returns whether it was already set.
    pub fn mask(&self, port: Port) -> bool {
        self.bit(EVTCHN_MASK, port)
            .is_some_and(|(word, mask)| word.fetch_or(mask, Ordering::AcqRel) & mask != 0)
    }

    /// Clears `port`'s mask bit in shared memory only (an event that is
    /// already pending is not re-raised: use `EVTCHNOP_unmask` for that).
    pub fn clear_mask(&self, port: Port) -> bool {
        self.bit(EVTCHN_MASK, port)
            .is_some_and(|(word, mask)| word.fetch_and(!mask, Ordering::AcqRel) & mask != 0)
    }

    /// The wallclock, read with its version protocol.
    pub fn wallclock(&self) -> Option<Wallclock> {
        for _ in 0..CONSISTENT_READ_TRIES {
            let version: u32 = self.slot.load(WC_VERSION)?;
            if version & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            fence(Ordering::Acquire);
            let low: u32 = self.slot.load(WC_SEC)?;
            let nanoseconds: u32 = self.slot.load(WC_NSEC)?;
            let high: u32 = self.slot.load(WC_SEC_HI)?;
            fence(Ordering::Acquire);
            if self.slot.load::<u32>(WC_VERSION)? == version {
                return Some(Wallclock {
                    version,
                    seconds: u64::from(high) << 32 | u64::from(low),
                    nanoseconds,
                });
            }
        }
        None
    }
}

/// A vcpu_info: a legacy slot in shared_info, or where
/// `VCPUOP_register_vcpu_info` put it.
#[derive(Clone, Copy, Debug)]
pub struct VcpuInfo {
    slot: FrameSlot,
    offset: usize,
}

impl VcpuInfo {
    /// The 64 bytes at `offset` in `slot` (must fit the page; accessors
    /// return `None`/false otherwise).
    pub const fn new(slot: FrameSlot, offset: usize) -> Self {
        Self { slot, offset }
    }

    /// Whether `evtchn_upcall_pending` is set.
    pub fn upcall_pending(&self) -> bool {
        self.slot
            .atomic_u8(self.offset + UPCALL_PENDING)
            .is_some_and(|flag| flag.load(Ordering::Acquire) != 0)
    }

    /// Clears `evtchn_upcall_pending`.
    pub fn clear_upcall_pending(&self) {
        if let Some(flag) = self.slot.atomic_u8(self.offset + UPCALL_PENDING) {
            flag.store(0, Ordering::Release);
        }
    }

    /// `evtchn_pending_sel` as it is now.
    pub fn pending_selector(&self) -> u64 {
        self.slot
            .atomic_u64(self.offset + PENDING_SELECTOR)
            .map_or(0, |word| word.load(Ordering::Acquire))
    }

    /// Swaps `evtchn_pending_sel` with 0, as an upcall handler does.
    pub fn take_pending_selector(&self) -> u64 {
        self.slot
            .atomic_u64(self.offset + PENDING_SELECTOR)
            .map_or(0, |word| word.swap(0, Ordering::AcqRel))
    }

    /// The pvclock record, read with its version protocol.
    pub fn time(&self) -> Option<VcpuTime> {
        let base = self.offset + VCPU_INFO_TIME;
        for _ in 0..CONSISTENT_READ_TRIES {
            let version: u32 = self.slot.load(base + time::layout::VERSION)?;
            if version & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            fence(Ordering::Acquire);
            let record = VcpuTime {
                version,
                tsc_timestamp: self.slot.load(base + time::layout::TSC_TIMESTAMP)?,
                system_time: self.slot.load(base + time::layout::SYSTEM_TIME)?,
                tsc_to_system_mul: self.slot.load(base + time::layout::TSC_TO_SYSTEM_MUL)?,
                tsc_shift: self.slot.load::<u8>(base + time::layout::TSC_SHIFT)? as i8,
                flags: self.slot.load(base + time::layout::FLAGS)?,
            };
            fence(Ordering::Acquire);
            if self.slot.load::<u32>(base + time::layout::VERSION)? == version {
                return Some(record);
            }
        }
        None
    }

    /// System time now, from the record and the TSC.
    pub fn now(&self) -> Option<SystemTime> {
        self.time()
            .map(|record| record.system_time_at(raw::rdtsc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_words_and_bits() {
        assert_eq!(bit_location(Port(0)), Some((0, 1)));
        assert_eq!(bit_location(Port(65)), Some((8, 2)));
        assert_eq!(bit_location(Port(4095)), Some((504, 1 << 63)));
        assert_eq!(bit_location(Port(4096)), None);
        assert_eq!(bit_location(Port(1_000_000)), None);
        assert_eq!(selector_bit(Port(3)), 1);
        assert_eq!(selector_bit(Port(130)), 4);
    }

    #[test]
    fn bitmap_operations_touch_one_bit() {
        let slot = raw::test_page();
        let shared = SharedInfo::new(slot);
        assert!(!shared.is_pending(Port(70)));
        assert!(!shared.mask(Port(70)));
        assert!(shared.is_masked(Port(70)));
        assert_eq!(slot.load::<u64>(EVTCHN_MASK + 8), Some(1 << 6));
        assert!(shared.clear_mask(Port(70)));
        assert!(!shared.is_masked(Port(70)));
        slot.store::<u64>(EVTCHN_PENDING + 8, 1 << 6 | 1);
        assert!(shared.is_pending(Port(70)));
        assert!(shared.clear_pending(Port(70)));
        assert!(!shared.clear_pending(Port(70)));
        assert!(shared.is_pending(Port(64)));
        assert!(!shared.is_pending(Port(5000)));
        assert!(!shared.clear_pending(Port(5000)));
    }

    #[test]
    fn records_are_read_whole() {
        let slot = raw::test_page();
        slot.store::<u32>(WC_VERSION, 4);
        slot.store::<u32>(WC_SEC, 7);
        slot.store::<u32>(WC_NSEC, 9);
        slot.store::<u32>(WC_SEC_HI, 1);
        let wallclock = SharedInfo::new(slot).wallclock().unwrap();
        assert_eq!(wallclock.seconds, (1 << 32) | 7);
        assert_eq!(wallclock.nanoseconds, 9);

        let vcpu = SharedInfo::new(slot).vcpu_info(VcpuId(1)).unwrap();
        let base = VCPU_INFO_SIZE + VCPU_INFO_TIME;
        slot.store::<u32>(base, 6);
        slot.store::<u64>(base + 16, 123);
        slot.store::<u32>(base + 24, 1 << 31);
        slot.store::<u8>(base + 28, 0xff);
        let record = vcpu.time().unwrap();
        assert_eq!(record.system_time, 123);
        assert_eq!(record.tsc_shift, -1);
        // A record being rewritten (odd version) is never returned.
        slot.store::<u32>(base, 7);
        assert_eq!(vcpu.time(), None);
        assert!(SharedInfo::new(slot).vcpu_info(VcpuId(32)).is_none());
    }

    #[test]
    fn vcpu_info_flags_and_selector() {
        let slot = raw::test_page();
        let vcpu = VcpuInfo::new(slot, 192);
        slot.store::<u8>(192, 1);
        slot.store::<u64>(200, 0b101);
        assert!(vcpu.upcall_pending());
        assert_eq!(vcpu.take_pending_selector(), 0b101);
        assert_eq!(vcpu.pending_selector(), 0);
        vcpu.clear_upcall_pending();
        assert!(!vcpu.upcall_pending());
        // A view that does not fit the page reads as empty.
        assert!(!VcpuInfo::new(slot, 4090).upcall_pending());
    }
}
