//! The management API from the host: boots the appliance with an
//! `appliance-config` that sets an API token, its virtio NIC on QEMU's user
//! network with a host port forwarded to Dom0's API port, waits for Dom0's
//! address, and speaks HTTP/1.1 to it with `std::net::TcpStream`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Failure, Qemu, Running, TempDir, boot_timeout, make_iso_with_modules};

/// The token the test appliance config sets (32+ characters).
pub const TOKEN: &str = "xenolith-integration-test-token-0123456789";

/// Dom0's API port in the test appliance config (the default).
pub const API_PORT: u16 = 8080;

/// A free TCP port on the host's loopback, for QEMU to forward.
pub fn free_port() -> Result<u16, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The test appliance config: DHCP, the API on [`API_PORT`] with [`TOKEN`],
/// plus `extra` lines (`guests = [...]` and the like).
pub fn appliance_config(extra: &str) -> String {
    format!("network = \"dhcp\"\napi_port = {API_PORT}\napi_token = \"{TOKEN}\"\n{extra}")
}

/// A booted appliance whose API the host reaches.
pub struct ApiAppliance {
    pub qemu: Running,
    /// The host port forwarded to Dom0's API.
    pub port: u16,
    /// Dom0's address as it logged it (`10.0.2.15/24`).
    pub address: String,
}

/// Boots the appliance (interactive, one virtio NIC on QEMU's user network
/// with `127.0.0.1:<free port>` forwarded to Dom0's [`API_PORT`]) with the
/// `appliance-config` module `config` and then `modules`; waits until Dom0
/// has an address and listens.
pub fn boot_with_api(
    dir: &TempDir,
    config: &str,
    modules: &[(&Path, &str)],
) -> Result<ApiAppliance, Failure> {
    boot_with_api_on(dir, config, API_PORT, modules)
}

/// As [`boot_with_api`], with the API on Dom0's port `api_port` (the
/// config's `api_port`).
pub fn boot_with_api_on(
    dir: &TempDir,
    config: &str,
    api_port: u16,
    modules: &[(&Path, &str)],
) -> Result<ApiAppliance, Failure> {
    let mut appliance = boot_forwarding(dir, config, api_port, modules)?;
    appliance.qemu.wait_for(
        &format!("dom0: management API on TCP port {api_port}"),
        boot_timeout(),
    )?;
    // A static address is logged before the API's line, a lease after.
    let line = match appliance.qemu.serial_line_with(&["dom0: address "]) {
        Some(line) => line,
        None => appliance.qemu.wait_for("dom0: address ", boot_timeout())?,
    };
    appliance.address = line
        .split("dom0: address ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    Ok(appliance)
}

/// Boots as [`boot_with_api_on`] does without waiting for anything
/// (`address` is left empty).
pub fn boot_forwarding(
    dir: &TempDir,
    config: &str,
    api_port: u16,
    modules: &[(&Path, &str)],
) -> Result<ApiAppliance, Failure> {
    let config = dir.write("appliance.cfg", config.as_bytes())?;
    let mut all: Vec<(&Path, &str)> = vec![(&config, "appliance-config appliance.cfg")];
    all.extend_from_slice(modules);
    let iso = make_iso_with_modules(dir, "--", &all)?;
    let (qemu, port) = qemu_forwarding(iso, api_port)?;
    Ok(ApiAppliance {
        qemu: qemu.spawn()?,
        port,
        address: String::new(),
    })
}

/// QEMU booting `iso` with a virtio NIC on its user network and a free
/// host port forwarded to Dom0's `api_port`; returns it (to add arguments
/// to) and the host port.
pub fn qemu_forwarding(iso: PathBuf, api_port: u16) -> Result<(Qemu, u16), Failure> {
    let port = free_port()?;
    let qemu = Qemu::iso(iso).user_nic_forwarding(port, api_port);
    Ok((qemu, port))
}

/// One HTTP response as the client read it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// Writes `bytes` on a new connection to `127.0.0.1:port` and reads until
/// the server closes it (or `timeout`).
pub fn exchange(port: u16, bytes: &[u8], timeout: Duration) -> Result<Vec<u8>, Failure> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(bytes)?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset after the answer still leaves the answer.
        Err(_) if !answer.is_empty() => {}
        Err(error) => return Err(Failure::new(format!("reading the answer: {error}"))),
    }
    let _ = stream.shutdown(Shutdown::Both);
    Ok(answer)
}

/// Parses one response (`Content-Length` framed).
pub fn parse_response(bytes: &[u8]) -> Result<HttpResponse, Failure> {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::new(format!("not an HTTP response: {text:?}")));
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Failure::new(format!("no status in {head:?}")))?;
    let response = HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    };
    let length: usize = response
        .header("content-length")
        .and_then(|length| length.parse().ok())
        .ok_or_else(|| Failure::new(format!("no Content-Length in {head:?}")))?;
    if response.body.len() < length {
        return Err(Failure::new(format!(
            "body cut short: {} of {length} bytes: {text:?}",
            response.body.len()
        )));
    }
    Ok(HttpResponse {
        body: response.body[..length].to_string(),
        ..response
    })
}

/// Sends one request with `Connection: close` and reads the answer.
/// `token` goes in a bearer `Authorization` header; `body` is a content
/// type and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<HttpResponse, Failure> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: xenolith\r\nConnection: close\r\n");
    if let Some(token) = token {
        text.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match body {
        Some((content_type, body)) => text.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => text.push_str("\r\n"),
    }
    parse_response(&exchange(port, text.as_bytes(), timeout)?)
}

/// `GET path` with the right token.
pub fn get(port: u16, path: &str) -> Result<HttpResponse, Failure> {
    request(port, "GET", path, Some(TOKEN), None, boot_timeout())
}

/// Repeats `GET /v1/host` until it answers 200 (Dom0's address may take a
/// moment to reach QEMU's ARP table); returns how long that took.
pub fn wait_for_api(port: u16, timeout: Duration) -> Result<Duration, Failure> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < timeout {
        match request(port, "GET", "/v1/host", Some(TOKEN), None, timeout) {
            Ok(response) if response.status == 200 => return Ok(started.elapsed()),
            Ok(response) => last = format!("status {}: {}", response.status, response.body),
            Err(failure) => last = failure.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(Failure::new(format!(
        "the API never answered GET /v1/host with 200 (last: {last})"
    )))
}

/// The unsigned integer after `"key":` in a JSON text, if any.
pub fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\""))?;
    let rest = json.get(at + key.len() + 2..)?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The string after `"key":` in a JSON text, if any (no escapes).
pub fn json_string(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\""))?;
    let rest = json.get(at + key.len() + 2..)?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(rest.split('"').next()?.to_string())
}
