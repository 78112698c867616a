//! The bad-input corpus: well over a thousand malformed requests against every route of the
//! route table (aliases, `/v1/responses/{id}`, the operator routes), unknown paths and
//! wrong methods, through one gateway. What a client must see: never a 5xx, never a hang,
//! every error of a known route in its protocol's own shape with a 4xx status (OpenAI
//! `{"error":{"message","type","param","code"}}`, Anthropic
//! `{"type":"error","error":{"type","message"}}` on `/v1/messages*`), a 400 from a body
//! naming the field at fault, valid requests answered; and afterwards the gateway alive,
//! healthy and answering a normal chat correctly.
//!
//! The bodies' wrong-type cases are generated from valid bodies: each field, down into
//! messages, content parts and tools, replaced by each JSON kind and removed. The tables in
//! `bodies.rs` say which of those stay valid: the test knows every case it expects a 200
//! for. `requests.rs` has the HTTP-level cases, `client.rs` sends them and judges answers.

mod bodies;
mod client;
mod requests;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{chat_body, default_answer, GatewayProcess, Options};
use bodies::{body_cases, chat_valid, field_cases};
use client::{judge, send};
use requests::{
    auth_header, header_cases, not_http_cases, operator_query_cases, raw, route_cases,
    stored_response_cases, UNKNOWN_PATHS,
};

const KEY: &str = "sk-bad-input-corpus";
/// `max_body_bytes` of the corpus gateway: small, so oversized bodies are quick to send, and
/// big enough for a 100 000-deep nesting.
const MAX_BODY: usize = 128 * 1024;
/// A client silent this long gets 408 (the stalled-upload cases wait this long).
const CLIENT_TIMEOUT_SEC: u64 = 2;
/// Longer than any answer takes: an answer later than this is a hang.
const HANG: Duration = Duration::from_secs(20);

/// What a client must get.
#[derive(Clone, Debug)]
enum Expect {
    /// 200 and the route's success body: the request is valid.
    Ok,
    /// This status, in the route's error shape.
    Error(u16),
    /// A 400 in the route's error shape whose parameter (OpenAI) or message (Anthropic)
    /// names this body location, one inside it or one next to it.
    BadField(String),
    /// Refused by the HTTP layer with this status, before any route sees the request (a
    /// bare answer, in no protocol's shape). Only for framing-level cases.
    Refused(u16),
    /// A request HTTP cannot frame: the HTTP layer may answer it with a bare
    /// 400/408/413/417/431/505 or close the connection; if the route sees it, a 4xx in its
    /// shape. Only for framing-level cases (request line, header syntax, body framing).
    Framing,
}

struct Case {
    /// The route the case counts for: a route-table path, `/v1/responses/{id}`, or a group.
    route: String,
    label: String,
    /// The path the request is for (its error shape follows from it).
    path: String,
    raw: Vec<u8>,
    /// A HEAD request: the answer has no body.
    head: bool,
    expect: Expect,
}

/// Which protocol's error shape a path answers in.
fn anthropic_path(path: &str) -> bool {
    path.starts_with("/v1/messages") || path.starts_with("/messages")
}

/// How a known route answers a well-formed request.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Chat,
    Responses,
    Messages,
    CountTokens,
    /// Any JSON object (200).
    Json,
    /// `/metrics`: text.
    Metrics,
    /// `POST /internal/auto-login/start`: no account to log in with here, so 400.
    NoAccount,
}

struct Info {
    kind: Kind,
    /// Behind the API key (or the operator credential, which is the key here).
    auth: bool,
}

/// What the corpus knows about each route of the route table; a route it does not know
/// fails the test, so a new route gets its cases.
fn info(path: &str) -> Info {
    let (kind, auth) = match path {
        "/" | "/healthz" | "/capabilities" => (Kind::Json, false),
        "/v1/models" | "/models" | "/v1/capabilities" => (Kind::Json, true),
        "/v1/chat/completions" | "/chat/completions" => (Kind::Chat, true),
        "/v1/responses" | "/responses" => (Kind::Responses, true),
        "/v1/messages" | "/messages" => (Kind::Messages, true),
        "/v1/messages/count_tokens" | "/messages/count_tokens" => (Kind::CountTokens, true),
        "/metrics" => (Kind::Metrics, true),
        "/internal/stats"
        | "/internal/effective-config"
        | "/internal/debug/requests"
        | "/internal/models/raw"
        | "/internal/auto-login/status"
        | "/internal/session/export"
        | "/internal/login-url" => (Kind::Json, true),
        "/internal/auto-login/start" => (Kind::NoAccount, true),
        other => panic!("the bad-input corpus has no cases for the route {other}: add them"),
    };
    Info { kind, auth }
}

/// Every case of the corpus.
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut push =
        |route: &str, label: String, path: &str, raw: Vec<u8>, head: bool, expect: Expect| {
            cases.push(Case {
                route: route.into(),
                label,
                path: path.into(),
                raw,
                head,
                expect,
            });
        };
    let table: Vec<(&str, &[&str])> = lingma_gateway::http::routes::route_table().collect();
    for &(path, methods) in &table {
        let kind = info(path).kind;
        for (label, raw, head, e) in route_cases(path, methods) {
            push(path, label, path, raw, head, e);
        }
        if matches!(
            kind,
            Kind::Chat | Kind::Responses | Kind::Messages | Kind::CountTokens
        ) {
            let canonical = path.starts_with("/v1/");
            let mut bodies = body_cases(kind);
            if canonical {
                bodies.extend(field_cases(path, kind));
            }
            for (label, body, e) in bodies {
                push(
                    path,
                    label,
                    path,
                    raw("POST", path, &[auth_header()], Some(&body)),
                    false,
                    e,
                );
            }
            if canonical && matches!(kind, Kind::Chat | Kind::Messages) {
                for (label, raw, e) in header_cases(path, kind) {
                    push(path, label, path, raw, false, e);
                }
            }
        }
    }
    for (label, path, raw, head, e) in stored_response_cases() {
        push("/v1/responses/{id}", label, &path, raw, head, e);
    }
    for (label, path, method, e) in operator_query_cases() {
        let route = path.split('?').next().unwrap().to_string();
        push(
            &route,
            label,
            &path,
            raw(method, &path, &[auth_header()], None),
            false,
            e,
        );
    }
    for p in UNKNOWN_PATHS {
        for m in ["GET", "POST", "DELETE"] {
            let body = (m == "POST").then(|| chat_valid().to_string().into_bytes());
            push(
                "(unknown paths)",
                format!("{m} {p}"),
                p,
                raw(m, p, &[auth_header()], body.as_deref()),
                false,
                Expect::Error(404),
            );
        }
        push(
            "(unknown paths)",
            format!("GET {p} without a key"),
            p,
            raw("GET", p, &[], None),
            false,
            Expect::Error(404),
        );
    }
    for (label, bytes, e) in not_http_cases() {
        push("(not HTTP)", label, "", bytes, false, e);
    }
    cases
}

/// The 5xx answers the gateway counted, by status (`/internal/stats`).
fn server_errors(gw: &GatewayProcess) -> Vec<(String, Value)> {
    let auth = format!("Bearer {KEY}");
    let stats = super::harness::request(
        &gw.addr,
        "GET",
        "/internal/stats",
        &[("Authorization", &auth)],
        None,
    )
    .json();
    let by_status = stats["requests"]["by_status"].as_object().unwrap().clone();
    by_status
        .into_iter()
        .filter(|(s, _)| s.starts_with('5'))
        .collect()
}

#[test]
fn bad_input_corpus_gets_clean_4xx_answers_in_each_protocols_shape() {
    let gw = GatewayProcess::start_with(
        Options {
            key: Some(KEY.into()),
            log_level: "info",
            ..Options::default()
        }
        // The key is the operator credential too (exporting a login needs admin_token).
        .env("admin_token", KEY)
        .env("max_body_bytes", &MAX_BODY.to_string())
        .env("client_timeout_sec", &CLIENT_TIMEOUT_SEC.to_string()),
    );
    // (`/healthz` answers 503 until the instance is ready: those are not the corpus's.)
    let errors_before = server_errors(&gw);
    let mut cases = corpus();
    // The cases that wait for the client timeout go first, so they overlap the rest.
    cases.sort_by_key(|c| {
        !matches!(
            c.expect,
            Expect::Error(408) | Expect::Refused(408) | Expect::Framing
        )
    });
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let verdict = send(&gw.addr, &case.raw, case.head).and_then(|a| judge(case, &a));
                if let Err(why) = verdict {
                    let request =
                        String::from_utf8_lossy(&case.raw[..case.raw.len().min(300)]).to_string();
                    failures.lock().unwrap().push(format!(
                        "{} [{}] {:?}: {why}\n    request: {request:?}",
                        case.route, case.label, case.expect
                    ));
                }
            });
        }
    });
    let mut per_route: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *per_route.entry(c.route.as_str()).or_default() += 1;
    }
    // Shown whether or not the test passes (the harness captures only print macros).
    let mut summary = format!("bad-input corpus: {} cases\n", cases.len());
    for (route, n) in &per_route {
        summary.push_str(&format!("  {n:5}  {route}\n"));
    }
    let _ = std::io::stderr().write_all(summary.as_bytes());

    let failures = failures.into_inner().unwrap();
    let log = gw.log_text();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n(gateway log tail: {})",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        panics.is_empty(),
        "panics in the gateway log:\n{}",
        panics.join("\n")
    );
    // Every route of the table had its share.
    for (path, _) in lingma_gateway::http::routes::route_table() {
        let n = per_route.get(path).copied().unwrap_or(0);
        assert!(n >= 30, "only {n} cases for {path}");
    }
    assert!(cases.len() >= 2500, "only {} cases", cases.len());
    // The gateway lived through it, counted no 5xx, and still answers correctly.
    assert_eq!(gw.health()["status"], "ok");
    assert_eq!(
        server_errors(&gw),
        errors_before,
        "the gateway counted 5xx answers"
    );
    let q = "Still there after all that?";
    let r = super::harness::request(
        &gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &format!("Bearer {KEY}"))],
        Some(chat_body("auto", q).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", q)
    );
}

#[test]
fn tool_argument_strings_nested_a_thousand_levels_deep_do_not_crash_the_gateway() {
    // The debug ring parses tool-argument strings to redact inside them. Each string is a
    // JSON value at most 128 levels deep, but a chain of 22 such strings, 16 MB (under the
    // default max_body_bytes), once recursed until a worker's stack overflowed, which
    // aborts the process.
    let gw = GatewayProcess::start();
    let mut inner = json!("x");
    for _ in 0..22 {
        let mut v = json!({"arguments": inner.to_string()});
        for _ in 0..125 {
            v = json!([v]);
        }
        inner = v;
    }
    let mut body = chat_body("auto", "deep");
    body["x"] = inner;
    let r = gw.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.health()["status"], "ok");
    gw.assert_answers("still here");
}
