//! The ACP dialect end to end: which dialect `lingma_dialect = auto` picks against a cosy-only,
//! an ACP-only and a two-dialect simulator (and says so), and chats on ACP as a client sees
//! them: answers, reasoning, session reuse, `session/set_model` only for a session's first turn or another model,
//! a failed finish, and a client that goes away cancelling the turn.

use serde_json::{json, Value};

use crate::harness::*;

/// A gateway whose simulator speaks `sim_dialect` (cosy, acp, both), with `lingma_dialect`.
fn start(sim_dialect: &str, lingma_dialect: &str) -> GatewayProcess {
    let mut opts = Options::default().env("lingma_dialect", lingma_dialect);
    opts.env
        .push(("LINGMA_SIM_DIALECT".into(), sim_dialect.into()));
    GatewayProcess::start_with(opts)
}

fn dialect_of(gw: &GatewayProcess) -> Value {
    gw.health()["instances"][0]["dialect"].clone()
}

fn text_of(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {v}"))
        .to_string()
}

#[test]
fn auto_picks_cosy_for_cosy_acp_for_acp_only_and_cosy_for_both_and_says_why() {
    let cosy = start("cosy", "auto");
    assert_eq!(dialect_of(&cosy), "cosy");
    cosy.wait_log("speaks the cosy dialect (auto: initialize names no protocolVersion");
    cosy.assert_answers("hello cosy");
    let acp = start("acp", "auto");
    assert_eq!(dialect_of(&acp), "acp");
    acp.wait_log("speaks the acp dialect (auto: the runtime speaks ACP and not cosy");
    acp.assert_answers("hello acp");
    let both = start("both", "auto");
    assert_eq!(dialect_of(&both), "cosy");
    both.wait_log(
        "speaks the cosy dialect (auto: the runtime speaks both ACP and cosy; cosy is preferred)",
    );
    let version = both.health()["instances"][0]["runtime_version"].clone();
    assert!(version.as_str().is_some_and(|v| !v.is_empty()), "{version}");
    let metrics = both.get("/metrics").text();
    assert!(
        metrics.contains(&format!(
            "lingma_gateway_instance_info{{instance=\"lingma-0\",dialect=\"cosy\",version={version}}} 1"
        )),
        "{metrics}"
    );
    // Forced, against the simulator that speaks both.
    let forced = start("both", "acp");
    assert_eq!(dialect_of(&forced), "acp");
    forced.wait_log("speaks the acp dialect (lingma_dialect = acp)");
    forced.assert_answers("forced");
    assert!(forced.sim_log(0).contains("recv session/prompt requestId="));
    assert!(
        !forced.sim_log(0).contains("recv chat/ask "),
        "no chat/ask on ACP"
    );
}

#[test]
fn an_acp_chat_streams_its_answer_and_reasoning_without_markers() {
    let gw = start("acp", "auto");
    let v = gw
        .post("/v1/chat/completions", &chat_body("auto", "Hi"))
        .json();
    assert_eq!(text_of(&v), default_answer("Auto", "Hi"));
    let model = "dashscope_qwen_plus_20250428_thinking";
    let v = gw
        .post("/v1/chat/completions", &chat_body(model, "Why?"))
        .json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], default_answer("Qwen-Plus-Thinking", "Why?"));
    let reasoning = msg["reasoning_content"].as_str().unwrap();
    assert!(reasoning.contains("Why?"), "{reasoning}");
    let mut s = gw.post_stream("/v1/chat/completions", &stream_body(model, "Why?"));
    let events = s.collect();
    assert_eq!(chat_stream_field(&events, "reasoning_content"), reasoning);
    let text = chat_stream_text(&events);
    assert!(
        !text.contains("````") && !text.contains("think::"),
        "{text}"
    );
    assert_eq!(text, msg["content"].as_str().unwrap());
    // Every prompt carried its request id; none was refused.
    let log = gw.sim_log(0);
    assert!(!log.contains("requestId is empty"), "{log}");
    assert_eq!(log.matches("recv session/prompt requestId=").count(), 3);
    assert!(!log.contains("recv session/prompt requestId= "), "{log}");
}

#[test]
fn acp_sessions_are_reused_and_their_model_set_only_when_it_changes() {
    let gw = GatewayProcess::start_with({
        let mut opts = Options {
            key: Some("sk-acp-reuse".into()),
            ..Options::default()
        }
        .env("lingma_dialect", "acp");
        opts.env.push(("LINGMA_SIM_DIALECT".into(), "acp".into()));
        opts
    });
    let mut messages = vec![json!({"role": "user", "content": "first [[sim:turn]]"})];
    let ask = |messages: &Vec<Value>, model: &str| {
        text_of(
            &gw.post(
                "/v1/chat/completions",
                &json!({"model": model, "messages": messages}),
            )
            .json(),
        )
    };
    let a1 = ask(&messages, "auto");
    let (n1, s1) = turn(&a1);
    assert_eq!(n1, 1);
    messages.push(json!({"role": "assistant", "content": a1}));
    messages.push(json!({"role": "user", "content": "second [[sim:turn]]"}));
    let a2 = ask(&messages, "auto");
    assert_eq!(
        turn(&a2),
        (2, s1.clone()),
        "the same ACP session, second turn"
    );
    let log = gw.sim_log(0);
    assert_eq!(log.matches("recv session/new").count(), 1, "{log}");
    assert_eq!(log.matches("recv session/set_model").count(), 1, "{log}");
    // Another model scopes another conversation (the session key names the model): a new
    // session, with its own model set.
    messages.push(json!({"role": "assistant", "content": a2}));
    messages.push(json!({"role": "user", "content": "third [[sim:turn]]"}));
    let (n3, s3) = turn(&ask(&messages, "kmodel"));
    assert_eq!(n3, 1);
    assert_ne!(s3, s1);
    let log = gw.sim_log(0);
    assert_eq!(log.matches("recv session/new").count(), 2, "{log}");
    assert_eq!(log.matches("recv session/set_model").count(), 2, "{log}");
    assert!(log.contains("modelId=kmodel"), "{log}");
}

#[test]
fn an_acp_failed_finish_keeps_its_status_and_a_gone_client_cancels_the_turn() {
    let gw = start("acp", "acp");
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:status=429]]"),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=100000]] [[sim:delay=5]]"),
    );
    assert_eq!(s.status, 200);
    assert!(s.next_event().is_some());
    drop(s);
    gw.wait_sim_log("recv session/cancel");
    wait_for("slot freed", || {
        gw.health()["instances"][0]["in_flight"] == 0
    });
    gw.assert_answers("after the cancel");
}

/// What a client is told of Lingma's own tool, without the call's id.
fn reported_tools(gw: &GatewayProcess) -> Vec<Value> {
    let body = chat_body("auto", "Read the readme [[sim:native=read_file]]");
    let v = gw.post("/v1/chat/completions", &body).json();
    let msg = &v["choices"][0]["message"];
    assert!(
        msg["content"]
            .as_str()
            .is_some_and(|t| t.starts_with("Let me use read_file.")),
        "{v}"
    );
    let mut events = msg["lingma_tool_events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for e in &mut events {
        e.as_object_mut().unwrap().remove("id");
    }
    events
}

#[test]
fn lingmas_own_tools_on_acp_are_reported_as_on_cosy() {
    let report = |sim: &str, dialect: &str| {
        let mut opts = Options::default()
            .env("tool_report_native", "true")
            .env("lingma_dialect", dialect);
        opts.env.push(("LINGMA_SIM_DIALECT".into(), sim.into()));
        reported_tools(&GatewayProcess::start_with(opts))
    };
    let cosy = report("cosy", "cosy");
    assert_eq!(cosy.len(), 1, "{cosy:?}");
    assert_eq!(cosy[0]["name"], "read_file");
    assert_eq!(report("acp", "acp"), cosy);
}

#[test]
fn anthropic_thinking_on_acp_is_a_thinking_block_before_the_text_when_enabled() {
    let gw = start("acp", "auto");
    let model = "dashscope_qwen_plus_20250428_thinking";
    let mut body = messages_body(model, "Why?");
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let r = gw.post("/v1/messages", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text"], "{v}");
    assert!(v["content"][0]["thinking"]
        .as_str()
        .unwrap()
        .contains("Why?"));
    assert_eq!(
        v["content"][1]["text"],
        default_answer("Qwen-Plus-Thinking", "Why?")
    );
}

#[test]
fn the_prompt_tokens_are_the_context_usage_lingma_reports() {
    let gw = start("acp", "acp");
    let q = "How many tokens does Lingma count for this question of mine?";
    let v = gw
        .post("/v1/chat/completions", &chat_body("auto", q))
        .json();
    assert!(!text_of(&v).is_empty(), "{v}");
    // What the simulator reported in the turn's `context_usage` (it logs the number it
    // sends, on either dialect).
    let reported = gw.sim_reported_used_tokens();
    assert!(reported > 0, "{reported}");
    assert_eq!(v["usage"]["prompt_tokens"], reported, "{v}");
}
