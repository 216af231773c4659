//! A real TCP server for the CLI's tests: `mgmt_api::Server` with the fake
//! backend behind a `std::net` listener on 127.0.0.1, as Dom0 serves it.

#![allow(dead_code, reason = "each test file uses its own part of this module")]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mgmt_api::fake::FakeBackend;
use mgmt_api::{Access, Instant, Limits, Output, Server, ServerConfig, Token};

/// The token the server wants.
pub const TOKEN: &str = "test-token-test-token-test-token-0";

/// Serves connections one at a time until the test process ends; returns
/// the URL and the backend (to look at what the CLI did).
pub fn start_server() -> (String, Arc<Mutex<FakeBackend>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let backend = Arc::new(Mutex::new(FakeBackend::new()));
    let shared = Arc::clone(&backend);
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let now = || Instant::from_millis(started.elapsed().as_millis() as u64);
        let mut server = Server::new(ServerConfig {
            access: Access::Token(Token::new(TOKEN)),
            limits: Limits::DEFAULT,
        });
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let id = match server.accept(now()) {
                Ok(id) => id,
                Err(refused) => {
                    let _ = stream.write_all(&refused.response);
                    continue;
                }
            };
            let mut buffer = [0u8; 4096];
            'connection: loop {
                let outputs = match stream.read(&mut buffer) {
                    Ok(0) => {
                        server.peer_closed(id);
                        break;
                    }
                    Ok(count) => {
                        let mut backend = shared.lock().unwrap();
                        server.receive(id, &buffer[..count], now(), &mut *backend)
                    }
                    Err(error)
                        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        let mut backend = shared.lock().unwrap();
                        server
                            .poll(now(), &mut *backend)
                            .into_iter()
                            .filter(|(owner, _)| *owner == id)
                            .map(|(_, output)| output)
                            .collect()
                    }
                    Err(_) => {
                        server.peer_closed(id);
                        break;
                    }
                };
                for output in outputs {
                    match output {
                        Output::Send(bytes) => {
                            if stream.write_all(&bytes).is_err() {
                                server.peer_closed(id);
                                break 'connection;
                            }
                        }
                        Output::Close => break 'connection,
                    }
                }
            }
        }
    });
    (url, backend)
}
