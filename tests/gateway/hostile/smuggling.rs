//! Finding 1: request smuggling. A body the gateway answers without reading whole (a 401,
//! 404 or 405, a 503, a GET route sent a body, a refused `Expect: 100-continue`) must never
//! reach the parser as a request: the one answer carries `Connection: close` and the server
//! closes, lingering so that a client still writing its body reads the answer, not a reset.
//!
//! The raw-connection helpers at the end (`Conn`, `error_shape`) serve the other modules of
//! the HTTP layer's findings too (`workers`, `pipelining`, `rebinding`, `grammar`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const KEY: &str = "sk-smuggle";
/// The padding before the hidden request: as much as the old drain took before it let the
/// connection go on.
const PADDING: usize = 1 << 20;
/// How long a test waits for the server to close a connection it must close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

fn keyed_gateway(opts: Options) -> GatewayProcess {
    GatewayProcess::start_with(Options {
        key: Some(KEY.into()),
        ..opts
    })
}

/// A complete request hidden at the end of a body: if it is ever parsed, it gets an answer.
fn hidden_request() -> Vec<u8> {
    b"GET /capabilities HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
}

/// A request head (`auth`: with the key) whose body is `PADDING` bytes and then `tail`.
fn with_body(method: &str, path: &str, auth: bool, framing: Framing, tail: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    );
    if auth {
        head.push_str(&format!("Authorization: Bearer {KEY}\r\n"));
    }
    let mut body = vec![b'a'; PADDING];
    body.extend_from_slice(tail);
    framed(head, framing, &body)
}

/// `head` (its field lines, without the empty line that ends it), then `body` in `framing`.
fn framed(mut head: String, framing: Framing, body: &[u8]) -> Vec<u8> {
    match framing {
        Framing::Length => head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len())),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    let mut raw = head.into_bytes();
    match framing {
        Framing::Length => raw.extend_from_slice(body),
        Framing::Chunked => {
            for chunk in body.chunks(64 * 1024) {
                raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                raw.extend_from_slice(chunk);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
        }
    }
    raw
}

/// Sends `raw` from a thread of its own (the server may answer before it reads any of it)
/// and reads what comes back until the server closes. Fails the test if it keeps the
/// connection open.
fn send_and_read_to_close(addr: &str, raw: &[u8]) -> Vec<Resp> {
    let mut conn = Conn::open(addr);
    let mut writer = conn.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
    std::thread::scope(|s| {
        // Written whole (the lingering close reads it) or cut when the server closes.
        s.spawn(move || {
            let _ = writer.write_all(raw);
        });
        let (responses, _) = conn
            .until_close(CLOSE_WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        responses
    })
}

/// `r` asks the client to close, and the server did (the caller read to the end).
fn assert_closes(what: &str, r: &Resp) {
    let connection = r.header("connection").unwrap_or_default();
    assert!(
        connection.eq_ignore_ascii_case("close"),
        "{what}: the answer must say Connection: close, got {:?}",
        r.headers
    );
}

/// A keyed chat on a fresh connection gets its own answer.
fn victim_is_served(gw: &GatewayProcess, q: &str) {
    let r = gw.post("/v1/chat/completions", &chat_body("auto", q));
    assert_own_answer(&r, q);
}

fn assert_own_answer(r: &Resp, q: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", q)
    );
}

/// Repeats `attempt` while it is refused with 503 (for up to `WAIT`). A worker counts as
/// busy until it has written its request's access-log line, a little after its client has
/// the answer, so on a gateway with one or two workers a request sent right after another
/// can be refused. Only for the requests around an attack, never for the attack's answers.
pub(super) fn unless_busy<T>(mut attempt: impl FnMut() -> T, status: impl Fn(&T) -> u16) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = attempt();
        if status(&got) != 503 || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn an_unread_body_ending_in_a_request_gets_one_answer_and_a_close() {
    let gw = keyed_gateway(Options::default());
    // Each way a handler answers before reading a body: (method, path, key, status).
    let cases = [
        ("POST", "/v1/chat/completions", false, 401),
        ("POST", "/v1/messages", false, 401),
        ("POST", "/no-such-route", true, 404),
        ("POST", "/healthz", false, 405),
        ("GET", "/capabilities", false, 200),
        ("GET", "/v1/models", true, 200),
    ];
    for (method, path, auth, status) in cases {
        for framing in [Framing::Length, Framing::Chunked] {
            let what = format!("{method} {path} ({framing:?} body)");
            let raw = with_body(method, path, auth, framing, &hidden_request());
            let responses = send_and_read_to_close(&gw.addr, &raw);
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [status], "{what}: exactly one answer");
            assert_closes(&what, &responses[0]);
            if status != 200 {
                error_shape(path, &responses[0]);
            }
            victim_is_served(&gw, &format!("after {what}"));
        }
    }
    assert_eq!(gw.health()["status"], "ok");
}

#[test]
fn a_chat_hidden_in_an_unread_body_never_reaches_lingma() {
    let gw = keyed_gateway(Options::default());
    let chat = chat_body("auto", "ATTACKER TEXT").to_string();
    let hidden = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{chat}",
        chat.len()
    );
    let asks = gw.sim_asks(0);
    for framing in [Framing::Length, Framing::Chunked] {
        let raw = with_body("POST", "/healthz", true, framing, hidden.as_bytes());
        let responses = send_and_read_to_close(&gw.addr, &raw);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [405], "{framing:?}: exactly one answer");
        assert_closes("POST /healthz", &responses[0]);
        assert!(!responses[0].text().contains("ATTACKER"));
    }
    // The victim gets its own answer, and Lingma was asked only its question.
    victim_is_served(&gw, "my own question");
    assert_eq!(gw.sim_asks(0), asks + 1, "{}", gw.sim_log(0));
}

#[test]
fn a_503_while_every_worker_is_busy_closes_an_unread_body() {
    let gw = keyed_gateway(
        Options::default()
            .env("max_workers", "1")
            .env("gateway_max_in_flight", "1"),
    );
    // The only worker serves a slow stream.
    let slow = stream_body("auto", "[[sim:chunks=80]] [[sim:delay=100]]");
    let mut held = unless_busy(
        || gw.post_stream("/v1/chat/completions", &slow),
        |s| s.status,
    );
    assert_eq!(held.status, 200);
    assert!(held.next_event().is_some());
    for framing in [Framing::Length, Framing::Chunked] {
        let raw = with_body("POST", "/healthz", false, framing, &hidden_request());
        let responses = send_and_read_to_close(&gw.addr, &raw);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503], "{framing:?}: exactly one answer");
        assert_closes("a 503", &responses[0]);
    }
    let events = held.collect();
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let q = "after the 503s";
    let r = unless_busy(
        || gw.post("/v1/chat/completions", &chat_body("auto", q)),
        |r| r.status,
    );
    assert_own_answer(&r, q);
}

#[test]
fn a_503_for_the_body_budget_closes_a_half_read_body() {
    // Bodies may hold 2 MiB at once; a held stream's 1.5 MiB question leaves too little room
    // for a 1 MiB body, which is refused part way through.
    let gw = keyed_gateway(
        Options::default()
            .env("max_body_bytes", "2097152")
            .env("max_buffered_body_bytes", "2097152"),
    );
    let question = format!(
        "[[sim:chunks=80]] [[sim:delay=100]] {}",
        "a".repeat(1536 * 1024)
    );
    let mut held = gw.post_stream("/v1/chat/completions", &stream_body("auto", &question));
    assert_eq!(held.status, 200);
    assert!(held.next_event().is_some());
    for framing in [Framing::Length, Framing::Chunked] {
        let raw = with_body(
            "POST",
            "/v1/chat/completions",
            true,
            framing,
            &hidden_request(),
        );
        let responses = send_and_read_to_close(&gw.addr, &raw);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503], "{framing:?}: exactly one answer");
        assert_closes("a 503 for the body budget", &responses[0]);
        error_shape("/v1/chat/completions", &responses[0]);
    }
    let events = held.collect();
    assert_eq!(events.last().unwrap().data, "[DONE]");
    victim_is_served(&gw, "after the budget 503s");
}

#[test]
fn an_unfinished_head_in_an_unread_body_never_takes_the_next_request() {
    let gw = keyed_gateway(Options::default());
    // The body ends in the start of a head; the next request on the connection (a pooling
    // proxy's next client, with its own key) would complete it.
    let unfinished = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Swallow: ";
    let chat = chat_body("auto", "victim question").to_string();
    let next = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{chat}",
        chat.len()
    );
    for (method, path, auth, status) in [
        ("POST", "/healthz", false, 405),
        ("POST", "/v1/chat/completions", false, 401),
        ("POST", "/nowhere", false, 404),
    ] {
        for framing in [Framing::Length, Framing::Chunked] {
            let what = format!("{method} {path} ({framing:?} body)");
            let mut conn = Conn::open(&gw.addr);
            let mut writer = conn.stream.try_clone().unwrap();
            writer.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
            let raw = with_body(method, path, auth, framing, unfinished);
            let (first, rest) = std::thread::scope(|s| {
                let w = s.spawn(move || writer.write_all(&raw).map(|()| writer));
                let first = conn.response(CLOSE_WAIT);
                // Once the answer is in, the next request goes out on the same connection.
                if let Ok(Ok(mut writer)) = w.join() {
                    let _ = writer.write_all(next.as_bytes());
                }
                (first, conn.until_close(CLOSE_WAIT))
            });
            let first = first.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(first.status, status, "{what}: {}", first.text());
            let (rest, _) = rest.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                rest.is_empty(),
                "{what}: the next request was answered on this connection: {:?}",
                rest.iter()
                    .map(|r| (r.status, r.text()))
                    .collect::<Vec<_>>()
            );
            assert_closes(&what, &first);
            victim_is_served(&gw, &format!("after {what}"));
        }
    }
}

#[test]
fn a_refused_expect_100_continue_gets_no_100_and_a_close() {
    let gw = keyed_gateway(Options::default());
    let auth = format!("Authorization: Bearer {KEY}\r\n");
    // (head, status): refused before the body, for want of a key, for its size, for its route.
    let cases = [
        ("POST /v1/chat/completions", String::new(), 1000, 401),
        ("POST /v1/chat/completions", auth.clone(), 40 << 20, 413),
        ("POST /v1/messages", auth.clone(), 40 << 20, 413),
        ("POST /nowhere", auth.clone(), 1000, 404),
    ];
    let next = format!("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    for (line, auth, length, status) in cases {
        let what = format!("{line} ({length} bytes)");
        let mut conn = Conn::open(&gw.addr);
        let head = format!(
            "{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        );
        conn.stream.write_all(head.as_bytes()).unwrap();
        let first = conn
            .response(CLOSE_WAIT)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(first.status, status, "{what}: {}", first.text());
        error_shape(line.split(' ').nth(1).unwrap(), &first);
        // The client gives up on the body and sends its next request: never answered here.
        let _ = conn.stream.write_all(next.as_bytes());
        let (rest, _) = conn
            .until_close(CLOSE_WAIT)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            rest.is_empty(),
            "{what}: answered after the refusal: {:?}",
            rest.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert_closes(&what, &first);
        // The same request on a new connection is.
        let mut fresh = Conn::open(&gw.addr);
        fresh.stream.write_all(next.as_bytes()).unwrap();
        let r = fresh.response(CLOSE_WAIT).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["object"], "list");
    }
    victim_is_served(&gw, "after the refused expectations");
}

#[test]
fn a_client_that_writes_a_40_mib_body_before_reading_gets_its_413() {
    // Python's http.client writes the whole request, then reads: the 413 must still be
    // there to read, not lost to a reset.
    let gw = keyed_gateway(Options::default());
    let body = vec![b' '; 40 << 20];
    for (path, framing) in [
        ("/v1/chat/completions", Framing::Length),
        ("/v1/messages", Framing::Length),
        ("/v1/chat/completions", Framing::Chunked),
    ] {
        let what = format!("{path} ({framing:?})");
        let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n");
        let raw = framed(head, framing, &body);
        let mut conn = Conn::open(&gw.addr);
        conn.stream.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
        conn.stream
            .write_all(&raw)
            .unwrap_or_else(|e| panic!("{what}: writing the body failed: {e}"));
        let r = conn
            .response(CLOSE_WAIT)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, 413, "{what}: {}", r.text());
        assert_closes(&what, &r);
        let v = error_shape(path, &r);
        assert!(
            v["error"]["message"].as_str().unwrap().contains("larger"),
            "{v}"
        );
        let (rest, end) = conn
            .until_close(CLOSE_WAIT)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(rest.is_empty(), "{what}");
        assert_eq!(end, End::Closed, "{what}: the connection must end cleanly");
    }
    victim_is_served(&gw, "after the large bodies");
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The server closed it (EOF).
    Closed,
    /// It was reset (what was in flight may be lost).
    Reset,
}

/// A raw client connection and what it has read but not yet parsed.
pub(super) struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    end: Option<End>,
}

impl Conn {
    pub(super) fn open(addr: &str) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).expect("connect"),
            buf: Vec::new(),
            end: None,
        }
    }

    /// Reads more before `deadline`; false once the connection has ended.
    fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        if self.end.is_some() {
            return Ok(false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.silent());
        }
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.end = Some(End::Closed),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                self.end = Some(End::Reset)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(self.silent())
            }
            Err(e) => return Err(format!("reading failed: {e}")),
        }
        Ok(self.end.is_none())
    }

    /// Why a wait ended with the connection still open: with the answers read so far.
    fn silent(&self) -> String {
        let mut answers = Vec::new();
        let mut at = 0;
        while let Ok(Some((r, used))) = parse_response(&self.buf[at..], false) {
            let text = r.text();
            answers.push(format!("{} {}", r.status, &text[..text.len().min(120)]));
            at += used;
        }
        format!(
            "the server neither answered nor closed in time (kept the connection open); answers so far: {answers:?}, then: {:?}",
            String::from_utf8_lossy(&self.buf[at..self.buf.len().min(at + 200)])
        )
    }

    /// The status of the next response, once its head is in (within `within`); the head
    /// stays in the buffer.
    pub(super) fn status(&mut self, within: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + within;
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if !self.fill(deadline)? {
                return Err(format!(
                    "the connection ended ({:?}) before a head",
                    self.end
                ));
            }
        }
        let line = String::from_utf8_lossy(&self.buf[..self.buf.len().min(64)]).into_owned();
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| not_a_status_line(&self.buf))
    }

    /// The next whole response, within `within`.
    pub(super) fn response(&mut self, within: Duration) -> Result<Resp, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((r, used)) = parse_response(&self.buf, self.end.is_some())? {
                self.buf.drain(..used);
                return Ok(r);
            }
            if !self.fill(deadline)? {
                return Err(format!(
                    "the connection ended ({:?}) before a whole response; read: {:?}",
                    self.end,
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(400)])
                ));
            }
        }
    }

    /// Reads until the server ends the connection (within `within`, else an error: it kept
    /// the connection open): the bytes not yet parsed, and how it ended.
    pub(super) fn bytes_until_close(&mut self, within: Duration) -> Result<(Vec<u8>, End), String> {
        let deadline = Instant::now() + within;
        while self.fill(deadline)? {}
        Ok((std::mem::take(&mut self.buf), self.end.expect("ended")))
    }

    /// Reads until the server ends the connection (within `within`, else an error: it kept
    /// the connection open): every response that came, and how it ended.
    pub(super) fn until_close(&mut self, within: Duration) -> Result<(Vec<Resp>, End), String> {
        let deadline = Instant::now() + within;
        while self.fill(deadline)? {}
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            match parse_response(&self.buf, true)? {
                Some((r, used)) => {
                    self.buf.drain(..used);
                    out.push(r);
                }
                None => {
                    return Err(format!(
                        "a partial response before the end: {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(400)])
                    ))
                }
            }
        }
        Ok((out, self.end.expect("ended")))
    }
}

/// One response from the start of `buf`: `Ok(None)` while incomplete (`ended`: no more
/// bytes will come), an error when `buf` does not start with an HTTP/1.x status line.
pub(super) fn parse_response(buf: &[u8], ended: bool) -> Result<Option<(Resp, usize)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= 9 && !buf.starts_with(b"HTTP/1.") {
            return Err(not_a_status_line(buf));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.") {
        return Err(not_a_status_line(buf));
    }
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| not_a_status_line(buf))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let start = head_end + 4;
    let rest = &buf[start..];
    let bodyless = status < 200 || status == 204 || status == 304;
    let (body, used) = if bodyless {
        (Vec::new(), 0)
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        match dechunk(rest) {
            Some(done) => done,
            None => return Ok(None),
        }
    } else if let Some(len) = header("content-length") {
        let n: usize = len.parse().map_err(|_| format!("bad length {len:?}"))?;
        if rest.len() < n {
            return Ok(None);
        }
        (rest[..n].to_vec(), n)
    } else if ended {
        (rest.to_vec(), rest.len())
    } else {
        return Ok(None);
    };
    let r = Resp {
        status,
        headers,
        body,
    };
    Ok(Some((r, start + used)))
}

fn not_a_status_line(buf: &[u8]) -> String {
    format!(
        "the answer does not start with an HTTP/1.x status line: {:?}",
        String::from_utf8_lossy(&buf[..buf.len().min(200)])
    )
}

/// A chunked body at the start of `b`: its bytes and its length on the wire, once whole.
fn dechunk(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let nl = b[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[at..at + nl]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        at += nl + 2;
        if size == 0 {
            // No trailers from this server: the empty line ends the body.
            return (b.len() >= at + 2).then(|| (body, at + 2));
        }
        if b.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&b[at..at + size]);
        at += size + 2;
    }
}

/// `r` is an error in the protocol shape of `path` (Anthropic's for `/v1/messages`, else
/// OpenAI's); its body.
pub(super) fn error_shape(path: &str, r: &Resp) -> Value {
    let v = r.json();
    assert!(v["error"]["message"].is_string(), "{path}: {v}");
    assert!(v["error"]["type"].is_string(), "{path}: {v}");
    if path.starts_with("/v1/messages") {
        assert_eq!(v["type"], "error", "{path}: {v}");
    } else {
        let e = v["error"].as_object().unwrap();
        assert!(
            e.contains_key("param") && e.contains_key("code"),
            "{path}: {v}"
        );
    }
    v
}
