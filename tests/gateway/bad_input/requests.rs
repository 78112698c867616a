//! Raw requests and the cases that are about HTTP rather than bodies: framing and headers,
//! credentials, methods, query strings, stored-response ids, operator query parameters,
//! unknown paths, and bytes that are not HTTP at all.

use super::bodies::valid_body;
use super::{info, Expect, Kind, KEY, MAX_BODY};

pub(super) fn auth_header() -> (String, String) {
    ("Authorization".into(), format!("Bearer {KEY}"))
}

/// A request with `Connection: close`, the given headers, and `body` with its
/// `Content-Length` (and a JSON `Content-Type`).
pub(super) fn raw(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// A request head (with the key) and body written as given, framing headers included.
pub(super) fn raw_with(method: &str, path: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n{head}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

pub(super) fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(piece) {
        out.extend(format!("{:x}\r\n", c.len()).into_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Framing and header cases for a JSON route (the valid body, sent in odd ways).
pub(super) fn header_cases(path: &str, kind: Kind) -> Vec<(String, Vec<u8>, Expect)> {
    let body = valid_body(kind).0.to_string().into_bytes();
    let len = body.len();
    let json_len = format!("Content-Type: application/json\r\nContent-Length: {len}\r\n");
    let post = |head: &str, b: &[u8]| raw_with("POST", path, head, b);
    let mut out: Vec<(String, Vec<u8>, Expect)> = Vec::new();
    let mut add = |label: &str, raw: Vec<u8>, e: Expect| out.push((label.to_string(), raw, e));
    // A body length that cannot be told: refused before the route (RFC 9112, 6.3).
    for cl in [
        "abc",
        "-1",
        "",
        "1e3",
        "0x10",
        "+5",
        "99999999999999999999999",
        "5, 5",
    ] {
        add(
            &format!("Content-Length {cl:?}"),
            post(&format!("Content-Length: {cl}\r\n"), &body),
            Expect::Refused(400),
        );
    }
    add(
        "Content-Length twice, same",
        post(
            &format!("Content-Length: {len}\r\nContent-Length: {len}\r\n"),
            &body,
        ),
        Expect::Ok,
    );
    add(
        "Content-Length twice, different",
        post(
            &format!("Content-Length: {len}\r\nContent-Length: 5\r\n"),
            &body,
        ),
        Expect::Refused(400),
    );
    add(
        "Content-Length spaced",
        post(&format!("Content-Length:   {len}  \r\n"), &body),
        Expect::Ok,
    );
    add(
        "Content-Length shorter than the body",
        post("Content-Length: 5\r\n", &body),
        Expect::BadField("body".into()),
    );
    add(
        "Content-Length 100 TB",
        post("Content-Length: 99999999999999\r\n", &body),
        Expect::Error(413),
    );
    add(
        "Content-Length over max_body_bytes",
        post(&format!("Content-Length: {}\r\n", MAX_BODY + 1), &body),
        Expect::Error(413),
    );
    // The body never arrives whole: 408 after client_timeout_sec, in the route's shape
    // (the HTTP layer reads every body before the route, and the route answers).
    add(
        "a small body that stops",
        post(&format!("Content-Length: {}\r\n", len + 10), &body),
        Expect::Error(408),
    );
    add(
        "a large body that stops",
        post("Content-Length: 5000\r\n", &body),
        Expect::Error(408),
    );
    add(
        "chunked",
        post("Transfer-Encoding: chunked\r\n", &chunked(&body, 7)),
        Expect::Ok,
    );
    add(
        "chunked, one byte a chunk",
        post("Transfer-Encoding: chunked\r\n", &chunked(&body, 1)),
        Expect::Ok,
    );
    // RFC 9112, 6.1: a request smuggling vector; refused rather than guessed.
    add(
        "chunked and Content-Length",
        post(
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            &chunked(&body, 100),
        ),
        Expect::Refused(400),
    );
    add(
        "chunked over max_body_bytes",
        post(
            "Transfer-Encoding: chunked\r\n",
            &chunked(&vec![b' '; MAX_BODY + 1], 4096),
        ),
        Expect::Error(413),
    );
    // Chunk extensions are valid HTTP but refused by the chunked decoder tiny_http uses;
    // no client sends them. A 4xx in the route's shape.
    let with_ext = String::from_utf8(chunked(&body, 10))
        .unwrap()
        .replace("a\r\n", "a;ext=1\r\n");
    add(
        "chunk extensions",
        post("Transfer-Encoding: chunked\r\n", with_ext.as_bytes()),
        Expect::Framing,
    );
    add(
        "chunk size not hex",
        post(
            "Transfer-Encoding: chunked\r\n",
            &[b"zz\r\n", &body[..], b"\r\n0\r\n\r\n"].concat(),
        ),
        Expect::Framing,
    );
    add(
        "chunk size overflowing",
        post(
            "Transfer-Encoding: chunked\r\n",
            &[b"ffffffffffffffffffffffff\r\n", &body[..]].concat(),
        ),
        Expect::Framing,
    );
    add(
        "chunk size negative",
        post(
            "Transfer-Encoding: chunked\r\n",
            &[b"-5\r\n", &body[..]].concat(),
        ),
        Expect::Framing,
    );
    add(
        "chunk without its CRLF",
        post(
            "Transfer-Encoding: chunked\r\n",
            &[
                format!("{:x}\r\n", len).as_bytes(),
                &body[..],
                b"XX0\r\n\r\n",
            ]
            .concat(),
        ),
        Expect::Framing,
    );
    add(
        "chunk longer than its data",
        post(
            "Transfer-Encoding: chunked\r\n",
            &[
                format!("{:x}\r\n", len + 100).as_bytes(),
                &body[..],
                b"\r\n0\r\n\r\n",
            ]
            .concat(),
        ),
        Expect::Framing,
    );
    add(
        "Transfer-Encoding gzip",
        post("Transfer-Encoding: gzip\r\n", &body),
        Expect::Refused(400),
    );
    add(
        "Transfer-Encoding identity",
        post(
            &format!("Transfer-Encoding: identity\r\nContent-Length: {len}\r\n"),
            &body,
        ),
        Expect::Refused(400),
    );
    add(
        "Transfer-Encoding empty",
        post("Transfer-Encoding: \r\n", &body),
        Expect::Refused(400),
    );
    add(
        "Transfer-Encoding chunked, gzip",
        post("Transfer-Encoding: chunked, gzip\r\n", &chunked(&body, 50)),
        Expect::Refused(400),
    );
    // The body is JSON whatever the Content-Type says.
    for ct in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "",
        "application/x-ndjson",
        "*/*",
    ] {
        add(
            &format!("Content-Type {ct:?}"),
            post(
                &format!("Content-Type: {ct}\r\nContent-Length: {len}\r\n"),
                &body,
            ),
            Expect::Ok,
        );
    }
    add(
        "no Content-Type",
        post(&format!("Content-Length: {len}\r\n"), &body),
        Expect::Ok,
    );
    let form = b"model=auto&messages=hi";
    add(
        "a form body",
        post(
            &format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                form.len()
            ),
            form,
        ),
        Expect::BadField("body".into()),
    );
    add(
        "Expect: 100-continue",
        post(&format!("{json_len}Expect: 100-continue\r\n"), &body),
        Expect::Ok,
    );
    add(
        "Expect: 200-ok",
        post(&format!("{json_len}Expect: 200-ok\r\n"), &body),
        Expect::Refused(417),
    );
    add(
        "Expect: empty",
        post(&format!("{json_len}Expect: \r\n"), &body),
        Expect::Refused(417),
    );
    add(
        "a 15 000-byte header",
        post(
            &format!("{json_len}X-Note: {}\r\n", "n".repeat(15_000)),
            &body,
        ),
        Expect::Ok,
    );
    add(
        "a 20 000-byte header",
        post(
            &format!("{json_len}X-Note: {}\r\n", "n".repeat(20_000)),
            &body,
        ),
        Expect::Framing,
    );
    add(
        "100 headers",
        post(&format!("{json_len}{}", "X-Many: 1\r\n".repeat(100)), &body),
        Expect::Ok,
    );
    add(
        "200 headers",
        post(&format!("{json_len}{}", "X-Many: 1\r\n".repeat(200)), &body),
        Expect::Refused(431),
    );
    add(
        "a non-ASCII header value",
        post(&format!("{json_len}X-Note: café\r\n"), &body),
        Expect::Framing,
    );
    add(
        "a non-ASCII key",
        post(&format!("{json_len}x-api-key: ключ\r\n"), &body),
        Expect::Framing,
    );
    add(
        "a header without a colon",
        post(&format!("{json_len}NoColon\r\n"), &body),
        Expect::Refused(400),
    );
    add(
        "a folded header line",
        post(&format!("{json_len}X-Note: a\r\n  folded\r\n"), &body),
        Expect::Framing,
    );
    add(
        "odd x-request-id",
        post(
            &format!("{json_len}X-Request-Id: {}\r\n", "r ".repeat(250)),
            &body,
        ),
        Expect::Ok,
    );
    // RFC 9110, 5.5: control characters in a field value are refused.
    add(
        "control characters in a header",
        post(
            &format!("{json_len}X-Request-Id: \x01\x7f {}\r\n", "r".repeat(500)),
            &body,
        ),
        Expect::Refused(400),
    );
    add(
        "a control character after the key",
        post(&format!("{json_len}x-api-key: {KEY}\x01\r\n"), &body),
        Expect::Refused(400),
    );
    // RFC 9112, 3.2: an HTTP/1.1 request without Host is refused.
    add("no Host", format!("POST {path} HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n{json_len}\r\n").into_bytes().into_iter().chain(body.iter().copied()).collect(), Expect::Refused(400));
    add(
        "HTTP/1.0",
        format!("POST {path} HTTP/1.0\r\nAuthorization: Bearer {KEY}\r\n{json_len}\r\n")
            .into_bytes()
            .into_iter()
            .chain(body.iter().copied())
            .collect(),
        Expect::Ok,
    );
    // An upgrade offer (curl --http2 on http://, a WebSocket client): declined by answering
    // the request as HTTP/1.1.
    let upgrade = |offer: &str| -> Vec<u8> {
        [format!("POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n{json_len}{offer}\r\n").as_bytes(), &body[..]].concat()
    };
    add("h2c upgrade offer", upgrade("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"), Expect::Ok);
    add("WebSocket upgrade offer", upgrade("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"), Expect::Ok);
    out
}

/// Malformed or wrong credentials: each a 401.
pub(super) fn bad_credentials() -> Vec<(String, Vec<(String, String)>)> {
    let auth = |v: &str| vec![("Authorization".to_string(), v.to_string())];
    let api_key = |v: &str| vec![("x-api-key".to_string(), v.to_string())];
    vec![
        ("no credentials".into(), vec![]),
        ("Bearer without a key".into(), auth("Bearer")),
        ("Bearer and spaces".into(), auth("Bearer    ")),
        ("Basic".into(), auth("Basic c2stYmFkOng=")),
        ("a wrong key".into(), auth("Bearer sk-wrong")),
        (
            "the key cut short".into(),
            auth(&format!("Bearer {}", &KEY[..KEY.len() - 1])),
        ),
        ("the key and a byte".into(), auth(&format!("Bearer {KEY}x"))),
        (
            "the key in upper case".into(),
            auth(&format!("Bearer {}", KEY.to_uppercase())),
        ),
        (
            "no space after Bearer".into(),
            auth(&format!("Bearer{KEY}")),
        ),
        ("Token scheme".into(), auth(&format!("Token {KEY}"))),
        (
            "the key and junk".into(),
            auth(&format!("Bearer {KEY} junk")),
        ),
        (
            "a 10 000-byte key".into(),
            auth(&format!("Bearer {}", "k".repeat(10_000))),
        ),
        ("the key alone".into(), auth(KEY)),
        ("empty Authorization".into(), auth("")),
        ("empty x-api-key".into(), api_key("")),
        ("a wrong x-api-key".into(), api_key("sk-wrong")),
        (
            "a wrong Bearer before the right x-api-key".into(),
            [auth("Bearer sk-wrong"), api_key(KEY)].concat(),
        ),
        (
            "two Authorization, the wrong one first".into(),
            [auth("Bearer sk-wrong"), auth(&format!("Bearer {KEY}"))].concat(),
        ),
    ]
}

/// Odd but correct credentials: each accepted.
pub(super) fn good_credentials() -> Vec<(String, Vec<(String, String)>)> {
    let auth = |v: &str| vec![("Authorization".to_string(), v.to_string())];
    let api_key = |v: &str| vec![("x-api-key".to_string(), v.to_string())];
    vec![
        ("lower-case bearer".into(), auth(&format!("bearer {KEY}"))),
        (
            "BEARER and spaces".into(),
            auth(&format!("BEARER    {KEY}   ")),
        ),
        ("x-api-key".into(), api_key(KEY)),
        (
            "X-API-KEY and spaces".into(),
            vec![("X-API-KEY".into(), format!("  {KEY}  "))],
        ),
        (
            "Basic, then the x-api-key".into(),
            [auth("Basic c2s6eA=="), api_key(KEY)].concat(),
        ),
        (
            "two Authorization, the right one first".into(),
            [auth(&format!("Bearer {KEY}")), auth("Bearer sk-wrong")].concat(),
        ),
        (
            "a tab before the key".into(),
            auth(&format!("Bearer \t{KEY}")),
        ),
    ]
}

pub(super) const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "FOO", "get",
    "post",
];

/// What a well-formed request to a known route gets.
pub(super) fn normal(kind: Kind) -> Expect {
    match kind {
        Kind::NoAccount => Expect::Error(400),
        _ => Expect::Ok,
    }
}

/// Credentials, methods and query strings for one route of the table.
pub(super) fn route_cases(path: &str, methods: &[&str]) -> Vec<(String, Vec<u8>, bool, Expect)> {
    let info = info(path);
    let json_body = matches!(
        info.kind,
        Kind::Chat | Kind::Responses | Kind::Messages | Kind::CountTokens
    )
    .then(|| valid_body(info.kind).0.to_string().into_bytes());
    let method = methods[0];
    let mut out = Vec::new();
    let mut add =
        |label: String, raw: Vec<u8>, head: bool, e: Expect| out.push((label, raw, head, e));
    for (name, headers) in bad_credentials() {
        let e = if info.auth {
            Expect::Error(401)
        } else {
            normal(info.kind)
        };
        add(
            name,
            raw(method, path, &headers, json_body.as_deref()),
            false,
            e,
        );
    }
    for (name, headers) in good_credentials() {
        add(
            name,
            raw(method, path, &headers, json_body.as_deref()),
            false,
            normal(info.kind),
        );
    }
    for m in METHODS {
        let e = if methods.contains(m) {
            normal(info.kind)
        } else {
            Expect::Error(405)
        };
        let body = if *m == "GET" || *m == "HEAD" {
            None
        } else {
            json_body.as_deref()
        };
        add(
            format!("method {m}"),
            raw(m, path, &[auth_header()], body),
            *m == "HEAD",
            e,
        );
    }
    for q in [
        "?%zz",
        "?a=%",
        "?&&==&",
        "?beta=true",
        "?q=%00%ff",
        &format!("?x={}", "q".repeat(2000)),
    ] {
        add(
            format!("query {}", &q[..q.len().min(20)]),
            raw(
                method,
                &format!("{path}{q}"),
                &[auth_header()],
                json_body.as_deref(),
            ),
            false,
            normal(info.kind),
        );
    }
    out
}

/// `/v1/responses/{id}` (and `/responses/{id}`): unknown ids, methods, credentials.
pub(super) fn stored_response_cases() -> Vec<(String, String, Vec<u8>, bool, Expect)> {
    let long = "r".repeat(5000);
    let ids = [
        "resp_nope",
        "%00",
        "..",
        "r%C3%A9sum%C3%A9",
        "resp_%2F..%2F",
        "a;b",
        "*",
        "%",
        long.as_str(),
    ];
    let mut out = Vec::new();
    for prefix in ["/v1/responses/", "/responses/"] {
        for id in ids {
            let path = format!("{prefix}{id}");
            let label = &id[..id.len().min(20)];
            for m in ["GET", "DELETE"] {
                out.push((
                    format!("{m} {label}"),
                    path.clone(),
                    raw(m, &path, &[auth_header()], None),
                    false,
                    Expect::Error(404),
                ));
            }
            for m in ["PUT", "POST", "PATCH", "OPTIONS", "HEAD", "FOO"] {
                out.push((
                    format!("{m} {label}"),
                    path.clone(),
                    raw(m, &path, &[auth_header()], None),
                    m == "HEAD",
                    Expect::Error(405),
                ));
            }
        }
        let path = format!("{prefix}resp_nope");
        for (name, headers) in bad_credentials() {
            out.push((
                name,
                path.clone(),
                raw("GET", &path, &headers, None),
                false,
                Expect::Error(401),
            ));
        }
    }
    out
}

/// Operator routes' query parameters.
pub(super) fn operator_query_cases() -> Vec<(String, String, &'static str, Expect)> {
    let mut out = Vec::new();
    for (q, e) in [
        ("abc", Expect::BadField("limit".into())),
        ("-1", Expect::BadField("limit".into())),
        ("", Expect::BadField("limit".into())),
        ("1.5", Expect::BadField("limit".into())),
        ("99999999999999999999999", Expect::BadField("limit".into())),
        ("%zz", Expect::BadField("limit".into())),
        ("%00", Expect::BadField("limit".into())),
        ("0", Expect::Ok),
        ("100000", Expect::Ok),
        ("%31%30", Expect::Ok),
    ] {
        out.push((
            format!("limit={q}"),
            format!("/internal/debug/requests?limit={q}"),
            "GET",
            e,
        ));
    }
    for (path, method) in [
        ("/internal/models/raw", "GET"),
        ("/internal/login-url", "GET"),
        ("/internal/session/export", "POST"),
        ("/internal/auto-login/start", "POST"),
    ] {
        for id in [
            "nope",
            "lingma-99",
            "%ff",
            "..%2F..",
            "lingma-0%00",
            "lingma-",
            "LINGMA-0",
        ] {
            out.push((
                format!("instance={id}"),
                format!("{path}?instance={id}"),
                method,
                Expect::Error(404),
            ));
        }
        let e = if path.ends_with("/start") {
            Expect::Error(400)
        } else {
            Expect::Ok
        };
        for q in [
            "instance=lingma-0",
            "instance=",
            "instance",
            "instance=lingma-0&instance=nope",
        ] {
            out.push((q.to_string(), format!("{path}?{q}"), method, e.clone()));
        }
    }
    out
}

pub(super) const UNKNOWN_PATHS: &[&str] = &[
    "/v2/chat/completions",
    "/v1",
    "/v1/",
    "/v1/chat",
    "/v1/chat/completions/",
    "/v1/chat/completions/x",
    "/chat/completions/",
    "//v1/models",
    "/v1//models",
    "/V1/MODELS",
    "/v1/models/",
    "/v1/models/auto",
    "/v1/messages/",
    "/v1/messages/batches",
    "/v1/messages/count_tokens/x",
    "/messages/x",
    "/v1/messagesx",
    "/v1/responses/",
    "/v1/responses/a/b",
    "/responses/",
    "/internal",
    "/internal/",
    "/internal/nope",
    "/internal/stats/",
    "/metrics/",
    "/healthz/",
    "/favicon.ico",
    "/..",
    "/../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/v1/%00",
    "*",
    "/%",
];

/// Bytes that are not an HTTP request the server can frame: refused by the HTTP layer.
pub(super) fn not_http_cases() -> Vec<(String, Vec<u8>, Expect)> {
    let mut out: Vec<(String, Vec<u8>, Expect)> = vec![
        (
            "HTTP/2.0".into(),
            b"GET /healthz HTTP/2.0\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(),
            Expect::Refused(505),
        ),
        (
            "the HTTP/2 preface".into(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Expect::Refused(505),
        ),
        (
            "a space in the path".into(),
            b"GET /a b HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(),
            Expect::Refused(400),
        ),
        (
            "200 headers on a GET".into(),
            format!(
                "GET /healthz HTTP/1.1\r\nHost: gw\r\n{}\r\n",
                "X-Many: 1\r\n".repeat(200)
            )
            .into_bytes(),
            Expect::Refused(431),
        ),
        (
            "Expect on a GET".into(),
            b"GET /healthz HTTP/1.1\r\nHost: gw\r\nExpect: 200-ok\r\n\r\n".to_vec(),
            Expect::Refused(417),
        ),
        (
            "Content-Length abc on a GET".into(),
            b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: abc\r\n\r\n".to_vec(),
            Expect::Refused(400),
        ),
        (
            "Transfer-Encoding gzip on a GET".into(),
            b"GET /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\nxxxx".to_vec(),
            Expect::Refused(400),
        ),
    ];
    let mut framing: Vec<(String, Vec<u8>)> = vec![
        ("a word".into(), b"GARBAGE\r\n\r\n".to_vec()),
        ("an empty line".into(), b"\r\n\r\n".to_vec()),
        ("a method alone".into(), b"GET\r\n\r\n".to_vec()),
        ("no version".into(), b"GET /healthz\r\n\r\n".to_vec()),
        (
            "two spaces".into(),
            b"GET  /healthz HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("HTTP/9.9".into(), b"GET /healthz HTTP/9.9\r\n\r\n".to_vec()),
        (
            "lower-case version".into(),
            b"GET /healthz http/1.1\r\n\r\n".to_vec(),
        ),
        (
            "bare LF line ends".into(),
            b"GET /healthz HTTP/1.1\nHost: gw\n\n".to_vec(),
        ),
        (
            "a TLS ClientHello".into(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb\r\n\r\n".to_vec(),
        ),
        ("NUL bytes".into(), b"\0\0\0\0\r\n\r\n".to_vec()),
        (
            "a non-ASCII path".into(),
            "GET /héllo HTTP/1.1\r\n\r\n".as_bytes().to_vec(),
        ),
        (
            "a 20 000-byte request line".into(),
            format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(20_000)).into_bytes(),
        ),
        (
            "a head that never ends".into(),
            b"GET /healthz HTTP/1.1\r\nHost: gw".to_vec(),
        ),
    ];
    // Random bytes, from a fixed seed.
    let mut x: u64 = 0x5eed;
    for i in 0..12 {
        let bytes: Vec<u8> = (0..40 + i * 7)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .chain(*b"\r\n\r\n")
            .collect();
        framing.push((format!("random bytes {i}"), bytes));
    }
    out.extend(framing.into_iter().map(|(l, b)| (l, b, Expect::Framing)));
    out
}
