//! Connection-level scenarios: whole requests through [`Server`] against
//! the fake backend, with time passed in.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::backend::{BuildStatus, DomainId, DomainRef};
use crate::fake::FakeBackend;
use crate::json::{self, Value};
use crate::{Access, ConnectionId, Instant, Limits, Output, Server, ServerConfig, Token};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn at(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn new_server() -> (Server, FakeBackend) {
    let server = Server::new(ServerConfig {
        access: Access::Token(Token::new(TOKEN)),
        limits: Limits::DEFAULT,
    });
    (server, FakeBackend::new())
}

/// A parsed response from the output bytes.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        json::parse(&self.body).unwrap()
    }
}

/// Splits outputs into responses and whether a close came last.
fn parse_replies(outputs: &[Output]) -> (Vec<Reply>, bool) {
    let mut bytes = Vec::new();
    let mut closed = false;
    for output in outputs {
        match output {
            Output::Send(data) => {
                assert!(!closed, "bytes after close");
                bytes.extend_from_slice(data);
            }
            Output::Close => closed = true,
        }
    }
    let mut replies = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = core::str::from_utf8(&rest[..end - 4]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.into(), value.into())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "Content-Length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        replies.push(Reply {
            status,
            headers,
            body: rest[end..end + length].into(),
        });
        rest = &rest[end + length..];
    }
    (replies, closed)
}

fn polled(server: &mut Server, backend: &mut FakeBackend, now: u64) -> Vec<Output> {
    server
        .poll(at(now), backend)
        .into_iter()
        .map(|(_, output)| output)
        .collect()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
}

fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn send(
    server: &mut Server,
    backend: &mut FakeBackend,
    id: ConnectionId,
    bytes: &str,
    now: u64,
) -> (Vec<Reply>, bool) {
    parse_replies(&server.receive(id, bytes.as_bytes(), at(now), backend))
}

/// One request on a fresh connection; the connection stays open.
fn one(server: &mut Server, backend: &mut FakeBackend, request: &str) -> Reply {
    let id = server.accept(at(0)).unwrap();
    let (mut replies, closed) = send(server, backend, id, request, 0);
    assert_eq!(replies.len(), 1, "{request}");
    assert!(!closed);
    server.peer_closed(id);
    replies.remove(0)
}

const GUEST: &str = "name = 'web'\ntype = 'pvh'\nkernel = 'vmlinuz'\nmemory = 512\nvcpus = 2\n";

#[test]
fn lists_domains() {
    let (mut server, mut backend) = new_server();
    let reply = one(&mut server, &mut backend, &get("/v1/domains"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let value = reply.json();
    let domains = value.get("domains").unwrap().as_array().unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].get("name").unwrap().as_str(), Some("Domain-0"));
    assert_eq!(domains[0].get("state").unwrap().as_str(), Some("r-----"));
}

#[test]
fn create_get_act_destroy() {
    let (mut server, mut backend) = new_server();
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", GUEST),
    );
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("Location"), Some("/v1/domains/1"));
    assert_eq!(reply.json().get("memory_mib").unwrap().as_u64(), Some(512));
    // Answered once the domain exists: its kernel is still loading.
    assert_eq!(
        reply.json().get("build").unwrap().as_str(),
        Some("building")
    );
    assert!(reply.json().get("error").is_none());

    let again = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", GUEST),
    );
    assert_eq!(again.status, 409);

    let json_body = r#"{"name": "db", "type": "pvh", "kernel": "vmlinuz", "memory": 256}"#;
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "application/json", json_body),
    );
    assert_eq!(
        reply.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json().get("id").unwrap().as_u64(), Some(2));

    let reply = one(&mut server, &mut backend, &get("/v1/domains/web"));
    assert_eq!(reply.json().get("vcpus").unwrap().as_u64(), Some(2));
    let reply = one(&mut server, &mut backend, &get("/v1/domains/2"));
    assert_eq!(reply.json().get("name").unwrap().as_str(), Some("db"));

    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains/web/pause", "text/plain", ""),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().get("status").unwrap().as_str(), Some("done"));
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains/web/pause", "text/plain", ""),
    );
    assert_eq!(reply.status, 409);
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains/web/unpause", "text/plain", ""),
    );
    assert_eq!(reply.status, 200);
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains/web/shutdown", "text/plain", ""),
    );
    assert_eq!(reply.status, 202);
    assert_eq!(
        reply.json().get("status").unwrap().as_str(),
        Some("requested")
    );
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains/0/reboot", "text/plain", ""),
    );
    assert_eq!(reply.status, 409);

    let destroy =
        format!("DELETE /v1/domains/web HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let reply = one(&mut server, &mut backend, &destroy);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json().get("action").unwrap().as_str(),
        Some("destroy")
    );
    let reply = one(&mut server, &mut backend, &destroy);
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json().get("error").unwrap().as_str(),
        Some("no such domain")
    );
    assert_eq!(reply.json().get("code").unwrap().as_u64(), Some(404));
}

#[test]
fn a_failed_build_shows_its_error() {
    let (mut server, mut backend) = new_server();
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", GUEST),
    );
    assert_eq!(reply.status, 201);
    backend.set_build(
        DomainId(1),
        BuildStatus::Failed("the kernel is unusable".into()),
    );
    let reply = one(&mut server, &mut backend, &get("/v1/domains/1"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().get("build").unwrap().as_str(), Some("failed"));
    assert_eq!(
        reply.json().get("error").unwrap().as_str(),
        Some("the kernel is unusable")
    );
    let reply = one(&mut server, &mut backend, &get("/v1/domains/0"));
    assert_eq!(reply.json().get("build").unwrap().as_str(), Some("ready"));
}

#[test]
fn create_refusals() {
    let (mut server, mut backend) = new_server();
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", "name = \n"),
    );
    assert_eq!(reply.status, 422);
    let message = String::from(reply.json().get("error").unwrap().as_str().unwrap());
    assert!(message.starts_with("invalid config: 1:"), "{message}");
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "application/x-www-form-urlencoded", "a=b"),
    );
    assert_eq!(reply.status, 415);
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "application/json", "{\"name\": null}"),
    );
    assert_eq!(reply.status, 400);
    let reply = one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "application/json", "{\"name\": "),
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .json()
            .get("error")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("invalid JSON at byte")
    );
}

#[test]
fn authentication() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let (replies, closed) = send(
        &mut server,
        &mut backend,
        id,
        "GET /v1/domains HTTP/1.1\r\n\r\n",
        0,
    );
    assert_eq!(replies[0].status, 401);
    assert_eq!(
        replies[0].header("WWW-Authenticate"),
        Some("Bearer realm=\"xenolith\"")
    );
    assert!(!closed, "a 401 keeps the connection");
    let wrong = "GET /v1/domains HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdeX\r\n\r\n";
    let (replies, _) = send(&mut server, &mut backend, id, wrong, 0);
    assert_eq!(replies[0].status, 401);
    // Unknown paths need the token too: no route is revealed.
    let (replies, _) = send(
        &mut server,
        &mut backend,
        id,
        "GET /nothing HTTP/1.1\r\n\r\n",
        0,
    );
    assert_eq!(replies[0].status, 401);
    let (replies, _) = send(&mut server, &mut backend, id, &get("/v1/domains"), 0);
    assert_eq!(replies[0].status, 200);

    let mut open = Server::new(ServerConfig {
        access: Access::Open,
        limits: Limits::DEFAULT,
    });
    let id = open.accept(at(0)).unwrap();
    let (replies, _) = send(
        &mut open,
        &mut backend,
        id,
        "GET /v1/host HTTP/1.1\r\n\r\n",
        0,
    );
    assert_eq!(replies[0].status, 200);
    assert_eq!(replies[0].json().get("cpus").unwrap().as_u64(), Some(4));
    assert_eq!(
        replies[0].json().get("api_version").unwrap().as_str(),
        Some("1")
    );
}

#[test]
fn malformed_request_gets_400_closes_and_others_are_served() {
    let (mut server, mut backend) = new_server();
    let good = server.accept(at(0)).unwrap();
    let bad = server.accept(at(0)).unwrap();
    let (replies, closed) = send(&mut server, &mut backend, good, "GET /v1/domains HT", 0);
    assert!(replies.is_empty() && !closed);
    let (replies, closed) = send(&mut server, &mut backend, bad, "HELLO THERE\r\n\r\n", 1);
    assert_eq!(replies[0].status, 400);
    assert_eq!(replies[0].header("Connection"), Some("close"));
    assert_eq!(
        replies[0].json().get("error").unwrap().as_str(),
        Some("malformed request line")
    );
    assert!(closed);
    assert_eq!(server.connection_count(), 1);
    // Bytes for the closed connection are not processed.
    assert_eq!(
        server.receive(bad, get("/v1/host").as_bytes(), at(2), &mut backend),
        [Output::Close]
    );
    let rest = &get("/v1/domains")["GET /v1/domains HT".len()..];
    let (replies, closed) = send(&mut server, &mut backend, good, rest, 2);
    assert_eq!(replies[0].status, 200);
    assert!(!closed);
}

#[test]
fn expect_100_continue_gets_the_interim_answer_once_then_the_response() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let request = post("/v1/domains", "text/plain", GUEST).replacen(
        "\r\n\r\n",
        "\r\nExpect: 100-continue\r\n\r\n",
        1,
    );
    let head_end = request.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(
        server.receive(id, &request.as_bytes()[..head_end], at(0), &mut backend),
        [Output::Send(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())]
    );
    // Part of the body: no second interim answer.
    let middle = head_end + 10;
    assert!(
        server
            .receive(
                id,
                &request.as_bytes()[head_end..middle],
                at(1),
                &mut backend
            )
            .is_empty()
    );
    let (replies, closed) = send(&mut server, &mut backend, id, &request[middle..], 2);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 201);
    assert!(!closed);
    // The next request on the connection asks again and is answered again.
    let again = request.replace("'web'", "'db'");
    let head_end = again.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(
        server.receive(id, &again.as_bytes()[..head_end], at(3), &mut backend),
        [Output::Send(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())]
    );
    // The whole request at once needs no interim answer.
    let id = server.accept(at(4)).unwrap();
    let whole = request.replace("'web'", "'mail'");
    let (replies, _) = send(&mut server, &mut backend, id, &whole, 4);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 201);
}

#[test]
fn another_protocol_gets_400_at_once_not_after_the_header_timeout() {
    let (mut server, mut backend) = new_server();
    // A TLS ClientHello's first bytes: no line end, ever.
    let id = server.accept(at(0)).unwrap();
    let outputs = server.receive(
        id,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        at(0),
        &mut backend,
    );
    let (replies, closed) = parse_replies(&outputs);
    assert_eq!(replies[0].status, 400);
    assert!(closed);
    // A line that is not a request line, before any blank line.
    let id = server.accept(at(0)).unwrap();
    let (replies, closed) = send(&mut server, &mut backend, id, "HELLO THERE\r\n", 0);
    assert_eq!(replies[0].status, 400);
    assert!(closed);
    assert_eq!(server.connection_count(), 0);
}

#[test]
fn framing_errors() {
    let cases = [
        (
            format!(
                "GET /v1/host HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(9000)
            ),
            431,
        ),
        (
            format!("GET /v1/host HTTP/1.1\r\nX-Big: {}", "a".repeat(9000)),
            431,
        ),
        (format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000)), 414),
        (
            format!(
                "POST /v1/domains HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                70_000
            ),
            413,
        ),
        (
            String::from(
                "POST /v1/domains HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
            411,
        ),
        (
            String::from("POST /v1/domains HTTP/1.1\r\nTransfer-Encoding: br\r\n\r\n"),
            501,
        ),
        (String::from("GET /v1/host HTTP/3.0\r\n\r\n"), 505),
        (
            String::from("GET /v1/host HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            400,
        ),
    ];
    for (request, status) in cases {
        let (mut server, mut backend) = new_server();
        let id = server.accept(at(0)).unwrap();
        let (replies, closed) = send(&mut server, &mut backend, id, &request, 0);
        assert_eq!(replies.len(), 1, "{}", &request[..40]);
        assert_eq!(replies[0].status, status, "{}", &request[..40]);
        assert!(closed);
        assert_eq!(server.connection_count(), 0);
    }
}

#[test]
fn routing_errors_keep_the_connection() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let (replies, closed) = send(&mut server, &mut backend, id, &get("/v1/nothing"), 0);
    assert_eq!(replies[0].status, 404);
    assert!(!closed);
    let put = format!("PUT /v1/domains HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let (replies, closed) = send(&mut server, &mut backend, id, &put, 0);
    assert_eq!(replies[0].status, 405);
    assert_eq!(replies[0].header("Allow"), Some("GET, POST"));
    assert!(!closed);
    let (replies, _) = send(
        &mut server,
        &mut backend,
        id,
        &get("/v1/domains/no%20such"),
        0,
    );
    assert_eq!(replies[0].status, 400);
    let (replies, _) = send(&mut server, &mut backend, id, &get("/v1/domains/ghost"), 0);
    assert_eq!(replies[0].status, 404);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let burst = format!(
        "{}{}\r\n{}{}",
        get("/v1/host"),
        post("/v1/domains", "text/plain", GUEST),
        get("/v1/domains/web"),
        get("/nothing"),
    );
    let (replies, closed) = send(&mut server, &mut backend, id, &burst, 0);
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    assert_eq!(statuses, [200, 201, 200, 404]);
    assert!(!closed);

    // The same stream a byte at a time gives the same answers.
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let mut outputs = Vec::new();
    for byte in burst.as_bytes() {
        outputs.extend(server.receive(id, &[*byte], at(0), &mut backend));
    }
    let (replies, _) = parse_replies(&outputs);
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    assert_eq!(statuses, [200, 201, 200, 404]);
}

#[test]
fn connection_close_and_http_1_0() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let request = format!(
        "GET /v1/host HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n{}",
        get("/v1/host")
    );
    let (replies, closed) = send(&mut server, &mut backend, id, &request, 0);
    assert_eq!(replies.len(), 1, "nothing after a close is answered");
    assert!(closed);
    let id = server.accept(at(0)).unwrap();
    let request = format!("GET /v1/host HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let (replies, closed) = send(&mut server, &mut backend, id, &request, 0);
    assert_eq!(replies[0].status, 200);
    assert!(closed);
}

#[test]
fn slowloris_times_out() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let request = get("/v1/host");
    // One byte a second: each byte is activity, but the head has 10 s.
    for (second, byte) in request.as_bytes()[..20].iter().enumerate() {
        let now = second as u64 * 1000;
        assert!(
            server
                .receive(id, &[*byte], at(now), &mut backend)
                .is_empty()
        );
        assert_eq!(server.next_deadline(), Some(at(10_000)), "at {now}");
        let (replies, closed) = parse_replies(&polled(&mut server, &mut backend, now));
        if now >= 10_000 {
            assert_eq!(replies[0].status, 408);
            assert!(closed);
            assert_eq!(server.connection_count(), 0);
            return;
        }
        assert!(replies.is_empty() && !closed, "at {now}");
    }
    panic!("never timed out");
}

#[test]
fn slow_body_times_out_and_idle_connections_close() {
    let (mut server, mut backend) = new_server();
    let id = server.accept(at(0)).unwrap();
    let request = post("/v1/domains", "text/plain", GUEST);
    let head_and_some = &request[..request.len() - 5];
    send(&mut server, &mut backend, id, head_and_some, 0);
    // The head is complete: the next deadline is the request's 30 s, not
    // the head's 10 s, which a caller polling on deadlines would find
    // passed again and again for 20 s.
    assert_eq!(server.next_deadline(), Some(at(30_000)));
    assert!(
        server.poll(at(29_999), &mut backend).is_empty(),
        "head done: body has 30 s"
    );
    assert_eq!(server.next_deadline(), Some(at(30_000)));
    let (replies, closed) = parse_replies(
        &server
            .poll(at(30_000), &mut backend)
            .into_iter()
            .map(|(_, output)| output)
            .collect::<Vec<_>>(),
    );
    assert_eq!(replies[0].status, 408);
    assert!(closed);

    let id = server.accept(at(0)).unwrap();
    send(&mut server, &mut backend, id, &get("/v1/host"), 5_000);
    assert_eq!(server.next_deadline(), Some(at(65_000)));
    assert!(server.poll(at(64_999), &mut backend).is_empty());
    assert_eq!(server.poll(at(65_000), &mut backend), [(id, Output::Close)]);
    assert_eq!(server.connection_count(), 0);
}

#[test]
fn console_long_poll() {
    let (mut server, mut backend) = new_server();
    one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", GUEST),
    );
    let web = DomainRef::Name("web".into());

    let reply = one(&mut server, &mut backend, &get("/v1/domains/web/console"));
    let value = reply.json();
    assert_eq!(value.get("data").unwrap().as_str(), Some("Booting web\n"));
    assert_eq!(value.get("next").unwrap().as_u64(), Some(12));

    let id = server.accept(at(0)).unwrap();
    let burst = format!(
        "{}{}",
        get("/v1/domains/web/console?since=12"),
        get("/v1/host")
    );
    let (replies, _) = send(&mut server, &mut backend, id, &burst, 1_000);
    assert!(
        replies.is_empty(),
        "waits for bytes, holding the pipelined request"
    );
    assert_eq!(server.next_deadline(), Some(at(26_000)));
    assert!(server.poll(at(2_000), &mut backend).is_empty());
    backend.push_console(&web, b"login: ");
    let outputs: Vec<Output> = server
        .poll(at(3_000), &mut backend)
        .into_iter()
        .map(|(_, output)| output)
        .collect();
    let (replies, closed) = parse_replies(&outputs);
    assert_eq!(replies.len(), 2);
    assert_eq!(
        replies[0].json().get("data").unwrap().as_str(),
        Some("login: ")
    );
    assert_eq!(replies[0].json().get("next").unwrap().as_u64(), Some(19));
    assert_eq!(replies[1].json().get("cpus").unwrap().as_u64(), Some(4));
    assert!(!closed);

    // Nothing new before the wait ends: an empty answer at the deadline.
    let (replies, _) = send(
        &mut server,
        &mut backend,
        id,
        &get("/v1/domains/web/console?since=19"),
        10_000,
    );
    assert!(replies.is_empty());
    assert!(server.poll(at(34_999), &mut backend).is_empty());
    let outputs: Vec<Output> = server
        .poll(at(35_000), &mut backend)
        .into_iter()
        .map(|(_, output)| output)
        .collect();
    let (replies, _) = parse_replies(&outputs);
    assert_eq!(replies[0].json().get("data").unwrap().as_str(), Some(""));
    assert_eq!(replies[0].json().get("next").unwrap().as_u64(), Some(19));

    // A domain destroyed during the wait ends it with 404.
    send(
        &mut server,
        &mut backend,
        id,
        &get("/v1/domains/web/console?since=19"),
        40_000,
    );
    backend.act(&web, crate::DomainAction::Destroy).unwrap();
    let outputs: Vec<Output> = server
        .poll(at(40_001), &mut backend)
        .into_iter()
        .map(|(_, output)| output)
        .collect();
    assert_eq!(parse_replies(&outputs).0[0].status, 404);
}

use crate::Backend as _;

#[test]
fn console_keeps_split_utf8_for_the_next_read() {
    let (mut server, mut backend) = new_server();
    one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", GUEST),
    );
    let web = DomainRef::Id(DomainId(1));
    backend.push_console(&web, "é".as_bytes().get(..1).unwrap());
    let reply = one(
        &mut server,
        &mut backend,
        &get("/v1/domains/web/console?since=0"),
    );
    assert_eq!(
        reply.json().get("data").unwrap().as_str(),
        Some("Booting web\n")
    );
    assert_eq!(reply.json().get("next").unwrap().as_u64(), Some(12));
}

#[test]
fn connection_limit() {
    let (mut server, mut backend) = new_server();
    for _ in 0..Limits::DEFAULT.max_connections {
        server.accept(at(0)).unwrap();
    }
    let refused = server.accept(at(0)).unwrap_err();
    let (replies, _) = parse_replies(&[Output::Send(refused.response)]);
    assert_eq!(replies[0].status, 503);
    server.peer_closed(ConnectionId(0));
    let id = server.accept(at(0)).unwrap();
    let (replies, _) = send(&mut server, &mut backend, id, &get("/metrics"), 0);
    let text = String::from_utf8(replies[0].body.clone()).unwrap();
    assert!(
        replies[0]
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        text.contains("xenolith_api_connections_refused_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("xenolith_api_connections_open 16\n"),
        "{text}"
    );
    assert!(
        text.contains("xenolith_api_responses_total{code=\"503\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("xenolith_domain_memory_mib{domain=\"Domain-0\"} 256\n"),
        "{text}"
    );
}

#[test]
fn a_long_poll_with_too_much_pipelined_behind_it_is_closed() {
    let (mut server, mut backend) = new_server();
    one(
        &mut server,
        &mut backend,
        &post("/v1/domains", "text/plain", GUEST),
    );
    let id = server.accept(at(0)).unwrap();
    send(
        &mut server,
        &mut backend,
        id,
        &get("/v1/domains/web/console?since=12"),
        0,
    );
    let flood = get("/v1/host").repeat(2000);
    let (replies, closed) = send(&mut server, &mut backend, id, &flood, 0);
    assert!(replies.is_empty());
    assert!(closed);
}

/// Deterministic random bytes and mutations of valid requests: whatever
/// arrives, the server answers or waits and never panics.
#[test]
fn random_input_never_panics() {
    let (mut server, mut backend) = new_server();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let samples = [
        get("/v1/domains"),
        post(
            "/v1/domains",
            "application/json",
            r#"{"name":"x","memory":64,"kernel":"k"}"#,
        ),
        get("/v1/domains/1/console?since=0"),
        post("/v1/domains/1/pause", "text/plain", ""),
    ];
    for round in 0..3000u64 {
        let mut bytes = samples[(next() % 4) as usize].clone().into_bytes();
        for _ in 0..(next() % 4) {
            let position = (next() as usize) % bytes.len();
            bytes[position] = next() as u8;
        }
        let id = match server.accept(at(round)) {
            Ok(id) => id,
            Err(_) => {
                server.poll(at(round + 100_000), &mut backend);
                continue;
            }
        };
        let split = (next() as usize) % bytes.len();
        server.receive(id, &bytes[..split], at(round), &mut backend);
        server.receive(id, &bytes[split..], at(round), &mut backend);
        server.poll(at(round + 30_000), &mut backend);
        server.peer_closed(id);
    }
}
