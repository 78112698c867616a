use serde_json::{json, Value};

use super::*;
use crate::script::NativeCall;

/// The thoughts and the message an answer cut at `cuts` comes to, each joined.
fn split(text: &str, cuts: &[usize]) -> (String, String) {
    let mut s = ThinkSplit::default();
    let mut pieces = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&text.len()]) {
        pieces.extend(s.push(&text[start..cut]));
        start = cut;
    }
    pieces.extend(s.finish());
    let (mut thought, mut message) = (String::new(), String::new());
    for p in pieces {
        match p {
            Piece::Thought(t) => thought.push_str(&t),
            Piece::Message(t) => message.push_str(&t),
        }
    }
    (thought, message)
}

#[test]
fn every_cut_of_a_think_block_gives_the_same_split() {
    let cases = [
        // The real server's framing (§6), the placeholder literal or digits.
        (
            "\n````think::{THINK_TIME}\nThinking about: hi\n````\nHello",
            "Thinking about: hi",
            "Hello",
        ),
        (
            "\n````think::1234\nline 1\nline 2\n````\nHi `x` ````",
            "line 1\nline 2",
            "Hi `x` ````",
        ),
        // The framing without the newlines around the markers.
        (
            "````think::{THINK_TIME}\nThinking\n````\nAnswer\n",
            "Thinking",
            "Answer\n",
        ),
        ("\n````think::0\n````\nempty thought", "", "empty thought"),
        // No think block at all.
        ("Hello ```` there", "", "Hello ```` there"),
        ("\nplain", "", "\nplain"),
        ("`", "", "`"),
    ];
    for (text, thought, message) in cases {
        let want = (thought.to_string(), message.to_string());
        assert_eq!(split(text, &[]), want, "{text:?} whole");
        for i in 0..=text.len() {
            assert_eq!(split(text, &[i]), want, "{text:?} cut at {i}");
            for j in i..=text.len() {
                assert_eq!(split(text, &[i, j]), want, "{text:?} cut at {i}, {j}");
            }
        }
    }
}

fn event(fields: Value) -> Value {
    let mut v = fields;
    v["requestId"] = json!("r1");
    v["sessionId"] = json!("s1");
    v
}

fn updates(msgs: &[Value]) -> Vec<Value> {
    msgs.iter()
        .map(|m| {
            assert_eq!(m["method"], SESSION_UPDATE);
            assert!(m.get("id").is_none(), "updates are notifications");
            assert_eq!(m["params"]["sessionId"], "s1");
            assert_eq!(m["params"]["_meta"][REQUEST_ID_META], "r1");
            m["params"]["update"].clone()
        })
        .collect()
}

#[test]
fn a_turn_becomes_updates_then_the_prompt_result() {
    let turn = AcpTurn {
        prompt_id: Some(json!(7)),
    };
    let mut e = Encoder::new(&turn, &[]);
    let mut msgs = e.encode(method::CHAT_STEP, &event(json!({"step": "step_start"})));
    msgs.extend(e.encode(method::TITLE_UPDATE, &event(json!({"sessionTitle": "t"}))));
    assert!(msgs.is_empty(), "no ACP form: {msgs:?}");
    for text in ["\n````think::{THINK_TIME}\nhm", "m\n````\nHel", ""] {
        msgs.extend(e.encode(method::CHAT_ANSWER, &event(json!({"text": text}))));
    }
    // A delta in `content` (some builds' cosy form) is text all the same.
    msgs.extend(e.encode(method::CHAT_ANSWER, &event(json!({"content": "lo"}))));
    msgs.extend(e.encode(
        method::CONTEXT_USAGE,
        &event(json!({"usedTokens": 5, "limitTokens": 100})),
    ));
    let finish =
        event(json!({"reason": "success", "statusCode": 200, "fullAnswer": "x", "extra": {}}));
    msgs.extend(e.encode(method::CHAT_FINISH, &finish));
    let result = e.take_answer().unwrap();
    assert_eq!(e.take_answer(), None, "answered once");
    let u = updates(&msgs);
    let kinds: Vec<&str> = u
        .iter()
        .map(|u| u["sessionUpdate"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "agent_thought_chunk",
            "agent_thought_chunk",
            "agent_message_chunk",
            "agent_message_chunk",
            "notification",
            "notification"
        ]
    );
    assert_eq!(u[0]["content"], json!({"type": "text", "text": "hm"}));
    assert_eq!(u[1]["content"]["text"], "m");
    assert_eq!(u[2]["content"]["text"], "Hel");
    assert_eq!(
        u[4],
        json!({"sessionUpdate": "notification", "type": "context_usage", "data": {"usedTokens": 5, "limitTokens": 100}})
    );
    assert_eq!(u[5]["type"], "chat_finish");
    assert_eq!(u[5]["data"]["statusCode"], 200);
    assert_eq!(u[5]["data"]["fullAnswer"], "Hello", "no think block in it");
    assert_eq!(
        result,
        json!({"jsonrpc": "2.0", "id": 7, "result": {"stopReason": "end_turn"}})
    );
}

#[test]
fn finishes_answer_the_prompt_by_their_status() {
    let answer = |status: u16, reason: &str, id: Option<Value>| {
        let mut e = Encoder::new(&AcpTurn { prompt_id: id }, &[]);
        let finish = event(json!({"reason": reason, "statusCode": status, "fullAnswer": ""}));
        assert_eq!(e.encode(method::CHAT_FINISH, &finish).len(), 1);
        e.take_answer()
    };
    let result = |status, reason| answer(status, reason, Some(json!("p"))).unwrap();
    assert_eq!(
        result(200, "cancelled")["result"]["stopReason"],
        "cancelled"
    );
    assert_eq!(result(406, "error")["result"]["stopReason"], "refusal");
    let failed = result(429, "error");
    assert_eq!(failed["id"], "p");
    assert_eq!(failed["error"]["code"], -32603);
    assert_eq!(failed["error"]["data"]["statusCode"], 429);
    // A prompt sent as a notification gets no answer.
    assert_eq!(answer(200, "success", None), None);
}

#[test]
fn native_tool_syncs_become_tool_calls() {
    let call = NativeCall {
        name: "read_file".into(),
        tool_call_id: "t1".into(),
        parameters: json!({"path": "a"}),
        asynchronous: false,
    };
    let mut e = Encoder::new(&AcpTurn { prompt_id: None }, &[Step::Native(call)]);
    let sync = |status: &str, results: Value, error: &str| {
        event(
            json!({"toolCallId": "t1", "toolCallStatus": status, "parameters": {"path": "a"}, "results": results, "errorMsg": error}),
        )
    };
    let result = json!({"toolCallId": "t1", "success": false, "errorMessage": "no"});
    let mut msgs = Vec::new();
    for (status, results, error) in [
        ("PENDING", json!([]), ""),
        ("RUNNING", json!([]), ""),
        ("ERROR", json!([result]), "no"),
    ] {
        msgs.extend(e.encode(method::TOOL_CALL_SYNC, &sync(status, results, error)));
    }
    let u = updates(&msgs);
    assert_eq!(
        u[0],
        json!({"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "read_file", "kind": "read",
               "status": "pending", "rawInput": {"path": "a"},
               "_meta": {"ai-coding/tool-name": "read_file", "ai-coding/tool-status": "PENDING"}})
    );
    assert_eq!(u[1]["sessionUpdate"], "tool_call_update");
    assert_eq!(u[1]["status"], "in_progress");
    assert_eq!(u[2]["status"], "failed");
    assert_eq!(u[2]["rawOutput"], result);
    assert_eq!(u[2]["_meta"]["ai-coding/error-message"], "no");
    assert_eq!(u[2]["_meta"]["ai-coding/tool-status"], "ERROR");
}
