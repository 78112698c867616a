//! Finding 9: fail-open configuration and validation that differs between routes. A value
//! that is set but means nothing (`api_keys = ","`, an `admin_token` of blank space, ...) stops
//! startup with an error naming the key, where it used to mean "no auth" or "fall back";
//! `count_tokens` refuses exactly what `/v1/messages` refuses, with the same status and
//! error; a system prompt that is not text is a 400 naming the parameter in both APIs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::*;

/// Starts `serve --simulator` with `env` (and `ini` as its config file, if any) and expects
/// it to refuse: exit code 2 without ever listening. Returns its stderr.
fn refused_start(env: &[(&str, &str)], ini: Option<&str>) -> String {
    let dir = temp_dir("failopen");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--simulator", "--port", "0", "--work-dir"])
        .arg(dir.join("work"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("LINGMA_GATEWAY_") || k.starts_with("LINGMA_SIM_") {
            cmd.env_remove(k);
        }
    }
    if let Some(text) = ini {
        let path = dir.join("gateway.ini");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let mut err = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if line.contains("listening on") {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("started with {env:?} {ini:?}:\n{err}{line}");
        }
        err.push_str(&line);
        err.push('\n');
    }
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(2), "{env:?} {ini:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn a_set_value_that_means_nothing_stops_startup_naming_the_key() {
    for (env, want) in [
        (
            ("LINGMA_GATEWAY_API_KEYS", ","),
            "`api_keys` is set but lists no key",
        ),
        (
            ("LINGMA_GATEWAY_API_KEYS", " , ,"),
            "`api_keys` is set but lists no key",
        ),
        (
            ("LINGMA_GATEWAY_API_KEYS", " "),
            "`api_keys` is only blank space",
        ),
        (
            ("LINGMA_GATEWAY_ADMIN_TOKEN", " "),
            "`admin_token` is only blank space",
        ),
        (
            ("LINGMA_GATEWAY_METRICS_TOKEN", "\t"),
            "`metrics_token` is only blank space",
        ),
        (
            ("LINGMA_GATEWAY_TOOL_ALLOWLIST", ","),
            "`tool_allowlist` is set but lists no tool name",
        ),
        (
            ("LINGMA_GATEWAY_MODEL_ALIASES", ", ,"),
            "`model_aliases` is set but lists no alias",
        ),
        (
            ("LINGMA_GATEWAY_API_KEYS", "sk-ok,sk-\u{1b}bad"),
            "`api_keys` holds a key with a control character",
        ),
    ] {
        let err = refused_start(&[env], None);
        assert!(err.contains(env.0) && err.contains(want), "{env:?}: {err}");
        assert!(
            !err.contains("sk-ok") && !err.contains("bad"),
            "a secret echoed: {err}"
        );
    }
    // An account whose password is blank space, with its user name set.
    let err = refused_start(
        &[
            ("LINGMA_GATEWAY_ACCOUNT_MAIN_USERNAME", "alice"),
            ("LINGMA_GATEWAY_ACCOUNT_MAIN_PASSWORD", "  "),
        ],
        None,
    );
    assert!(
        err.contains("`account.main.password` is only blank space"),
        "{err}"
    );
    // In a file, the line is named.
    let err = refused_start(&[], Some("[gateway]\nport = 0\napi_keys = ,\n"));
    assert!(
        err.contains("gateway.ini:3") && err.contains("`api_keys`"),
        "{err}"
    );
}

#[test]
fn an_empty_value_still_means_not_set() {
    let gw = GatewayProcess::start_with(
        Options::default()
            .env("api_keys", "")
            .env("admin_token", "")
            .env("metrics_token", "")
            .env("tool_allowlist", ""),
    );
    gw.assert_answers("no keys configured");
}

/// The error a client sees: its status and body.
fn answer(gw: &GatewayProcess, path: &str, body: &Value) -> (u16, Value) {
    let r = gw.post(path, body);
    (r.status, r.json())
}

#[test]
fn count_tokens_refuses_what_messages_refuses_with_the_same_error() {
    let gw = GatewayProcess::start();
    let user = |content: Value| json!([{"role": "user", "content": content}]);
    let refused = [
        ("no messages", json!({"model": "auto", "messages": []})),
        (
            "an unknown model",
            json!({"model": "no-such-model", "messages": user(json!("hi"))}),
        ),
        (
            "only a block of an unknown type",
            json!({"model": "auto", "messages": user(json!([{"type": "weird", "x": 1}]))}),
        ),
        (
            "no text at all",
            json!({"model": "auto", "messages": user(json!(""))}),
        ),
        (
            "a nameless tool",
            json!({"model": "auto", "messages": user(json!("hi")), "tools": [{"input_schema": {"type": "object"}}]}),
        ),
        (
            "a nameless tool_use",
            json!({"model": "auto", "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "input": {}}]},
                {"role": "user", "content": "hi"}]}),
        ),
        (
            "a system block that is not text",
            json!({"model": "auto", "system": [{"type": "image", "source": {}}], "messages": user(json!("hi"))}),
        ),
        (
            "a system that is a number",
            json!({"model": "auto", "system": 5, "messages": user(json!("hi"))}),
        ),
    ];
    for (what, mut body) in refused {
        let counted = answer(&gw, "/v1/messages/count_tokens", &body);
        body["max_tokens"] = json!(64);
        let sent = answer(&gw, "/v1/messages", &body);
        assert!(sent.0 >= 400, "{what}: /v1/messages took it: {sent:?}");
        assert_eq!(sent.1["type"], "error", "{what}: {sent:?}");
        assert_eq!(
            counted, sent,
            "{what}: count_tokens and /v1/messages differ"
        );
    }
    // What /v1/messages takes, count_tokens counts.
    let body = json!({"model": "auto", "system": [{"type": "text", "text": "be brief"}], "messages": user(json!("hi"))});
    let (status, counted) = answer(&gw, "/v1/messages/count_tokens", &body);
    assert_eq!(status, 200, "{counted}");
    assert!(counted["input_tokens"].as_u64().unwrap() > 0, "{counted}");
}

#[test]
fn a_system_prompt_that_is_not_text_is_refused_naming_the_parameter() {
    let gw = GatewayProcess::start();
    let then_user = |system: Value| json!([system, {"role": "user", "content": "hi"}]);
    for (body, param) in [
        (
            json!({"model": "auto", "messages": then_user(json!({"role": "system"}))}),
            "messages[0].content",
        ),
        (
            json!({"model": "auto", "messages": then_user(json!({"role": "system", "content": null}))}),
            "messages[0].content",
        ),
        (
            json!({"model": "auto", "messages": then_user(json!({"role": "developer", "content": {"text": "x"}}))}),
            "messages[0].content",
        ),
        (
            json!({"model": "auto", "messages": then_user(json!({"role": "system", "content": 7}))}),
            "messages[0].content",
        ),
        (
            json!({"model": "auto", "messages": then_user(json!({"role": "system", "content": [{"type": "refusal", "refusal": "no"}]}))}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "auto", "system": "be brief", "messages": [{"role": "user", "content": "hi"}]}),
            "system",
        ),
    ] {
        let (status, err) = answer(&gw, "/v1/chat/completions", &body);
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["param"], param, "{body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
    }
    for (system, param) in [
        (json!([{"type": "image", "source": {}}]), "system.0.type"),
        (json!([{"type": "document"}]), "system.0.type"),
        (json!(["be brief"]), "system.0"),
        (json!(5), "system"),
    ] {
        let body = json!({"model": "auto", "max_tokens": 64, "system": system,
            "messages": [{"role": "user", "content": "hi"}]});
        let (status, err) = answer(&gw, "/v1/messages", &body);
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{param}:")), "{body}: {err}");
    }
}
