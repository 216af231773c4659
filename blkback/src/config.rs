//! What Dom0 tells the back end about the disk and the limits it offers
//! the front end.

use alloc::string::String;

use xenolith_abi::domain::DomainId;

use crate::error::ConnectError;
use crate::wire::{MAX_DIRECT_SEGMENTS, MAX_INDIRECT_PAGES, SEGMENTS_PER_INDIRECT_PAGE};

/// Discard support (`feature-discard` and its companions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscardInfo {
    /// `discard-granularity`, bytes.
    pub granularity: u32,
    /// `discard-alignment`, bytes.
    pub alignment: u32,
    /// `discard-secure`: secure erase available.
    pub secure: bool,
}

/// The disk as the front end should see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in 512-byte sectors (`sectors`).
    pub sectors: u64,
    /// Logical sector size in bytes (`sector-size`): 512 to 4096, a power of two.
    pub sector_size: u32,
    /// Physical sector size (`physical-sector-size`), at least `sector_size`.
    pub physical_sector_size: u32,
    /// `VDISK_READONLY`: writes, flushes and discards are refused.
    pub read_only: bool,
    /// `VDISK_REMOVABLE`.
    pub removable: bool,
    /// The device has a volatile cache that [`crate::DeviceOperation::Flush`]
    /// empties (`feature-flush-cache`). Only offered on writable disks.
    pub flush: bool,
    /// Discard support. Only offered on writable disks.
    pub discard: Option<DiscardInfo>,
}

impl DiskInfo {
    /// The `info` key: `VDISK_*` bits.
    pub const fn info_flags(&self) -> u32 {
        (if self.removable { 2 } else { 0 }) | (if self.read_only { 4 } else { 0 })
    }

    /// Whether flushes are offered.
    pub const fn offers_flush(&self) -> bool {
        self.flush && !self.read_only
    }

    /// The discard support offered.
    pub const fn offered_discard(&self) -> Option<DiscardInfo> {
        if self.read_only { None } else { self.discard }
    }
}

/// One back end's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The front end's domain.
    pub frontend_domain: DomainId,
    /// `/local/domain/<guest>/device/vbd/<devid>`.
    pub frontend_path: String,
    /// `/local/domain/0/backend/vbd/<guest>/<devid>`.
    pub backend_path: String,
    /// The disk.
    pub disk: DiskInfo,
    /// `max-ring-page-order`: 0 to 4.
    pub max_ring_page_order: u32,
    /// `multi-queue-max-queues`: 1 to 16 (1: the key is not written).
    pub max_queues: u32,
    /// `feature-max-indirect-segments`: 0 (no indirect) or 12 to 4096.
    pub max_indirect_segments: usize,
    /// Requests in flight at once across all queues (at least 1): the cap
    /// on buffer memory is this times the largest request.
    pub queue_depth: usize,
}

impl Config {
    /// Defaults for a disk: order-4 rings, 4 queues, 32 indirect segments
    /// (blkfront's own default), 64 requests in flight.
    pub fn new(
        frontend_domain: DomainId,
        frontend_path: String,
        backend_path: String,
        disk: DiskInfo,
    ) -> Self {
        Self {
            frontend_domain,
            frontend_path,
            backend_path,
            disk,
            max_ring_page_order: 4,
            max_queues: 4,
            max_indirect_segments: 32,
            queue_depth: 64,
        }
    }

    /// Refuses settings the protocol cannot express.
    pub fn validate(&self) -> Result<(), ConnectError> {
        let disk = &self.disk;
        if !(512..=4096).contains(&disk.sector_size) || !disk.sector_size.is_power_of_two() {
            return Err(ConnectError::BadConfiguration("sector-size"));
        }
        if disk.physical_sector_size < disk.sector_size
            || !disk.physical_sector_size.is_power_of_two()
        {
            return Err(ConnectError::BadConfiguration("physical-sector-size"));
        }
        if self.max_ring_page_order > 4 {
            return Err(ConnectError::BadConfiguration("max-ring-page-order"));
        }
        if !(1..=16).contains(&self.max_queues) {
            return Err(ConnectError::BadConfiguration("multi-queue-max-queues"));
        }
        let most = MAX_INDIRECT_PAGES * SEGMENTS_PER_INDIRECT_PAGE;
        if self.max_indirect_segments != 0
            && !(MAX_DIRECT_SEGMENTS + 1..=most).contains(&self.max_indirect_segments)
        {
            return Err(ConnectError::BadConfiguration(
                "feature-max-indirect-segments",
            ));
        }
        if self.queue_depth == 0 {
            return Err(ConnectError::BadConfiguration("queue depth"));
        }
        Ok(())
    }
}
