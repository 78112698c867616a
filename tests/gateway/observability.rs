//! `/metrics`, `/internal/*`, `/capabilities`: their credentials, what they show, and that
//! no secret reaches any endpoint or log line.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::*;

const API_KEY: &str = "sk-client-planted-7f3a";
const ADMIN: &str = "adm-planted-91c2";
const METRICS: &str = "met-planted-44d0";
const PASSWORD: &str = "pw-planted-5be1";
const DATA_URL: &str = "data:image/png;base64,UExBTlRFRERBVEFVUkw=";

const ADMIN_ROUTES: &[&str] = &[
    "/internal/stats",
    "/internal/effective-config",
    "/internal/debug/requests?limit=5",
    "/internal/models/raw",
];

fn secured() -> GatewayProcess {
    GatewayProcess::start_with(
        Options {
            key: Some(API_KEY.into()),
            ..Options::default()
        }
        .env("admin_token", ADMIN)
        .env("metrics_token", METRICS),
    )
}

fn get_as(gw: &GatewayProcess, path: &str, token: Option<&str>) -> Resp {
    let h: Vec<(String, String)> = token
        .map(|t| vec![("Authorization".to_string(), format!("Bearer {t}"))])
        .unwrap_or_default();
    request(&gw.addr, "GET", path, &refs(&h), None)
}

/// Scrapes `/metrics` until `ok` holds for the text (or fails after `WAIT`).
fn scrape_until(gw: &GatewayProcess, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = get_as(gw, "/metrics", Some(METRICS)).text();
        if ok(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never got there:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn every_operator_route_refuses_missing_and_wrong_credentials() {
    let gw = secured();
    for path in ADMIN_ROUTES.iter().chain(&["/metrics"]) {
        for token in [None, Some("wrong-token"), Some(API_KEY)] {
            let r = get_as(&gw, path, token);
            assert_eq!(r.status, 401, "{path} with {token:?}: {}", r.text());
            assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        }
        let r = get_as(&gw, path, Some(ADMIN));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // The metrics token opens /metrics only.
    assert_eq!(get_as(&gw, "/metrics", Some(METRICS)).status, 200);
    for path in ADMIN_ROUTES {
        assert_eq!(get_as(&gw, path, Some(METRICS)).status, 401, "{path}");
    }
    // /capabilities is public, /v1/capabilities wants an API key.
    assert_eq!(get_as(&gw, "/capabilities", None).status, 200);
    assert_eq!(get_as(&gw, "/v1/capabilities", None).status, 401);
    let caps = get_as(&gw, "/v1/capabilities", Some(API_KEY)).json();
    assert_eq!(caps["protocols"]["anthropic"]["messages"], true);
    assert_eq!(caps["features"]["auth"]["admin_token_configured"], true);
    assert_eq!(caps["features"]["flow_control"]["max_in_flight"], 64);
}

#[test]
fn without_an_admin_token_the_api_keys_open_internal_routes_and_the_log_says_so() {
    let gw = GatewayProcess::start_with(Options {
        key: Some(API_KEY.into()),
        ..Options::default()
    });
    gw.wait_log("NO ADMIN TOKEN CONFIGURED");
    for path in ADMIN_ROUTES.iter().chain(&["/metrics"]) {
        assert_eq!(get_as(&gw, path, None).status, 401, "{path}");
        assert_eq!(get_as(&gw, path, Some("nope")).status, 401, "{path}");
        assert_eq!(get_as(&gw, path, Some(API_KEY)).status, 200, "{path}");
    }
}

#[test]
fn with_no_credential_at_all_operator_routes_refuse_beyond_loopback() {
    let gw = GatewayProcess::start_with(Options::default().env("host", "0.0.0.0"));
    gw.wait_log("LISTENING BEYOND LOOPBACK");
    gw.wait_log("refuse every request (403)");
    for path in ADMIN_ROUTES.iter().chain(&["/metrics"]) {
        let r = get_as(&gw, path, None);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin_token"));
    }
    // The client API stays as open as configured (warned above); health too.
    assert_eq!(gw.get("/healthz").status, 200);
}

#[test]
fn public_metrics_need_no_credential_and_are_warned_about() {
    let gw = GatewayProcess::start_with(
        Options::default()
            .env("admin_token", ADMIN)
            .env("metrics_public", "true")
            .env("host", "0.0.0.0"),
    );
    gw.wait_log("METRICS ARE PUBLIC");
    assert_eq!(get_as(&gw, "/metrics", None).status, 200);
    assert_eq!(get_as(&gw, "/internal/stats", None).status, 401);
}

#[test]
fn metrics_counters_move_with_requests() {
    let gw = secured();
    let scrape = || get_as(&gw, "/metrics", Some(METRICS)).text();
    let ok = "lingma_gateway_requests_total{route=\"/v1/chat/completions\",protocol=\"openai\",status=\"200\"} ";
    let count = "lingma_gateway_request_duration_seconds_count{route=\"/v1/chat/completions\"} ";
    let ttft = "lingma_gateway_time_to_first_token_seconds_count{route=\"/v1/chat/completions\"} ";
    let added = "lingma_gateway_added_latency_seconds_count{route=\"/v1/messages\"} ";
    let responses = "lingma_gateway_time_to_first_token_seconds_count{route=\"/v1/responses\"} ";
    let input = "lingma_gateway_input_tokens_total{protocol=\"openai\"} ";
    let output = "lingma_gateway_output_tokens_total{protocol=\"anthropic\"} ";
    let before = scrape();
    gw.assert_answers("count me");
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=3]]"),
    );
    assert_eq!(s.status, 200);
    s.collect();
    let r = gw.post(
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi there"}]}),
    );
    assert_eq!(r.status, 200);
    let r = gw.post(
        "/v1/responses",
        &json!({"model": "auto", "input": "hi again"}),
    );
    assert_eq!(r.status, 200);
    // A request is counted just after its last byte is sent: wait for the scrape to see it.
    let after = scrape_until(&gw, |after| {
        metric(after, ok) - metric(&before, ok) == 2.0
            && metric(after, added) - metric(&before, added) == 1.0
            && metric(after, responses) - metric(&before, responses) == 1.0
    });
    assert_eq!(metric(&after, count) - metric(&before, count), 2.0);
    assert_eq!(metric(&after, ttft) - metric(&before, ttft), 2.0);
    assert!(metric(&after, input) > metric(&before, input));
    assert!(metric(&after, output) > metric(&before, output));
    assert_eq!(
        metric(&after, "lingma_gateway_instances{state=\"ready\"} "),
        1.0
    );
    assert!(after.contains("lingma_gateway_upstream_restarts_total{instance=\"lingma-0\"} 0"));
    // A refused request is counted under its status.
    assert_eq!(gw.post("/v1/chat/completions", &json!({})).status, 400);
    scrape_until(&gw, |last| {
        last.contains(
        "lingma_gateway_requests_total{route=\"/v1/chat/completions\",protocol=\"openai\",status=\"400\"} 1"
    )
    });
    // The admin view agrees.
    let stats = get_as(&gw, "/internal/stats", Some(ADMIN)).json();
    assert!(stats["requests"]["total"].as_u64().unwrap() >= 5, "{stats}");
    assert_eq!(stats["pool"][0]["state"], "ready");
}

#[test]
#[ignore = "needs promtool: apt-get install prometheus"]
fn metrics_pass_promtool_check() {
    require_promtool();
    let gw = secured();
    gw.assert_answers("one");
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=2]]"),
    );
    s.collect();
    gw.post(
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}),
    );
    gw.post("/v1/chat/completions", &chat_body("no-such-model", "x"));
    gw.get("/no/such/route");
    let r = get_as(&gw, "/metrics", Some(METRICS));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n--- scrape:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        r.text()
    );
}

/// The promtool test is `#[ignore]`d, so that a machine without promtool lists it as
/// ignored instead of passing it unchecked; run (`cargo test -- --include-ignored`, as CI
/// does), a missing promtool fails it.
fn require_promtool() {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "promtool is missing: apt-get install prometheus");
}

#[test]
fn planted_secrets_reach_no_endpoint_and_no_log_line() {
    let gw = secured();
    // A password-named field at the top and in metadata, and in a tool call's arguments.
    let r = gw.post(
        "/v1/chat/completions",
        &json!({"model": "auto", "password": PASSWORD, "metadata": {"db_password": PASSWORD},
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "login", "arguments": json!({"user": "u", "password": PASSWORD}).to_string()}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
                {"role": "user", "content": "and now?"},
            ],
            "tools": [{"type": "function", "function": {"name": "login", "parameters": {"type": "object"}}}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answers_with_secrets = r.text();
    // A data: URL (refused: Lingma takes text) in both protocols.
    let r = gw.post(
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": DATA_URL}}]}]}),
    );
    assert_eq!(r.status, 400);
    let refused = r.text();
    let r = gw.post(
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 64, "metadata": {"user_id": "u1", "password": PASSWORD},
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": DATA_URL}},
                {"type": "text", "text": "see"}]}]}),
    );
    let refused2 = r.text();

    let mut outputs: Vec<String> = vec![answers_with_secrets, refused, refused2];
    for path in ADMIN_ROUTES.iter().chain(&[
        "/internal/debug/requests?limit=100",
        "/metrics",
        "/capabilities",
        "/healthz",
    ]) {
        let r = get_as(&gw, path, Some(ADMIN));
        assert_eq!(r.status, 200, "{path}");
        outputs.push(r.text());
    }
    outputs.push(get_as(&gw, "/v1/capabilities", Some(API_KEY)).text());
    outputs.push(gw.get("/v1/models").text());

    // The bodies were recorded, with the secrets taken out.
    let debug: Value = get_as(&gw, "/internal/debug/requests?limit=100", Some(ADMIN)).json();
    assert_eq!(debug["count"], 3, "{debug}");
    let recorded = debug.to_string();
    assert!(
        recorded.contains("<redacted>") && recorded.contains("<redacted data URL"),
        "{recorded}"
    );
    let config = get_as(&gw, "/internal/effective-config", Some(ADMIN)).json();
    assert_eq!(config["settings"]["admin_token"], "<redacted>");
    assert_eq!(config["settings"]["api_keys"], "<redacted>");

    // Denied attempts with the secrets in the wrong place are not logged either.
    get_as(&gw, "/internal/stats", Some(METRICS));
    get_as(&gw, "/metrics", Some(API_KEY));

    let log = gw.log_text();
    assert!(log.contains("access:"), "the log was captured");
    for secret in [
        API_KEY,
        ADMIN,
        METRICS,
        PASSWORD,
        DATA_URL,
        "UExBTlRFRERBVEFVUkw",
    ] {
        for (i, out) in outputs.iter().enumerate() {
            assert!(!out.contains(secret), "{secret} in output {i}: {out}");
        }
        assert!(!log.contains(secret), "{secret} in the gateway log");
    }
}
