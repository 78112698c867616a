//! lingma-gateway: the request head parser (RFC 9112, sections 2 to 6). Pure: bytes in, a
//! parsed head or a refusal out, no sockets. Strict where the RFC lets a server refuse, so
//! that the gateway and any proxy in front of it can never frame one request two ways:
//!
//! - lines end in CRLF; a bare CR or LF, a NUL or any other control byte is refused;
//! - the request line is exactly `method SP target SP HTTP/x.y`; HTTP/0.9 (no version) is
//!   refused, versions other than 1.x get 505;
//! - a field line is `name ":" OWS value OWS` with a token name (no whitespace before the
//!   colon, no empty name), visible ASCII or spaces in the value; obs-fold continuation lines
//!   and non-ASCII bytes are refused;
//! - the body's length must be clear: one decimal `Content-Length` (repeats must agree), or a
//!   `Transfer-Encoding` of exactly `chunked`, never both; HTTP/1.1 needs exactly one valid
//!   `Host`.
//!
//! The parser is incremental: `HeadParser::advance` is given the whole buffered input each
//! time and resumes after the last complete line it checked, so a head trickled a byte at a
//! time costs linear work.

use std::str::FromStr;

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};

/// Longest request line and longest field line.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most field lines in a head.
pub(crate) const MAX_HEADERS: usize = 128;

/// Why a head (or the framing it declares) was refused: the status to answer with and a
/// sentence for the client. The connection is closed after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    fn bad(reason: impl Into<String>) -> Self {
        Self::new(400, reason)
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub method: Method,
    pub target: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// Parses one request head out of bytes that arrive piece by piece.
#[derive(Debug)]
pub(crate) struct HeadParser {
    max_head: usize,
    /// Where the next unchecked line starts, relative to the start of the input.
    pos: usize,
    request_line: Option<(Method, String, HTTPVersion)>,
    headers: Vec<Header>,
}

impl HeadParser {
    /// `max_head`: the most bytes a head may take, empty lines before it included.
    pub(crate) fn new(max_head: usize) -> Self {
        HeadParser {
            max_head,
            pos: 0,
            request_line: None,
            headers: Vec::new(),
        }
    }

    /// Looks at `input` (everything buffered since the head began; it only ever grows
    /// between calls): `Ok(Some((head, n)))` once the head is complete in its first `n`
    /// bytes, `Ok(None)` while more is needed.
    pub(crate) fn advance(&mut self, input: &[u8]) -> Result<Option<(Head, usize)>, Refusal> {
        loop {
            let rest = &input[self.pos.min(input.len())..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return self.incomplete(rest, input.len()).map(|()| None);
            };
            let end = self.pos + nl + 1;
            if end > self.max_head {
                return Err(self.too_large());
            }
            let line = &rest[..nl];
            let Some(line) = line.strip_suffix(b"\r") else {
                return Err(Refusal::bad(
                    "a line of the request head ends in a bare LF; lines end in CRLF",
                ));
            };
            if line.len() > MAX_LINE_BYTES {
                return Err(self.line_too_long());
            }
            self.pos = end;
            if self.request_line.is_none() {
                // RFC 9112, 2.2: empty lines before the request line are ignored.
                if !line.is_empty() {
                    self.request_line = Some(parse_request_line(line)?);
                }
                continue;
            }
            if line.is_empty() {
                let (method, target, version) = self.request_line.take().expect("checked");
                let head = Head {
                    method,
                    target,
                    version,
                    headers: std::mem::take(&mut self.headers),
                };
                return Ok(Some((head, end)));
            }
            if self.headers.len() >= MAX_HEADERS {
                return Err(Refusal::new(
                    431,
                    format!("the request has more than {MAX_HEADERS} header fields"),
                ));
            }
            self.headers.push(parse_field_line(line)?);
        }
    }

    /// Checks the unfinished line at the end of the input against the limits.
    fn incomplete(&self, partial: &[u8], total: usize) -> Result<(), Refusal> {
        if total > self.max_head {
            return Err(self.too_large());
        }
        if partial.len() > MAX_LINE_BYTES + 1 {
            return Err(self.line_too_long());
        }
        Ok(())
    }

    fn too_large(&self) -> Refusal {
        Refusal::new(
            431,
            format!("the request head is larger than {} bytes", self.max_head),
        )
    }

    fn line_too_long(&self) -> Refusal {
        if self.request_line.is_none() {
            Refusal::new(
                414,
                format!("the request line is longer than {MAX_LINE_BYTES} bytes"),
            )
        } else {
            Refusal::new(
                431,
                format!("a header line is longer than {MAX_LINE_BYTES} bytes"),
            )
        }
    }
}

/// `tchar` of RFC 9110, 5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), Refusal> {
    if let Some(&b) = line.iter().find(|&&b| !(0x20..0x7f).contains(&b)) {
        return Err(Refusal::bad(format!(
            "the request line contains the byte 0x{b:02x}; it must be visible ASCII separated by single spaces"
        )));
    }
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let (method, target, version) =
        match parts.as_slice() {
            [m, t, v] => (*m, *t, *v),
            [_, _] => return Err(Refusal::bad(
                "the request line has no HTTP version (HTTP/0.9 is not supported); send HTTP/1.1",
            )),
            _ => {
                return Err(Refusal::bad(
                    "the request line must be `METHOD target HTTP/1.1`, separated by single spaces",
                ))
            }
        };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Refusal::bad("the request method is not a valid token"));
    }
    if target.is_empty() {
        return Err(Refusal::bad("the request target is empty"));
    }
    let version = parse_version(version)?;
    let method = Method::from_str(as_str(method)).map_err(|_| Refusal::bad("bad method"))?;
    Ok((method, as_str(target).to_string(), version))
}

/// `HTTP/x.y`: 1.0 and 1.1 (a later 1.x is served as 1.1); another major version is 505.
fn parse_version(v: &[u8]) -> Result<HTTPVersion, Refusal> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major - b'0', minor - b'0') {
                (1, 0) => Ok(HTTPVersion(1, 0)),
                (1, _) => Ok(HTTPVersion(1, 1)),
                (major, minor) => Err(Refusal::new(
                    505,
                    format!("HTTP/{major}.{minor} is not supported; this server speaks HTTP/1.1"),
                )),
            }
        }
        _ => Err(Refusal::bad(format!(
            "the request line ends in {:?}, not an HTTP version such as HTTP/1.1",
            String::from_utf8_lossy(v)
        ))),
    }
}

pub(crate) fn parse_field_line(line: &[u8]) -> Result<Header, Refusal> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(Refusal::bad(
            "a header line starts with whitespace (obsolete line folding is not accepted)",
        ));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(Refusal::bad("a header line has no colon"));
    };
    let name = &line[..colon];
    if name.is_empty() {
        return Err(Refusal::bad("a header line has an empty field name"));
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Err(Refusal::bad(format!(
            "the header name {:?} is not a valid token (no whitespace before the colon)",
            String::from_utf8_lossy(name)
        )));
    }
    let value = trim_ows(&line[colon + 1..]);
    if let Some(&b) = value
        .iter()
        .find(|&&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        let what = if b >= 0x80 {
            "a non-ASCII byte".to_string()
        } else {
            format!("the control byte 0x{b:02x}")
        };
        return Err(Refusal::bad(format!(
            "the value of header {} contains {what}; header values must be visible ASCII",
            as_str(name)
        )));
    }
    Ok(Header {
        field: HeaderField::from_bytes(name).map_err(|_| Refusal::bad("bad header name"))?,
        value: AsciiString::from_ascii(value).map_err(|_| Refusal::bad("bad header value"))?,
    })
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Only called on bytes already checked to be ASCII.
fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

impl Head {
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    }

    /// Comma-separated list elements of every field line named `name`, trimmed, non-empty.
    fn list<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// How the body is delimited (RFC 9112, 6.1 to 6.3), or why that cannot be told safely.
    pub(crate) fn framing(&self) -> Result<Framing, Refusal> {
        let has_te = self.values("Transfer-Encoding").next().is_some();
        let has_cl = self.values("Content-Length").next().is_some();
        if has_te && has_cl {
            return Err(Refusal::bad(
                "the request has both Transfer-Encoding and Content-Length; send one",
            ));
        }
        if has_te {
            if self.version == HTTPVersion(1, 0) {
                return Err(Refusal::bad(
                    "Transfer-Encoding is not defined for HTTP/1.0 requests",
                ));
            }
            let codings: Vec<&str> = self.list("Transfer-Encoding").collect();
            return match codings.as_slice() {
                [c] if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
                [.., last] if last.eq_ignore_ascii_case("chunked") => Err(Refusal::new(
                    501,
                    "only the chunked transfer coding is supported",
                )),
                _ => Err(Refusal::bad(
                    "the last Transfer-Encoding of a request must be chunked",
                )),
            };
        }
        if !has_cl {
            return Ok(Framing::None);
        }
        let mut length: Option<u64> = None;
        for v in self.values("Content-Length") {
            let v = v.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Refusal::bad(format!(
                    "Content-Length {v:?} is not a decimal number"
                )));
            }
            let n: u64 = v
                .parse()
                .map_err(|_| Refusal::bad("Content-Length is too large to be a length"))?;
            match length {
                Some(prev) if prev != n => {
                    return Err(Refusal::bad(
                        "the request has Content-Length values that differ",
                    ))
                }
                _ => length = Some(n),
            }
        }
        Ok(match length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        })
    }

    /// RFC 9112, 3.2: an HTTP/1.1 request has exactly one `Host`, a valid authority.
    pub(crate) fn check_host(&self) -> Result<(), Refusal> {
        let hosts: Vec<&str> = self.values("Host").collect();
        match hosts.as_slice() {
            [] if self.version == HTTPVersion(1, 0) => Ok(()),
            [] => Err(Refusal::bad("an HTTP/1.1 request needs a Host header")),
            [h] if valid_authority(h) => Ok(()),
            [_] => Err(Refusal::bad("the Host header is not a valid host[:port]")),
            _ => Err(Refusal::bad("the request has more than one Host header")),
        }
    }

    /// `Expect`: `Ok(true)` for `100-continue`; any other expectation is refused with 417.
    pub(crate) fn expects_continue(&self) -> Result<bool, Refusal> {
        let mut expects = false;
        if self.values("Expect").any(|v| v.trim().is_empty()) {
            return Err(Refusal::new(417, "an empty expectation is not supported"));
        }
        for v in self.list("Expect") {
            if v.eq_ignore_ascii_case("100-continue") {
                expects = true;
            } else {
                return Err(Refusal::new(
                    417,
                    format!("the expectation {v:?} is not supported"),
                ));
            }
        }
        Ok(expects)
    }

    /// Whether the `Connection` header lists `option`.
    pub(crate) fn connection_has(&self, option: &str) -> bool {
        self.list("Connection")
            .any(|v| v.eq_ignore_ascii_case(option))
    }

    /// Whether the connection may carry another request after this one: HTTP/1.1 without
    /// `Connection: close` (HTTP/1.0 connections are always closed after one request).
    pub(crate) fn keep_alive(&self) -> bool {
        self.version == HTTPVersion(1, 1) && !self.connection_has("close")
    }
}

/// `uri-host [ ":" port ]` (RFC 3986): a bracketed IP literal, or a name / IPv4 address of
/// unreserved, percent-encoded and sub-delimiter characters.
fn valid_authority(v: &str) -> bool {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.is_empty()
                    || !ip
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
                {
                    return false;
                }
                match after {
                    "" => (ip, None),
                    p => match p.strip_prefix(':') {
                        Some(port) => (ip, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 5);
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:".contains(&b));
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<(Head, usize)>, Refusal> {
        HeadParser::new(64 * 1024).advance(raw)
    }

    fn refused(raw: &[u8]) -> u16 {
        match parse(raw) {
            Err(r) => r.status,
            Ok(Some((head, _))) => match head.framing().and(head.check_host()) {
                Err(r) => r.status,
                Ok(_) => panic!("accepted: {:?}", String::from_utf8_lossy(raw)),
            },
            Ok(None) => panic!("incomplete: {:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_plain_head_parses_and_reports_its_length() {
        let raw =
            b"\r\nPOST /v1/messages HTTP/1.1\r\nHost: a:1\r\nContent-Length:  5 \r\n\r\nhello";
        let (head, n) = parse(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 5);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.target, "/v1/messages");
        assert_eq!(head.version, HTTPVersion(1, 1));
        assert_eq!(head.framing(), Ok(Framing::Length(5)));
        assert!(head.check_host().is_ok());
        assert!(head.keep_alive());
    }

    #[test]
    fn cut_anywhere_the_head_parses_the_same() {
        let raw = b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nX-A: b c\r\nConnection: keep-alive, close\r\n\r\nGET /next";
        let whole = parse(raw).unwrap().unwrap();
        for cut in 0..raw.len() {
            let mut p = HeadParser::new(64 * 1024);
            let first = p.advance(&raw[..cut]).unwrap();
            let (head, n) = match first {
                Some(done) => done,
                None => p.advance(raw).unwrap().unwrap(),
            };
            assert_eq!(n, whole.1, "cut at {cut}");
            assert_eq!(head.headers.len(), 3);
            assert!(!head.keep_alive());
        }
    }

    #[test]
    fn grammar_violations_are_refused_with_400() {
        for raw in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",
            b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x1b[2J HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tAuthorization: Bearer k\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n Authorization: Bearer k\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization : Bearer k\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nnocolon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x1bb\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(refused(raw), 400, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn other_refusals_have_their_own_status() {
        assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(refused(b"PRI * HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(refused(b"GET / HTTP/0.9\r\n\r\n"), 505);
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_LINE_BYTES));
        assert_eq!(refused(long_target.as_bytes()), 414);
        let long_header = format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(MAX_LINE_BYTES));
        assert_eq!(refused(long_header.as_bytes()), 431);
        let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        assert_eq!(refused(many.as_bytes()), 431);
        let big = format!("GET / HTTP/1.1\r\n{}", "X-A: 1234567890\r\n".repeat(20));
        assert_eq!(
            HeadParser::new(200)
                .advance(big.as_bytes())
                .unwrap_err()
                .status,
            431
        );
    }

    #[test]
    fn lenient_where_the_rfc_says_so() {
        // A later 1.x minor version is served as 1.1; HTTP/1.0 needs no Host.
        let (h, _) = parse(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.version, HTTPVersion(1, 1));
        let (h, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.check_host().is_ok());
        assert!(!h.keep_alive());
        // Repeated equal lengths, empty values, IPv6 and port hosts, chunked in any case.
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Empty:\r\nTransfer-Encoding: Chunked\r\n\r\n",
        ] {
            let (h, _) = parse(raw).unwrap().unwrap();
            assert!(h.framing().is_ok() && h.check_host().is_ok());
        }
    }

    #[test]
    fn expectations() {
        let (h, _) = parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.expects_continue(), Ok(true));
        let (h, _) = parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.expects_continue().unwrap_err().status, 417);
        let (h, _) = parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.expects_continue().unwrap_err().status, 417);
    }
}
