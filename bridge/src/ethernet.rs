//! Ethernet II headers in two steps: a bounds-checked view of a frame, then
//! a validated header with the addresses the bridge acts on.

use core::fmt;

/// Bytes in an Ethernet header: destination, source, EtherType.
pub const HEADER_LENGTH: usize = 14;

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// The all-ones broadcast address.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// The all-zero address, which no interface may use.
    pub const ZERO: Self = Self([0; 6]);

    /// Whether the group bit is set (broadcast included): such an address
    /// names a set of interfaces, never one sender.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether this is the all-ones broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the address may appear as a frame's source: unicast and not
    /// all zeros (Linux's `is_valid_ether_addr`).
    pub fn is_valid_source(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }

    /// Whether this is one of IEEE 802.1D's reserved link-local group
    /// addresses `01:80:c2:00:00:00`–`0f` (STP, pause frames, LACP, 802.1X),
    /// which a bridge must not forward.
    pub fn is_link_local(&self) -> bool {
        let [a, b, c, d, e, f] = self.0;
        [a, b, c, d, e] == [0x01, 0x80, 0xc2, 0x00, 0x00] && f & 0xf0 == 0
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, f] = self.0;
        write!(formatter, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }
}

/// The EtherType (or, below 0x600, 802.3 length) field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: Self = Self(0x0800);
    /// ARP.
    pub const ARP: Self = Self(0x0806);
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: Self = Self(0x8100);
    /// IPv6.
    pub const IPV6: Self = Self(0x86dd);
}

/// Why a frame could not be read as Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the 14-byte header.
    TooShort {
        /// The frame's length in bytes.
        length: usize,
    },
    /// The source address is multicast or broadcast: no single interface
    /// can have sent it.
    MulticastSource,
    /// The source address is all zeros.
    ZeroSource,
}

/// A frame known to be long enough to hold an Ethernet header. Reading its
/// fields cannot fail.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<'frame> {
    header: &'frame [u8; HEADER_LENGTH],
    payload: &'frame [u8],
}

impl<'frame> EthernetFrame<'frame> {
    /// Checks the length once; afterwards every accessor is infallible.
    pub fn new_checked(bytes: &'frame [u8]) -> Result<Self, FrameError> {
        let Some((header, payload)) = bytes.split_first_chunk::<HEADER_LENGTH>() else {
            return Err(FrameError::TooShort {
                length: bytes.len(),
            });
        };
        Ok(Self { header, payload })
    }

    /// The destination address (bytes 0–5).
    pub fn destination(&self) -> MacAddress {
        let [a, b, c, d, e, f, ..] = *self.header;
        MacAddress([a, b, c, d, e, f])
    }

    /// The source address (bytes 6–11).
    pub fn source(&self) -> MacAddress {
        let [_, _, _, _, _, _, a, b, c, d, e, f, _, _] = *self.header;
        MacAddress([a, b, c, d, e, f])
    }

    /// The EtherType (bytes 12–13, big-endian).
    pub fn ether_type(&self) -> EtherType {
        let [.., high, low] = *self.header;
        EtherType(u16::from_be_bytes([high, low]))
    }

    /// Everything after the header.
    pub fn payload(&self) -> &'frame [u8] {
        self.payload
    }
}

/// A validated Ethernet header: its source can be learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader {
    /// Where the frame is going (may be multicast).
    pub destination: MacAddress,
    /// Who sent it: unicast and non-zero.
    pub source: MacAddress,
    /// What the payload is.
    pub ether_type: EtherType,
}

impl EthernetHeader {
    /// Validates a checked frame's header.
    pub fn parse(frame: &EthernetFrame<'_>) -> Result<Self, FrameError> {
        let source = frame.source();
        if source.is_multicast() {
            return Err(FrameError::MulticastSource);
        }
        if source == MacAddress::ZERO {
            return Err(FrameError::ZeroSource);
        }
        Ok(Self {
            destination: frame.destination(),
            source,
            ether_type: frame.ether_type(),
        })
    }

    /// Checks and validates in one call.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, FrameError> {
        Self::parse(&EthernetFrame::new_checked(bytes)?)
    }

    /// Writes the header into the first 14 bytes of `buffer` (for tests and
    /// for Dom0's own frames); `None` if the buffer is too short.
    pub fn emit(&self, buffer: &mut [u8]) -> Option<()> {
        let header = buffer.first_chunk_mut::<HEADER_LENGTH>()?;
        let (destination, rest) = header.split_at_mut(6);
        let (source, ether_type) = rest.split_at_mut(6);
        destination.copy_from_slice(&self.destination.0);
        source.copy_from_slice(&self.source.0);
        ether_type.copy_from_slice(&self.ether_type.0.to_be_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: MacAddress = MacAddress([0x00, 0x16, 0x3e, 0x01, 0x02, 0x03]);

    #[test]
    fn short_frames_are_refused_with_their_length() {
        for length in 0..HEADER_LENGTH {
            let bytes = [0u8; HEADER_LENGTH];
            assert_eq!(
                EthernetFrame::new_checked(&bytes[..length]).err(),
                Some(FrameError::TooShort { length })
            );
        }
        assert!(EthernetFrame::new_checked(&[0u8; HEADER_LENGTH]).is_ok());
    }

    #[test]
    fn fields_are_read_from_their_offsets() {
        let bytes = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x16, 0x3e, 0x01, 0x02, 0x03, 0x08, 0x06,
            0xaa,
        ];
        let frame = EthernetFrame::new_checked(&bytes).unwrap();
        assert!(frame.destination().is_broadcast());
        assert_eq!(frame.source(), GUEST);
        assert_eq!(frame.ether_type(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0xaa]);
        let header = EthernetHeader::parse(&frame).unwrap();
        let mut out = [0u8; HEADER_LENGTH];
        header.emit(&mut out).unwrap();
        assert_eq!(out, bytes[..HEADER_LENGTH]);
        assert_eq!(header.emit(&mut [0u8; 13]), None);
    }

    #[test]
    fn group_and_zero_sources_are_invalid() {
        let mut bytes = [0u8; HEADER_LENGTH];
        bytes[6] = 0x01;
        assert_eq!(
            EthernetHeader::parse_bytes(&bytes),
            Err(FrameError::MulticastSource)
        );
        bytes[6] = 0x00;
        assert_eq!(
            EthernetHeader::parse_bytes(&bytes),
            Err(FrameError::ZeroSource)
        );
        bytes[11] = 0x01;
        assert!(EthernetHeader::parse_bytes(&bytes).is_ok());
    }

    #[test]
    fn address_classes() {
        assert!(MacAddress::BROADCAST.is_multicast());
        assert!(MacAddress::BROADCAST.is_broadcast());
        assert!(MacAddress([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddress([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert!(!GUEST.is_multicast());
        assert!(GUEST.is_valid_source());
        assert!(!MacAddress::ZERO.is_valid_source());
        assert!(MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x00]).is_link_local());
        assert!(MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x0f]).is_link_local());
        assert!(!MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x10]).is_link_local());
        assert_eq!(alloc_format(GUEST), "00:16:3e:01:02:03");
    }

    fn alloc_format(mac: MacAddress) -> String {
        format!("{mac}")
    }
}
