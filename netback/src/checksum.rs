//! TCP and UDP checksums over IPv4 and IPv6 (RFC 1071, 768, 793, 8200 §8.1):
//! finding the transport header behind Ethernet (and one 802.1Q tag),
//! computing the pseudo-header sum, and filling a blank checksum.

/// Where a frame's transport header and checksum field are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportLocation {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// TCP or UDP.
    pub protocol: TransportProtocol,
    /// Offset of the IP header in the frame.
    pub ip_start: usize,
    /// Offset of the TCP or UDP header (Linux's `csum_start`).
    pub transport_start: usize,
    /// End of the IP payload (bytes after it are Ethernet padding).
    pub transport_end: usize,
}

impl TransportLocation {
    /// Offset of the checksum field from `transport_start` (Linux's
    /// `csum_offset`): 16 for TCP, 6 for UDP.
    pub const fn checksum_offset(&self) -> usize {
        match self.protocol {
            TransportProtocol::Tcp => 16,
            TransportProtocol::Udp => 6,
        }
    }
}

/// The IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

/// Why a frame's checksum cannot be located or computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumError {
    /// Neither IPv4 nor IPv6 (after at most one VLAN tag).
    NotIp,
    /// An IP header shorter than its minimum or than the frame allows.
    TruncatedIpHeader,
    /// An IPv4 header whose version or header length is wrong.
    MalformedIpHeader,
    /// The IP length claims more bytes than the frame holds.
    IpLengthMismatch,
    /// A fragment: its checksum covers bytes not in this frame.
    Fragment,
    /// Neither TCP nor UDP (after IPv6 extension headers).
    NotTcpOrUdp,
    /// The transport header is shorter than its minimum.
    TruncatedTransportHeader,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;

fn be16(bytes: &[u8], offset: usize) -> Option<u16> {
    let pair = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
}

/// Finds the IP and transport headers of an Ethernet frame.
pub fn locate(frame: &[u8]) -> Result<TransportLocation, ChecksumError> {
    let mut ether_type = be16(frame, 12).ok_or(ChecksumError::NotIp)?;
    let mut ip_start = 14;
    if ether_type == ETHERTYPE_VLAN {
        ether_type = be16(frame, 16).ok_or(ChecksumError::NotIp)?;
        ip_start = 18;
    }
    match ether_type {
        ETHERTYPE_IPV4 => locate_ipv4(frame, ip_start),
        ETHERTYPE_IPV6 => locate_ipv6(frame, ip_start),
        _ => Err(ChecksumError::NotIp),
    }
}

fn locate_ipv4(frame: &[u8], ip_start: usize) -> Result<TransportLocation, ChecksumError> {
    let header = frame
        .get(ip_start..ip_start + 20)
        .ok_or(ChecksumError::TruncatedIpHeader)?;
    let version_length = *header.first().ok_or(ChecksumError::TruncatedIpHeader)?;
    let header_length = usize::from(version_length & 0x0f) * 4;
    if version_length >> 4 != 4 || header_length < 20 {
        return Err(ChecksumError::MalformedIpHeader);
    }
    let total_length = usize::from(be16(header, 2).ok_or(ChecksumError::TruncatedIpHeader)?);
    let fragment = be16(header, 6).ok_or(ChecksumError::TruncatedIpHeader)?;
    let protocol = *header.get(9).ok_or(ChecksumError::TruncatedIpHeader)?;
    if total_length < header_length {
        return Err(ChecksumError::MalformedIpHeader);
    }
    let transport_end = ip_start + total_length;
    if transport_end > frame.len() {
        return Err(ChecksumError::IpLengthMismatch);
    }
    // More-fragments flag or a non-zero fragment offset.
    if fragment & 0x3fff != 0 {
        return Err(ChecksumError::Fragment);
    }
    finish(
        frame,
        IpVersion::V4,
        protocol,
        ip_start,
        ip_start + header_length,
        transport_end,
    )
}

fn locate_ipv6(frame: &[u8], ip_start: usize) -> Result<TransportLocation, ChecksumError> {
    let header = frame
        .get(ip_start..ip_start + 40)
        .ok_or(ChecksumError::TruncatedIpHeader)?;
    if header.first().is_none_or(|byte| byte >> 4 != 6) {
        return Err(ChecksumError::MalformedIpHeader);
    }
    let payload_length = usize::from(be16(header, 4).ok_or(ChecksumError::TruncatedIpHeader)?);
    let transport_end = ip_start + 40 + payload_length;
    if transport_end > frame.len() {
        return Err(ChecksumError::IpLengthMismatch);
    }
    let mut next_header = *header.get(6).ok_or(ChecksumError::TruncatedIpHeader)?;
    let mut offset = ip_start + 40;
    // At most a handful of extension headers; each is at least 8 bytes, so
    // the frame's length bounds the loop anyway.
    for _ in 0..8 {
        match next_header {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                let extension = frame
                    .get(offset..offset + 2)
                    .filter(|_| offset + 8 <= transport_end)
                    .ok_or(ChecksumError::TruncatedIpHeader)?;
                next_header = *extension.first().ok_or(ChecksumError::TruncatedIpHeader)?;
                let length =
                    (usize::from(*extension.get(1).ok_or(ChecksumError::TruncatedIpHeader)?) + 1)
                        * 8;
                offset += length;
                if offset > transport_end {
                    return Err(ChecksumError::TruncatedIpHeader);
                }
            }
            44 => return Err(ChecksumError::Fragment),
            protocol => {
                return finish(
                    frame,
                    IpVersion::V6,
                    protocol,
                    ip_start,
                    offset,
                    transport_end,
                );
            }
        }
    }
    Err(ChecksumError::NotTcpOrUdp)
}

fn finish(
    frame: &[u8],
    version: IpVersion,
    protocol: u8,
    ip_start: usize,
    transport_start: usize,
    transport_end: usize,
) -> Result<TransportLocation, ChecksumError> {
    let (protocol, minimum) = match protocol {
        PROTOCOL_TCP => (TransportProtocol::Tcp, 20),
        PROTOCOL_UDP => (TransportProtocol::Udp, 8),
        _ => return Err(ChecksumError::NotTcpOrUdp),
    };
    if transport_end.saturating_sub(transport_start) < minimum || transport_end > frame.len() {
        return Err(ChecksumError::TruncatedTransportHeader);
    }
    Ok(TransportLocation {
        version,
        protocol,
        ip_start,
        transport_start,
        transport_end,
    })
}

/// Adds `bytes` to a one's-complement running sum (big-endian 16-bit words,
/// an odd last byte padded with zero).
pub fn add_to_sum(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut pairs = bytes.chunks_exact(2);
    for pair in &mut pairs {
        if let [high, low] = *pair {
            sum += u64::from(u16::from_be_bytes([high, low]));
        }
    }
    if let [last] = *pairs.remainder() {
        sum += u64::from(u16::from_be_bytes([last, 0]));
    }
    sum
}

/// Folds a running sum to 16 bits (not complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The internet checksum of `bytes` (RFC 1071): the complement of the folded
/// sum.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    !fold(add_to_sum(0, bytes))
}

/// The pseudo-header's contribution to the transport checksum: addresses,
/// protocol and the transport length.
pub fn pseudo_header_sum(frame: &[u8], location: &TransportLocation) -> u64 {
    let length = location.transport_end - location.transport_start;
    let protocol = match location.protocol {
        TransportProtocol::Tcp => PROTOCOL_TCP,
        TransportProtocol::Udp => PROTOCOL_UDP,
    };
    let addresses = match location.version {
        IpVersion::V4 => location.ip_start + 12..location.ip_start + 20,
        IpVersion::V6 => location.ip_start + 8..location.ip_start + 40,
    };
    let sum = add_to_sum(0, frame.get(addresses).unwrap_or(&[]));
    // The length is 16 bits in IPv4's pseudo-header and 32 in IPv6's; the
    // sum is the same for lengths below 64 KiB.
    sum + u64::from(protocol) + u64::try_from(length).unwrap_or(0)
}

/// Computes the transport checksum (field taken as zero) as it should be
/// written in the frame.
fn compute(frame: &[u8], location: &TransportLocation) -> u16 {
    let field = location.transport_start + location.checksum_offset();
    let mut sum = pseudo_header_sum(frame, location);
    sum = add_to_sum(
        sum,
        frame.get(location.transport_start..field).unwrap_or(&[]),
    );
    sum = add_to_sum(
        sum,
        frame.get(field + 2..location.transport_end).unwrap_or(&[]),
    );
    let checksum = !fold(sum);
    // UDP sends 0 as "no checksum"; a computed 0 is written as all ones.
    if checksum == 0 && location.protocol == TransportProtocol::Udp {
        0xffff
    } else {
        checksum
    }
}

/// Fills in the transport checksum of a frame whose checksum is blank
/// (`NETTXF_csum_blank`): whatever the field held (the pseudo-header sum,
/// or nothing) is replaced by the full checksum.
pub fn complete(frame: &mut [u8]) -> Result<TransportLocation, ChecksumError> {
    let location = locate(frame)?;
    let checksum = compute(frame, &location);
    let field = location.transport_start + location.checksum_offset();
    if let Some(slot) = frame.get_mut(field..field + 2) {
        slot.copy_from_slice(&checksum.to_be_bytes());
    }
    Ok(location)
}

/// Makes a blank checksum what receivers of partial checksums expect
/// (Linux's `CHECKSUM_PARTIAL`, virtio-net's `NEEDS_CSUM`): the folded
/// pseudo-header sum, not complemented, in the field. Whatever the sender
/// left there is replaced.
pub fn prepare_partial(frame: &mut [u8]) -> Result<TransportLocation, ChecksumError> {
    let location = locate(frame)?;
    let sum = fold(pseudo_header_sum(frame, &location));
    let field = location.transport_start + location.checksum_offset();
    if let Some(slot) = frame.get_mut(field..field + 2) {
        slot.copy_from_slice(&sum.to_be_bytes());
    }
    Ok(location)
}

/// Whether the transport checksum is right (a UDP checksum of 0 means
/// none, which is right for IPv4).
pub fn verify(frame: &[u8]) -> Result<bool, ChecksumError> {
    let location = locate(frame)?;
    let field = location.transport_start + location.checksum_offset();
    let stored = be16(frame, field).ok_or(ChecksumError::TruncatedTransportHeader)?;
    if stored == 0
        && location.protocol == TransportProtocol::Udp
        && location.version == IpVersion::V4
    {
        return Ok(true);
    }
    Ok(stored == compute(frame, &location))
}

/// Rewrites an IPv4 header's own checksum (for headers this crate edits).
pub fn complete_ipv4_header(frame: &mut [u8], ip_start: usize) {
    let Some(&version_length) = frame.get(ip_start) else {
        return;
    };
    let length = usize::from(version_length & 0x0f) * 4;
    let Some(header) = frame.get_mut(ip_start..ip_start + length) else {
        return;
    };
    if let Some(field) = header.get_mut(10..12) {
        field.copy_from_slice(&[0, 0]);
    }
    let checksum = internet_checksum(header);
    if let Some(field) = header.get_mut(10..12) {
        field.copy_from_slice(&checksum.to_be_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Wikipedia's IPv4 header example: checksum 0xb861.
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    // The packets below were built by hand; their checksums were computed
    // by an independent implementation (a few lines of Python following
    // RFC 1071 and the pseudo-header definitions), not by this module.

    /// A TCP SYN from 10.0.2.15:47402 to 93.184.216.34:80 with MSS, SACK,
    /// timestamp and window-scale options (IP checksum 0x5eb8, TCP 0x91f8).
    pub(crate) fn tcp_ipv4_syn() -> Vec<u8> {
        hex("525400123502 525400123456 0800
             4500 003c 9a1a 4000 4006 5eb8 0a00020f 5db8d822
             b92a 0050 7c3d5e01 00000000 a002 faf0 91f8 0000
             020405b40402080a1bd3c9a00000000001030307")
    }

    /// A DNS query for example.com over UDP/IPv4 (IP checksum 0x065d, UDP
    /// 0x1600).
    pub(crate) fn udp_ipv4_dns() -> Vec<u8> {
        hex("525400123502 525400123456 0800
             4500 0039 1c46 4000 4011 065d 0a00020f 0a000203
             d5a1 0035 0025 1600
             2c4e01000001000000000000076578616d706c6503636f6d0000010001")
    }

    /// A TCP/IPv6 segment [2001:db8::1]:40000 -> [2001:db8::2]:443, ACK
    /// with 4 bytes of payload (TCP checksum 0xce83).
    pub(crate) fn tcp_ipv6() -> Vec<u8> {
        hex("525400123502 525400123456 86dd
             6000 0000 0018 0640
             20010db8000000000000000000000001 20010db8000000000000000000000002
             9c40 01bb 00000001 00000002 5010 ffff ce83 0000
             74657374")
    }

    #[test]
    fn rfc_1071_and_ipv4_header_examples() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(
            fold(add_to_sum(
                0,
                &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
            )),
            0xddf2
        );
        assert_eq!(internet_checksum(&IPV4_HEADER), 0);
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&IPV4_HEADER);
        frame[24] = 0xaa;
        frame[25] = 0xbb;
        complete_ipv4_header(&mut frame, 14);
        assert_eq!(&frame[24..26], &[0xb8, 0x61]);
    }

    #[test]
    fn known_packets_verify_and_blank_checksums_are_restored() {
        for (packet, field) in [
            (tcp_ipv4_syn(), 14 + 20 + 16),
            (udp_ipv4_dns(), 14 + 20 + 6),
            (tcp_ipv6(), 14 + 40 + 16),
        ] {
            assert_eq!(verify(&packet), Ok(true), "{packet:02x?}");
            let expected = [packet[field], packet[field + 1]];
            // Blank, as netfront sends it: the field holds anything.
            for blank in [[0, 0], [0x12, 0x34]] {
                let mut copy = packet.clone();
                copy[field..field + 2].copy_from_slice(&blank);
                // UDP over IPv4 may send 0: "no checksum".
                let none_allowed = blank == [0, 0] && packet[23] == 17;
                assert_eq!(verify(&copy), Ok(none_allowed));
                complete(&mut copy).unwrap();
                assert_eq!([copy[field], copy[field + 1]], expected);
            }
        }
    }

    #[test]
    fn a_prepared_partial_checksum_completes_like_hardware_would() {
        for packet in [tcp_ipv4_syn(), udp_ipv4_dns(), tcp_ipv6()] {
            let mut partial = packet.clone();
            let location = prepare_partial(&mut partial).unwrap();
            // A device sums from csum_start to the end and writes the
            // complement at csum_start + csum_offset.
            let field = location.transport_start + location.checksum_offset();
            let sum = !fold(add_to_sum(
                0,
                &partial[location.transport_start..location.transport_end],
            ));
            partial[field..field + 2].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(partial, packet);
        }
    }

    #[test]
    fn the_known_packets_ip_headers_are_right() {
        assert_eq!(internet_checksum(&tcp_ipv4_syn()[14..34]), 0);
        assert_eq!(internet_checksum(&udp_ipv4_dns()[14..34]), 0);
    }

    #[test]
    fn locations_are_reported() {
        let location = locate(&tcp_ipv6()).unwrap();
        assert_eq!(location.version, IpVersion::V6);
        assert_eq!(location.protocol, TransportProtocol::Tcp);
        assert_eq!(
            (location.transport_start, location.checksum_offset()),
            (54, 16)
        );
        let location = locate(&udp_ipv4_dns()).unwrap();
        assert_eq!(
            (location.transport_start, location.checksum_offset()),
            (34, 6)
        );
        assert_eq!(location.transport_end, udp_ipv4_dns().len());
    }

    #[test]
    fn padding_after_the_ip_payload_is_not_summed() {
        let mut padded = udp_ipv4_dns();
        padded.extend_from_slice(&[0xff; 9]);
        assert_eq!(verify(&padded), Ok(true));
    }

    #[test]
    fn vlan_tags_and_ipv6_extension_headers_are_skipped() {
        let mut tagged = tcp_ipv4_syn();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(verify(&tagged), Ok(true));
        // Insert an 8-byte hop-by-hop header (PadN) before TCP.
        let mut extended = tcp_ipv6();
        extended[14 + 6] = 0;
        extended[14 + 5] += 8;
        extended.splice(54..54, [6, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(locate(&extended).unwrap().transport_start, 62);
        assert_eq!(verify(&extended), Ok(true));
    }

    #[test]
    fn bad_headers_are_refused_without_panicking() {
        let good = tcp_ipv4_syn();
        assert_eq!(locate(&good[..13]), Err(ChecksumError::NotIp));
        assert_eq!(locate(&good[..30]), Err(ChecksumError::TruncatedIpHeader));
        assert_eq!(locate(&good[..60]), Err(ChecksumError::IpLengthMismatch));
        let mut bad = good.clone();
        bad[14] = 0x44;
        assert_eq!(locate(&bad), Err(ChecksumError::MalformedIpHeader));
        let mut bad = good.clone();
        bad[20] = 0x20; // more fragments
        assert_eq!(locate(&bad), Err(ChecksumError::Fragment));
        let mut bad = good.clone();
        bad[23] = 1; // ICMP
        assert_eq!(locate(&bad), Err(ChecksumError::NotTcpOrUdp));
        let mut bad = good.clone();
        bad[16] = 0;
        bad[17] = 30; // total length 30: 10 bytes of TCP
        assert_eq!(locate(&bad), Err(ChecksumError::TruncatedTransportHeader));
        let mut bad = good;
        bad[12] = 0x08;
        bad[13] = 0x06;
        assert_eq!(locate(&bad), Err(ChecksumError::NotIp));
        for length in 0..tcp_ipv6().len() {
            let _ = complete(&mut tcp_ipv6()[..length].to_vec());
        }
    }
}
