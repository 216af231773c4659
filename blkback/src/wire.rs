//! blkif wire format (`io/blkif.h`, x86_64 layout): constants, the
//! two-step request parser (a bounds-checked view, then a validated
//! [`Request`]) and response encoding.

use alloc::vec::Vec;

use xenolith_abi::grant_table::GrantRef;

use crate::error::RequestError;

/// Bytes of one `blkif_request` (and of a ring slot).
pub const REQUEST_SIZE: usize = 112;
/// Bytes of one `blkif_response`.
pub const RESPONSE_SIZE: usize = 16;
/// Bytes of a granted page.
pub const PAGE_SIZE: usize = 4096;
/// Protocol sector: 512 bytes whatever the disk's `sector-size` says.
pub const SECTOR_SIZE: u64 = 512;
/// Protocol sectors in one page: a segment's `last_sect` is below this.
pub const SECTORS_PER_PAGE: u8 = 8;
/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in a direct request.
pub const MAX_DIRECT_SEGMENTS: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const MAX_INDIRECT_PAGES: usize = 8;
/// 8-byte segment descriptors in one indirect page.
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = PAGE_SIZE / SEGMENT_SIZE;
/// Bytes of one `blkif_request_segment`.
pub const SEGMENT_SIZE: usize = 8;

/// `BLKIF_OP_*`.
pub mod operation {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const WRITE_BARRIER: u8 = 2;
    pub const FLUSH_DISKCACHE: u8 = 3;
    pub const DISCARD: u8 = 5;
    pub const INDIRECT: u8 = 6;
}

/// `BLKIF_DISCARD_SECURE`, bit 0 of a discard's `flag` byte.
pub const DISCARD_SECURE: u8 = 1;

/// Offsets in a request slot.
mod offsets {
    pub const OPERATION: usize = 0;
    pub const NR_SEGMENTS: usize = 1;
    pub const ID: usize = 8;
    pub const SECTOR: usize = 16;
    pub const SEGMENTS: usize = 24;
    pub const DISCARD_FLAG: usize = 1;
    pub const DISCARD_SECTORS: usize = 24;
    pub const INDIRECT_OPERATION: usize = 1;
    pub const INDIRECT_NR_SEGMENTS: usize = 2;
    pub const INDIRECT_GREFS: usize = 28;
}

/// A response's `status` (`BLKIF_RSP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `BLKIF_RSP_OKAY` (0).
    Okay,
    /// `BLKIF_RSP_ERROR` (−1).
    Error,
    /// `BLKIF_RSP_EOPNOTSUPP` (−2).
    NotSupported,
}

impl Status {
    /// The value written on the ring.
    pub const fn as_raw(self) -> i16 {
        match self {
            Self::Okay => 0,
            Self::Error => -1,
            Self::NotSupported => -2,
        }
    }

    /// Decodes a status (for fakes and tests).
    pub const fn from_raw(raw: i16) -> Option<Self> {
        match raw {
            0 => Some(Self::Okay),
            -1 => Some(Self::Error),
            -2 => Some(Self::NotSupported),
            _ => None,
        }
    }
}

/// Encodes a `blkif_response`: id @0, operation @8, status @10.
pub fn encode_response(id: u64, operation: u8, status: Status) -> [u8; RESPONSE_SIZE] {
    let mut bytes = [0; RESPONSE_SIZE];
    bytes[0..8].copy_from_slice(&id.to_le_bytes());
    bytes[8] = operation;
    bytes[10..12].copy_from_slice(&status.as_raw().to_le_bytes());
    bytes
}

/// Step one of parsing: a request slot known to be long enough, with
/// accessors for its raw fields. Nothing here is validated yet.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    bytes: &'a [u8; REQUEST_SIZE],
}

impl<'a> RequestView<'a> {
    /// Checks the length (a short slot is a [`RequestError::Truncated`]).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, RequestError> {
        bytes
            .get(..REQUEST_SIZE)
            .and_then(|slice| slice.try_into().ok())
            .map(|bytes| Self { bytes })
            .ok_or(RequestError::Truncated {
                length: bytes.len(),
            })
    }

    fn u8_at(&self, offset: usize) -> u8 {
        self.bytes.get(offset).copied().unwrap_or(0)
    }

    fn u16_at(&self, offset: usize) -> u16 {
        let mut raw = [0; 2];
        if let Some(slice) = self.bytes.get(offset..offset + 2) {
            raw.copy_from_slice(slice);
        }
        u16::from_le_bytes(raw)
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let mut raw = [0; 4];
        if let Some(slice) = self.bytes.get(offset..offset + 4) {
            raw.copy_from_slice(slice);
        }
        u32::from_le_bytes(raw)
    }

    fn u64_at(&self, offset: usize) -> u64 {
        let mut raw = [0; 8];
        if let Some(slice) = self.bytes.get(offset..offset + 8) {
            raw.copy_from_slice(slice);
        }
        u64::from_le_bytes(raw)
    }

    /// `operation`.
    pub fn operation(&self) -> u8 {
        self.u8_at(offsets::OPERATION)
    }

    /// `id`, at offset 8 for every operation in the x86_64 ABI.
    pub fn id(&self) -> u64 {
        self.u64_at(offsets::ID)
    }

    /// The operation a response must carry: the request's own, except that
    /// an indirect request is answered with its inner operation (as Linux's
    /// blkback does and blkfront checks).
    pub fn response_operation(&self) -> u8 {
        match self.operation() {
            operation::INDIRECT => self.u8_at(offsets::INDIRECT_OPERATION),
            other => other,
        }
    }

    /// `sector_number`.
    pub fn sector(&self) -> u64 {
        self.u64_at(offsets::SECTOR)
    }

    /// `nr_segments` of a direct request.
    pub fn segment_count(&self) -> usize {
        usize::from(self.u8_at(offsets::NR_SEGMENTS))
    }

    /// The raw 8 bytes of direct segment `index` (0..11).
    pub fn segment(&self, index: usize) -> Option<[u8; SEGMENT_SIZE]> {
        if index >= MAX_DIRECT_SEGMENTS {
            return None;
        }
        let start = offsets::SEGMENTS + index * SEGMENT_SIZE;
        self.bytes
            .get(start..start + SEGMENT_SIZE)
            .and_then(|slice| slice.try_into().ok())
    }

    /// A discard's `flag`.
    pub fn discard_flag(&self) -> u8 {
        self.u8_at(offsets::DISCARD_FLAG)
    }

    /// A discard's `nr_sectors`.
    pub fn discard_sectors(&self) -> u64 {
        self.u64_at(offsets::DISCARD_SECTORS)
    }

    /// An indirect request's `indirect_op`.
    pub fn indirect_operation(&self) -> u8 {
        self.u8_at(offsets::INDIRECT_OPERATION)
    }

    /// An indirect request's `nr_segments` (u16).
    pub fn indirect_segment_count(&self) -> usize {
        usize::from(self.u16_at(offsets::INDIRECT_NR_SEGMENTS))
    }

    /// An indirect request's `indirect_grefs[index]` (0..8).
    pub fn indirect_page(&self, index: usize) -> Option<GrantRef> {
        (index < MAX_INDIRECT_PAGES)
            .then(|| GrantRef(self.u32_at(offsets::INDIRECT_GREFS + index * 4)))
    }
}

/// A validated segment: sectors `first..=last` of one granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The page.
    pub grant: GrantRef,
    /// First 512-byte sector used in the page.
    pub first_sector: u8,
    /// Last sector used (inclusive), at least `first_sector`, below 8.
    pub last_sector: u8,
}

impl Segment {
    /// Validates a `blkif_request_segment`: `first_sect <= last_sect < 8`.
    pub fn parse(index: usize, raw: [u8; SEGMENT_SIZE]) -> Result<Self, RequestError> {
        let grant = GrantRef(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]));
        let (first_sector, last_sector) = (raw[4], raw[5]);
        if first_sector > last_sector || last_sector >= SECTORS_PER_PAGE {
            return Err(RequestError::SegmentOutOfBounds {
                index,
                first_sector,
                last_sector,
            });
        }
        Ok(Self {
            grant,
            first_sector,
            last_sector,
        })
    }

    /// Sectors covered (1 to 8).
    pub const fn sectors(&self) -> u64 {
        (self.last_sector - self.first_sector) as u64 + 1
    }

    /// Byte offset in the page.
    pub const fn offset(&self) -> usize {
        self.first_sector as usize * SECTOR_SIZE as usize
    }

    /// Bytes covered.
    pub const fn length(&self) -> usize {
        self.sectors() as usize * SECTOR_SIZE as usize
    }
}

/// Direction of a data transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Disk to guest.
    Read,
    /// Guest to disk.
    Write,
}

/// Step two: a request whose fields are individually valid. Checks that
/// need the disk (range, read-only, alignment) and the indirect pages'
/// contents come after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `READ`/`WRITE` with 1 to 11 inline segments.
    ReadWrite {
        id: u64,
        direction: Direction,
        sector: u64,
        segments: Vec<Segment>,
    },
    /// `FLUSH_DISKCACHE`: a pure flush (no segments) or a write that must
    /// be durable before its response (Linux's FUA and pre-flush writes).
    Flush {
        id: u64,
        sector: u64,
        segments: Vec<Segment>,
    },
    /// `WRITE_BARRIER`.
    Barrier { id: u64 },
    /// `DISCARD` of `sectors` sectors from `sector`.
    Discard {
        id: u64,
        sector: u64,
        sectors: u64,
        secure: bool,
    },
    /// `INDIRECT`: `segment_count` descriptors in the first
    /// `ceil(segment_count / 512)` of `pages`.
    Indirect {
        id: u64,
        direction: Direction,
        sector: u64,
        segment_count: usize,
        pages: Vec<GrantRef>,
    },
}

impl Request {
    /// Validates the fields a request carries on its own.
    /// `max_indirect_segments` is what the back end advertised (0: none).
    pub fn parse(
        view: &RequestView<'_>,
        max_indirect_segments: usize,
    ) -> Result<Self, RequestError> {
        let id = view.id();
        match view.operation() {
            operation::READ | operation::WRITE => {
                let direction = if view.operation() == operation::READ {
                    Direction::Read
                } else {
                    Direction::Write
                };
                let segments = direct_segments(view)?;
                if segments.is_empty() {
                    return Err(RequestError::NoSegments);
                }
                Ok(Self::ReadWrite {
                    id,
                    direction,
                    sector: view.sector(),
                    segments,
                })
            }
            operation::FLUSH_DISKCACHE => Ok(Self::Flush {
                id,
                sector: view.sector(),
                segments: direct_segments(view)?,
            }),
            operation::WRITE_BARRIER => Ok(Self::Barrier { id }),
            operation::DISCARD => Ok(Self::Discard {
                id,
                sector: view.sector(),
                sectors: view.discard_sectors(),
                secure: view.discard_flag() & DISCARD_SECURE != 0,
            }),
            operation::INDIRECT => {
                if max_indirect_segments == 0 {
                    return Err(RequestError::NotAdvertised {
                        operation: operation::INDIRECT,
                    });
                }
                let direction = match view.indirect_operation() {
                    operation::READ => Direction::Read,
                    operation::WRITE => Direction::Write,
                    other => return Err(RequestError::BadIndirectOperation { operation: other }),
                };
                let segment_count = view.indirect_segment_count();
                if segment_count == 0 {
                    return Err(RequestError::NoSegments);
                }
                if segment_count > max_indirect_segments {
                    return Err(RequestError::TooManySegments {
                        count: segment_count,
                        maximum: max_indirect_segments,
                    });
                }
                let page_count = segment_count.div_ceil(SEGMENTS_PER_INDIRECT_PAGE);
                let pages = (0..page_count)
                    .filter_map(|index| view.indirect_page(index))
                    .collect();
                Ok(Self::Indirect {
                    id,
                    direction,
                    sector: view.sector(),
                    segment_count,
                    pages,
                })
            }
            other => Err(RequestError::UnknownOperation { operation: other }),
        }
    }
}

fn direct_segments(view: &RequestView<'_>) -> Result<Vec<Segment>, RequestError> {
    let count = view.segment_count();
    if count > MAX_DIRECT_SEGMENTS {
        return Err(RequestError::TooManySegments {
            count,
            maximum: MAX_DIRECT_SEGMENTS,
        });
    }
    let mut segments = Vec::with_capacity(count);
    for index in 0..count {
        let raw = view.segment(index).ok_or(RequestError::Truncated {
            length: REQUEST_SIZE,
        })?;
        segments.push(Segment::parse(index, raw)?);
    }
    Ok(segments)
}

/// Parses the descriptors of an indirect request from the copied pages
/// (`pages` holds `ceil(count / 512)` pages back to back).
pub fn indirect_segments(pages: &[u8], count: usize) -> Result<Vec<Segment>, RequestError> {
    let mut segments = Vec::with_capacity(count);
    for (index, raw) in pages.chunks_exact(SEGMENT_SIZE).take(count).enumerate() {
        let raw: [u8; SEGMENT_SIZE] = raw.try_into().map_err(|_| RequestError::Truncated {
            length: pages.len(),
        })?;
        segments.push(Segment::parse(index, raw)?);
    }
    if segments.len() != count {
        return Err(RequestError::Truncated {
            length: pages.len(),
        });
    }
    Ok(segments)
}

/// Builds a request slot (for fakes, tests and fuzzers).
#[derive(Clone, Copy, Debug)]
pub struct RequestBuilder {
    bytes: [u8; REQUEST_SIZE],
}

impl Default for RequestBuilder {
    fn default() -> Self {
        Self {
            bytes: [0; REQUEST_SIZE],
        }
    }
}

impl RequestBuilder {
    /// A direct `READ`/`WRITE`/`FLUSH_DISKCACHE`/barrier/other request.
    pub fn direct(operation: u8, id: u64, sector: u64, segments: &[(GrantRef, u8, u8)]) -> Self {
        let mut builder = Self::default();
        builder.bytes[offsets::OPERATION] = operation;
        builder.bytes[offsets::NR_SEGMENTS] = segments.len().min(255) as u8;
        builder.set_id_and_sector(id, sector);
        for (index, (grant, first, last)) in segments.iter().take(MAX_DIRECT_SEGMENTS).enumerate() {
            let start = offsets::SEGMENTS + index * SEGMENT_SIZE;
            builder.bytes[start..start + SEGMENT_SIZE]
                .copy_from_slice(&encode_segment(*grant, *first, *last));
        }
        builder
    }

    /// A `DISCARD`.
    pub fn discard(id: u64, sector: u64, sectors: u64, secure: bool) -> Self {
        let mut builder = Self::default();
        builder.bytes[offsets::OPERATION] = operation::DISCARD;
        builder.bytes[offsets::DISCARD_FLAG] = if secure { DISCARD_SECURE } else { 0 };
        builder.set_id_and_sector(id, sector);
        builder.bytes[offsets::DISCARD_SECTORS..offsets::DISCARD_SECTORS + 8]
            .copy_from_slice(&sectors.to_le_bytes());
        builder
    }

    /// An `INDIRECT` request.
    pub fn indirect(
        inner: u8,
        id: u64,
        sector: u64,
        segment_count: u16,
        pages: &[GrantRef],
    ) -> Self {
        let mut builder = Self::default();
        builder.bytes[offsets::OPERATION] = operation::INDIRECT;
        builder.bytes[offsets::INDIRECT_OPERATION] = inner;
        builder.bytes[offsets::INDIRECT_NR_SEGMENTS..offsets::INDIRECT_NR_SEGMENTS + 2]
            .copy_from_slice(&segment_count.to_le_bytes());
        builder.set_id_and_sector(id, sector);
        for (index, grant) in pages.iter().take(MAX_INDIRECT_PAGES).enumerate() {
            let start = offsets::INDIRECT_GREFS + index * 4;
            builder.bytes[start..start + 4].copy_from_slice(&grant.0.to_le_bytes());
        }
        builder
    }

    /// Any 112 bytes (for fuzzers and random tests).
    pub const fn from_bytes(bytes: [u8; REQUEST_SIZE]) -> Self {
        Self { bytes }
    }

    /// Overrides `nr_segments` (for malformed requests).
    pub fn with_segment_count(mut self, count: u8) -> Self {
        self.bytes[offsets::NR_SEGMENTS] = count;
        self
    }

    fn set_id_and_sector(&mut self, id: u64, sector: u64) {
        self.bytes[offsets::ID..offsets::ID + 8].copy_from_slice(&id.to_le_bytes());
        self.bytes[offsets::SECTOR..offsets::SECTOR + 8].copy_from_slice(&sector.to_le_bytes());
    }

    /// The slot bytes.
    pub const fn bytes(&self) -> &[u8; REQUEST_SIZE] {
        &self.bytes
    }
}

/// Encodes one `blkif_request_segment`.
pub fn encode_segment(grant: GrantRef, first_sector: u8, last_sector: u8) -> [u8; SEGMENT_SIZE] {
    let mut raw = [0; SEGMENT_SIZE];
    raw[0..4].copy_from_slice(&grant.0.to_le_bytes());
    raw[4] = first_sector;
    raw[5] = last_sector;
    raw
}

/// A decoded response (for fakes and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

impl Response {
    /// Decodes 16 response bytes; `None` if short.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let id = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let operation = *bytes.get(8)?;
        let status = i16::from_le_bytes(bytes.get(10..12)?.try_into().ok()?);
        Some(Self {
            id,
            operation,
            status,
        })
    }
}
