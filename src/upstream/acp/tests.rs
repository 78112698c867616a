//! The ACP codec on literal frames, as §7 of the protocol notes shows them.

use super::*;
use crate::config::AskMode;

fn ask(question: &str, model: &str) -> Ask {
    Ask {
        session_id: String::new(),
        question: question.into(),
        model_key: model.into(),
        is_reply: false,
        mode: AskMode::Chat,
        forward_tools: None,
        approve_tools: true,
    }
}

/// The params of a literal `session/update` frame.
fn update(frame: &str) -> Value {
    let msg: Value = serde_json::from_str(frame).expect("a literal frame is JSON");
    assert_eq!(msg["method"], method::SESSION_UPDATE);
    msg["params"].clone()
}

fn decode(d: &mut Decoder, frame: &str) -> Option<ChatEvent> {
    d.decode(method::SESSION_UPDATE, &update(frame))
}

#[test]
fn requests_carry_what_the_runtime_reads() {
    assert_eq!(
        new_session_params("/w"),
        json!({"cwd": "/w", "mcpServers": [], "_meta": {}})
    );
    assert_eq!(
        set_model_params("s1", "kmodel"),
        json!({"sessionId": "s1", "modelId": "kmodel"})
    );
    assert_eq!(cancel_params("s1"), json!({"sessionId": "s1"}));
    assert_eq!(
        prompt_params("r1", "s1", &ask("hi", "kmodel")),
        json!({
            "sessionId": "s1",
            "prompt": [{"type": "text", "text": "hi"}],
            "_meta": {"ai-coding/request-id": "r1", "ai-coding/mode": "agent", "ai-coding/model": "kmodel"},
        })
    );
}

#[test]
#[should_panic(expected = "request id")]
fn a_prompt_is_never_built_without_a_request_id() {
    prompt_params("", "s1", &ask("hi", "auto"));
}

#[test]
fn a_new_sessions_id_is_session_id_or_id() {
    assert_eq!(
        session_id_of(&json!({"sessionId": "a"})).as_deref(),
        Some("a")
    );
    assert_eq!(session_id_of(&json!({"id": "b"})).as_deref(), Some("b"));
    assert_eq!(
        session_id_of(&json!({"sessionId": "", "id": "c"})).as_deref(),
        Some("c")
    );
    assert_eq!(session_id_of(&json!({})), None);
    assert_eq!(session_id_of(&json!(null)), None);
}

#[test]
fn message_and_thought_chunks_are_text_and_reasoning() {
    let mut d = Decoder::new("r1", "s1");
    let chunk = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hel"}}}}"#;
    assert_eq!(decode(&mut d, chunk), Some(ChatEvent::Text("Hel".into())));
    let thought = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1","ai-coding/thinking-duration-millis":120},"update":{"sessionUpdate":"agent_thought_chunk","content":{"type":"text","text":"Let me see"}}}}"#;
    assert_eq!(
        decode(&mut d, thought),
        Some(ChatEvent::Reasoning("Let me see".into()))
    );
    let empty = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":""}}}}"#;
    assert_eq!(decode(&mut d, empty), None);
    let listed = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"_meta":{"ai-coding/request-id":"r1"},"sessionUpdate":"agent_message_chunk","content":[{"type":"text","text":"a"},{"type":"image","data":"AA=="},{"type":"text","text":"b"}]}}}"#;
    assert_eq!(decode(&mut d, listed), Some(ChatEvent::Text("ab".into())));
}

#[test]
fn updates_of_another_request_and_other_kinds_carry_nothing() {
    let mut d = Decoder::new("r1", "s1");
    let other = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r0"},"update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"old"}}}}"#;
    assert_eq!(decode(&mut d, other), None);
    for kind in [
        r#"{"sessionUpdate":"plan","entries":[{"content":"x","status":"pending"}]}"#,
        r#"{"sessionUpdate":"user_message_chunk","content":{"type":"text","text":"hi"}}"#,
        r#"{"sessionUpdate":"available_commands_update","availableCommands":[]}"#,
        r#"{"sessionUpdate":"notification","type":"something_new","data":{}}"#,
    ] {
        let frame = format!(
            r#"{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":"s1","_meta":{{"ai-coding/request-id":"r1"}},"update":{kind}}}}}"#
        );
        assert_eq!(decode(&mut d, &frame), None, "{kind}");
    }
    assert_eq!(d.decode(method::CHAT_ANSWER, &json!({"text": "x"})), None);
    let invoke = json!({"requestId": "r1", "toolCallId": "t1", "name": "read_file",
        "parameters": {"path": "a"}, "async": false});
    let Some(ChatEvent::Tool(u)) = d.decode(method::TOOL_INVOKE, &invoke) else {
        panic!("tool/invoke is a tool event in both dialects");
    };
    assert_eq!(
        (u.status, u.name.as_str()),
        (ToolStatus::Invoke, "read_file")
    );
    assert_eq!(
        d.decode(method::SESSION_UPDATE, &json!({"sessionId": "s1"})),
        None
    );
}

#[test]
fn request_ids_are_found_on_the_params_or_the_update() {
    assert_eq!(
        request_id_of(&json!({"_meta": {"ai-coding/request-id": "a"}})),
        Some("a")
    );
    assert_eq!(
        request_id_of(&json!({"update": {"_meta": {"ai-coding/request-id": "b"}}})),
        Some("b")
    );
    assert_eq!(request_id_of(&json!({"sessionId": "s"})), None);
}

#[test]
fn chat_finish_ends_the_turn_with_its_status_mapped_as_cosys() {
    let mut d = Decoder::new("r1", "s1");
    let finish = |code: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":"s1","_meta":{{"ai-coding/request-id":"r1"}},"update":{{"sessionUpdate":"notification","type":"chat_finish","data":{{"requestId":"r1","sessionId":"inner","reason":"done","statusCode":{code},"fullAnswer":"Hi"}}}}}}}}"#
        )
    };
    let ended = |status_code: i64| {
        Some(ChatEvent::Finish(Finish {
            session_id: "s1".into(),
            status_code,
            reason: "done".into(),
            full_answer: "Hi".into(),
        }))
    };
    assert_eq!(decode(&mut d, &finish("200")), ended(200));
    assert_eq!(decode(&mut d, &finish("\"429\"")), ended(429));
    assert_eq!(decode(&mut d, &finish("601")), ended(601));
    assert_eq!(decode(&mut d, &finish("\"weird\"")), ended(500));
    assert_eq!(d.session_id(), "s1");
    let bare = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"notification","type":"chat_finish","data":{}}}}"#;
    let Some(ChatEvent::Finish(f)) = decode(&mut d, bare) else {
        panic!("chat_finish is a finish");
    };
    assert_eq!((f.status_code, f.full_answer.as_str()), (200, ""));
}

#[test]
fn context_usage_is_used_and_limit_tokens() {
    let mut d = Decoder::new("r1", "s1");
    let usage = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"notification","type":"context_usage","data":{"usedTokens":1234,"limitTokens":131072}}}}"#;
    assert_eq!(
        decode(&mut d, usage),
        Some(ChatEvent::Usage {
            used_tokens: 1234,
            limit_tokens: Some(131_072)
        })
    );
    let beside = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"notification","type":"context_usage","data":{"usedTokens":"77"},"limitTokens":0}}}"#;
    assert_eq!(
        decode(&mut d, beside),
        Some(ChatEvent::Usage {
            used_tokens: 77,
            limit_tokens: None
        })
    );
    let none = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"notification","type":"context_usage","data":{}}}}"#;
    assert_eq!(decode(&mut d, none), None);
}

#[test]
fn tool_calls_and_their_updates_are_native_tool_updates() {
    let mut d = Decoder::new("r1", "s1");
    let call = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"tool_call","toolCallId":"t1","title":"Read a.txt","kind":"read","rawInput":{"path":"a.txt"},"_meta":{"ai-coding/tool-name":"read_file"}}}}"#;
    assert_eq!(
        decode(&mut d, call),
        Some(ChatEvent::Tool(ToolUpdate {
            tool_call_id: "t1".into(),
            name: "read_file".into(),
            status: ToolStatus::Init,
            parameters: json!({"path": "a.txt"}),
            results: Value::Null,
            error: String::new(),
        }))
    );
    let done = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"tool_call_update","toolCallId":"t1","status":"completed","rawOutput":{"content":"hello"}}}}"#;
    assert_eq!(
        decode(&mut d, done),
        Some(ChatEvent::Tool(ToolUpdate {
            tool_call_id: "t1".into(),
            name: String::new(),
            status: ToolStatus::Finished,
            parameters: Value::Null,
            results: json!([{"content": "hello"}]),
            error: String::new(),
        }))
    );
    let failed = r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","_meta":{"ai-coding/request-id":"r1"},"update":{"sessionUpdate":"tool_call_update","toolCallId":"t2","title":"Run ls","status":"failed","_meta":{"ai-coding/error-code":"E1","ai-coding/error-message":"no such file"}}}}"#;
    let Some(ChatEvent::Tool(u)) = decode(&mut d, failed) else {
        panic!("a tool update");
    };
    assert_eq!(
        (u.name.as_str(), u.status, u.error.as_str()),
        ("Run ls", ToolStatus::Error, "no such file")
    );
}

#[test]
fn acp_tool_statuses_map_to_the_native_ones() {
    assert_eq!(tool_status("pending"), ToolStatus::Pending);
    assert_eq!(tool_status("in_progress"), ToolStatus::Running);
    assert_eq!(tool_status("completed"), ToolStatus::Finished);
    assert_eq!(tool_status("failed"), ToolStatus::Error);
    assert_eq!(tool_status("cancelled"), ToolStatus::Cancelled);
    assert_eq!(tool_status("FINISHED"), ToolStatus::Finished);
    assert_eq!(tool_status("paused"), ToolStatus::Other("PAUSED".into()));
    let update = json!({"sessionUpdate": "tool_call_update", "toolCallId": "t"});
    assert_eq!(tool_update(&update).status, ToolStatus::Running);
    // The cosy status in `_meta` is finer than ACP's `failed`.
    let update = json!({"sessionUpdate": "tool_call_update", "toolCallId": "t", "status": "failed",
        "_meta": {"ai-coding/tool-status": "CANCELLED"}});
    assert_eq!(tool_update(&update).status, ToolStatus::Cancelled);
}

#[test]
fn an_error_answer_to_the_prompt_is_a_failed_finish() {
    let mut d = Decoder::new("r1", "s1");
    let refused = RpcError {
        code: -32603,
        message: "requestId is empty".into(),
    };
    let Some(ChatEvent::Finish(f)) = d.decode_reply(Err(refused)) else {
        panic!("an error ends the turn");
    };
    assert_eq!(f.status_code, 500);
    assert_eq!(f.session_id, "s1");
    assert!(f.reason.contains("requestId is empty"), "{}", f.reason);
    let limited = RpcError {
        code: 429,
        message: "slow down".into(),
    };
    let Some(ChatEvent::Finish(f)) = d.decode_reply(Err(limited)) else {
        panic!("an error ends the turn");
    };
    assert_eq!(f.status_code, 429);
    assert_eq!(d.decode_reply(Ok(json!({"stopReason": "end_turn"}))), None);
}

#[test]
fn a_prompt_result_with_a_stop_reason_stands_for_a_missing_finish() {
    let mut d = Decoder::new("r1", "s1");
    assert_eq!(d.decode_reply(Ok(json!({}))), None);
    assert!(!d.answered() && d.finish_from_reply().is_none());
    assert_eq!(d.decode_reply(Ok(json!({"stopReason": "end_turn"}))), None);
    assert!(d.answered());
    assert_eq!(
        d.finish_from_reply(),
        Some(ChatEvent::Finish(Finish {
            session_id: "s1".into(),
            status_code: 200,
            reason: "end_turn".into(),
            full_answer: String::new(),
        }))
    );
    assert!(!d.answered(), "taken once");
    d.decode_reply(Ok(json!({"stopReason": "refusal"})));
    let Some(ChatEvent::Finish(f)) = d.finish_from_reply() else {
        panic!("a finish");
    };
    assert_eq!(f.status_code, 406);
}

#[test]
fn set_model_is_needed_only_when_the_model_changes() {
    let models = SessionModels::default();
    assert!(models.needs("s1", "a"));
    models.set("s1", "a");
    assert!(!models.needs("s1", "a"));
    assert!(models.needs("s1", "b"));
    assert!(models.needs("s2", "a"));
    for i in 0..MAX_REMEMBERED_MODELS + 10 {
        models.set(&format!("x{i}"), "a");
    }
    assert!(models.models.lock().unwrap().len() <= MAX_REMEMBERED_MODELS);
}
