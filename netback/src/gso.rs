//! TCP segmentation for GSO packets going to a receiver that cannot take
//! them whole (a front end without `feature-gso-tcpv4/6`, a NIC without
//! TSO): the payload cut into segment-size pieces, each with its own IP
//! lengths, IPv4 id, TCP sequence number, flags and full checksums.

use alloc::vec::Vec;

use crate::checksum::{self, ChecksumError, IpVersion, TransportProtocol};
use crate::packet::{ChecksumState, Offload, Packet};
use crate::wire::{Gso, GsoKind};

/// Most segments one packet may become: bounds the memory a tiny segment
/// size could make a 64 KiB packet take.
pub const MAX_SEGMENTS: usize = 256;

/// Why a GSO packet cannot be segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoError {
    /// Its headers could not be read.
    Headers(ChecksumError),
    /// Not TCP, or not the IP version its GSO type names.
    KindMismatch,
    /// A TCP header length below 20 or beyond the packet.
    BadTcpHeader,
    /// More than [`MAX_SEGMENTS`] segments.
    TooManySegments,
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Cuts a GSO packet into segments with complete checksums. A packet that
/// already fits one segment comes back as one, checksum completed.
pub fn segment(frame: &[u8], gso: Gso) -> Result<Vec<Packet>, GsoError> {
    let location = checksum::locate(frame).map_err(GsoError::Headers)?;
    let expected = match gso.kind {
        GsoKind::TcpV4 => IpVersion::V4,
        GsoKind::TcpV6 => IpVersion::V6,
    };
    if location.protocol != TransportProtocol::Tcp || location.version != expected {
        return Err(GsoError::KindMismatch);
    }
    let data_offset = frame
        .get(location.transport_start + 12)
        .map(|byte| usize::from(byte >> 4) * 4)
        .ok_or(GsoError::BadTcpHeader)?;
    let header_end = location.transport_start + data_offset;
    if data_offset < 20 || header_end > location.transport_end {
        return Err(GsoError::BadTcpHeader);
    }
    let headers = frame.get(..header_end).ok_or(GsoError::BadTcpHeader)?;
    let payload = frame
        .get(header_end..location.transport_end)
        .ok_or(GsoError::BadTcpHeader)?;
    let size = usize::from(gso.segment_size).max(1);
    let count = payload.len().div_ceil(size).max(1);
    if count > MAX_SEGMENTS {
        return Err(GsoError::TooManySegments);
    }
    let sequence_at = location.transport_start + 4;
    let flags_at = location.transport_start + 13;
    let first_sequence = read_u32(headers, sequence_at).ok_or(GsoError::BadTcpHeader)?;
    let first_id = read_u16(headers, location.ip_start + 4).unwrap_or(0);
    let flags = headers.get(flags_at).copied().unwrap_or(0);

    let mut segments = Vec::with_capacity(count);
    for index in 0..count {
        let start = index * size;
        let piece = payload
            .get(start..(start + size).min(payload.len()))
            .unwrap_or(&[]);
        let mut bytes = Vec::with_capacity(header_end + piece.len());
        bytes.extend_from_slice(headers);
        bytes.extend_from_slice(piece);
        let ip_payload = bytes.len() - location.ip_start;
        let last = index + 1 == count;
        let mut segment_flags = flags;
        if !last {
            segment_flags &= !(TCP_FIN | TCP_PSH);
        }
        if index != 0 {
            segment_flags &= !TCP_CWR;
        }
        let offset = u32::try_from(start).unwrap_or(0);
        write(
            &mut bytes,
            sequence_at,
            &first_sequence.wrapping_add(offset).to_be_bytes(),
        );
        write(&mut bytes, flags_at, &[segment_flags]);
        match location.version {
            IpVersion::V4 => {
                let total = u16::try_from(ip_payload).unwrap_or(u16::MAX);
                write(&mut bytes, location.ip_start + 2, &total.to_be_bytes());
                let id = first_id.wrapping_add(u16::try_from(index).unwrap_or(0));
                write(&mut bytes, location.ip_start + 4, &id.to_be_bytes());
                checksum::complete_ipv4_header(&mut bytes, location.ip_start);
            }
            IpVersion::V6 => {
                let payload_length = u16::try_from(ip_payload - 40).unwrap_or(u16::MAX);
                write(
                    &mut bytes,
                    location.ip_start + 4,
                    &payload_length.to_be_bytes(),
                );
            }
        }
        checksum::complete(&mut bytes).map_err(GsoError::Headers)?;
        segments.push(Packet {
            frame: bytes,
            offload: Offload {
                checksum: ChecksumState::Validated,
                gso: None,
            },
        });
    }
    Ok(segments)
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset + 4)?;
    Some(u32::from_be_bytes([
        *word.first()?,
        *word.get(1)?,
        *word.get(2)?,
        *word.get(3)?,
    ]))
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let pair = bytes.get(offset..offset + 2)?;
    Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
}

fn write(bytes: &mut [u8], offset: usize, data: &[u8]) {
    if let Some(target) = bytes.get_mut(offset..offset + data.len()) {
        target.copy_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::tests::{tcp_ipv4_syn, tcp_ipv6};
    use crate::checksum::{internet_checksum, verify};

    /// The SYN's headers with `payload` bytes of data, PSH|FIN|CWR|ACK set.
    fn ipv4_with_payload(payload: usize) -> Vec<u8> {
        let mut frame = tcp_ipv4_syn();
        frame.extend((0..payload).map(|byte| byte as u8));
        let total = (frame.len() - 14) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[14 + 20 + 13] = TCP_PSH | TCP_FIN | TCP_CWR | 0x10;
        frame
    }

    #[test]
    fn ipv4_packets_are_cut_into_valid_segments() {
        let frame = ipv4_with_payload(3000);
        let gso = Gso {
            kind: GsoKind::TcpV4,
            segment_size: 1448,
        };
        let segments = segment(&frame, gso).unwrap();
        assert_eq!(segments.len(), 3);
        let header = 14 + 20 + 40;
        let mut reassembled = Vec::new();
        for (index, packet) in segments.iter().enumerate() {
            let bytes = &packet.frame;
            assert_eq!(verify(bytes), Ok(true));
            assert_eq!(internet_checksum(&bytes[14..34]), 0);
            assert_eq!(
                usize::from(u16::from_be_bytes([bytes[16], bytes[17]])),
                bytes.len() - 14
            );
            assert_eq!(
                u16::from_be_bytes([bytes[18], bytes[19]]),
                0x9a1a + index as u16
            );
            let sequence = u32::from_be_bytes(bytes[38..42].try_into().unwrap());
            assert_eq!(sequence, 0x7c3d_5e01 + (index as u32) * 1448);
            let flags = bytes[14 + 20 + 13];
            assert_eq!(flags & (TCP_FIN | TCP_PSH) != 0, index == 2);
            assert_eq!(flags & TCP_CWR != 0, index == 0);
            assert_eq!(packet.offload.checksum, ChecksumState::Validated);
            reassembled.extend_from_slice(&bytes[header..]);
        }
        assert_eq!(reassembled, frame[header..]);
        assert_eq!(segments[2].frame.len(), header + 3000 - 2 * 1448);
    }

    #[test]
    fn ipv6_packets_are_cut_into_valid_segments() {
        let mut frame = tcp_ipv6();
        frame.extend(core::iter::repeat_n(0x5a, 2000));
        let payload_length = (frame.len() - 54) as u16;
        frame[18..20].copy_from_slice(&payload_length.to_be_bytes());
        let segments = segment(
            &frame,
            Gso {
                kind: GsoKind::TcpV6,
                segment_size: 1000,
            },
        )
        .unwrap();
        assert_eq!(segments.len(), 3);
        for packet in &segments {
            assert_eq!(verify(&packet.frame), Ok(true));
            let length = u16::from_be_bytes([packet.frame[18], packet.frame[19]]);
            assert_eq!(usize::from(length), packet.frame.len() - 54);
        }
    }

    #[test]
    fn mismatched_or_hostile_packets_are_refused() {
        let frame = ipv4_with_payload(100);
        let v6 = Gso {
            kind: GsoKind::TcpV6,
            segment_size: 10,
        };
        assert_eq!(segment(&frame, v6), Err(GsoError::KindMismatch));
        let tiny = Gso {
            kind: GsoKind::TcpV4,
            segment_size: 1,
        };
        assert_eq!(
            segment(&ipv4_with_payload(1000), tiny),
            Err(GsoError::TooManySegments)
        );
        let mut bad = frame.clone();
        bad[14 + 20 + 12] = 0x40; // data offset 16 bytes
        assert_eq!(
            segment(
                &bad,
                Gso {
                    kind: GsoKind::TcpV4,
                    segment_size: 100
                }
            ),
            Err(GsoError::BadTcpHeader)
        );
        assert!(matches!(
            segment(
                &frame[..20],
                Gso {
                    kind: GsoKind::TcpV4,
                    segment_size: 100
                }
            ),
            Err(GsoError::Headers(_))
        ));
        // A packet within one segment comes back whole.
        let one = segment(
            &frame,
            Gso {
                kind: GsoKind::TcpV4,
                segment_size: 1448,
            },
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].frame.len(), frame.len());
    }
}
