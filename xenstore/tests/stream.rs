//! The byte stream: messages split anywhere, several per chunk, malformed
//! headers and payloads.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::Harness;
use xenstore::wire::{Header, Message, MessageType, MessageView, ProtocolError};
use xenstore::{DomainId, GuestFrame, Port, ReceiveError, Request, Xenstored};

fn encode(request_id: u32, request: Request<'_>) -> Vec<u8> {
    Message::new(
        request.message_type().raw(),
        request_id,
        0,
        request.to_payload(),
    )
    .unwrap()
    .to_bytes()
}

fn replies(store: &mut Xenstored, connection: xenstore::ConnectionId) -> Vec<Message> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 333];
    loop {
        let count = store.read_output(connection, &mut buffer);
        if count == 0 {
            break;
        }
        bytes.extend_from_slice(&buffer[..count]);
    }
    let mut reassembler = xenstore::wire::Reassembler::new();
    let mut messages = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (taken, message) = reassembler.feed(rest).unwrap();
        rest = &rest[taken..];
        messages.extend(message);
    }
    messages
}

#[test]
fn messages_split_at_every_point() {
    let mut stream = encode(
        1,
        Request::Write {
            path: "/a",
            value: b"value",
        },
    );
    stream.extend(encode(2, Request::Read { path: "/a" }));
    stream.extend(encode(3, Request::Directory { path: "/" }));
    for split in 0..=stream.len() {
        let mut store = Xenstored::default();
        let connection = store.open_stream();
        assert_eq!(store.receive(connection, &stream[..split]), Ok(split));
        store.process_round(8);
        assert_eq!(
            store.receive(connection, &stream[split..]),
            Ok(stream.len() - split)
        );
        store.process_round(8);
        let messages = replies(&mut store, connection);
        let ids: Vec<u32> = messages
            .iter()
            .map(|message| message.header().request_id)
            .collect();
        assert_eq!(ids, [1, 2, 3], "split at {split}");
        assert_eq!(messages[1].payload(), b"value");
    }
}

#[test]
fn messages_one_byte_at_a_time() {
    let mut store = Xenstored::default();
    let connection = store.open_stream();
    let mut stream = Vec::new();
    for index in 0..20u32 {
        let path = format!("/n{index}");
        stream.extend(encode(
            index,
            Request::Write {
                path: &path,
                value: b"",
            },
        ));
    }
    for byte in &stream {
        assert_eq!(store.receive(connection, std::slice::from_ref(byte)), Ok(1));
        store.process_round(1);
    }
    let messages = replies(&mut store, connection);
    assert_eq!(messages.len(), 20);
    assert!(messages.iter().all(|message| message.payload() == b"OK\0"));
}

#[test]
fn oversized_length_breaks_the_connection() {
    let mut harness = Harness::default();
    let guest = harness.guest(5);
    let other = harness.guest(6);
    let header = Header {
        message_type: MessageType::Read.raw(),
        request_id: 1,
        transaction_id: 0,
        length: 4097,
    };
    // A good request, then the bad header in the same chunk: the connection
    // is dead from there on, and nothing more is answered on it.
    let mut bytes = encode(9, Request::Read { path: "data" });
    bytes.extend_from_slice(&header.to_bytes());
    let error = ProtocolError::PayloadTooLong { length: 4097 };
    assert_eq!(
        harness.store.receive(guest, &bytes),
        Err(ReceiveError::Protocol(error))
    );
    assert_eq!(
        harness.store.connection(guest).unwrap().broken(),
        Some(error)
    );
    assert_eq!(
        harness.store.receive(guest, b"more"),
        Err(ReceiveError::Protocol(error))
    );
    assert_eq!(harness.store.process_round(8).processed, 0);
    // Other domains carry on.
    assert_eq!(harness.read(other, "data").unwrap(), b"");
    // A new introduction (the guest reconnecting) revives it.
    harness
        .store
        .introduce_domain(DomainId(5), GuestFrame(1), Port(1))
        .unwrap();
    assert_eq!(harness.read(guest, "data").unwrap(), b"");
    for length in [4096u32, 0] {
        let header = Header { length, ..header };
        let mut message = header.to_bytes().to_vec();
        message.resize(16 + length as usize, b'a');
        let mut store = Xenstored::default();
        let connection = store.open_stream();
        assert_eq!(store.receive(connection, &message), Ok(message.len()));
        store.process_round(1);
        let reply = &replies(&mut store, connection)[0];
        assert_eq!(reply.header().message_type, MessageType::Error.raw());
        assert_eq!(reply.payload(), b"EINVAL\0");
    }
    let maximum = Header {
        length: u32::MAX,
        ..header
    };
    let mut store = Xenstored::default();
    let connection = store.open_stream();
    assert!(store.receive(connection, &maximum.to_bytes()).is_err());
}

#[test]
fn garbage_types_and_payloads_get_errors_not_panics() {
    let mut store = Xenstored::default();
    let connection = store.open_stream();
    let cases: [(u32, &[u8]); 8] = [
        (0xdead_beef, b"x"),
        (MessageType::WatchEvent.raw(), b"/a\0t\0"),
        (MessageType::Error.raw(), b"EINVAL\0"),
        (20, b""),
        (MessageType::Write.raw(), b""),
        (MessageType::SetPermissions.raw(), b"/\0"),
        (MessageType::Read.raw(), b"/\0\0"),
        (MessageType::Introduce.raw(), b"\0\0\0"),
    ];
    for (index, (kind, payload)) in cases.iter().enumerate() {
        let message = Message::new(*kind, index as u32, 0, payload.to_vec()).unwrap();
        store.receive(connection, &message.to_bytes()).unwrap();
    }
    store.process_round(100);
    let messages = replies(&mut store, connection);
    let errors: Vec<&[u8]> = messages.iter().map(Message::payload).collect();
    assert_eq!(
        errors,
        [
            &b"ENOSYS\0"[..],
            b"ENOSYS\0",
            b"ENOSYS\0",
            b"ENOSYS\0",
            b"EINVAL\0",
            b"EINVAL\0",
            b"EINVAL\0",
            b"EINVAL\0"
        ]
    );
    assert!(
        messages
            .iter()
            .all(|message| message.header().message_type == MessageType::Error.raw())
    );
    store.check().unwrap();
}

#[test]
fn output_survives_a_tiny_ring() {
    // The response ring is 1024 bytes; a 4 KiB reply crosses it in pieces.
    let mut store = Xenstored::default();
    let connection = store.open_stream();
    let value = vec![b'v'; 4000];
    store
        .receive(
            connection,
            &encode(
                1,
                Request::Write {
                    path: "/big",
                    value: &value,
                },
            ),
        )
        .unwrap();
    store
        .receive(connection, &encode(2, Request::Read { path: "/big" }))
        .unwrap();
    store.process_round(2);
    let mut bytes = Vec::new();
    let mut ring = [0u8; 1024];
    loop {
        let count = store.read_output(connection, &mut ring[..1000]);
        if count == 0 {
            break;
        }
        bytes.extend_from_slice(&ring[..count]);
    }
    let first = MessageView::new_checked(&bytes[..19]).unwrap();
    assert_eq!(first.payload(), b"OK\0");
    let second = MessageView::new_checked(&bytes[19..]).unwrap();
    assert_eq!(second.payload(), value.as_slice());
}
