//! Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`) through the gateway:
//! message and event shapes, tools by prompt emulation, thinking blocks, Claude Code's
//! request shape, and errors in Anthropic's envelope.

use serde_json::{json, Value};

use crate::harness::*;

const THINKING_MODEL: &str = "dashscope_qwen_plus_20250428_thinking";

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "City"}},
            "required": ["location"]
        }
    })
}

fn with_tools(mut body: Value) -> Value {
    body["tools"] = json!([weather_tool()]);
    body
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// The events of an Anthropic stream as JSON, pings left out; every event's `event:` line
/// must equal its data's `type`.
fn events(s: &mut Stream) -> Vec<Value> {
    assert_eq!(
        s.status,
        200,
        "{:?}",
        s.body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    );
    assert!(s
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/event-stream")));
    s.collect()
        .iter()
        .map(|e| {
            let v = e.json();
            assert_eq!(
                e.event.as_deref(),
                v["type"].as_str(),
                "event name differs from the data's type: {e:?}"
            );
            v
        })
        .filter(|v| v["type"] != "ping")
        .collect()
}

/// A compact picture of a stream: `start:KIND@I`, `delta:KIND@I`, `stop@I` or the event type,
/// with runs of the same entry collapsed into one.
fn shape(evs: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in evs {
        let s = match v["type"].as_str().unwrap() {
            "content_block_start" => format!(
                "start:{}@{}",
                v["content_block"]["type"].as_str().unwrap(),
                v["index"]
            ),
            "content_block_delta" => {
                format!(
                    "delta:{}@{}",
                    v["delta"]["type"].as_str().unwrap(),
                    v["index"]
                )
            }
            "content_block_stop" => format!("stop@{}", v["index"]),
            other => other.to_string(),
        };
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

/// One delta field of one delta type, concatenated over the stream.
fn deltas(evs: &[Value], kind: &str, field: &str) -> String {
    evs.iter()
        .filter(|v| v["type"] == "content_block_delta" && v["delta"]["type"] == kind)
        .map(|v| v["delta"][field].as_str().unwrap().to_string())
        .collect()
}

fn stream_text(evs: &[Value]) -> String {
    deltas(evs, "text_delta", "text")
}

fn assert_error(r: &Resp, status: u16, kind: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    v["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

#[test]
fn non_stream_message_with_claude_code_headers_and_auth() {
    let key = "sk-ant-gateway-test-42";
    let gw = GatewayProcess::start_with(Options {
        key: Some(key.into()),
        ..Default::default()
    });
    let q = "What is Rust?";
    let body = messages_body("auto", q).to_string();
    let post =
        |path: &str, h: &[(&str, &str)]| request(&gw.addr, "POST", path, h, Some(body.as_bytes()));
    let r = post(
        "/v1/messages?beta=true",
        &[
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "claude-code-20250219,interleaved-thinking-2025-05-14",
            ),
            ("x-api-key", key),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "auto");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": default_answer("Auto", q)}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null(), "{v}");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{v}");

    let bearer = format!("Bearer {key}");
    let r = post("/v1/messages", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"], default_answer("Auto", q));

    let r = post("/v1/messages", &[("x-api-key", "sk-ant-wrong")]);
    assert_error(&r, 401, "authentication_error");
    let r = post("/v1/messages?beta=true", &[]);
    assert_error(&r, 401, "authentication_error");
    assert!(!gw.log_text().contains(key), "the key leaked into the log");
}

#[test]
fn stream_events_come_in_anthropic_order() {
    let gw = GatewayProcess::start();
    let q = "Tell me about streams";
    let mut s = gw.post_stream("/v1/messages", &streamed(messages_body("auto", q)));
    let evs = events(&mut s);
    assert_eq!(
        shape(&evs),
        [
            "message_start",
            "start:text@0",
            "delta:text_delta@0",
            "stop@0",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &evs[0]["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["content"], json!([]));
    assert!(
        start["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{start}"
    );
    assert_eq!(evs[1]["content_block"], json!({"type": "text", "text": ""}));
    assert_eq!(stream_text(&evs), default_answer("Auto", q));
    let delta = &evs[evs.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{delta}"
    );
}

#[test]
fn tool_call_becomes_a_tool_use_block() {
    let gw = GatewayProcess::start();
    let body = with_tools(messages_body(
        "auto",
        "Weather in Paris? [[sim:tool=get_weather]]",
    ));
    let v = gw.post("/v1/messages", &body).json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let content = v["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{v}");
    assert_eq!(content[0]["type"], "text");
    assert_eq!(
        content[0]["text"].as_str().unwrap().trim_end(),
        "I'll call get_weather now."
    );
    assert_eq!(content[1]["type"], "tool_use");
    assert!(
        content[1]["id"].as_str().unwrap().starts_with("call_"),
        "{v}"
    );
    assert_eq!(content[1]["name"], "get_weather");
    assert_eq!(content[1]["input"], json!({"location": "sim-location"}));

    let mut s = gw.post_stream("/v1/messages", &streamed(body));
    let evs = events(&mut s);
    assert_eq!(
        shape(&evs),
        [
            "message_start",
            "start:text@0",
            "delta:text_delta@0",
            "stop@0",
            "start:tool_use@1",
            "delta:input_json_delta@1",
            "stop@1",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(stream_text(&evs).trim_end(), "I'll call get_weather now.");
    let start = evs
        .iter()
        .find(|v| v["type"] == "content_block_start" && v["index"] == 1)
        .unwrap();
    let block = &start["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({}));
    assert!(block["id"].as_str().unwrap().starts_with("call_"));
    let input: Value =
        serde_json::from_str(&deltas(&evs, "input_json_delta", "partial_json")).unwrap();
    assert_eq!(input, json!({"location": "sim-location"}));
    assert_eq!(evs[evs.len() - 2]["delta"]["stop_reason"], "tool_use");
}

#[test]
fn tool_results_are_answered() {
    let gw = GatewayProcess::start();
    for result in [
        json!("sunny, 21C"),
        json!([{"type": "text", "text": "sunny, 21C"}]),
    ] {
        let body = json!({
            "model": "auto", "max_tokens": 1024, "tools": [weather_tool()],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "I'll check."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"location": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": result}
                ]}
            ]
        });
        let r = gw.post("/v1/messages", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["stop_reason"], "end_turn", "{v}");
        assert_eq!(v["content"].as_array().unwrap().len(), 1, "{v}");
        let text = v["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("Tool result received: sunny, 21C"),
            "result {result}: {text}"
        );
    }
}

#[test]
fn forced_tool_choice_calls_and_retries_once() {
    let gw = GatewayProcess::start();
    let forced = |text: &str| {
        let mut b = with_tools(messages_body("auto", text));
        b["tool_choice"] = json!({"type": "tool", "name": "get_weather"});
        b
    };
    let tool_use = |v: &Value| -> Value {
        assert_eq!(v["stop_reason"], "tool_use", "{v}");
        v["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .cloned()
            .unwrap_or_else(|| panic!("no tool_use: {v}"))
    };
    // No directive at all: the choice alone makes the (obedient) model call.
    let v = gw
        .post("/v1/messages", &forced("How is the weather?"))
        .json();
    let call = tool_use(&v);
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"location": "sim-location"}));
    // `any` works too.
    let mut any = with_tools(messages_body("auto", "How is the weather?"));
    any["tool_choice"] = json!({"type": "any"});
    assert_eq!(
        tool_use(&gw.post("/v1/messages", &any).json())["name"],
        "get_weather"
    );

    // A lazy model answers without a call first: the gateway asks once more.
    let before = gw.sim_asks(0);
    let v = gw
        .post("/v1/messages", &forced("How is the weather? [[sim:lazy]]"))
        .json();
    assert_eq!(tool_use(&v)["name"], "get_weather");
    assert_eq!(gw.sim_asks(0) - before, 2, "{}", gw.sim_log(0));
    let text: String = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert!(!text.contains("Hello from the Lingma simulator"), "{v}");

    // Streamed, the first attempt's text never reaches the client.
    let before = gw.sim_asks(0);
    let mut s = gw.post_stream(
        "/v1/messages",
        &streamed(forced("How is the weather? [[sim:lazy]]")),
    );
    let evs = events(&mut s);
    assert_eq!(gw.sim_asks(0) - before, 2);
    assert_eq!(stream_text(&evs).trim_end(), "I'll call get_weather now.");
    assert!(
        shape(&evs).contains(&"start:tool_use@1".to_string()),
        "{evs:?}"
    );
    assert_eq!(evs[evs.len() - 2]["delta"]["stop_reason"], "tool_use");
}

#[test]
fn thinking_blocks_only_when_thinking_is_enabled() {
    let gw = GatewayProcess::start();
    let q = "Why is the sky blue?";
    let mut body = messages_body(THINKING_MODEL, q);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let answer = default_answer("Qwen-Plus-Thinking", q);

    let mut s = gw.post_stream("/v1/messages", &streamed(body.clone()));
    let evs = events(&mut s);
    assert_eq!(
        shape(&evs),
        [
            "message_start",
            "start:thinking@0",
            "delta:thinking_delta@0",
            "delta:signature_delta@0",
            "stop@0",
            "start:text@1",
            "delta:text_delta@1",
            "stop@1",
            "message_delta",
            "message_stop"
        ]
    );
    let thinking = deltas(&evs, "thinking_delta", "thinking");
    assert!(thinking.contains(q), "{thinking}");
    assert!(!deltas(&evs, "signature_delta", "signature").is_empty());
    assert_eq!(stream_text(&evs), answer);

    let v = gw.post("/v1/messages", &body).json();
    let content = v["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{v}");
    assert_eq!(content[0]["type"], "thinking");
    assert!(content[0]["thinking"].as_str().unwrap().contains(q), "{v}");
    assert!(!content[0]["signature"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(content[1], json!({"type": "text", "text": answer}));

    // Without `thinking` in the request the reasoning is dropped, markers and all; the same
    // for a think block the `[[sim:think]]` directive asks of a plain model.
    for (model, q, name) in [
        (THINKING_MODEL, q, "Qwen-Plus-Thinking"),
        ("auto", "Think first [[sim:think]]", "Auto"),
    ] {
        let body = messages_body(model, q);
        let v = gw.post("/v1/messages", &body).json();
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": default_answer(name, q)}]),
            "{model}"
        );
        let mut s = gw.post_stream("/v1/messages", &streamed(body));
        let evs = events(&mut s);
        assert!(
            !shape(&evs).iter().any(|s| s.contains("thinking")),
            "{evs:?}"
        );
        let text = stream_text(&evs);
        assert!(
            !text.contains("````") && !text.contains("think::"),
            "{text}"
        );
        assert_eq!(text, default_answer(name, q));
    }
}

#[test]
fn claude_code_shaped_request_is_accepted() {
    let gw = GatewayProcess::start();
    // Claude Code's own model names go to the default model (`claude-*=default`).
    let body = json!({
        "model": "claude-opus-4-1-20250805",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>The date is today.</system-reminder>"},
                {"type": "text", "text": "hello there", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "The user greets me.", "signature": "EqQBCkYIBxgCKkBsig=="},
                {"type": "text", "text": "Hi! How can I help?"}
            ]},
            {"role": "system", "content": "Available agent types: general-purpose"},
            {"role": "user", "content": [{"type": "text", "text": "What is Rust?"}]}
        ],
        "metadata": {"user_id": "user_0123abcd_account__session_9f1e"},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "temperature": 1,
        "tools": [{
            "name": "Bash",
            "description": "Executes a bash command.",
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
                "required": ["command"],
                "additionalProperties": false
            }
        }]
    });
    let headers = [
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
        ),
        ("x-claude-code-session-id", "9f1e-session"),
    ];
    let r = request(
        &gw.addr,
        "POST",
        "/v1/messages?beta=true",
        &headers,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": default_answer("Auto", "What is Rust?")}]),
        "the answer is to the latest user message"
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["model"], "claude-opus-4-1-20250805");

    let mut s = Stream::open(
        &gw.addr,
        "/v1/messages?beta=true",
        &headers,
        &streamed(body),
    );
    let evs = events(&mut s);
    assert_eq!(evs.last().unwrap()["type"], "message_stop");
    assert_eq!(stream_text(&evs), default_answer("Auto", "What is Rust?"));
}

#[test]
fn errors_use_anthropics_envelope_and_statuses() {
    let gw = GatewayProcess::start_with(Options::default().env("max_body_bytes", "4096"));
    let post = |body: &Value| gw.post("/v1/messages", body);

    let mut no_max = messages_body("auto", "Hi");
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let m = assert_error(&post(&no_max), 400, "invalid_request_error");
    assert!(m.contains("max_tokens"), "{m}");

    let image = json!({"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    ]}]});
    let m = assert_error(&post(&image), 400, "invalid_request_error");
    assert!(m.contains("image"), "{m}");

    let m = assert_error(
        &post(&messages_body("no-such-model-9", "Hi")),
        404,
        "not_found_error",
    );
    assert!(m.contains("no-such-model-9"), "{m}");

    let limited = messages_body("auto", "[[sim:status=429]]");
    let r = post(&limited);
    assert_error(&r, 429, "rate_limit_error");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    // A stream that fails before its first byte gets the same HTTP error.
    let s = gw.post_stream("/v1/messages", &streamed(limited));
    assert_eq!(s.status, 429);
    assert_eq!(s.body_json()["error"]["type"], "rate_limit_error");

    for (code, status, kind) in [(403, 403, "permission_error"), (500, 500, "api_error")] {
        let r = post(&messages_body("auto", &format!("[[sim:status={code}]]")));
        assert_error(&r, status, kind);
    }

    let big = messages_body("auto", &"x".repeat(5000));
    assert_error(&post(&big), 413, "request_too_large");

    let r = request(
        &gw.addr,
        "POST",
        "/v1/messages",
        &[],
        Some(b"{\"model\": \"auto\","),
    );
    assert_error(&r, 400, "invalid_request_error");

    // The gateway still answers afterwards.
    let r = post(&messages_body("auto", "still there?"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn count_tokens_grows_with_what_the_prompt_holds() {
    let gw = GatewayProcess::start();
    let count = |body: &Value| -> u64 {
        let r = gw.post("/v1/messages/count_tokens", body);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        v["input_tokens"].as_u64().unwrap()
    };
    // No max_tokens: count_tokens does not take one.
    let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": "What is the weather in Paris today?"}]});
    let messages_only = count(&body);
    assert!(messages_only > 0);
    body["system"] = json!("You are a helpful weather assistant. Answer in one sentence.");
    let with_system = count(&body);
    body["tools"] = json!([weather_tool()]);
    let with_tools = count(&body);
    assert!(
        messages_only < with_system && with_system < with_tools,
        "{messages_only} < {with_system} < {with_tools}"
    );

    let history = |assistant_extra: Option<Value>, result: Option<Value>| {
        let mut assistant = vec![
            json!({"type": "text", "text": "Checking."}),
            json!({"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"location": "Paris"}}),
        ];
        if let Some(b) = assistant_extra {
            assistant.insert(0, b);
        }
        let mut user = vec![json!({"type": "text", "text": "go on"})];
        if let Some(r) = result {
            user.insert(0, r);
        }
        json!({"model": "auto", "tools": [weather_tool()], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": user}
        ]})
    };
    let base = count(&history(None, None));
    let with_result = count(&history(
        None,
        Some(
            json!({"type": "tool_result", "tool_use_id": "t1", "content": "sunny, 21C, a light breeze from the west"}),
        ),
    ));
    assert!(with_result > base, "{with_result} > {base}");
    let with_thinking = count(&history(
        Some(
            json!({"type": "thinking", "thinking": "The user wants the weather in Paris; the tool gives it.", "signature": "c2ln"}),
        ),
        None,
    ));
    assert!(with_thinking > base, "{with_thinking} > {base}");
}

#[test]
fn crash_mid_stream_ends_with_an_error_event_then_recovers() {
    let gw = GatewayProcess::start();
    let pid = gw.health()["instances"][0]["pid"].as_u64().unwrap();
    let mut s = gw.post_stream(
        "/v1/messages",
        &streamed(messages_body("auto", "[[sim:chunks=30]] [[sim:crash=10]]")),
    );
    let evs = events(&mut s);
    assert_eq!(evs[0]["type"], "message_start");
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "error", "{evs:?}");
    assert_eq!(last["error"]["type"], "api_error", "{last}");
    assert!(last["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(
        !evs.iter()
            .any(|v| v["type"] == "message_stop" || v["type"] == "message_delta"),
        "{evs:?}"
    );
    assert!(
        stream_text(&evs).starts_with("c1 "),
        "the text before the crash was delivered: {evs:?}"
    );
    wait_for("a new Lingma process", || {
        let h = gw.health();
        h["ready"] == 1 && h["instances"][0]["pid"].as_u64() != Some(pid)
    });
    gw.wait_ready(1);
    let q = "Back again?";
    let r = gw.post("/v1/messages", &messages_body("auto", q));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"], default_answer("Auto", q));
}

#[test]
fn a_retried_attempts_thinking_is_dropped_with_its_text() {
    // Forced tool choice, a lazy reasoning model: the first attempt thinks and answers
    // without a call, the retry thinks again and calls. Only the retry's answer is the
    // client's, its reasoning included: one think block's worth, not two run together
    // under one signature.
    let gw = GatewayProcess::start();
    let q = "How is the weather? [[sim:lazy]]";
    let mut body = with_tools(messages_body(THINKING_MODEL, q));
    body["tool_choice"] = json!({"type": "tool", "name": "get_weather"});
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let once = format!("Thinking about: {q}");

    let v = gw.post("/v1/messages", &body).json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    assert_eq!(v["content"][0]["thinking"], once.as_str(), "{v}");

    let mut s = gw.post_stream("/v1/messages", &streamed(body));
    let evs = events(&mut s);
    assert_eq!(deltas(&evs, "thinking_delta", "thinking"), once);
    assert_eq!(stream_text(&evs).trim_end(), "I'll call get_weather now.");
}
