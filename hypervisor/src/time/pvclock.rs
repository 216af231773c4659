//! `vcpu_time_info`: its 32-byte layout, the odd/even version protocol a
//! writer follows, and the Linux reader (`pvclock_clocksource_read`).
//!
//! The same protocol guards the wallclock (`wc_version`), so [`publish`]
//! works on any record whose first four bytes are a version counter.

use super::TimeScale;

/// `XEN_PVCLOCK_TSC_STABLE_BIT`: the TSC is synchronised across vCPUs, so
/// Linux may skip its global monotonic clamp.
pub const TSC_STABLE: u8 = 1 << 0;
/// `PVCLOCK_GUEST_STOPPED`: the guest was paused by the host; Linux's
/// watchdogs ignore the gap.
pub const GUEST_STOPPED: u8 = 1 << 1;

/// Xen's `version_update_begin`: the (odd) version to store before
/// changing the fields. ORing in 1 keeps it odd even if the stored version
/// was odd already (a torn earlier update).
pub const fn version_update_begin(version: u32) -> u32 {
    version.wrapping_add(1) | 1
}

/// Xen's `version_update_end`: the (even) version to store after the
/// fields, given the odd one [`version_update_begin`] returned.
pub const fn version_update_end(version: u32) -> u32 {
    version.wrapping_add(1)
}

/// One `vcpu_time_info` (`xen/include/public/xen.h`), 32 bytes at
/// `vcpu_info + 32`.
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 4 | version |
/// | 4 | 4 | pad0 |
/// | 8 | 8 | tsc_timestamp |
/// | 16 | 8 | system_time |
/// | 24 | 4 | tsc_to_system_mul |
/// | 28 | 1 | tsc_shift (signed) |
/// | 29 | 1 | flags |
/// | 30 | 2 | pad |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Odd while an update is in flight.
    pub version: u32,
    /// The guest-visible TSC value at which `system_time` was sampled.
    pub tsc_timestamp: u64,
    /// Xen system time, in nanoseconds, at `tsc_timestamp`.
    pub system_time: u64,
    /// See [`TimeScale::mul`].
    pub tsc_to_system_mul: u32,
    /// See [`TimeScale::shift`].
    pub tsc_shift: i8,
    /// [`TSC_STABLE`], [`GUEST_STOPPED`].
    pub flags: u8,
}

impl VcpuTimeInfo {
    /// Size of the record in guest memory.
    pub const SIZE: usize = 32;

    /// The bytes as they sit in guest memory, `self.version` included and
    /// padding zero.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..4].copy_from_slice(&self.version.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.system_time.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.tsc_to_system_mul.to_le_bytes());
        bytes[28] = self.tsc_shift.to_le_bytes()[0];
        bytes[29] = self.flags;
        bytes
    }

    /// The record from its guest-memory bytes. Every bit pattern is a
    /// valid record, so this cannot fail.
    pub fn decode(bytes: &[u8; Self::SIZE]) -> Self {
        let u32_at = |offset: usize| {
            u32::from_le_bytes([
                bytes[offset],
                bytes[offset + 1],
                bytes[offset + 2],
                bytes[offset + 3],
            ])
        };
        let u64_at =
            |offset: usize| u64::from(u32_at(offset)) | u64::from(u32_at(offset + 4)) << 32;
        Self {
            version: u32_at(0),
            tsc_timestamp: u64_at(8),
            system_time: u64_at(16),
            tsc_to_system_mul: u32_at(24),
            tsc_shift: i8::from_le_bytes([bytes[28]]),
            flags: bytes[29],
        }
    }

    /// The scale this record carries.
    pub const fn scale(&self) -> TimeScale {
        TimeScale {
            mul: self.tsc_to_system_mul,
            shift: self.tsc_shift,
        }
    }

    /// System time at guest TSC value `tsc`, by Linux's formula:
    /// `system_time + scale(tsc - tsc_timestamp)`. The subtraction wraps,
    /// as in Linux.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        self.system_time
            .wrapping_add(self.scale().ticks_to_ns(delta))
    }
}

/// A guest-visible record guarded by a 32-bit version at offset 0, as the
/// hypervisor writes it: `vcpu_time_info` (fields at offsets 4..32) or the
/// wallclock (`wc_version` then `wc_sec`, `wc_nsec`, `wc_sec_hi`).
///
/// Each call must be performed as stores the guest can observe (atomics or
/// volatile copies, never `&mut` into guest memory), and must become visible
/// after every store of the calls before it. On x86 stores are not
/// reordered with other stores, so a compiler fence (or `Release` stores)
/// between calls is the `smp_wmb()` Xen uses.
pub trait VersionedWriter {
    /// The version currently stored.
    fn version(&self) -> u32;
    /// Stores `version` at offset 0 (one 32-bit store).
    fn write_version(&mut self, version: u32);
    /// Stores `fields`, the record's bytes from offset 4 on.
    fn write_fields(&mut self, fields: &[u8]);
}

/// Publishes a new record, in Xen's order:
///
/// 1. version ← `version_update_begin(old)` (odd: readers will retry);
/// 2. the fields (bytes 4.. of the record; `record[0..4]` is ignored);
/// 3. version ← `version_update_end` (even again).
///
/// Returns the final (even) version.
pub fn publish<W: VersionedWriter + ?Sized>(area: &mut W, record: &[u8]) -> u32 {
    let begin = version_update_begin(area.version());
    area.write_version(begin);
    area.write_fields(record.get(4..).unwrap_or(&[]));
    let end = version_update_end(begin);
    area.write_version(end);
    end
}

/// The guest's side of [`VersionedWriter`]: loads it can make while the
/// hypervisor may be writing.
pub trait VersionedReader {
    /// Loads the version at offset 0.
    fn load_version(&mut self) -> u32;
    /// Loads bytes 4..32 of `vcpu_time_info` into `fields`.
    fn load_fields(&mut self, fields: &mut [u8; VcpuTimeInfo::SIZE - 4]);
}

/// System time at guest TSC `tsc`, read the way Linux's
/// `pvclock_clocksource_read` reads it: take the version with bit 0
/// cleared, load the fields, and retry if the version is now different
/// (which it is while the writer holds it odd). Gives up after `attempts`
/// tries, returning `None`.
pub fn read_system_time<R: VersionedReader + ?Sized>(
    source: &mut R,
    tsc: u64,
    attempts: usize,
) -> Option<u64> {
    for _ in 0..attempts {
        let version = source.load_version() & !1;
        let mut fields = [0u8; VcpuTimeInfo::SIZE - 4];
        source.load_fields(&mut fields);
        if source.load_version() != version {
            continue;
        }
        let mut bytes = [0u8; VcpuTimeInfo::SIZE];
        bytes[4..].copy_from_slice(&fields);
        return Some(VcpuTimeInfo::decode(&bytes).system_time_at(tsc));
    }
    None
}
