//! What a front end can get wrong, request by request and in the
//! handshake, and the blkif status each fault is answered with.

use core::fmt;

use xenolith_abi::grant_table::GrantRef;

use crate::wire::Status;

/// Why a request was refused. Each is answered on the ring (never a panic)
/// with [`RequestError::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The slot is shorter than a `blkif_request`.
    Truncated { length: usize },
    /// An operation number blkif does not define (→ `EOPNOTSUPP`).
    UnknownOperation { operation: u8 },
    /// An operation this back end did not advertise: barrier, flush without
    /// `feature-flush-cache`, discard without `feature-discard`, secure
    /// discard without `discard-secure`, indirect without
    /// `feature-max-indirect-segments` (→ `EOPNOTSUPP`).
    NotAdvertised { operation: u8 },
    /// A read or write with no segment.
    NoSegments,
    /// More segments than allowed (11 direct, or the advertised indirect
    /// maximum).
    TooManySegments { count: usize, maximum: usize },
    /// A segment with `first_sect > last_sect` or `last_sect >= 8`.
    SegmentOutOfBounds {
        index: usize,
        first_sector: u8,
        last_sector: u8,
    },
    /// An indirect request whose `indirect_op` is not READ or WRITE.
    BadIndirectOperation { operation: u8 },
    /// An indirect descriptor page could not be copied.
    BadIndirectPage { grant: GrantRef },
    /// A data page could not be copied to or from the guest.
    BadGrantRef { grant: GrantRef },
    /// The range runs past the end of the disk (or overflows).
    SectorOutOfRange {
        sector: u64,
        sectors: u64,
        disk_sectors: u64,
    },
    /// Start or length not a multiple of the disk's logical sector size.
    Misaligned {
        sector: u64,
        sectors: u64,
        sector_size: u32,
    },
    /// A write, flush with data, or discard to a read-only disk.
    ReadOnly,
}

impl RequestError {
    /// The status the response carries.
    pub const fn status(&self) -> Status {
        match self {
            Self::UnknownOperation { .. } | Self::NotAdvertised { .. } => Status::NotSupported,
            _ => Status::Error,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { length } => write!(formatter, "request of {length} bytes"),
            Self::UnknownOperation { operation } => {
                write!(formatter, "unknown operation {operation}")
            }
            Self::NotAdvertised { operation } => {
                write!(formatter, "operation {operation} not advertised")
            }
            Self::NoSegments => write!(formatter, "data request without segments"),
            Self::TooManySegments { count, maximum } => {
                write!(formatter, "{count} segments (at most {maximum})")
            }
            Self::SegmentOutOfBounds {
                index,
                first_sector,
                last_sector,
            } => write!(
                formatter,
                "segment {index} covers sectors {first_sector}..={last_sector} of a page"
            ),
            Self::BadIndirectOperation { operation } => {
                write!(formatter, "indirect operation {operation}")
            }
            Self::BadIndirectPage { grant } => {
                write!(formatter, "indirect page grant {} unusable", grant.0)
            }
            Self::BadGrantRef { grant } => write!(formatter, "grant {} unusable", grant.0),
            Self::SectorOutOfRange {
                sector,
                sectors,
                disk_sectors,
            } => write!(
                formatter,
                "sectors {sector}+{sectors} beyond a disk of {disk_sectors}"
            ),
            Self::Misaligned {
                sector,
                sectors,
                sector_size,
            } => write!(
                formatter,
                "sectors {sector}+{sectors} not aligned to {sector_size}-byte sectors"
            ),
            Self::ReadOnly => write!(formatter, "write to a read-only disk"),
        }
    }
}

/// Why the handshake or a connected ring failed. The back end writes the
/// text to `<backend>/error` and moves to Closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// A required front-end key is missing or not a number.
    BadFrontendKey { key: &'static str },
    /// `ring-page-order` above what was advertised.
    RingOrderTooLarge { order: u32, maximum: u32 },
    /// `multi-queue-num-queues` of 0 or above what was advertised.
    BadQueueCount { queues: u32, maximum: u32 },
    /// A protocol other than `x86_64-abi` (the 32-bit layout is refused).
    UnsupportedProtocol,
    /// The ring pages could not be mapped.
    RingMapFailed { grant: GrantRef },
    /// The event channel could not be bound.
    EventChannelBindFailed,
    /// The ring's indices were already out of range, or went out of range
    /// while connected: potential malicious front end.
    RingFault(xen_ring::RingError),
    /// The back end's configuration is unusable.
    BadConfiguration(&'static str),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadFrontendKey { key } => write!(formatter, "reading {key}"),
            Self::RingOrderTooLarge { order, maximum } => {
                write!(formatter, "ring-page-order {order} above {maximum}")
            }
            Self::BadQueueCount { queues, maximum } => {
                write!(formatter, "{queues} queues requested, at most {maximum}")
            }
            Self::UnsupportedProtocol => write!(formatter, "unsupported protocol"),
            Self::RingMapFailed { grant } => write!(formatter, "mapping ring grant {}", grant.0),
            Self::EventChannelBindFailed => write!(formatter, "binding event channel"),
            Self::RingFault(error) => write!(formatter, "{error}"),
            Self::BadConfiguration(what) => write!(formatter, "configuration: {what}"),
        }
    }
}
