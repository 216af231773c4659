//! Fuzzes the management API: hostile bytes on several connections with
//! time passing, against the fake backend, checking that every answer is an
//! HTTP response, nothing follows a close and the connection bound holds;
//! also the JSON parser and the request framing on the raw input.
//!
//! Input: records of `[operation][length][length bytes]`. Operation % 4:
//! 0 the bytes arrive on connection `operation / 4 % 4`; 1 `length` * 100
//! ms pass and the server polls; 2 a connection is accepted; 3 connection
//! `operation / 4 % 4` is closed by its peer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgmt_api::fake::FakeBackend;
use mgmt_api::http::{self, Parsed};
use mgmt_api::{Access, ConnectionId, Instant, Limits, Output, Server, ServerConfig, Token, json};

fn check(outputs: &[Output], closed: &mut bool) {
    for output in outputs {
        match output {
            Output::Send(bytes) => {
                assert!(!*closed, "bytes after close");
                assert!(bytes.starts_with(b"HTTP/1.1 "), "not a response");
            }
            Output::Close => *closed = true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = json::parse(data);
    if let Ok(Parsed::Complete { consumed, .. }) = http::parse_request(data, &Limits::DEFAULT) {
        assert!(consumed <= data.len());
    }

    let limits = Limits {
        max_connections: 4,
        ..Limits::DEFAULT
    };
    let mut server = Server::new(ServerConfig {
        access: Access::Token(Token::new("0123456789abcdef0123456789abcdef")),
        limits,
    });
    let mut backend = FakeBackend::new();
    let mut now = Instant::from_millis(0);
    let mut open: Vec<(ConnectionId, bool)> = Vec::new();
    let mut rest = data;
    while let [operation, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (bytes, after) = tail.split_at(length);
        rest = after;
        let slot = usize::from(operation / 4 % 4);
        match operation % 4 {
            0 => {
                if let Some((id, closed)) = open.get_mut(slot) {
                    let outputs = server.receive(*id, bytes, now, &mut backend);
                    if *closed {
                        assert!(outputs.iter().all(|output| *output == Output::Close));
                    } else {
                        check(&outputs, closed);
                    }
                }
            }
            1 => {
                now = Instant::from_millis(now.millis + 100 * length as u64);
                for (id, output) in server.poll(now, &mut backend) {
                    if let Some((_, closed)) = open.iter_mut().find(|(open, _)| *open == id) {
                        check(core::slice::from_ref(&output), closed);
                    }
                }
            }
            2 => match server.accept(now) {
                Ok(id) => open.push((id, false)),
                Err(refused) => assert!(refused.response.starts_with(b"HTTP/1.1 503 ")),
            },
            _ => {
                if slot < open.len() {
                    let (id, _) = open.remove(slot);
                    server.peer_closed(id);
                }
            }
        }
        assert!(server.connection_count() <= limits.max_connections);
    }
});
