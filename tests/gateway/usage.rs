//! Usage from Lingma: where a turn reports its context usage (`context/usage/sync`), the
//! client's prompt/input token count is Lingma's `usedTokens`, not the gateway's estimate;
//! the model's context size (`limitTokens`) shows in `/v1/models` and `/internal/stats`.

use serde_json::json;

use crate::harness::*;

#[test]
fn openai_prompt_tokens_are_the_used_tokens_lingma_reported() {
    let gw = GatewayProcess::start();
    // Long enough that the estimate (a token per three bytes) and the simulator's count (per
    // four) cannot agree by chance.
    let question = "Count my words please. ".repeat(20);
    let v = gw
        .post("/v1/chat/completions", &chat_body("auto", &question))
        .json();
    let used = gw.sim_reported_used_tokens();
    assert!(used > 50, "{used}");
    assert_eq!(v["usage"]["prompt_tokens"], json!(used), "{v}");
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(v["usage"]["total_tokens"], json!(used + completion));

    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": format!("{question} again")}]}),
    );
    let events = s.collect();
    let used = gw.sim_reported_used_tokens();
    let last = events
        .iter()
        .rev()
        .find(|e| e.data != "[DONE]")
        .map(SseEvent::json)
        .unwrap();
    assert_eq!(last["usage"]["prompt_tokens"], json!(used), "{last}");
}

#[test]
fn anthropic_input_tokens_are_the_used_tokens_lingma_reported() {
    let gw = GatewayProcess::start();
    let question = "Tell me about tokens. ".repeat(20);
    let v = gw
        .post("/v1/messages", &messages_body("auto", &question))
        .json();
    assert_eq!(
        v["usage"]["input_tokens"],
        json!(gw.sim_reported_used_tokens()),
        "{v}"
    );

    let mut body = messages_body("auto", &format!("{question} streamed"));
    body["stream"] = json!(true);
    let events = gw.post_stream("/v1/messages", &body).collect();
    let delta = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .map(SseEvent::json)
        .expect("a message_delta");
    assert_eq!(
        delta["usage"]["input_tokens"],
        json!(gw.sim_reported_used_tokens()),
        "{delta}"
    );
}

#[test]
fn count_tokens_stays_an_estimate() {
    let gw = GatewayProcess::start();
    let question = "Tell me about tokens. ".repeat(20);
    let counted = gw
        .post(
            "/v1/messages/count_tokens",
            &messages_body("auto", &question),
        )
        .json();
    assert!(counted["input_tokens"].as_u64().unwrap() > 0, "{counted}");
    assert!(
        !gw.sim_log(0).contains("recv chat/ask"),
        "counting asks Lingma nothing"
    );
}

#[test]
fn models_list_their_context_size() {
    let gw = GatewayProcess::start();
    let v = gw.get("/v1/models").json();
    let auto = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "auto")
        .unwrap()
        .clone();
    assert_eq!(auto["context_length"], json!(131_072), "{auto}");
    assert_eq!(auto["max_input_tokens"], json!(131_072), "{auto}");
}

#[test]
fn a_reported_context_size_shows_per_model_in_the_stats() {
    let gw = GatewayProcess::start();
    let before = gw.get("/internal/stats").json();
    assert_eq!(before["context_tokens"], json!({}), "{before}");
    gw.assert_answers("size me");
    let after = gw.get("/internal/stats").json();
    assert_eq!(after["context_tokens"], json!({"auto": 131_072}), "{after}");
}

#[test]
fn a_usage_report_that_names_only_its_session_reaches_its_turn() {
    let gw = GatewayProcess::start();
    let question = format!("{} [[sim:usage=session]]", "Session only. ".repeat(20));
    let v = gw
        .post("/v1/chat/completions", &chat_body("auto", &question))
        .json();
    assert_eq!(
        v["usage"]["prompt_tokens"],
        json!(gw.sim_reported_used_tokens()),
        "{v}"
    );
}
