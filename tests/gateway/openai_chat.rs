//! OpenAI chat completions and models through the gateway.

use serde_json::{json, Value};

use crate::harness::*;

#[test]
fn non_stream_answer_has_openai_shape_and_the_simulators_text() {
    let gw = GatewayProcess::start();
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("dashscope_qwen3_coder", "What is Rust?"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "dashscope_qwen3_coder");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        default_answer("Qwen3-Coder", "What is Rust?")
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert!(
        u["prompt_tokens"].as_u64().unwrap() > 0 && u["completion_tokens"].as_u64().unwrap() > 0
    );
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
}

#[test]
fn stream_answer_is_chunks_then_finish_usage_and_done() {
    let gw = GatewayProcess::start();
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("kmodel", "Stream me [[sim:chunks=12]]"),
    );
    assert_eq!(s.status, 200);
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(s.header("x-request-id").is_some());
    let events = s.collect();
    let expected: String = (1..=12).map(|i| format!("c{i} ")).collect();
    assert_eq!(chat_stream_text(&events), expected);
    let first = events[0].json();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let ids: std::collections::HashSet<String> = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| e.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "every chunk carries the same id");
    let finish: Vec<Value> = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| e.json())
        .filter(|v| v["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage = events[events.len() - 2].json();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[test]
fn stream_and_non_stream_agree() {
    let gw = GatewayProcess::start();
    let q = "Same answer both ways?";
    let plain = gw
        .post("/v1/chat/completions", &chat_body("auto", q))
        .json();
    let mut s = gw.post_stream("/v1/chat/completions", &stream_body("auto", q));
    assert_eq!(
        chat_stream_text(&s.collect()),
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[test]
fn first_event_arrives_while_lingma_is_still_answering() {
    // The simulator sends three deltas and then goes silent: the answer cannot finish, so
    // content reaching the client proves it is forwarded as it arrives, not buffered.
    let gw = GatewayProcess::start_with(Options::default().env("stream_keepalive_sec", "1"));
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:stall=3]] hello"),
    );
    assert_eq!(s.status, 200);
    let mut text = String::new();
    while text.is_empty() {
        let ev = s.next_event().expect("stream ended early");
        if let Some(t) = ev.json()["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    assert!(!text.is_empty());
}

#[test]
fn messages_are_flattened_with_roles() {
    let gw = GatewayProcess::start();
    let body = json!({"model": "auto", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Echo this [[sim:echo]]"}]}
    ]});
    let v = gw.post("/v1/chat/completions", &body).json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "[system]\nBe terse.\n\n[user]\nHi\n\n[assistant]\nHello!\n\n[user]\nEcho this [[sim:echo]]"
    );
}

#[test]
fn frames_packed_split_binary_and_multibyte_are_decoded() {
    let gw = GatewayProcess::start();
    let unicode = gw
        .post(
            "/v1/chat/completions",
            &chat_body("auto", "[[sim:unicode]]"),
        )
        .json();
    let expected = unicode["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        expected.chars().any(|c| c.len_utf8() > 2),
        "answer has multi-byte characters: {expected}"
    );
    for wire in ["split", "packed", "binary"] {
        let q = format!("[[sim:unicode]] [[sim:wire={wire}]]");
        let v = gw
            .post("/v1/chat/completions", &chat_body("auto", &q))
            .json();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            expected.as_str(),
            "wire={wire}"
        );
        let mut s = gw.post_stream("/v1/chat/completions", &stream_body("auto", &q));
        assert_eq!(
            chat_stream_text(&s.collect()),
            expected,
            "stream wire={wire}"
        );
    }
}

#[test]
fn reasoning_models_get_reasoning_content_without_markers() {
    let gw = GatewayProcess::start();
    let model = "dashscope_qwen_plus_20250428_thinking";
    let v = gw
        .post("/v1/chat/completions", &chat_body(model, "Why?"))
        .json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], default_answer("Qwen-Plus-Thinking", "Why?"));
    assert!(msg["reasoning_content"].as_str().unwrap().contains("Why?"));
    let mut s = gw.post_stream("/v1/chat/completions", &stream_body(model, "Why?"));
    let events = s.collect();
    let reasoning = chat_stream_field(&events, "reasoning_content");
    assert_eq!(reasoning, msg["reasoning_content"].as_str().unwrap());
    let text = chat_stream_text(&events);
    assert!(
        !text.contains("````") && !text.contains("think::"),
        "{text}"
    );
    assert_eq!(text, msg["content"].as_str().unwrap());
}

#[test]
fn stop_sequences_and_max_tokens_end_the_answer() {
    let gw = GatewayProcess::start();
    let mut body = chat_body("auto", "[[sim:chunks=30]]");
    body["stop"] = json!(["c5 "]);
    let v = gw.post("/v1/chat/completions", &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "c1 c2 c3 c4 ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let mut body = chat_body("auto", "[[sim:chunks=300]]");
    body["max_tokens"] = json!(5);
    let v = gw.post("/v1/chat/completions", &body).json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("c1 ") && text.len() < 60, "{text}");
    // The gateway cut the answer short, so it told Lingma to stop.
    gw.wait_sim_stop();
}

#[test]
fn models_lists_every_lingma_model_with_display_names() {
    let gw = GatewayProcess::start();
    let r = gw.get("/v1/models");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    for key in [
        "auto",
        "dashscope_qwen3_coder",
        "dashscope_qwen_plus_20250428_thinking",
        "kmodel",
        "mmodel",
    ] {
        assert!(ids.contains(&key), "{key} missing from {ids:?}");
    }
    let coder = data
        .iter()
        .find(|m| m["id"] == "dashscope_qwen3_coder")
        .unwrap();
    assert_eq!(coder["display_name"], "Qwen3-Coder");
    assert_eq!(coder["object"], "model");
    assert_eq!(coder["owned_by"], "lingma");
}

#[test]
fn model_names_resolve_by_display_name_default_and_alias() {
    let gw = GatewayProcess::start_with(Options::default().env("model_aliases", "gpt-4o=kmodel"));
    let ask = |model: &str| {
        gw.post("/v1/chat/completions", &chat_body(model, "Hi"))
            .json()
    };
    assert_eq!(
        ask("Qwen3-Coder")["choices"][0]["message"]["content"],
        default_answer("Qwen3-Coder", "Hi")
    );
    assert_eq!(
        ask("default")["choices"][0]["message"]["content"],
        default_answer("Auto", "Hi")
    );
    assert_eq!(
        ask("gpt-4o")["choices"][0]["message"]["content"],
        default_answer("Kimi-K2", "Hi")
    );
    assert_eq!(ask("gpt-4o")["model"], "gpt-4o");
}

#[test]
fn unknown_model_is_404_model_not_found() {
    let gw = GatewayProcess::start();
    for stream in [false, true] {
        let mut body = chat_body("gpt-17", "Hi");
        body["stream"] = json!(stream);
        let r = gw.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 404);
        let e = &r.json()["error"];
        assert_eq!(e["code"], "model_not_found");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains("gpt-17"));
    }
}

#[test]
fn bad_requests_get_openai_errors_naming_the_problem() {
    let gw = GatewayProcess::start_with(Options::default().env("max_body_bytes", "4096"));
    let post_raw = |body: &[u8]| request(&gw.addr, "POST", "/v1/chat/completions", &[], Some(body));
    let r = post_raw(b"{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post_raw(b"\xff\xfe{}");
    assert_eq!(r.status, 400);
    let r = post_raw(br#"{"model":"auto"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages");
    let r = post_raw(br#"{"model":"auto","messages":[{"role":"user","content":{"x":1}}]}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages[0].content");
    let r = post_raw(br#"{"model":"auto","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("text only"));
    let big = format!(
        r#"{{"model":"auto","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let r = post_raw(big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = request(&gw.addr, "GET", "/v1/chat/completions", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(r.json()["error"]["message"].is_string());
    let r = request(&gw.addr, "GET", "/v1/nope", &[], None);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/nope"));
    // After all that, the gateway still answers.
    gw.assert_answers("ok?");
}

#[test]
fn api_keys_are_required_when_configured() {
    let gw = GatewayProcess::start_with(Options {
        key: Some("sk-test-secret-123".into()),
        ..Default::default()
    });
    let body = chat_body("auto", "Hi").to_string();
    let post = |h: &[(&str, &str)]| {
        request(
            &gw.addr,
            "POST",
            "/v1/chat/completions",
            h,
            Some(body.as_bytes()),
        )
    };
    let r = post(&[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "missing_api_key");
    let r = post(&[("Authorization", "Bearer sk-wrong")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert_eq!(
        post(&[("Authorization", "Bearer sk-test-secret-123")]).status,
        200
    );
    assert_eq!(post(&[("x-api-key", "sk-test-secret-123")]).status, 200);
    assert_eq!(
        request(&gw.addr, "GET", "/v1/models", &[], None).status,
        401
    );
    assert_eq!(request(&gw.addr, "GET", "/healthz", &[], None).status, 200);
    assert!(
        !gw.log_text().contains("sk-test-secret-123"),
        "the key leaked into the log"
    );
}

#[test]
fn request_id_is_echoed() {
    let gw = GatewayProcess::start();
    let body = chat_body("auto", "Hi").to_string();
    let r = request(
        &gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "my-req-42")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.header("x-request-id"), Some("my-req-42"));
    gw.wait_log("my-req-42 POST /v1/chat/completions 200");
}

#[test]
fn trace_logs_lingma_frames_but_never_the_api_key() {
    let opts = Options {
        key: Some("sk-trace-secret-77".into()),
        log_level: "trace",
        ..Default::default()
    };
    let gw = GatewayProcess::start_with(opts);
    gw.assert_answers("traced");
    gw.wait_log(&format!("\"method\":\"{}\"", ask_method()));
    gw.wait_log(&format!("\"method\":\"{}\"", finish_method()));
    assert!(!gw.log_text().contains("sk-trace-secret-77"));
}

#[test]
fn huge_declared_bodies_and_endless_headers_do_not_hurt_the_gateway() {
    let gw = GatewayProcess::start_with(Options {
        key: Some("sk-k".into()),
        ..Default::default()
    });
    // Refused before reading (401 and 413 alike), yet the unread remainder must not be
    // allocated: this once aborted the process.
    for (auth, status) in [("", 401), ("Authorization: Bearer sk-k\r\n", 413)] {
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 99999999999999\r\n\r\n{{\"model\":"
        );
        let r = raw_request(&gw.addr, raw.as_bytes()).expect("an answer");
        assert_eq!(r.status, status, "{}", r.text());
    }
    // A header line that never ends is cut off.
    let mut raw = b"GET /healthz HTTP/1.1\r\nX-Long: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let _ = raw_request(&gw.addr, &raw);
    assert_eq!(gw.health()["status"], "ok");
    gw.assert_answers("still here");
}

#[test]
fn a_client_that_stops_sending_its_body_gets_408() {
    let gw = GatewayProcess::start_with(Options::default().env("client_timeout_sec", "1"));
    let raw =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n{\"model\":";
    let r = raw_request(&gw.addr, raw).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    gw.assert_answers("after the stall");
}
