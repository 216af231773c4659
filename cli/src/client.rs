//! A minimal HTTP/1.1 client over `std::net::TcpStream`: one request per
//! connection (`Connection: close`), bodies by `Content-Length`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest response accepted (a console chunk or a long domain list fits
/// easily).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How long to wait to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for an answer: longer than the server's console
/// long-poll (25 s by default).
pub const READ_TIMEOUT: Duration = Duration::from_secs(40);

/// An API address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Reads `http://HOST[:PORT][/]` (port 8080 if absent); an IPv6
    /// address goes in brackets, `http://[::1]:8080`. HTTPS is not spoken;
    /// put a TLS proxy in front if the API crosses a network.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: the URL must start with http://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(format!("{url:?}: expected http://HOST:PORT"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: no ']' after the IPv6 address"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{url:?}: expected ':PORT' after ']'")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) if port.contains(':') => {
                    return Err(format!(
                        "{url:?}: write an IPv6 address in brackets, http://[{host}:{port}]:PORT"
                    ));
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 8080,
            Some(port) => port
                .parse()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| format!("{url:?}: invalid port {port:?}"))?,
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Endpoint {
            host: host.into(),
            port,
        })
    }

    /// The `Host` header's value: `HOST:PORT`, an IPv6 address bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect (refused, unreachable, timed out).
    Connect(io::Error),
    /// The connection failed mid-request.
    Io(io::Error),
    /// Connected, but no answer came within this long (the socket's read
    /// or write timeout).
    TimedOut(Duration),
    /// The answer was not HTTP the client understands.
    BadResponse(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(error) => write!(formatter, "cannot connect: {error}"),
            ClientError::Io(error) => write!(formatter, "connection failed: {error}"),
            ClientError::TimedOut(limit) => write!(
                formatter,
                "connected, but no answer within {} s (is the API up? Dom0 may still be booting)",
                limit.as_secs()
            ),
            ClientError::BadResponse(message) => write!(formatter, "bad response: {message}"),
        }
    }
}

/// The API client.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
    read_timeout: Duration,
}

impl Client {
    /// A client for `endpoint`, sending `token` if there is one.
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Client {
        Client {
            endpoint,
            token,
            read_timeout: READ_TIMEOUT,
        }
    }

    /// The same client waiting at most `limit` (at least 1 ms) for each
    /// answer.
    pub fn with_read_timeout(mut self, limit: Duration) -> Client {
        self.read_timeout = limit.max(Duration::from_millis(1));
        self
    }

    /// Sends one request and reads its response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<HttpResponse, ClientError> {
        let mut stream = self.connect()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xenolith-cli/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.endpoint.authority(),
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or(("", b""));
        if method != "GET" {
            if !body.0.is_empty() {
                head.push_str(&format!("Content-Type: {}\r\n", body.0));
            }
            head.push_str(&format!("Content-Length: {}\r\n", body.1.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.1);
        let timed_out = |error: io::Error| match error.kind() {
            // What a socket timeout reads as (EAGAIN on Linux).
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::TimedOut(self.read_timeout)
            }
            _ => ClientError::Io(error),
        };
        stream.write_all(&request).map_err(timed_out)?;
        read_response(&mut stream).map_err(|error| match error {
            ClientError::Io(error) => timed_out(error),
            other => other,
        })
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let addresses = (self.endpoint.host.as_str(), self.endpoint.port)
            .to_socket_addrs()
            .map_err(ClientError::Connect)?;
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(self.read_timeout))
                        .map_err(ClientError::Io)?;
                    stream
                        .set_write_timeout(Some(self.read_timeout))
                        .map_err(ClientError::Io)?;
                    return Ok(stream);
                }
                Err(error) => last_error = error,
            }
        }
        Err(ClientError::Connect(last_error))
    }
}

/// Reads one response: the head, then `Content-Length` bytes or, without
/// one, everything to end of stream.
pub fn read_response(stream: &mut impl Read) -> Result<HttpResponse, ClientError> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        if buffer.len() > 64 * 1024 {
            return Err(ClientError::BadResponse("response head too large".into()));
        }
        let count = stream.read(&mut chunk).map_err(ClientError::Io)?;
        if count == 0 {
            return Err(ClientError::BadResponse(
                "connection closed before a response".into(),
            ));
        }
        buffer.extend_from_slice(&chunk[..count]);
    };
    let head = std::str::from_utf8(&buffer[..head_end - 4])
        .map_err(|_| ClientError::BadResponse("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::BadResponse(format!("status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.parse::<usize>())
        .transpose()
        .map_err(|_| ClientError::BadResponse("invalid Content-Length".into()))?;
    let mut body = buffer.split_off(head_end);
    loop {
        if length.is_some_and(|length| body.len() >= length) {
            break;
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::BadResponse("response too large".into()));
        }
        let count = stream.read(&mut chunk).map_err(ClientError::Io)?;
        if count == 0 {
            if length.is_some() {
                return Err(ClientError::BadResponse("response body cut short".into()));
            }
            break;
        }
        body.extend_from_slice(&chunk[..count]);
    }
    if let Some(length) = length {
        body.truncate(length);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("http://10.0.2.15:8080/"),
            Ok(Endpoint {
                host: "10.0.2.15".into(),
                port: 8080
            })
        );
        assert_eq!(
            Endpoint::parse("http://appliance").map(|endpoint| endpoint.port),
            Ok(8080)
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:9000").map(|endpoint| endpoint.host),
            Ok("::1".into())
        );
        assert_eq!(
            Endpoint::parse("http://[::1]"),
            Ok(Endpoint {
                host: "::1".into(),
                port: 8080
            }),
            "a bracketed IPv6 address without a port"
        );
        assert_eq!(
            Endpoint::parse("http://[fe80::1]:9000/").map(|endpoint| endpoint.authority()),
            Ok("[fe80::1]:9000".into())
        );
        assert_eq!(
            Endpoint::parse("http://10.0.2.15:8080").map(|endpoint| endpoint.authority()),
            Ok("10.0.2.15:8080".into())
        );
        assert!(
            Endpoint::parse("http://::1:9000").is_err(),
            "unbracketed IPv6"
        );
        assert!(Endpoint::parse("http://[::1").is_err());
        assert!(Endpoint::parse("http://[::1]x").is_err());
        assert!(Endpoint::parse("http://x:0").is_err());
        assert!(Endpoint::parse("http://x:").is_err());
        assert!(Endpoint::parse("https://x:1").is_err());
        assert!(Endpoint::parse("http://x:port").is_err());
        assert!(Endpoint::parse("http://x:1/v1").is_err());
        assert!(Endpoint::parse("http://").is_err());
    }

    #[test]
    fn a_server_that_never_answers_is_a_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let client = Client::new(endpoint, None).with_read_timeout(Duration::from_millis(200));
        // Accepted by the kernel's backlog, never read or answered.
        let error = client.request("GET", "/v1/domains", None).unwrap_err();
        assert!(
            matches!(error, ClientError::TimedOut(limit) if limit == Duration::from_millis(200)),
            "{error:?}"
        );
        assert!(error.to_string().contains("no answer within"), "{error}");
        drop(listener);
    }

    #[test]
    fn responses() {
        let mut bytes: &[u8] =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nX: y\r\n\r\nbodyextra";
        let response = read_response(&mut bytes).unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.body, b"body");
        let mut short: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nbody";
        assert!(read_response(&mut short).is_err());
        let mut garbage: &[u8] = b"SSH-2.0-OpenSSH\r\n\r\n";
        assert!(read_response(&mut garbage).is_err());
    }
}
