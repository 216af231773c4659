//! The xenstore wire format (`xs_wire.h`): the 16-byte `xsd_sockmsg` header,
//! message types, a checked view over one message, and the reassembly of
//! messages from a byte stream that arrives in arbitrary pieces.

use alloc::vec::Vec;
use core::fmt;

/// Bytes in the `xsd_sockmsg` header: type, req_id, tx_id, len (u32 LE each).
pub const HEADER_SIZE: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`: the largest payload in either direction.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: the longest absolute path.
pub const ABSOLUTE_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: the longest relative path (and path-max quota).
pub const RELATIVE_PATH_MAX: usize = 2048;
/// Bytes in each direction of the shared ring page.
pub const RING_SIZE: usize = 1024;

/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the ring page's `error` field is used.
pub const FEATURE_ERROR: u32 = 2;
/// `XENSTORE_SERVER_FEATURE_WATCHDEPTH`: WATCH takes an optional depth.
pub const FEATURE_WATCH_DEPTH: u32 = 4;
/// `XENSTORE_SERVER_FEATURE_DOMID_ANY`: permissions may name `DOMID_ANY`.
pub const FEATURE_DOMID_ANY: u32 = 8;

/// `XENSTORE_ERROR_PROTO`: what the ring's `error` field says after a
/// protocol violation (payload too long).
pub const RING_ERROR_PROTOCOL: u32 = 3;

/// `enum xsd_sockmsg_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum MessageType {
    /// `XS_CONTROL` (alias `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPermissions = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Remove = 13,
    /// `XS_SET_PERMS`.
    SetPermissions = 14,
    /// `XS_WATCH_EVENT` (server to client only).
    WatchEvent = 15,
    /// `XS_ERROR` (server to client only).
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (20, `XS_RESTRICT`, was removed).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
    /// `XS_GET_FEATURE`.
    GetFeature = 23,
    /// `XS_SET_FEATURE`.
    SetFeature = 24,
    /// `XS_GET_QUOTA`.
    GetQuota = 25,
    /// `XS_SET_QUOTA`.
    SetQuota = 26,
}

impl MessageType {
    /// `XS_INVALID`: guaranteed never to be a valid type.
    pub const INVALID: u32 = 0xffff;

    /// The type a raw header value names; `None` for 20, 27.. and 0xffff.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => Self::Control,
            1 => Self::Directory,
            2 => Self::Read,
            3 => Self::GetPermissions,
            4 => Self::Watch,
            5 => Self::Unwatch,
            6 => Self::TransactionStart,
            7 => Self::TransactionEnd,
            8 => Self::Introduce,
            9 => Self::Release,
            10 => Self::GetDomainPath,
            11 => Self::Write,
            12 => Self::Mkdir,
            13 => Self::Remove,
            14 => Self::SetPermissions,
            15 => Self::WatchEvent,
            16 => Self::Error,
            17 => Self::IsDomainIntroduced,
            18 => Self::Resume,
            19 => Self::SetTarget,
            21 => Self::ResetWatches,
            22 => Self::DirectoryPart,
            23 => Self::GetFeature,
            24 => Self::SetFeature,
            25 => Self::GetQuota,
            26 => Self::SetQuota,
            _ => return None,
        })
    }

    /// The raw header value.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Types only the privileged domain may send (`XS_FLAG_PRIV` in C
    /// xenstored). The others answer `EACCES` before their payload is read.
    pub const fn is_privileged(self) -> bool {
        matches!(
            self,
            Self::Control
                | Self::Introduce
                | Self::Release
                | Self::IsDomainIntroduced
                | Self::Resume
                | Self::SetTarget
                | Self::SetFeature
                | Self::GetQuota
                | Self::SetQuota
        )
    }

    /// Types that ignore the header's tx_id (`XS_FLAG_NOTID`).
    pub const fn ignores_transaction(self) -> bool {
        matches!(self, Self::Watch | Self::Unwatch)
    }
}

/// The `xsd_sockmsg` header, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// The raw message type; see [`MessageType::from_raw`].
    pub message_type: u32,
    /// Echoed in the reply so the client can match it.
    pub request_id: u32,
    /// The transaction the request belongs to; 0 for none.
    pub transaction_id: u32,
    /// Payload bytes following the header.
    pub length: u32,
}

impl Header {
    /// Decodes the 16 header bytes (no checks: see [`MessageView`]).
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE]) -> Self {
        let word = |index: usize| {
            let mut value = [0u8; 4];
            if let Some(source) = bytes.get(index * 4..index * 4 + 4) {
                value.copy_from_slice(source);
            }
            u32::from_le_bytes(value)
        };
        Self {
            message_type: word(0),
            request_id: word(1),
            transaction_id: word(2),
            length: word(3),
        }
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        for (chunk, value) in bytes.chunks_exact_mut(4).zip([
            self.message_type,
            self.request_id,
            self.transaction_id,
            self.length,
        ]) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }
}

/// Why a byte stream or message buffer is not a valid message. Unlike an
/// [`Error`](crate::Error) reply, these break the connection: C xenstored
/// stops serving a client that sends `len > 4096`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// Fewer than 16 bytes.
    TruncatedHeader,
    /// The header announces more than [`PAYLOAD_MAX`] bytes.
    PayloadTooLong {
        /// The announced length.
        length: u32,
    },
    /// The buffer does not hold exactly header + announced payload.
    LengthMismatch {
        /// The announced length.
        announced: u32,
        /// The payload bytes present.
        present: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader => write!(formatter, "truncated xenstore header"),
            Self::PayloadTooLong { length } => {
                write!(
                    formatter,
                    "xenstore payload of {length} bytes exceeds {PAYLOAD_MAX}"
                )
            }
            Self::LengthMismatch { announced, present } => write!(
                formatter,
                "xenstore header announces {announced} payload bytes, {present} present"
            ),
        }
    }
}

/// A checked, borrowed view of one whole message: after
/// [`MessageView::new_checked`] the payload length is known to match the
/// header and to be at most [`PAYLOAD_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    header: Header,
    payload: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Checks `bytes` holds exactly one message.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, ProtocolError> {
        let (header_bytes, payload) = bytes
            .split_first_chunk::<HEADER_SIZE>()
            .ok_or(ProtocolError::TruncatedHeader)?;
        let header = Header::from_bytes(header_bytes);
        Self::from_parts(header, payload)
    }

    /// Checks a header against a payload received separately.
    pub fn from_parts(header: Header, payload: &'a [u8]) -> Result<Self, ProtocolError> {
        if header.length as usize > PAYLOAD_MAX {
            return Err(ProtocolError::PayloadTooLong {
                length: header.length,
            });
        }
        if payload.len() != header.length as usize {
            return Err(ProtocolError::LengthMismatch {
                announced: header.length,
                present: payload.len(),
            });
        }
        Ok(Self { header, payload })
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The message type, if the raw value names one.
    pub fn message_type(&self) -> Option<MessageType> {
        MessageType::from_raw(self.header.message_type)
    }

    /// The payload (at most [`PAYLOAD_MAX`] bytes).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// One owned, checked message (a reassembled request, or a reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    header: Header,
    payload: Vec<u8>,
}

impl Message {
    /// Builds a message; fails if the payload exceeds [`PAYLOAD_MAX`].
    pub fn new(
        message_type: u32,
        request_id: u32,
        transaction_id: u32,
        payload: Vec<u8>,
    ) -> Result<Self, ProtocolError> {
        let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let header = Header {
            message_type,
            request_id,
            transaction_id,
            length,
        };
        MessageView::from_parts(header, &payload)?;
        Ok(Self { header, payload })
    }

    /// An `ERROR` reply naming `error`, echoing the request's ids.
    pub fn error_reply(request_id: u32, transaction_id: u32, error: crate::Error) -> Self {
        let mut payload = Vec::with_capacity(error.name().len() + 1);
        payload.extend_from_slice(error.name().as_bytes());
        payload.push(0);
        let header = Header {
            message_type: MessageType::Error.raw(),
            request_id,
            transaction_id,
            length: payload.len() as u32,
        };
        Self { header, payload }
    }

    /// A borrowed view.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            header: self.header,
            payload: &self.payload,
        }
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Bytes on the wire: header then payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE + self.payload.len()
    }

    /// Header and payload as one buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.encoded_len());
        bytes.extend_from_slice(&self.header.to_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }
}

/// Reassembles messages from a byte stream (the ring hands over whatever
/// bytes the producer has published, which may split a header or payload).
/// Holds at most one partial message: 16 + [`PAYLOAD_MAX`] bytes.
#[derive(Clone, Debug, Default)]
pub struct Reassembler {
    header: [u8; HEADER_SIZE],
    header_filled: usize,
    expected: Option<Header>,
    payload: Vec<u8>,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether part of a message has been received.
    pub fn is_mid_message(&self) -> bool {
        self.header_filled > 0
    }

    /// Consumes bytes until one message completes or `bytes` runs out.
    /// Returns the bytes consumed and the completed message, if any; the
    /// caller feeds the rest again. A header announcing more than
    /// [`PAYLOAD_MAX`] is an error after which the stream is unusable.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, Option<Message>), ProtocolError> {
        let mut consumed = 0;
        if self.expected.is_none() {
            let wanted = HEADER_SIZE - self.header_filled;
            let taken = wanted.min(bytes.len());
            let source = bytes.get(..taken).unwrap_or_default();
            if let Some(target) = self
                .header
                .get_mut(self.header_filled..self.header_filled + taken)
            {
                target.copy_from_slice(source);
            }
            self.header_filled += taken;
            consumed += taken;
            if self.header_filled < HEADER_SIZE {
                return Ok((consumed, None));
            }
            let header = Header::from_bytes(&self.header);
            if header.length as usize > PAYLOAD_MAX {
                return Err(ProtocolError::PayloadTooLong {
                    length: header.length,
                });
            }
            self.payload = Vec::with_capacity(header.length as usize);
            self.expected = Some(header);
        }
        let Some(header) = self.expected else {
            return Ok((consumed, None));
        };
        let rest = bytes.get(consumed..).unwrap_or_default();
        let wanted = header.length as usize - self.payload.len();
        let taken = wanted.min(rest.len());
        self.payload
            .extend_from_slice(rest.get(..taken).unwrap_or_default());
        consumed += taken;
        if self.payload.len() < header.length as usize {
            return Ok((consumed, None));
        }
        let payload = core::mem::take(&mut self.payload);
        self.expected = None;
        self.header_filled = 0;
        Ok((consumed, Some(Message { header, payload })))
    }

    /// Drops any partial message.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn encoded(message_type: u32, payload: &[u8]) -> Vec<u8> {
        Message::new(message_type, 7, 0, payload.to_vec())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn header_round_trips_little_endian() {
        let header = Header {
            message_type: 2,
            request_id: 0x0102_0304,
            transaction_id: 9,
            length: 5,
        };
        let bytes = header.to_bytes();
        assert_eq!(&bytes[4..8], &[4, 3, 2, 1]);
        assert_eq!(Header::from_bytes(&bytes), header);
    }

    #[test]
    fn message_types_match_xs_wire() {
        for raw in 0..=30u32 {
            match MessageType::from_raw(raw) {
                Some(kind) => assert_eq!(kind.raw(), raw),
                None => assert!(raw == 20 || raw > 26),
            }
        }
        assert_eq!(MessageType::from_raw(MessageType::INVALID), None);
        assert_eq!(MessageType::ResetWatches.raw(), 21);
        assert_eq!(MessageType::DirectoryPart.raw(), 22);
    }

    #[test]
    fn view_rejects_bad_lengths() {
        assert_eq!(
            MessageView::new_checked(&[0; 15]),
            Err(ProtocolError::TruncatedHeader)
        );
        let mut bytes = encoded(2, b"abc\0");
        bytes.push(0);
        assert!(matches!(
            MessageView::new_checked(&bytes),
            Err(ProtocolError::LengthMismatch { .. })
        ));
        let long = Header {
            length: 4097,
            ..Header::default()
        };
        assert_eq!(
            MessageView::new_checked(&long.to_bytes()),
            Err(ProtocolError::PayloadTooLong { length: 4097 })
        );
        assert!(Message::new(2, 0, 0, vec![0; PAYLOAD_MAX]).is_ok());
        assert!(Message::new(2, 0, 0, vec![0; PAYLOAD_MAX + 1]).is_err());
    }

    #[test]
    fn reassembles_byte_by_byte() {
        let mut stream = encoded(2, b"device\0");
        stream.extend(encoded(1, b""));
        let mut reassembler = Reassembler::new();
        let mut messages = Vec::new();
        for byte in &stream {
            let (consumed, message) = reassembler.feed(core::slice::from_ref(byte)).unwrap();
            assert_eq!(consumed, 1);
            messages.extend(message);
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].payload(), b"device\0");
        assert_eq!(messages[1].payload(), b"");
        assert!(!reassembler.is_mid_message());
    }

    #[test]
    fn feed_stops_after_each_message() {
        let mut stream = encoded(2, b"a\0");
        stream.extend(encoded(2, b"b\0"));
        let mut reassembler = Reassembler::new();
        let (consumed, message) = reassembler.feed(&stream).unwrap();
        assert_eq!(consumed, HEADER_SIZE + 2);
        assert_eq!(message.unwrap().payload(), b"a\0");
        let (consumed, message) = reassembler.feed(&stream[consumed..]).unwrap();
        assert_eq!(consumed, HEADER_SIZE + 2);
        assert_eq!(message.unwrap().payload(), b"b\0");
    }

    #[test]
    fn oversized_header_is_a_protocol_error() {
        let header = Header {
            message_type: 2,
            length: 5000,
            ..Header::default()
        };
        let mut reassembler = Reassembler::new();
        assert_eq!(
            reassembler.feed(&header.to_bytes()),
            Err(ProtocolError::PayloadTooLong { length: 5000 })
        );
    }
}
