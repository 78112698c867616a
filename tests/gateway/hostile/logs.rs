//! Finding 7: secrets and forged lines in logs. A gateway at `log_level = trace` with an API
//! key, an admin token, a metrics token and an account password is sent chats that carry
//! those secrets in their text, tool arguments named `password`/`token`, models and request
//! lines holding LF, CR and ESC; its captured log must hold none of the secrets (nor
//! Lingma's session tokens) and one record per line, every line starting with the logger's
//! timestamp. The debug ring keeps no inline `data:` URL.

use serde_json::{json, Value};

use crate::harness::*;

const API_KEY: &str = "sk-hostile-logs-4b1e";
const ADMIN: &str = "adm-hostile-logs-93aa";
const METRICS: &str = "met-hostile-logs-07c5";
const PASSWORD: &str = "pw-hostile-logs-d21f";
const TOOL_PASSWORD: &str = "tool-pw-hostile-66e0";
const TOOL_TOKEN: &str = "tool-tok-hostile-1c9b";
/// What the simulator's `auth/status` tokens start with (`src/simulator/account.rs`); the
/// rest is random per start.
const LINGMA_TOKENS: &[&str] = &["sim-token-", "sim-refresh-"];
/// A forged access line, as a client would smuggle it after a line break.
const FORGED: &str = "1999-01-01T00:00:00Z [INFO] access: req_forged GET /forged 200 0ms";

fn hostile_gateway() -> GatewayProcess {
    GatewayProcess::start_with(
        Options {
            key: Some(API_KEY.into()),
            log_level: "trace",
            ..Options::default()
        }
        .env("admin_token", ADMIN)
        .env("metrics_token", METRICS)
        .env("account_main_username", "alice@example.com")
        .env("account_main_password", PASSWORD),
    )
}

fn post_id(gw: &GatewayProcess, path: &str, id: &str, body: &Value) -> Resp {
    request(
        &gw.addr,
        "POST",
        path,
        &[
            ("Authorization", &format!("Bearer {API_KEY}")),
            ("X-Request-Id", id),
        ],
        Some(body.to_string().as_bytes()),
    )
}

/// Lowercase hex of `s`, as tungstenite dumps a frame's payload.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `2025-01-31T12:34:56`: how each line simplelog writes begins.
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

#[test]
fn no_log_line_at_trace_holds_a_secret_or_a_line_a_client_forged() {
    let gw = hostile_gateway();
    // The configured secrets pasted into chat text (the simulator echoes the text back, so
    // they are in Lingma's answer frames too).
    let pasted = format!("my key {API_KEY}, admin {ADMIN}, metrics {METRICS}, password {PASSWORD}");
    let r = post_id(
        &gw,
        "/v1/chat/completions",
        "hl-pasted",
        &chat_body("auto", &pasted),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Tool arguments named password and token, in each protocol's history.
    let args = json!({"user": "u", "password": TOOL_PASSWORD, "api_token": TOOL_TOKEN});
    let r = post_id(
        &gw,
        "/v1/chat/completions",
        "hl-openai-tools",
        &json!({"model": "auto", "messages": [
            {"role": "user", "content": "log me in"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "login", "arguments": args.to_string()}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            {"role": "user", "content": "and now?"}],
            "tools": [{"type": "function", "function": {"name": "login", "parameters": {"type": "object"}}}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_id(
        &gw,
        "/v1/messages",
        "hl-anthropic-tools",
        &json!({"model": "auto", "max_tokens": 64, "messages": [
            {"role": "user", "content": "log me in"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "login", "input": args}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "ok"}]}],
            "tools": [{"name": "login", "input_schema": {"type": "object"}}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_id(
        &gw,
        "/v1/responses",
        "hl-responses-tools",
        &json!({"model": "auto", "input": [
            {"role": "user", "content": "log me in"},
            {"type": "function_call", "call_id": "fc_1", "name": "login", "arguments": args.to_string()},
            {"type": "function_call_output", "call_id": "fc_1", "output": "ok"}],
            "tools": [{"type": "function", "name": "login", "parameters": {"type": "object"}}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Models that hold a line break, a carriage return and terminal escapes.
    for (id, path, model) in [
        (
            "hl-model-lf",
            "/v1/chat/completions",
            format!("auto\n{FORGED}"),
        ),
        (
            "hl-model-cr",
            "/v1/chat/completions",
            format!("auto\r{FORGED}"),
        ),
        (
            "hl-model-esc",
            "/v1/messages",
            "auto\u{1b}[1A\u{1b}[2Kforged".to_string(),
        ),
        (
            "hl-model-nel",
            "/v1/messages",
            format!("auto\u{85}{FORGED}"),
        ),
        (
            "hl-model-ls",
            "/v1/chat/completions",
            format!("auto\u{2028}{FORGED}"),
        ),
    ] {
        let r = post_id(&gw, path, id, &messages_body(&model, "hi"));
        assert_eq!(r.status, 404, "{id}: {}", r.text());
        gw.wait_log(id);
    }
    // Request lines and methods with control bytes, through a raw socket. Whatever the HTTP
    // parser makes of them, an answer the gateway wrote carries our request id and gets an
    // access line; then it must be one line.
    for (id, head) in [
        (
            "hl-raw-lf",
            format!("GET /x\n{} HTTP/1.1", FORGED.replace(' ', "_")),
        ),
        (
            "hl-raw-cr",
            format!("GET /x\r{} HTTP/1.1", FORGED.replace(' ', "_")),
        ),
        (
            "hl-raw-esc",
            "GET /x\u{1b}[2J\u{1b}[1;1H HTTP/1.1".to_string(),
        ),
        (
            "hl-raw-method",
            "G\u{1b}[2KET /healthz HTTP/1.1".to_string(),
        ),
        ("hl-raw-del", "GET /x\u{7f}\u{9b}31m HTTP/1.1".to_string()),
    ] {
        let raw = format!("{head}\r\nHost: x\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n");
        if let Ok(r) = raw_request(&gw.addr, raw.as_bytes()) {
            if r.header("x-request-id") == Some(id) {
                gw.wait_log(id);
            }
        }
    }
    // The trace lines of the chats are in.
    gw.wait_log("\"method\":\"chat/finish\"");
    let r = post_id(
        &gw,
        "/v1/chat/completions",
        "hl-last",
        &chat_body("auto", "done"),
    );
    assert_eq!(r.status, 200);
    gw.wait_log("hl-last");

    let log = gw.log_text();
    assert!(
        log.contains("\"method\":\"chat/ask\""),
        "trace frames are logged"
    );
    let mut secrets: Vec<String> = [API_KEY, ADMIN, METRICS, PASSWORD, TOOL_PASSWORD, TOOL_TOKEN]
        .iter()
        .chain(LINGMA_TOKENS)
        .map(|s| s.to_string())
        .collect();
    secrets.extend(secrets.iter().map(|s| hex(s)).collect::<Vec<_>>());
    for secret in &secrets {
        let line = log.lines().find(|l| l.contains(secret.as_str()));
        assert!(line.is_none(), "{secret} in the gateway log: {line:?}");
    }
    for (i, line) in log.lines().enumerate() {
        assert!(
            starts_with_timestamp(line) && !line.starts_with("1999-"),
            "line {i} is not a record of its own: {line:?}"
        );
        assert!(
            !line.contains(['\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}']),
            "line {i} holds a control character: {line:?}"
        );
    }
    // The hostile values are still there to read, escaped.
    assert!(log.contains("auto\\n1999-01-01T00:00:00Z"), "{log}");
    assert!(log.contains("auto\\u{1b}[1A"), "{log}");
}

#[test]
fn the_debug_ring_keeps_no_inline_data_url() {
    let gw = GatewayProcess::start_with(Options::default().env("admin_token", ADMIN));
    let text = "see data:image/png;base64,SU5MSU5FREFUQVVSTA== here, \
                and (data:text/plain,SECONDINLINEPAYLOAD) there";
    let r = gw.post("/v1/chat/completions", &chat_body("auto", text));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        &gw.addr,
        "GET",
        "/internal/debug/requests",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    );
    assert_eq!(r.status, 200);
    let ring = r.json();
    let content = ring["items"][0]["body"]["messages"][0]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{ring}"))
        .to_string();
    for payload in ["SU5MSU5FREFUQVVSTA", "SECONDINLINEPAYLOAD"] {
        assert!(!content.contains(payload), "{payload} kept: {content}");
    }
    // The words around the URLs stay.
    assert!(
        content.starts_with("see ")
            && content.contains(" here, and (")
            && content.ends_with(") there"),
        "{content}"
    );
    assert!(content.contains("<redacted data URL"), "{content}");
}
