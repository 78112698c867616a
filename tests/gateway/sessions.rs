//! Session reuse and affinity: a conversation's next turn goes to the same Lingma session as
//! only the new text; an edited history starts afresh; client session hints keep a
//! conversation on one instance.

use serde_json::{json, Value};

use crate::harness::*;

fn openai_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn anthropic_text(v: &Value) -> String {
    v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect()
}

#[test]
fn openai_turn_two_goes_as_only_the_new_text_on_the_same_session() {
    let gw = GatewayProcess::start_with(Options {
        key: Some("sk-reuse-1".into()),
        ..Options::default()
    });
    let mut messages = vec![
        json!({"role": "system", "content": "Be terse."}),
        json!({"role": "user", "content": "first [[sim:turn]]"}),
    ];
    let r1 = gw.post(
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": messages}),
    );
    let a1 = openai_text(&r1.json());
    let (n1, s1) = turn(&a1);
    assert_eq!(n1, 1);
    messages.push(json!({"role": "assistant", "content": a1}));
    messages.push(json!({"role": "user", "content": "second [[sim:turn]]"}));
    let a2 = openai_text(
        &gw.post(
            "/v1/chat/completions",
            &json!({"model": "auto", "messages": messages}),
        )
        .json(),
    );
    assert_eq!(turn(&a2), (2, s1.clone()), "same session, second turn");
    // Only the new text reached Lingma: echo shows exactly what was asked.
    messages.push(json!({"role": "assistant", "content": a2}));
    messages.push(json!({"role": "user", "content": "third [[sim:echo]]"}));
    let a3 = openai_text(
        &gw.post(
            "/v1/chat/completions",
            &json!({"model": "auto", "messages": messages}),
        )
        .json(),
    );
    assert_eq!(a3, "third [[sim:echo]]");
    assert!(gw.sim_log(0).contains("isReply=true"));
    // An edited history is a new conversation: a miss, not an error.
    let edited = json!({"model": "auto", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first, edited [[sim:turn]]"},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": "second [[sim:turn]]"},
    ]});
    let (n, s) = turn(&openai_text(
        &gw.post("/v1/chat/completions", &edited).json(),
    ));
    assert_eq!(n, 1, "a new session");
    assert_ne!(s, s1);
    // The metrics saw two hits and a miss.
    let metrics = request(
        &gw.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer sk-reuse-1")],
        None,
    )
    .text();
    assert!(
        metrics.contains("lingma_gateway_session_cache_hits_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lingma_gateway_session_cache_misses_total 1"),
        "{metrics}"
    );
}

#[test]
fn another_api_key_never_continues_someone_elses_session() {
    let gw = GatewayProcess::start_with(Options {
        key: Some("sk-a,sk-b".into()),
        ..Options::default()
    });
    let ask = |key: &str, messages: &Value| {
        gw.post_as(
            key,
            "/v1/chat/completions",
            &json!({"model": "auto", "messages": messages}),
        )
        .json()
    };
    let a1 = openai_text(&ask(
        "sk-a",
        &json!([{"role": "user", "content": "one [[sim:turn]]"}]),
    ));
    let next = json!([
        {"role": "user", "content": "one [[sim:turn]]"},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": "two [[sim:turn]]"},
    ]);
    assert_eq!(
        turn(&openai_text(&ask("sk-b", &next))).0,
        1,
        "other key: new session"
    );
}

#[test]
fn anthropic_stream_turns_and_tool_results_reuse_the_session() {
    let gw = GatewayProcess::start();
    let tools = json!([{"name": "get_weather", "description": "Weather.",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]);
    let body = |messages: &Value, stream: bool| {
        json!({"model": "auto", "max_tokens": 200, "stream": stream, "tools": tools,
               "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
               "messages": messages})
    };
    // Turn 1: a tool call (non-stream).
    let user1 = json!({"role": "user", "content": [{"type": "text", "text": "weather? [[sim:tool=get_weather]]"}]});
    let r1 = gw
        .post("/v1/messages", &body(&json!([user1]), false))
        .json();
    assert_eq!(r1["stop_reason"], "tool_use");
    let call = r1["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    // Turn 2: the tool result only, streamed.
    let messages = json!([
        user1,
        {"role": "assistant", "content": r1["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny, 21C"}]},
    ]);
    let mut s = gw.post_stream("/v1/messages", &body(&messages, true));
    let text: String = s
        .collect()
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .filter_map(|e| e.json()["delta"]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(text, "Tool result received: sunny, 21C");
    let log = gw.sim_log(0);
    let asks = sim_ask_lines(&log);
    assert_eq!(asks.len(), 2);
    assert!(asks[1].contains("isReply=true"), "{}", asks[1]);
    let session = |line: &str| {
        line.split("sessionId=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    // Turn 1 starts a new session: on cosy it names none; on ACP it names the one
    // `session/new` just made, holding no turn yet.
    if ask_method() == "chat/ask" {
        assert!(asks[0].contains("sessionId= ") || session(asks[0]).is_empty());
    } else {
        assert!(asks[0].contains("isReply=false"), "{}", asks[0]);
    }
    assert!(
        !session(asks[1]).is_empty(),
        "turn 2 names the session of turn 1"
    );
    // Turn 3 on the same session counts 3 turns.
    let mut more = messages.as_array().unwrap().clone();
    more.push(json!({"role": "assistant", "content": [{"type": "text", "text": text}]}));
    more.push(json!({"role": "user", "content": "and now? [[sim:turn]]"}));
    let r3 = gw.post("/v1/messages", &body(&json!(more), false)).json();
    assert_eq!(turn(&anthropic_text(&r3)).0, 3);
}

#[test]
fn reuse_can_be_switched_off() {
    let gw = GatewayProcess::start_with(Options::default().env("session_reuse_enabled", "false"));
    let a1 = openai_text(
        &gw.post("/v1/chat/completions", &chat_body("auto", "x [[sim:turn]]"))
            .json(),
    );
    let next = json!({"model": "auto", "messages": [
        {"role": "user", "content": "x [[sim:turn]]"},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": "y [[sim:turn]]"},
    ]});
    assert_eq!(
        turn(&openai_text(&gw.post("/v1/chat/completions", &next).json())).0,
        1
    );
}

#[test]
fn claude_code_sessions_spread_over_instances_and_each_stays_put() {
    let gw = GatewayProcess::start_with(Options {
        instances: 2,
        wait_ready: 2,
        ..Options::default()
    });
    let whoami = |session: &str| {
        let r = request(
            &gw.addr,
            "POST",
            "/v1/messages",
            &[("X-Claude-Code-Session-Id", session)],
            Some(
                json!({"model": "auto", "max_tokens": 50,
                       "messages": [{"role": "user", "content": format!("who? {session} [[sim:whoami]]")}]})
                .to_string()
                .as_bytes(),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        anthropic_text(&r.json())
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let a = whoami("session-aaa");
    let b = whoami("session-bbb");
    assert_ne!(a, b, "two conversations spread over the two instances");
    for _ in 0..4 {
        assert_eq!(whoami("session-aaa"), a);
        assert_eq!(whoami("session-bbb"), b);
    }
}
