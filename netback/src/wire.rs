//! netif's ring entries (`xen/include/public/io/netif.h`): TX and RX
//! requests and responses, their flags, and extra-info slots. Parsing reads
//! a private copy of a slot; validation against the protocol's rules is a
//! second step (see `tx.rs`).

use xenolith_abi::grant_table::GrantRef;

/// Bytes in a granted page; no slot's data may cross it.
pub const PAGE_SIZE: usize = 4096;
/// `netif_tx_request`: gref u32, offset u16, flags u16, id u16, size u16.
pub const TX_REQUEST_SIZE: usize = 12;
/// `netif_tx_response`: id u16, status s16.
pub const TX_RESPONSE_SIZE: usize = 4;
/// `netif_rx_request`: id u16, pad u16, gref u32.
pub const RX_REQUEST_SIZE: usize = 8;
/// `netif_rx_response`: id u16, offset u16, flags u16, status s16.
pub const RX_RESPONSE_SIZE: usize = 8;
/// `netif_extra_info`: type u8, flags u8, a six-byte union.
pub const EXTRA_INFO_SIZE: usize = 8;
/// Data slots Linux's netfront sends at most per packet and accepts at most
/// per received packet (`XEN_NETBK_LEGACY_SLOTS_MAX`, MAX_SKB_FRAGS + 1).
pub const MAX_DATA_SLOTS: usize = 18;
/// The shortest packet netback accepts: an Ethernet header.
pub const ETHERNET_HEADER_LENGTH: usize = 14;

/// `NETTXF_*` flags of a TX request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxFlags(pub u16);

impl TxFlags {
    /// The L4 checksum is blank (holds at most the pseudo-header sum).
    pub const CSUM_BLANK: u16 = 1 << 0;
    /// The packet's checksums were verified (or are known good).
    pub const DATA_VALIDATED: u16 = 1 << 1;
    /// Another data slot of this packet follows.
    pub const MORE_DATA: u16 = 1 << 2;
    /// Extra-info slots follow this one.
    pub const EXTRA_INFO: u16 = 1 << 3;

    /// Whether all the bits of `flag` are set.
    pub const fn has(self, flag: u16) -> bool {
        self.0 & flag == flag
    }
}

/// `NETRXF_*` flags of an RX response (bits 0 and 1 swapped against TX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RxFlags(pub u16);

impl RxFlags {
    /// The packet's checksums are known good.
    pub const DATA_VALIDATED: u16 = 1 << 0;
    /// The L4 checksum is blank: the receiver must not verify it.
    pub const CSUM_BLANK: u16 = 1 << 1;
    /// Another data slot of this packet follows.
    pub const MORE_DATA: u16 = 1 << 2;
    /// An extra-info slot follows this one.
    pub const EXTRA_INFO: u16 = 1 << 3;

    /// Whether all the bits of `flag` are set.
    pub const fn has(self, flag: u16) -> bool {
        self.0 & flag == flag
    }
}

/// A response status (`XEN_NETIF_RSP_*`), or for RX data slots the byte
/// count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseStatus(pub i16);

impl ResponseStatus {
    /// Done.
    pub const OKAY: Self = Self(0);
    /// The request was bad.
    pub const ERROR: Self = Self(-1);
    /// The packet was dropped for want of resources.
    pub const DROPPED: Self = Self(-2);
    /// The slot carried extra info, not data.
    pub const NULL: Self = Self(1);
}

/// The front end's request id: echoed in TX responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RequestId(pub u16);

/// One TX slot as the front end wrote it (not yet validated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRequest {
    /// The granted page holding this slot's data.
    pub gref: GrantRef,
    /// Where the data starts in that page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: TxFlags,
    /// Echoed in the response.
    pub id: RequestId,
    /// The whole packet's length in a packet's first slot, this slot's
    /// length in the others.
    pub size: u16,
}

impl TxRequest {
    /// Reads a slot copied out of the ring; `None` if shorter than 12 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.first_chunk::<TX_REQUEST_SIZE>()?;
        let [g0, g1, g2, g3, o0, o1, f0, f1, i0, i1, s0, s1] = *bytes;
        Some(Self {
            gref: GrantRef(u32::from_le_bytes([g0, g1, g2, g3])),
            offset: u16::from_le_bytes([o0, o1]),
            flags: TxFlags(u16::from_le_bytes([f0, f1])),
            id: RequestId(u16::from_le_bytes([i0, i1])),
            size: u16::from_le_bytes([s0, s1]),
        })
    }

    /// The slot's bytes (for fakes and tests).
    pub fn emit(&self) -> [u8; TX_REQUEST_SIZE] {
        let mut bytes = [0; TX_REQUEST_SIZE];
        bytes[0..4].copy_from_slice(&self.gref.0.to_le_bytes());
        bytes[4..6].copy_from_slice(&self.offset.to_le_bytes());
        bytes[6..8].copy_from_slice(&self.flags.0.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.id.0.to_le_bytes());
        bytes[10..12].copy_from_slice(&self.size.to_le_bytes());
        bytes
    }
}

/// A TX response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxResponse {
    /// The request's id.
    pub id: RequestId,
    /// What became of it.
    pub status: ResponseStatus,
}

impl TxResponse {
    /// The response's bytes.
    pub fn emit(&self) -> [u8; TX_RESPONSE_SIZE] {
        let [i0, i1] = self.id.0.to_le_bytes();
        let [s0, s1] = self.status.0.to_le_bytes();
        [i0, i1, s0, s1]
    }

    /// Reads a response (for fakes and tests).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let [i0, i1, s0, s1] = *bytes.first_chunk::<TX_RESPONSE_SIZE>()?;
        Some(Self {
            id: RequestId(u16::from_le_bytes([i0, i1])),
            status: ResponseStatus(i16::from_le_bytes([s0, s1])),
        })
    }
}

/// An RX request: a whole page offered for one slot of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRequest {
    /// Echoed in the response (Linux's netfront ignores it and matches by
    /// slot index instead).
    pub id: RequestId,
    /// The page to copy into.
    pub gref: GrantRef,
}

impl RxRequest {
    /// Reads a slot copied out of the ring; `None` if shorter than 8 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let [i0, i1, _, _, g0, g1, g2, g3] = *bytes.first_chunk::<RX_REQUEST_SIZE>()?;
        Some(Self {
            id: RequestId(u16::from_le_bytes([i0, i1])),
            gref: GrantRef(u32::from_le_bytes([g0, g1, g2, g3])),
        })
    }

    /// The slot's bytes (for fakes and tests).
    pub fn emit(&self) -> [u8; RX_REQUEST_SIZE] {
        let mut bytes = [0; RX_REQUEST_SIZE];
        bytes[0..2].copy_from_slice(&self.id.0.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.gref.0.to_le_bytes());
        bytes
    }
}

/// An RX response for a data slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxResponse {
    /// The request's id.
    pub id: RequestId,
    /// Where the data starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: RxFlags,
    /// Bytes in this slot, or an error (negative).
    pub status: ResponseStatus,
}

impl RxResponse {
    /// The response's bytes.
    pub fn emit(&self) -> [u8; RX_RESPONSE_SIZE] {
        let mut bytes = [0; RX_RESPONSE_SIZE];
        bytes[0..2].copy_from_slice(&self.id.0.to_le_bytes());
        bytes[2..4].copy_from_slice(&self.offset.to_le_bytes());
        bytes[4..6].copy_from_slice(&self.flags.0.to_le_bytes());
        bytes[6..8].copy_from_slice(&self.status.0.to_le_bytes());
        bytes
    }

    /// Reads a response (for fakes and tests).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let [i0, i1, o0, o1, f0, f1, s0, s1] = *bytes.first_chunk::<RX_RESPONSE_SIZE>()?;
        Some(Self {
            id: RequestId(u16::from_le_bytes([i0, i1])),
            offset: u16::from_le_bytes([o0, o1]),
            flags: RxFlags(u16::from_le_bytes([f0, f1])),
            status: ResponseStatus(i16::from_le_bytes([s0, s1])),
        })
    }
}

/// The kind of a GSO packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4 (`XEN_NETIF_GSO_TYPE_TCPV4` = 1).
    TcpV4,
    /// TCP over IPv6 (`XEN_NETIF_GSO_TYPE_TCPV6` = 2).
    TcpV6,
}

impl GsoKind {
    /// The wire value.
    pub const fn wire(self) -> u8 {
        match self {
            GsoKind::TcpV4 => 1,
            GsoKind::TcpV6 => 2,
        }
    }
}

/// Segmentation offload: the packet is larger than one segment and is cut
/// into `segment_size`-byte TCP segments on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gso {
    /// TCP over IPv4 or IPv6.
    pub kind: GsoKind,
    /// The MSS: TCP payload bytes per segment (non-zero).
    pub segment_size: u16,
}

/// A validated extra-info slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_GSO` (1).
    Gso(Gso),
    /// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD` (2): join a multicast group.
    MulticastAdd([u8; 6]),
    /// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL` (3): leave one.
    MulticastDelete([u8; 6]),
    /// `XEN_NETIF_EXTRA_TYPE_HASH` (4): the packet's flow hash.
    Hash {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*`.
        kind: u8,
        /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        algorithm: u8,
        /// The hash.
        value: [u8; 4],
    },
}

/// Why an extra-info slot was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraInfoError {
    /// Type 0 (`NONE`) or above 4.
    UnknownType(u8),
    /// A GSO type other than TCPv4 (1) and TCPv6 (2).
    UnknownGsoType(u8),
    /// A GSO segment size of 0.
    ZeroGsoSize,
    /// A flag other than `XEN_NETIF_EXTRA_FLAG_MORE`.
    UnknownFlags(u8),
}

/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const EXTRA_FLAG_MORE: u8 = 1;

impl ExtraInfo {
    /// Reads and validates an extra-info slot; also says whether another
    /// follows.
    pub fn parse(bytes: &[u8]) -> Result<(Self, bool), ExtraInfoError> {
        let Some(&[kind, flags, a, b, c, d, e, f]) = bytes.first_chunk::<EXTRA_INFO_SIZE>() else {
            return Err(ExtraInfoError::UnknownType(0));
        };
        if flags & !EXTRA_FLAG_MORE != 0 {
            return Err(ExtraInfoError::UnknownFlags(flags));
        }
        let more = flags & EXTRA_FLAG_MORE != 0;
        let extra = match kind {
            1 => {
                let segment_size = u16::from_le_bytes([a, b]);
                let kind = match c {
                    1 => GsoKind::TcpV4,
                    2 => GsoKind::TcpV6,
                    other => return Err(ExtraInfoError::UnknownGsoType(other)),
                };
                if segment_size == 0 {
                    return Err(ExtraInfoError::ZeroGsoSize);
                }
                ExtraInfo::Gso(Gso { kind, segment_size })
            }
            2 => ExtraInfo::MulticastAdd([a, b, c, d, e, f]),
            3 => ExtraInfo::MulticastDelete([a, b, c, d, e, f]),
            4 => ExtraInfo::Hash {
                kind: a,
                algorithm: b,
                value: [c, d, e, f],
            },
            other => return Err(ExtraInfoError::UnknownType(other)),
        };
        Ok((extra, more))
    }

    /// The slot's bytes, with `MORE` set if `more`.
    pub fn emit(&self, more: bool) -> [u8; EXTRA_INFO_SIZE] {
        let flags = if more { EXTRA_FLAG_MORE } else { 0 };
        match *self {
            ExtraInfo::Gso(gso) => {
                let [s0, s1] = gso.segment_size.to_le_bytes();
                [1, flags, s0, s1, gso.kind.wire(), 0, 0, 0]
            }
            ExtraInfo::MulticastAdd([a, b, c, d, e, f]) => [2, flags, a, b, c, d, e, f],
            ExtraInfo::MulticastDelete([a, b, c, d, e, f]) => [3, flags, a, b, c, d, e, f],
            ExtraInfo::Hash {
                kind,
                algorithm,
                value: [c, d, e, f],
            } => [4, flags, kind, algorithm, c, d, e, f],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_request_fields_sit_at_their_offsets() {
        let bytes = [
            0x78, 0x56, 0x34, 0x12, 0x10, 0x00, 0x0d, 0x00, 0x07, 0x00, 0xea, 0x05,
        ];
        let request = TxRequest::parse(&bytes).unwrap();
        assert_eq!(request.gref, GrantRef(0x1234_5678));
        assert_eq!(request.offset, 16);
        assert!(request.flags.has(TxFlags::CSUM_BLANK | TxFlags::MORE_DATA));
        assert!(request.flags.has(TxFlags::EXTRA_INFO));
        assert!(!request.flags.has(TxFlags::DATA_VALIDATED));
        assert_eq!(request.id, RequestId(7));
        assert_eq!(request.size, 1514);
        assert_eq!(request.emit(), bytes);
        assert_eq!(TxRequest::parse(&bytes[..11]), None);
    }

    #[test]
    fn responses_and_rx_requests_round_trip() {
        let response = TxResponse {
            id: RequestId(0xbeef),
            status: ResponseStatus::NULL,
        };
        assert_eq!(response.emit(), [0xef, 0xbe, 0x01, 0x00]);
        assert_eq!(TxResponse::parse(&response.emit()), Some(response));
        let request = RxRequest {
            id: RequestId(3),
            gref: GrantRef(9),
        };
        assert_eq!(request.emit(), [3, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(RxRequest::parse(&request.emit()), Some(request));
        let response = RxResponse {
            id: RequestId(3),
            offset: 0,
            flags: RxFlags(RxFlags::CSUM_BLANK | RxFlags::DATA_VALIDATED),
            status: ResponseStatus(1500),
        };
        assert_eq!(response.emit(), [3, 0, 0, 0, 3, 0, 0xdc, 0x05]);
        assert_eq!(RxResponse::parse(&response.emit()), Some(response));
        assert_eq!(
            TxResponse {
                id: RequestId(1),
                status: ResponseStatus::ERROR
            }
            .emit(),
            [1, 0, 0xff, 0xff]
        );
    }

    #[test]
    fn extra_info_is_validated() {
        let gso = ExtraInfo::Gso(Gso {
            kind: GsoKind::TcpV6,
            segment_size: 1440,
        });
        assert_eq!(gso.emit(true), [1, 1, 0xa0, 0x05, 2, 0, 0, 0]);
        assert_eq!(ExtraInfo::parse(&gso.emit(true)), Ok((gso, true)));
        assert_eq!(ExtraInfo::parse(&gso.emit(false)), Ok((gso, false)));
        assert_eq!(
            ExtraInfo::parse(&[1, 0, 0, 0, 1, 0, 0, 0]),
            Err(ExtraInfoError::ZeroGsoSize)
        );
        assert_eq!(
            ExtraInfo::parse(&[1, 0, 1, 0, 3, 0, 0, 0]),
            Err(ExtraInfoError::UnknownGsoType(3))
        );
        assert_eq!(
            ExtraInfo::parse(&[0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ExtraInfoError::UnknownType(0))
        );
        assert_eq!(
            ExtraInfo::parse(&[5, 0, 0, 0, 0, 0, 0, 0]),
            Err(ExtraInfoError::UnknownType(5))
        );
        assert_eq!(
            ExtraInfo::parse(&[2, 2, 0, 0, 0, 0, 0, 0]),
            Err(ExtraInfoError::UnknownFlags(2))
        );
        let add = ExtraInfo::MulticastAdd([1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(ExtraInfo::parse(&add.emit(false)), Ok((add, false)));
        let hash = ExtraInfo::Hash {
            kind: 1,
            algorithm: 1,
            value: [1, 2, 3, 4],
        };
        assert_eq!(ExtraInfo::parse(&hash.emit(false)), Ok((hash, false)));
        assert_eq!(
            ExtraInfo::parse(&[1, 0]),
            Err(ExtraInfoError::UnknownType(0))
        );
    }
}
