//! A packet between netback and the bridge: the frame's bytes and what the
//! sender left to be done to them (checksum, segmentation).

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
}
