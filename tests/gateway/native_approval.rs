//! Lingma's own tools and cosy's approval step (`tool/call/sync` PENDING →
//! `tool/call/approve`, `tool_auto_approve`): approved, answered and reported; refused when
//! auto-approval is off. Cosy only, so only the `gateway` target runs it: ACP has no approval
//! step (its tools are reported as on cosy: `acp.rs`).

use serde_json::{json, Value};

use crate::harness::*;
use crate::tools::{choice, stream_chunks, stream_of, text_of};

#[test]
fn lingma_native_tools_are_approved_answered_and_reported() {
    let gw = GatewayProcess::start_with(Options::default().env("tool_report_native", "true"));
    let c = choice(
        &gw,
        &chat_body("auto", "Read the readme [[sim:native=read_file]]"),
    );
    assert_eq!(c["finish_reason"], "stop", "{c}");
    let msg = &c["message"];
    let text = msg["content"].as_str().unwrap();
    assert!(
        !text.contains("toolCall::"),
        "the tool card is stripped: {text}"
    );
    assert!(text.starts_with("Let me use read_file."), "{text}");
    assert!(
        text.contains("Tool read_file finished: success=false"),
        "{text}"
    );
    let log = gw.sim_log(0);
    assert!(
        log.lines()
            .any(|l| l.contains("recv tool/call/approve") && l.contains("approval=true")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("recv tool/invoke reply") && l.contains("success=false")),
        "{log}"
    );
    let events = msg["lingma_tool_events"]
        .as_array()
        .expect("lingma_tool_events");
    assert_eq!(events.len(), 1, "{msg}");
    assert_eq!(events[0]["name"], "read_file");
    assert_eq!(events[0]["input"], json!({"path": "README.md"}));
    assert_eq!(events[0]["is_error"], true);

    // Streamed: the report is a delta of its own.
    let chunks = stream_chunks(
        &gw,
        &stream_of(chat_body(
            "auto",
            "Read the readme [[sim:native=read_file]]",
        )),
    );
    let reported: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["lingma_tool_events"].as_array())
        .flatten()
        .collect();
    assert_eq!(reported.len(), 1, "{chunks:?}");
    assert_eq!(reported[0]["name"], "read_file");
    assert!(!text_of(&chunks).contains("toolCall::"));

    // Anthropic: a tool_use block and its tool_result.
    let r = gw.post(
        "/v1/messages",
        &messages_body("auto", "Read the readme [[sim:native=read_file]]"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let content = v["content"].as_array().unwrap();
    let at = content
        .iter()
        .position(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use: {v}"));
    assert_eq!(content[at]["name"], "read_file");
    assert_eq!(content[at]["input"], json!({"path": "README.md"}));
    let result = &content[at + 1];
    assert_eq!(result["type"], "tool_result", "{v}");
    assert_eq!(result["tool_use_id"], content[at]["id"]);
    assert_eq!(result["is_error"], true);
    let text: String = content.iter().filter_map(|b| b["text"].as_str()).collect();
    assert!(!text.contains("toolCall::"), "{text}");
}

#[test]
fn native_tools_are_refused_when_auto_approve_is_off() {
    let gw = GatewayProcess::start_with(Options::default().env("tool_auto_approve", "false"));
    let c = choice(
        &gw,
        &chat_body("auto", "Read the readme [[sim:native=read_file]]"),
    );
    let msg = &c["message"];
    let text = msg["content"].as_str().unwrap();
    assert!(text.contains("Tool read_file was not approved."), "{text}");
    assert!(!text.contains("toolCall::"), "{text}");
    assert!(
        msg["lingma_tool_events"].is_null(),
        "not reported by default: {msg}"
    );
    let log = gw.sim_log(0);
    assert!(
        log.lines()
            .any(|l| l.contains("recv tool/call/approve") && l.contains("approval=false")),
        "{log}"
    );
    assert!(!log.contains("send tool/invoke"), "{log}");
}
