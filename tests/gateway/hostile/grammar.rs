//! Finding 8: HTTP grammar (RFC 9112). What the RFC lets a server refuse is refused, with a
//! status line and a close, so that no proxy in front can frame a request one way and the
//! gateway another: CL+TE together, obs-fold (a folded `Authorization` must not
//! authenticate), bare CR and LF, NUL, empty names, whitespace before the colon, non-ASCII
//! bytes, HTTP/0.9 and HTTP/2.0 on an HTTP/1.1 port. Chunk extensions and trailers are
//! accepted; a chunk-size line has a bound.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::rss_kib;
use super::smuggling::{parse_response, Conn, End};
use crate::harness::*;

const KEY: &str = "sk-grammar";
/// How long a case waits for the answer and the close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn keyed_gateway() -> GatewayProcess {
    GatewayProcess::start_with(Options {
        key: Some(KEY.into()),
        ..Options::default()
    })
}

/// A keyed chat's head and body, with `extra` header lines (each ending in CRLF) in the
/// head.
fn chat_request(extra: &str, auth: bool) -> String {
    let body = chat_body("auto", "grammar").to_string();
    let auth = if auth {
        format!("Authorization: Bearer {KEY}\r\n")
    } else {
        String::new()
    };
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `raw` and reads until the server closes: one answer with `status`, starting with an
/// HTTP/1.1 status line and saying `Connection: close`. Else what went wrong.
fn refused_with(addr: &str, raw: &[u8], status: u16) -> Result<(), String> {
    let mut c = Conn::open(addr);
    // The server may close before it has read all of `raw`.
    let _ = c.stream.write_all(raw);
    let (bytes, _) = c.bytes_until_close(CLOSE_WAIT)?;
    if !bytes.starts_with(format!("HTTP/1.1 {status} ").as_bytes()) {
        return Err(format!(
            "expected an HTTP/1.1 {status} status line, got {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ));
    }
    let (r, used) = parse_response(&bytes, true)?.ok_or("no whole answer")?;
    if used != bytes.len() {
        return Err(format!(
            "more than one answer: {:?}",
            String::from_utf8_lossy(&bytes[used..bytes.len().min(used + 300)])
        ));
    }
    if r.header("connection") != Some("close") {
        return Err(format!("no Connection: close in {:?}", r.headers));
    }
    if !r.json()["error"]["message"].is_string() {
        return Err(format!("no error message: {}", r.text()));
    }
    Ok(())
}

#[test]
fn malformed_heads_get_a_status_line_and_a_close() {
    let gw = keyed_gateway();
    let get = |extra: &str| format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "Content-Length and Transfer-Encoding",
            format!("{}0\r\n\r\n", chat_request("Transfer-Encoding: chunked\r\n", true)).into(),
            400,
        ),
        (
            "Transfer-Encoding and Content-Length",
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "obs-fold with a tab carrying the key",
            chat_request(&format!("X-Note: a\r\n\tAuthorization: Bearer {KEY}\r\n"), false).into(),
            400,
        ),
        (
            "obs-fold with a space carrying the key",
            chat_request(&format!("X-Note: a\r\n Authorization: Bearer {KEY}\r\n"), false).into(),
            400,
        ),
        ("a bare CR in the request line", b"GET /healthz\rX HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), 400),
        ("a bare CR in a header", get("X-A: a\rb\r\n").into(), 400),
        ("bare LF line ends", b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n".to_vec(), 400),
        ("a bare LF inside the head", get("X-A: a\nX-Forged: 1\r\n").into(), 400),
        ("NUL in the request line", b"GET /heal\0thz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), 400),
        ("NUL in a header", get("X-A: a\0b\r\n").into(), 400),
        ("an empty header name", get(": value\r\n").into(), 400),
        ("whitespace before the colon", get("X-Test : 1\r\n").into(), 400),
        ("a non-ASCII header value", get("X-Name: caf\u{e9}\r\n").into(), 400),
        ("HTTP/0.9", b"GET /\r\n".to_vec(), 400),
        ("HTTP/0.9 as a version", b"GET / HTTP/0.9\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), 505),
        ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), 505),
    ];
    let asks = gw.sim_asks(0);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(what, raw, status)| {
            refused_with(&gw.addr, raw, *status)
                .err()
                .map(|e| format!("{what}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // The folded key authenticated nothing: no chat reached Lingma.
    assert_eq!(gw.sim_asks(0), asks);
    gw.assert_answers("after the malformed heads");
}

#[test]
fn chunk_extensions_and_trailers_are_accepted() {
    let gw = keyed_gateway();
    let body = chat_body("auto", "chunked with trailers").to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\nConnection: close\r\n\r\n{:x};name=value;flag\r\n{a}\r\n{:x} ; quoted=\"a b\"\r\n{b}\r\n0;last=1\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
        a.len(),
        b.len()
    );
    let mut c = Conn::open(&gw.addr);
    c.stream.write_all(raw.as_bytes()).unwrap();
    let r = c.response(WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", "chunked with trailers")
    );
}

#[test]
fn a_10_mb_chunk_size_line_is_refused_without_growing_memory() {
    let gw = keyed_gateway();
    for i in 0..3 {
        gw.assert_answers(&format!("warm up {i}"));
    }
    let before = rss_kib(gw.pid());
    let mut raw = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    // Ten million zeros: one chunk-size line, never ended.
    raw.resize(raw.len() + 10_000_000, b'0');
    let mut c = Conn::open(&gw.addr);
    let mut writer = c.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
    let done = AtomicBool::new(false);
    let (peak, answer) = std::thread::scope(|s| {
        s.spawn(|| {
            let _ = writer.write_all(&raw);
            done.store(true, Ordering::SeqCst);
        });
        // RSS while the line is sent and for a while after (the server may still be
        // reading what the socket buffers held).
        let mut peak = 0;
        let mut until = None;
        while until.is_none_or(|t| Instant::now() < t) {
            peak = rss_kib(gw.pid()).max(peak);
            if until.is_none() && done.load(Ordering::SeqCst) {
                until = Some(Instant::now() + Duration::from_secs(1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (peak, c.bytes_until_close(CLOSE_WAIT))
    });
    eprintln!("RSS: {before} KiB before, {peak} KiB at the peak");
    assert!(
        peak.saturating_sub(before) < 5 * 1024,
        "RSS rose from {before} KiB to {peak} KiB"
    );
    let (bytes, end) = answer.unwrap_or_else(|e| panic!("{e}"));
    let (r, _) = parse_response(&bytes, true)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("an answer");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    super::smuggling::error_shape("/v1/chat/completions", &r);
    assert_eq!(end, End::Closed);
    gw.assert_answers("after the long size line");
}
