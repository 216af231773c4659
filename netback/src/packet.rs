//! A packet between netback and the bridge: the frame's bytes and what the
//! sender left to be done to them (checksum, segmentation).

use alloc::vec;
use alloc::vec::Vec;

use crate::wire::Gso;

/// The state of a frame's transport checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChecksumState {
    /// Nobody vouched for it: a receiver verifies it.
    #[default]
    Unknown,
    /// Blank: it must be filled before the frame reaches a wire or a
    /// receiver that cannot take it blank ([`crate::checksum::complete`]).
    Partial,
    /// Known good (the sender validated it, or netback computed it).
    Validated,
}

/// What a frame's sender left to the rest of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Offload {
    /// The transport checksum's state.
    pub checksum: ChecksumState,
    /// Segmentation still to do (the frame is larger than one segment).
    pub gso: Option<Gso>,
}

/// A frame with its offload state.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Packet {
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// What remains to be done to it.
    pub offload: Offload,
}

impl Packet {
    /// A frame whose checksums nobody vouched for and which needs no
    /// segmentation.
    pub fn plain(frame: Vec<u8>) -> Self {
        Self {
            frame,
            offload: Offload::default(),
        }
    }

    /// The packet as frames for a wire, or any receiver that takes no
    /// offloads (a NIC driven without them, Dom0's own stack): a GSO packet
    /// cut into segments, each blank checksum filled. Frames that cannot be
    /// finished (headers a guest garbled) are left out, and the flag is
    /// then false so the caller can count a drop. At most
    /// [`crate::gso::MAX_SEGMENTS`] frames come out.
    pub fn wire_frames(&self) -> (Vec<Vec<u8>>, bool) {
        let packets = match self.offload.gso {
            Some(gso) => match crate::gso::segment(&self.frame, gso) {
                Ok(segments) => segments,
                Err(_) => return (Vec::new(), false),
            },
            None => vec![self.clone()],
        };
        let mut complete = true;
        let mut frames = Vec::with_capacity(packets.len());
        for mut packet in packets {
            if packet.offload.checksum == ChecksumState::Partial
                && crate::checksum::complete(&mut packet.frame).is_err()
            {
                complete = false;
                continue;
            }
            frames.push(packet.frame);
        }
        (frames, complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::tests::{tcp_ipv4_syn, udp_ipv4_dns};
    use crate::checksum::{prepare_partial, verify};
    use crate::wire::GsoKind;

    #[test]
    fn plain_and_validated_frames_go_out_as_they_are() {
        let frame = udp_ipv4_dns();
        assert_eq!(
            Packet::plain(frame.clone()).wire_frames(),
            (vec![frame.clone()], true)
        );
        // Not even a valid IP packet: nothing to finish, so untouched.
        let odd = vec![0xee; 60];
        assert_eq!(Packet::plain(odd.clone()).wire_frames(), (vec![odd], true));
    }

    #[test]
    fn a_blank_checksum_is_filled_before_the_wire() {
        let mut frame = udp_ipv4_dns();
        prepare_partial(&mut frame).unwrap();
        assert_eq!(verify(&frame), Ok(false));
        let packet = Packet {
            frame,
            offload: Offload {
                checksum: ChecksumState::Partial,
                gso: None,
            },
        };
        let (frames, complete) = packet.wire_frames();
        assert!(complete);
        assert_eq!(frames.len(), 1);
        assert_eq!(verify(&frames[0]), Ok(true));
        assert_eq!(frames[0], udp_ipv4_dns());
    }

    #[test]
    fn a_gso_packet_leaves_as_valid_segments() {
        let mut frame = tcp_ipv4_syn();
        frame.extend((0..4000).map(|byte| (byte * 7) as u8));
        let total = (frame.len() - 14) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        prepare_partial(&mut frame).unwrap();
        let packet = Packet {
            frame,
            offload: Offload {
                checksum: ChecksumState::Partial,
                gso: Some(Gso {
                    kind: GsoKind::TcpV4,
                    segment_size: 1448,
                }),
            },
        };
        let (frames, complete) = packet.wire_frames();
        assert!(complete);
        assert_eq!(frames.len(), 3);
        for frame in &frames {
            assert!(frame.len() <= 14 + 20 + 40 + 1448);
            assert_eq!(verify(frame), Ok(true));
        }
    }

    #[test]
    fn garbled_offloads_are_left_out_and_reported() {
        let garbage = Packet {
            frame: vec![0x45; 80],
            offload: Offload {
                checksum: ChecksumState::Partial,
                gso: None,
            },
        };
        assert_eq!(garbage.wire_frames(), (Vec::new(), false));
        let udp_as_tcp = Packet {
            frame: udp_ipv4_dns(),
            offload: Offload {
                checksum: ChecksumState::Partial,
                gso: Some(Gso {
                    kind: GsoKind::TcpV4,
                    segment_size: 100,
                }),
            },
        };
        assert_eq!(udp_as_tcp.wire_frames(), (Vec::new(), false));
    }
}
