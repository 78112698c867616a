//! The defects found against the real Lingma server (protocol §6), each as a client sees it:
//! the think block's framing newlines, deltas carried in `content` instead of `text`, and
//! tools Lingma invokes asynchronously. The simulator sends what the real server sends.

use serde_json::{json, Value};

use crate::harness::*;

const THINKING_MODEL: &str = "dashscope_qwen_plus_20250428_thinking";
const THINKING_NAME: &str = "Qwen-Plus-Thinking";

/// What the simulator's reasoning says about the one-line question `q`, exactly: no newline
/// of the closing marker at its end.
fn reasoning_of(q: &str) -> String {
    format!("Thinking about: {q}")
}

/// A stream's events as JSON, `[DONE]` and pings left out.
fn stream_json(gw: &GatewayProcess, path: &str, body: &Value) -> Vec<Value> {
    let mut s = gw.post_stream(path, body);
    assert_eq!(s.status, 200, "{:?}", s.body);
    s.collect()
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| e.json())
        .filter(|v| v["type"] != "ping")
        .collect()
}

#[test]
fn openai_chat_gets_no_newline_before_or_inside_the_reasoning() {
    let gw = GatewayProcess::start();
    let q = "Why is the sky blue?";
    let v = gw
        .post("/v1/chat/completions", &chat_body(THINKING_MODEL, q))
        .json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["reasoning_content"], reasoning_of(q).as_str(), "{v}");
    assert_eq!(
        msg["content"],
        default_answer(THINKING_NAME, q).as_str(),
        "{v}"
    );

    let chunks = stream_json(&gw, "/v1/chat/completions", &stream_body(THINKING_MODEL, q));
    let field = |c: &Value, f: &str| c["choices"][0]["delta"][f].as_str().map(String::from);
    let reasoning: Vec<usize> = (0..chunks.len())
        .filter(|&i| field(&chunks[i], "reasoning_content").is_some_and(|r| !r.is_empty()))
        .collect();
    let content: Vec<usize> = (0..chunks.len())
        .filter(|&i| field(&chunks[i], "content").is_some_and(|t| !t.is_empty()))
        .collect();
    assert!(!reasoning.is_empty() && !content.is_empty(), "{chunks:?}");
    assert!(
        content[0] > *reasoning.last().unwrap(),
        "no content before the reasoning ends: {chunks:?}"
    );
    assert_eq!(chat_field(&chunks, "reasoning_content"), reasoning_of(q));
    assert_eq!(
        chat_field(&chunks, "content"),
        default_answer(THINKING_NAME, q)
    );
}

/// One delta field of an OpenAI chat stream, concatenated.
fn chat_field(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"][field].as_str())
        .collect()
}

#[test]
fn anthropic_gets_the_thinking_block_first_and_no_whitespace_text_block() {
    let gw = GatewayProcess::start();
    let q = "Why is the sky blue?";
    let mut body = messages_body(THINKING_MODEL, q);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let answer = default_answer(THINKING_NAME, q);

    let v = gw.post("/v1/messages", &body).json();
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text"], "{v}");
    assert_eq!(v["content"][0]["thinking"], reasoning_of(q).as_str(), "{v}");
    assert_eq!(v["content"][1]["text"], answer.as_str(), "{v}");

    body["stream"] = json!(true);
    let evs = stream_json(&gw, "/v1/messages", &body);
    let started: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .map(|e| e["content_block"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["thinking", "text"], "{evs:?}");
    let delta = |kind: &str, f: &str| -> String {
        evs.iter()
            .filter(|e| e["type"] == "content_block_delta" && e["delta"]["type"] == kind)
            .filter_map(|e| e["delta"][f].as_str())
            .collect()
    };
    assert_eq!(delta("thinking_delta", "thinking"), reasoning_of(q));
    assert_eq!(delta("text_delta", "text"), answer);
}

#[test]
fn responses_get_one_reasoning_item_and_one_message() {
    let gw = GatewayProcess::start();
    let q = "why? [[sim:think]]";
    let body = json!({"model": "auto", "input": q});
    let v = gw.post("/v1/responses", &body).json();
    let items = v["output"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "message"], "{v}");
    assert_eq!(items[0]["summary"][0]["text"], reasoning_of(q).as_str());
    assert_eq!(
        items[1]["content"][0]["text"],
        default_answer("Auto", q).as_str()
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let evs = stream_json(&gw, "/v1/responses", &streamed);
    let added: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .map(|e| e["item"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["reasoning", "message"], "{evs:?}");
}

#[test]
fn deltas_in_content_instead_of_text_all_reach_the_client() {
    let gw = GatewayProcess::start();
    for q in ["Say hello [[sim:content=2]]", "Say hello [[sim:content]]"] {
        let answer = default_answer("Auto", q);
        let v = gw
            .post("/v1/chat/completions", &chat_body("auto", q))
            .json();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            answer.as_str(),
            "{v}"
        );
        let chunks = stream_json(&gw, "/v1/chat/completions", &stream_body("auto", q));
        assert_eq!(chat_field(&chunks, "content"), answer, "{q}");
        let v = gw.post("/v1/messages", &messages_body("auto", q)).json();
        assert_eq!(v["content"][0]["text"], answer.as_str(), "{v}");
    }
    // The think block's markers may come in `content` too.
    let q = "Why? [[sim:content=3]]";
    let v = gw
        .post("/v1/chat/completions", &chat_body(THINKING_MODEL, q))
        .json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["reasoning_content"], reasoning_of(q).as_str(), "{v}");
    assert_eq!(
        msg["content"],
        default_answer(THINKING_NAME, q).as_str(),
        "{v}"
    );
}

#[test]
fn an_async_tool_invoke_is_answered_and_the_turn_ends_promptly() {
    // The simulator, like the real server, waits for `tool/invokeResult` after an async
    // `tool/invoke` (10 s); the short idle timeout turns a turn that waits into a 504.
    let idle = std::time::Duration::from_secs(2);
    let gw = GatewayProcess::start_with(Options::default().env("idle_timeout_sec", "2"));
    let q = "Read the readme [[sim:native=read_file]][[sim:native_async]]";
    let said = "Tool read_file finished: success=false (IDE tools are not available through lingma-gateway)";

    let started = std::time::Instant::now();
    let r = gw.post("/v1/chat/completions", &chat_body("auto", q));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() < idle, "took {:?}", started.elapsed());
    let v = r.json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.ends_with(said), "{text}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");

    let chunks = stream_json(&gw, "/v1/chat/completions", &stream_body("auto", q));
    assert!(chat_field(&chunks, "content").ends_with(said), "{chunks:?}");
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("stop"), "{chunks:?}");

    let log = gw.sim_log(0);
    assert!(log.contains("async=true"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("recv tool/invokeResult") && l.contains("success=false")),
        "{log}"
    );
}
