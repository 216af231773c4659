//! Fuzzes xenstored's core: byte streams from Dom0 and three guests (and
//! the introduction and release of a fourth), delivered in chunks, with
//! rounds run and output read in small pieces between them.
//!
//! Input: records of `[actor][length][length bytes]`. Actor % 8: 0 is Dom0's
//! stream, 1-3 the guests' rings, 4 introduces guest 4, 5 releases it, 6
//! reports it shut down, 7 is guest 4's ring (if introduced). The seeds in
//! `corpus/xenstore/` are well-formed request sequences in this format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::wire::{Message, MessageType, Reassembler};
use xenstore::{
    Access, Action, BufferLimits, Config, ConnectionId, DomainId, GuestFrame, Permissions, Port,
    Quotas, ReceiveError, Xenstored,
};

struct Reader {
    connection: ConnectionId,
    reassembler: Reassembler,
}

fn drain(store: &mut Xenstored, reader: &mut Reader, piece: usize) {
    let mut buffer = [0u8; 97];
    let piece = piece.clamp(1, buffer.len());
    loop {
        let count = store.read_output(reader.connection, &mut buffer[..piece]);
        if count == 0 {
            return;
        }
        let mut bytes = &buffer[..count];
        while !bytes.is_empty() {
            // The server's own output is always well formed.
            let (taken, message) = reader.reassembler.feed(bytes).expect("bad server output");
            bytes = &bytes[taken..];
            if let Some(message) = message {
                check_message(&message);
            }
        }
    }
}

fn check_message(message: &Message) {
    let header = message.header();
    let kind = MessageType::from_raw(header.message_type).expect("unknown reply type");
    if kind == MessageType::WatchEvent {
        assert_eq!((header.request_id, header.transaction_id), (0, 0));
        assert_eq!(
            message.payload().iter().filter(|&&byte| byte == 0).count(),
            2
        );
        assert!(message.payload().ends_with(b"\0"));
    }
    if kind == MessageType::Error {
        let name = message
            .payload()
            .strip_suffix(b"\0")
            .expect("unterminated error");
        assert!(xenstore::Error::from_name(name).is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Config {
        quotas: Quotas {
            nodes: 64,
            watches: 8,
            transactions: 4,
            transaction_nodes: 64,
            ..Quotas::default()
        },
        buffers: BufferLimits {
            queued_requests: 8,
            reply_bytes: 8 * 1024,
            queued_watch_events: 16,
            watch_event_bytes: 8 * 1024,
        },
        ..Config::default()
    };
    let mut store = Xenstored::new(config);
    let mut readers = vec![Reader {
        connection: store.open_stream(),
        reassembler: Reassembler::new(),
    }];
    let setup = store.open_local();
    for domain in 1..=3u16 {
        let base = format!("/local/domain/{domain}");
        let mut session = store.session(setup, None);
        session.mkdir(&format!("{base}/data")).unwrap();
        let readable =
            Permissions::new(DomainId(0), Access::None).with(DomainId(domain), Access::Read);
        session.set_permissions(&base, readable).unwrap();
        session
            .set_permissions(
                &format!("{base}/data"),
                Permissions::new(DomainId(domain), Access::None),
            )
            .unwrap();
        let connection = store
            .introduce_domain(DomainId(domain), GuestFrame(u64::from(domain)), Port(1))
            .unwrap();
        readers.push(Reader {
            connection,
            reassembler: Reassembler::new(),
        });
    }
    let mut fourth: Option<Reader> = None;
    let mut rest = data;
    while let [actor, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (chunk, next) = tail.split_at(length);
        rest = next;
        match actor % 8 {
            index @ 0..=3 => {
                let reader = &readers[usize::from(index)];
                match store.receive(reader.connection, chunk) {
                    Ok(consumed) => assert!(consumed <= chunk.len()),
                    // Broken by a bad header, or released by Dom0's RELEASE.
                    Err(ReceiveError::Protocol(_) | ReceiveError::UnknownConnection) => {}
                }
            }
            4 => {
                let connection = store
                    .introduce_domain(DomainId(4), GuestFrame(4), Port(2))
                    .unwrap();
                fourth = Some(Reader {
                    connection,
                    reassembler: Reassembler::new(),
                });
            }
            5 => {
                if store.release_domain(DomainId(4)).is_ok() {
                    assert_eq!(store.tree().owned_by(DomainId(4)), 0);
                }
                fourth = None;
            }
            6 => {
                store.domain_shut_down(DomainId(4));
            }
            _ => {
                if let Some(reader) = &fourth {
                    let _ = store.receive(reader.connection, chunk);
                }
            }
        }
        let round = store.process_round(1 + usize::from(*actor >> 6));
        assert!(round.processed <= 4 * (readers.len() + 1));
        for action in store.take_actions() {
            // INTRODUCE of a known domain resets its connection, output too;
            // the glue resets the ring, the reader starts afresh.
            if let Action::ConnectRing { connection, .. } = action {
                for reader in readers.iter_mut().chain(fourth.as_mut()) {
                    if reader.connection == connection {
                        reader.reassembler = Reassembler::new();
                    }
                }
            }
        }
        for reader in readers.iter_mut().chain(fourth.as_mut()) {
            drain(&mut store, reader, usize::from(*actor));
        }
        if let Err(problem) = store.check() {
            panic!("invariant broken: {problem}");
        }
    }
    // Everything queued gets answered.
    for _ in 0..64 {
        let round = store.process_round(8);
        for reader in readers.iter_mut().chain(fourth.as_mut()) {
            drain(&mut store, reader, 97);
        }
        if !round.more {
            break;
        }
    }
    // Dom0 may give nodes to domains that are not introduced; a release
    // takes back everything the domain owns.
    for domain in 1..=4 {
        if store.release_domain(DomainId(domain)).is_ok() {
            assert_eq!(store.tree().owned_by(DomainId(domain)), 0);
        }
    }
    store.check().unwrap();
});
