//! HTTP/1.1 request framing (RFC 9112), in two steps: [`parse_request`]
//! finds a complete request head in the connection's buffer and checks it
//! into a [`Request`] (method, target, version, headers), then reads the
//! body by `Content-Length`. Chunked bodies are refused (411), as are other
//! transfer codings (501): a management client always knows its body size.

use alloc::string::String;
use alloc::vec::Vec;

use crate::limits::Limits;

/// A request method. Methods no route uses are [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `DELETE`
    Delete,
    /// Any other valid method token (`PUT`, `HEAD`, ...).
    Other,
}

/// The protocol version on the request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless the
    /// client asks for keep-alive.
    Http10,
    /// `HTTP/1.1`: the connection stays open unless the client asks to close.
    Http11,
}

/// One header field, its name lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Field name in lower case.
    pub name: String,
    /// Field value without surrounding whitespace.
    pub value: String,
}

/// A complete, checked request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The method as sent, for messages.
    pub method_text: String,
    /// The target's path (before `?`).
    pub path: String,
    /// The target's query (after `?`), empty if none.
    pub query: String,
    /// The version.
    pub version: Version,
    /// Header fields in order.
    pub headers: Vec<Header>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|header| header.name == name)
            .map(|header| header.value.as_str())
    }

    /// Whether the connection should stay open after the response.
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for header in self
            .headers
            .iter()
            .filter(|header| header.name == "connection")
        {
            for option in header.value.split(',') {
                let option = option.trim();
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        }
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => keep_alive && !close,
        }
    }
}

/// Why a request was refused before routing. Each names the peer's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The request line is longer than the limit (414).
    RequestLineTooLong,
    /// Request line and headers exceed the limit (431).
    HeadTooLarge,
    /// More header fields than the limit (431).
    TooManyHeaders,
    /// The request line is not `METHOD SP target SP HTTP/x.y` (400).
    MalformedRequestLine,
    /// The target is not an absolute path of visible ASCII (400).
    MalformedTarget,
    /// A version other than HTTP/1.0 or HTTP/1.1 (505).
    UnsupportedVersion,
    /// A header line without a colon, with a bad name, with whitespace
    /// before the colon, a folded line, or bytes outside visible ASCII (400).
    MalformedHeader,
    /// `Content-Length` is not a number, or differs between fields (400).
    InvalidContentLength,
    /// A chunked body: the API needs `Content-Length` (411).
    ChunkedBody,
    /// A transfer coding other than chunked (501).
    UnsupportedTransferEncoding,
    /// `Content-Length` beyond the limit (413).
    BodyTooLarge,
}

impl RequestError {
    /// The status code answering this fault.
    pub fn status(self) -> u16 {
        match self {
            RequestError::RequestLineTooLong => 414,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::MalformedRequestLine
            | RequestError::MalformedTarget
            | RequestError::MalformedHeader
            | RequestError::InvalidContentLength => 400,
            RequestError::UnsupportedVersion => 505,
            RequestError::ChunkedBody => 411,
            RequestError::UnsupportedTransferEncoding => 501,
            RequestError::BodyTooLarge => 413,
        }
    }

    /// A message for the error body.
    pub fn message(self) -> &'static str {
        match self {
            RequestError::RequestLineTooLong => "request line too long",
            RequestError::HeadTooLarge => "request headers too large",
            RequestError::TooManyHeaders => "too many header fields",
            RequestError::MalformedRequestLine => "malformed request line",
            RequestError::MalformedTarget => "request target must be an absolute path",
            RequestError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            RequestError::MalformedHeader => "malformed header field",
            RequestError::InvalidContentLength => "invalid Content-Length",
            RequestError::ChunkedBody => {
                "chunked request bodies are not accepted: send Content-Length"
            }
            RequestError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            RequestError::BodyTooLarge => "request body too large",
        }
    }
}

/// What [`parse_request`] found in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet; read more.
    Incomplete,
    /// A request, and how many buffer bytes it took.
    Complete {
        /// The request.
        request: Request,
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
    },
}

/// Blank lines a client may send between pipelined requests (RFC 9112
/// section 2.2 asks servers to skip at least one).
pub fn leading_blank_lines(buffer: &[u8]) -> usize {
    let mut skipped = 0;
    loop {
        match buffer.get(skipped..) {
            Some([b'\r', b'\n', ..]) => skipped += 2,
            Some([b'\n', ..]) => skipped += 1,
            _ => return skipped,
        }
    }
}

/// Where the head ends (just past the blank line), searching at most the
/// head limit.
pub fn head_end(buffer: &[u8], limits: &Limits) -> Option<usize> {
    let window = buffer.get(..buffer.len().min(limits.max_head_bytes))?;
    window
        .windows(4)
        .position(|bytes| bytes == b"\r\n\r\n")
        .map(|position| position + 4)
}

/// Looks for one complete request at the front of `buffer`.
pub fn parse_request(buffer: &[u8], limits: &Limits) -> Result<Parsed, RequestError> {
    let skipped = leading_blank_lines(buffer);
    let buffer = buffer.get(skipped..).unwrap_or_default();
    let Some(end) = head_end(buffer, limits) else {
        let line_end = buffer.iter().position(|&byte| byte == b'\n');
        if line_end.unwrap_or(buffer.len()) > limits.max_request_line_bytes {
            return Err(RequestError::RequestLineTooLong);
        }
        // A request line that is already wrong is answered now, not after
        // the header timeout: a TLS handshake or other protocol sent to
        // the API never completes an HTTP head.
        match line_end {
            Some(line_end) => {
                let line = buffer.get(..line_end).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let text =
                    core::str::from_utf8(line).map_err(|_| RequestError::MalformedRequestLine)?;
                parse_request_line(text)?;
            }
            None => check_request_line_start(buffer)?,
        }
        if buffer.len() >= limits.max_head_bytes {
            return Err(RequestError::HeadTooLarge);
        }
        return Ok(Parsed::Incomplete);
    };
    let head = buffer.get(..end).unwrap_or_default();
    let (mut request, body_length) = parse_head(head, limits)?;
    let body_end = end
        .checked_add(body_length)
        .ok_or(RequestError::BodyTooLarge)?;
    let Some(body) = buffer.get(end..body_end) else {
        return Ok(Parsed::Incomplete);
    };
    request.body = Vec::from(body);
    Ok(Parsed::Complete {
        request,
        consumed: skipped + body_end,
    })
}

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// For a request at the front of `buffer` whose head is complete: whether
/// it asks `Expect: 100-continue` (HTTP/1.1 only) while its body is still
/// to come, so the server should send [`CONTINUE`] (clients such as curl
/// otherwise wait a second before sending a body). `None` while the head
/// is incomplete or does not parse ([`parse_request`] reports that).
pub fn continue_expected(buffer: &[u8], limits: &Limits) -> Option<bool> {
    let buffer = buffer.get(leading_blank_lines(buffer)..)?;
    let end = head_end(buffer, limits)?;
    let (request, body_length) = parse_head(buffer.get(..end)?, limits).ok()?;
    let body_missing = buffer.len().saturating_sub(end) < body_length;
    let asks = request
        .header("expect")
        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
    Some(request.version == Version::Http11 && body_missing && asks)
}

/// Fails on the start of a request line that no more bytes can make valid:
/// a method byte outside `tchar`, or a target not starting with `/`.
fn check_request_line_start(start: &[u8]) -> Result<(), RequestError> {
    if start == b"\r" {
        // Half of a blank line between pipelined requests.
        return Ok(());
    }
    let method_end = start
        .iter()
        .position(|&byte| byte == b' ')
        .unwrap_or(start.len());
    let (method, rest) = start.split_at(method_end);
    if !method.iter().all(|&byte| is_token_byte(byte)) || method_end == 0 && !rest.is_empty() {
        return Err(RequestError::MalformedRequestLine);
    }
    match rest.get(1) {
        Some(b'/') | None => Ok(()),
        Some(_) => Err(RequestError::MalformedTarget),
    }
}

/// Checks a head (request line, headers, blank line) and works out the
/// body's length.
fn parse_head(head: &[u8], limits: &Limits) -> Result<(Request, usize), RequestError> {
    let text = core::str::from_utf8(head).map_err(|_| RequestError::MalformedHeader)?;
    let mut lines = text
        .strip_suffix("\r\n\r\n")
        .ok_or(RequestError::MalformedRequestLine)?
        .split("\r\n");
    let request_line = lines.next().ok_or(RequestError::MalformedRequestLine)?;
    if request_line.len() > limits.max_request_line_bytes {
        return Err(RequestError::RequestLineTooLong);
    }
    let (method, method_text, path, query, version) = parse_request_line(request_line)?;
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= limits.max_headers {
            return Err(RequestError::TooManyHeaders);
        }
        headers.push(parse_header(line)?);
    }
    let request = Request {
        method,
        method_text: String::from(method_text),
        path: String::from(path),
        query: String::from(query),
        version,
        headers,
        body: Vec::new(),
    };
    let body_length = body_length(&request, limits)?;
    Ok((request, body_length))
}

type RequestLine<'a> = (Method, &'a str, &'a str, &'a str, Version);

fn parse_request_line(line: &str) -> Result<RequestLine<'_>, RequestError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::MalformedRequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(RequestError::MalformedRequestLine);
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        other => {
            let looks_like_http = other.len() == 8
                && other.starts_with("HTTP/")
                && other.as_bytes().get(6) == Some(&b'.');
            return Err(if looks_like_http {
                RequestError::UnsupportedVersion
            } else {
                RequestError::MalformedRequestLine
            });
        }
    };
    if !target.starts_with('/') || !target.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(RequestError::MalformedTarget);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let method_kind = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    Ok((method_kind, method, path, query, version))
}

fn parse_header(line: &str) -> Result<Header, RequestError> {
    let (name, value) = line.split_once(':').ok_or(RequestError::MalformedHeader)?;
    // An empty name, whitespace before the colon and obsolete line folding
    // (a line starting with whitespace) are all refused, as RFC 9112 asks.
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(RequestError::MalformedHeader);
    }
    let value_bytes_valid = value
        .bytes()
        .all(|byte| byte.is_ascii_graphic() || byte == b' ' || byte == b'\t');
    if !value_bytes_valid {
        return Err(RequestError::MalformedHeader);
    }
    Ok(Header {
        name: name.to_ascii_lowercase(),
        value: String::from(value.trim_matches([' ', '\t'])),
    })
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn body_length(request: &Request, limits: &Limits) -> Result<usize, RequestError> {
    if let Some(coding) = request.header("transfer-encoding") {
        let chunked = coding
            .split(',')
            .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Err(if chunked {
            RequestError::ChunkedBody
        } else {
            RequestError::UnsupportedTransferEncoding
        });
    }
    let mut length: Option<usize> = None;
    let fields = request
        .headers
        .iter()
        .filter(|header| header.name == "content-length");
    for field in fields {
        for item in field.value.split(',') {
            let value = parse_length(item.trim(), limits)?;
            if length.is_some_and(|length| length != value) {
                return Err(RequestError::InvalidContentLength);
            }
            length = Some(value);
        }
    }
    Ok(length.unwrap_or(0))
}

fn parse_length(text: &str, limits: &Limits) -> Result<usize, RequestError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(RequestError::InvalidContentLength);
    }
    let mut value: usize = 0;
    for digit in text.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(usize::from(digit - b'0')))
            .ok_or(RequestError::BodyTooLarge)?;
    }
    if value > limits.max_body_bytes {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Parsed, RequestError> {
        parse_request(bytes, &Limits::DEFAULT)
    }

    /// Each case's bytes are refused with its error.
    fn assert_refused(cases: &[(&[u8], RequestError)]) {
        for (bytes, error) in cases {
            assert_eq!(
                parse(bytes),
                Err(*error),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    fn complete(bytes: &[u8]) -> (Request, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { request, consumed }) => (request, consumed),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let (request, consumed) = complete(b"GET /v1/domains HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path, "/v1/domains");
        assert_eq!(request.query, "");
        assert_eq!(request.header("host"), Some("x"));
        assert_eq!(consumed, 37);
        assert!(request.keep_alive());
    }

    #[test]
    fn query_and_body() {
        let bytes = b"POST /a?b=c HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET";
        let (request, consumed) = complete(bytes);
        assert_eq!(request.query, "b=c");
        assert_eq!(request.body, b"xyz");
        assert_eq!(&bytes[consumed..], b"GET");
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz";
        for end in 0..bytes.len() {
            assert_eq!(parse(&bytes[..end]), Ok(Parsed::Incomplete), "prefix {end}");
        }
    }

    #[test]
    fn connection_options() {
        let (request, _) = complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!request.keep_alive());
        let (request, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!request.keep_alive());
        let (request, _) = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(request.keep_alive());
    }

    #[test]
    fn malformed_heads() {
        let cases: &[(&[u8], RequestError)] = &[
            (b"GET /\r\n\r\n", RequestError::MalformedRequestLine),
            (
                b"GET  / HTTP/1.1\r\n\r\n",
                RequestError::MalformedRequestLine,
            ),
            (
                b"G(T / HTTP/1.1\r\n\r\n",
                RequestError::MalformedRequestLine,
            ),
            (b"GET / FTP/1.1\r\n\r\n", RequestError::MalformedRequestLine),
            (b"GET / HTTP/2.0\r\n\r\n", RequestError::UnsupportedVersion),
            (b"GET x HTTP/1.1\r\n\r\n", RequestError::MalformedTarget),
            (
                b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
                RequestError::MalformedHeader,
            ),
            (
                b"GET / HTTP/1.1\r\nA : b\r\n\r\n",
                RequestError::MalformedHeader,
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
                RequestError::MalformedHeader,
            ),
            (
                b"GET / HTTP/1.1\r\nA: \xff\r\n\r\n",
                RequestError::MalformedHeader,
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",
                RequestError::MalformedHeader,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                RequestError::InvalidContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                RequestError::InvalidContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                RequestError::InvalidContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                RequestError::BodyTooLarge,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
                RequestError::BodyTooLarge,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                RequestError::ChunkedBody,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                RequestError::UnsupportedTransferEncoding,
            ),
        ];
        assert_refused(cases);
    }

    #[test]
    fn a_bad_request_line_is_refused_before_the_head_is_complete() {
        let cases: &[(&[u8], RequestError)] = &[
            // The start of a TLS ClientHello.
            (
                b"\x16\x03\x01\x02\x00\x01",
                RequestError::MalformedRequestLine,
            ),
            (
                b"SSH-2.0-OpenSSH_9.2\r\n",
                RequestError::MalformedRequestLine,
            ),
            (b"BLAH\r\n", RequestError::MalformedRequestLine),
            (
                b"GET /v1/domains HTTP/1.1 extra\r\nHost: x\r\n",
                RequestError::MalformedRequestLine,
            ),
            (b"GET v1", RequestError::MalformedTarget),
            (b" /", RequestError::MalformedRequestLine),
            (b"GET / HTTP/2.0\r\n", RequestError::UnsupportedVersion),
        ];
        assert_refused(cases);
        // Still incomplete, and possibly valid: keep reading.
        for bytes in [
            &b"GE"[..],
            b"GET ",
            b"GET /v1/dom",
            b"GET / HTTP/1.1\r\nHost",
        ] {
            assert_eq!(parse(bytes), Ok(Parsed::Incomplete), "{bytes:?}");
        }
    }

    #[test]
    fn continue_is_expected_only_while_an_http_1_1_body_is_missing() {
        let limits = Limits::DEFAULT;
        let head =
            b"POST /v1/domains HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            continue_expected(&head[..20], &limits),
            None,
            "head incomplete"
        );
        assert_eq!(continue_expected(head, &limits), Some(true));
        let mut partial = head.to_vec();
        partial.extend_from_slice(b"ab");
        assert_eq!(continue_expected(&partial, &limits), Some(true));
        partial.push(b'c');
        assert_eq!(
            continue_expected(&partial, &limits),
            Some(false),
            "body here"
        );
        let old = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(continue_expected(old, &limits), Some(false), "HTTP/1.0");
        let plain = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(continue_expected(plain, &limits), Some(false));
        let other = b"POST / HTTP/1.1\r\nExpect: something\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(continue_expected(other, &limits), Some(false));
    }

    #[test]
    fn repeated_equal_lengths_are_one_length() {
        let (request, _) =
            complete(b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\nContent-Length: 1\r\n\r\nx");
        assert_eq!(request.body, b"x");
    }

    #[test]
    fn size_limits() {
        let mut long_line = Vec::from(&b"GET /"[..]);
        long_line.resize(3000, b'a');
        assert_eq!(parse(&long_line), Err(RequestError::RequestLineTooLong));

        let mut many = Vec::from(&b"GET / HTTP/1.1\r\n"[..]);
        for index in 0..33 {
            many.extend_from_slice(alloc::format!("X-{index}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(RequestError::TooManyHeaders));

        let mut big = Vec::from(&b"GET / HTTP/1.1\r\n"[..]);
        while big.len() < 9000 {
            big.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        assert_eq!(parse(&big), Err(RequestError::HeadTooLarge));
    }

    #[test]
    fn blank_lines_before_a_request_are_skipped() {
        let (request, consumed) = complete(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(request.path, "/");
        assert_eq!(consumed, 22);
    }
}
