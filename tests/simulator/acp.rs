//! The simulator's ACP dialect (protocol §7) over its WebSocket: `initialize` telling which
//! dialects are spoken, `session/new`, `session/set_model`, `session/prompt` streamed as
//! `session/update` and answered after its `chat_finish`, `session/cancel`, the strict
//! refusals of a real runtime, and `--dialect` / `LINGMA_SIM_DIALECT`.

use serde_json::{json, Value};

use super::{ask_params, finish, unique_dir, Client, Sim};

const UNKNOWN_METHOD: i64 = -32601;

fn new_session(c: &mut Client, id: i64) -> String {
    let r = c.call(
        id,
        "session/new",
        json!({"cwd": "/tmp", "mcpServers": [], "_meta": {}}),
    );
    let sid = r["result"]["sessionId"].as_str().expect("sessionId");
    assert!(!sid.is_empty());
    sid.to_string()
}

fn prompt_params(session_id: &str, request_id: &str, text: &str) -> Value {
    json!({
        "sessionId": session_id,
        "prompt": [{"type": "text", "text": text}],
        "_meta": {"ai-coding/request-id": request_id, "ai-coding/mode": "agent"},
    })
}

/// What one prompt's turn sent: its `session/update`s (each checked to name the session and
/// the request), the simulator's requests among them, and the prompt's answer.
struct Turn {
    updates: Vec<Value>,
    requests: Vec<Value>,
    answer: Value,
}

impl Turn {
    fn kinds(&self) -> Vec<&str> {
        self.updates
            .iter()
            .map(|u| u["sessionUpdate"].as_str().unwrap())
            .collect()
    }

    fn text(&self, kind: &str) -> String {
        self.updates
            .iter()
            .filter(|u| u["sessionUpdate"] == kind)
            .map(|u| u["content"]["text"].as_str().unwrap())
            .collect()
    }

    fn notification(&self, kind: &str) -> &Value {
        let found = self
            .updates
            .iter()
            .find(|u| u["sessionUpdate"] == "notification" && u["type"] == kind);
        &found.unwrap_or_else(|| panic!("no {kind} in {:?}", self.updates))["data"]
    }
}

/// Sends `session/prompt` as request `id` and reads its turn up to the prompt's answer,
/// letting `react` answer the simulator's own requests.
fn prompt_with(
    c: &mut Client,
    id: i64,
    params: Value,
    mut react: impl FnMut(&mut Client, &Value),
) -> Turn {
    let (sid, rid) = (
        params["sessionId"].clone(),
        params["_meta"]["ai-coding/request-id"].clone(),
    );
    c.request(json!(id), "session/prompt", params);
    let mut turn = Turn {
        updates: Vec::new(),
        requests: Vec::new(),
        answer: Value::Null,
    };
    let mut finished = false;
    loop {
        let msg = c.next();
        if msg["id"] == json!(id) && msg.get("method").is_none() {
            assert!(finished, "the prompt is answered after chat_finish: {msg}");
            turn.answer = msg;
            return turn;
        }
        if msg["method"] != "session/update" {
            react(c, &msg);
            turn.requests.push(msg);
            continue;
        }
        assert!(msg.get("id").is_none(), "updates are notifications: {msg}");
        let p = &msg["params"];
        assert_eq!(
            (&p["sessionId"], &p["_meta"]["ai-coding/request-id"]),
            (&sid, &rid)
        );
        finished |= p["update"]["type"] == "chat_finish";
        turn.updates.push(p["update"].clone());
    }
}

fn prompt(c: &mut Client, id: i64, params: Value) -> Turn {
    prompt_with(c, id, params, |_, msg| panic!("unexpected request {msg}"))
}

fn error(reply: &Value) -> (i64, String) {
    let e = &reply["error"];
    assert!(reply.get("result").is_none(), "an error: {reply}");
    (
        e["code"].as_i64().unwrap(),
        e["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn initialize_says_acp_only_where_it_is_spoken() {
    for (dialect, acp) in [("both", true), ("acp", true), ("cosy", false)] {
        let sim = Sim::start(&format!("acp-init-{dialect}"), &["--dialect", dialect]);
        let mut c = sim.connect();
        let r = c.call(
            1,
            "initialize",
            json!({"protocolVersion": 1, "clientCapabilities": {}}),
        );
        let result = &r["result"];
        assert_eq!(result["serverInfo"]["version"], "2.11.1", "{dialect}");
        assert!(result["capabilities"].is_object());
        if acp {
            assert_eq!(result["protocolVersion"], 1, "{dialect}");
            assert_eq!(
                result["agentCapabilities"]["promptCapabilities"]["image"],
                true
            );
            assert_eq!(result["authMethods"], json!([]));
        } else {
            assert!(result.get("protocolVersion").is_none(), "{result}");
            assert!(result.get("agentCapabilities").is_none(), "{result}");
        }
        assert!(sim.log().contains(&format!("dialect: {dialect}")));
    }
}

#[test]
fn each_dialect_refuses_the_other_ones_methods() {
    let sim = Sim::start("acp-cosy-only", &["--dialect=cosy"]);
    let mut c = sim.connect();
    for (i, method) in [
        "session/new",
        "session/prompt",
        "session/set_model",
        "session/cancel",
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.call(i as i64, method, json!({}));
        assert_eq!(
            error(&r),
            (UNKNOWN_METHOD, format!("unknown method: {method}"))
        );
    }
    c.notify("chat/ask", ask_params("c-1", "", "hi"));
    assert_eq!(finish(&c.turn("c-1"))["statusCode"], 200);

    // ACP only, chosen through the environment the gateway's harness passes on.
    let env = [("LINGMA_SIM_DIALECT", "acp")];
    let sim = Sim::start_env(unique_dir("acp-only"), &[], &env);
    let mut c = sim.connect();
    for method in ["chat/ask", "chat/stop"] {
        let r = c.call(1, method, ask_params("a-1", "", "hi"));
        assert_eq!(
            error(&r),
            (UNKNOWN_METHOD, format!("unknown method: {method}"))
        );
    }
    let sid = new_session(&mut c, 2);
    let turn = prompt(&mut c, 3, prompt_params(&sid, "a-2", "hi"));
    assert_eq!(turn.answer["result"], json!({"stopReason": "end_turn"}));
    // Shared methods stay: the session list and deletion.
    let list = c.call(4, "chat/listAllSessions", json!({}));
    assert_eq!(list["result"][0]["sessionId"], json!(sid));
    assert_eq!(
        c.call(5, "chat/deleteSessionById", json!({"sessionId": sid}))["result"],
        Value::Null
    );

    // Both (the default): either dialect, one session store.
    let sim = Sim::start("acp-both", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("b-1", "", "[[sim:turn]]"));
    let cosy_sid = finish(&c.turn("b-1"))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let turn = prompt(&mut c, 1, prompt_params(&cosy_sid, "b-2", "[[sim:turn]]"));
    assert_eq!(
        turn.text("agent_message_chunk"),
        format!("turn 2 of session {cosy_sid}")
    );
}

#[test]
fn a_prompt_streams_thinking_text_usage_and_the_finish() {
    let sim = Sim::start("acp-stream", &[]);
    let mut c = sim.connect();
    let sid = new_session(&mut c, 1);
    let model = "dashscope_qwen_plus_20250428_thinking";
    let r = c.call(
        2,
        "session/set_model",
        json!({"sessionId": sid, "modelId": model}),
    );
    assert_eq!(r["result"], json!({}));
    let mut params = prompt_params(&sid, "t-1", "[user]\nhello ");
    params["prompt"]
        .as_array_mut()
        .unwrap()
        .extend([json!({"type": "text", "text": "there"}), json!({"type": "image", "mimeType": "image/png", "data": "iVBORw0KGgo=", "uri": "lingma:///agent/file?path=a.png"})]);
    let turn = prompt(&mut c, 3, params);
    let kinds = turn.kinds();
    let thoughts = kinds
        .iter()
        .filter(|k| **k == "agent_thought_chunk")
        .count();
    let first_text = kinds
        .iter()
        .position(|k| *k == "agent_message_chunk")
        .unwrap();
    assert!(
        thoughts > 1
            && kinds[..thoughts]
                .iter()
                .all(|k| *k == "agent_thought_chunk"),
        "{kinds:?}"
    );
    assert_eq!(first_text, thoughts, "thinking comes first: {kinds:?}");
    assert_eq!(&kinds[kinds.len() - 2..], ["notification", "notification"]);
    // No think markers in ACP, and no newline of theirs in the reasoning or the answer.
    assert_eq!(
        turn.text("agent_thought_chunk"),
        "Thinking about: hello there"
    );
    let answer = turn.text("agent_message_chunk");
    assert_eq!(
        answer,
        "Hello from the Lingma simulator (Qwen-Plus-Thinking). You said: hello there"
    );
    assert!(
        turn.updates.iter().all(|u| u["content"]["text"] != ""),
        "no empty chunk"
    );
    let usage = turn.notification("context_usage");
    assert!(usage["usedTokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["limitTokens"], 131_072);
    let fin = turn.notification("chat_finish");
    assert_eq!(
        (&fin["statusCode"], &fin["reason"]),
        (&json!(200), &json!("success"))
    );
    assert_eq!(
        (&fin["requestId"], &fin["sessionId"]),
        (&json!("t-1"), &json!(sid))
    );
    assert_eq!(fin["fullAnswer"], json!(answer));
    assert_eq!(fin["extra"]["sessionType"], "developer");
    assert_eq!(turn.answer["result"], json!({"stopReason": "end_turn"}));
    let log = sim.log();
    assert!(
        log.contains(&format!(
            "recv session/prompt requestId=t-1 sessionId={sid} isReply=false model=-"
        )),
        "{log}"
    );
    assert!(
        log.contains("requestId=t-1: 1 image(s): image/png, 12 bytes"),
        "{log}"
    );
}

#[test]
fn the_prompts_model_wins_and_directives_work_as_on_cosy() {
    let sim = Sim::start("acp-directives", &[]);
    let mut c = sim.connect();
    let sid = new_session(&mut c, 1);
    let model = "dashscope_qwen_plus_20250428_thinking";
    c.call(
        2,
        "session/set_model",
        json!({"sessionId": sid, "modelId": model}),
    );
    // The prompt's `_meta` model wins over the session's, and a plain model does not think.
    let mut params = prompt_params(&sid, "t-2", "[[sim:turn]]");
    params["_meta"]["ai-coding/model"] = json!("kmodel");
    let turn = prompt(&mut c, 4, params);
    assert!(!turn.kinds().contains(&"agent_thought_chunk"));
    assert_eq!(
        turn.text("agent_message_chunk"),
        format!("turn 1 of session {sid}")
    );
    // `[[sim:think]]` on a plain model; the wire and pacing directives shape ACP frames too.
    for (i, directives) in [
        "[[sim:wire=split]]",
        "[[sim:wire=packed]][[sim:wire=binary]]",
        "[[sim:delay=5]][[sim:first=5]]",
    ]
    .into_iter()
    .enumerate()
    {
        let text = format!("[[sim:chunks=3]][[sim:think]]{directives}");
        let mut params = prompt_params(&sid, &format!("w-{i}"), &text);
        params["_meta"]["ai-coding/model"] = json!("auto");
        let turn = prompt(&mut c, 10 + i as i64, params);
        assert_eq!(
            turn.text("agent_message_chunk"),
            "c1 c2 c3 ",
            "{directives}"
        );
        assert!(
            turn.text("agent_thought_chunk")
                .starts_with("Thinking about: "),
            "{directives}"
        );
        assert_eq!(turn.answer["result"]["stopReason"], "end_turn");
    }
}

#[test]
fn sessions_continue_count_and_go() {
    let sim = Sim::start("acp-sessions", &[]);
    let mut c = sim.connect();
    let (a, b) = (new_session(&mut c, 1), new_session(&mut c, 2));
    assert_ne!(a, b);
    assert!(sim
        .log()
        .contains(&format!("session/new sessionId={b} (2 sessions)")));
    for n in 1..=3 {
        let turn = prompt(
            &mut c,
            10 + n,
            prompt_params(&a, &format!("s-{n}"), "[[sim:turn]]"),
        );
        assert_eq!(
            turn.text("agent_message_chunk"),
            format!("turn {n} of session {a}")
        );
    }
    let turn = prompt(&mut c, 20, prompt_params(&b, "s-b", "[[sim:turn]]"));
    assert_eq!(
        turn.text("agent_message_chunk"),
        format!("turn 1 of session {b}")
    );
    let history = c.call(21, "chat/getSessionById", json!({"sessionId": a}));
    assert_eq!(
        history["result"]["chatRecords"].as_array().unwrap().len(),
        3
    );
    assert_eq!(
        history["result"]["chatRecords"][0]["question"],
        "[[sim:turn]]"
    );
    assert_eq!(
        c.call(22, "chat/listAllSessions", json!({}))["result"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    c.call(23, "chat/deleteSessionById", json!({"sessionId": a}));
    let deleted = format!("chat/deleteSessionById sessionId={a} deleted=true sessions=1");
    assert!(sim.log().contains(&deleted), "{}", sim.log());
    let r = c.call(24, "session/prompt", prompt_params(&a, "s-gone", "hi"));
    assert!(error(&r).1.contains("session not found"), "{r}");
    assert_eq!(
        c.call(25, "chat/listAllSessions", json!({}))["result"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn prompts_are_refused_as_a_real_runtime_refuses_them() {
    let sim = Sim::start("acp-strict", &[]);
    let mut c = sim.connect();
    let sid = new_session(&mut c, 1);
    let mut no_id = prompt_params(&sid, "x", "hi");
    no_id["_meta"] = json!({});
    let (_, message) = error(&c.call(2, "session/prompt", no_id));
    assert!(message.contains("requestId is empty"), "{message}");
    let mut empty_id = prompt_params(&sid, "", "hi");
    empty_id["_meta"]["ai-coding/request-id"] = json!("");
    assert!(error(&c.call(3, "session/prompt", empty_id))
        .1
        .contains("requestId is empty"));
    assert_eq!(error(&c.call(4, "session/prompt", json!([sid]))).0, -32602);
    assert_eq!(error(&c.call(5, "session/new", json!([]))).0, -32602);
    for (i, bad) in [json!("nope"), json!(""), Value::Null]
        .into_iter()
        .enumerate()
    {
        let mut params = prompt_params("", "u", "hi");
        params["sessionId"] = bad;
        let (_, message) = error(&c.call(10 + i as i64, "session/prompt", params));
        assert!(message.contains("session not found"), "{message}");
    }
    let r = c.call(
        20,
        "session/set_model",
        json!({"sessionId": "nope", "modelId": "auto"}),
    );
    assert!(error(&r).1.contains("session not found"));
    let r = c.call(21, "session/cancel", json!({"sessionId": "nope"}));
    assert!(error(&r).1.contains("session not found"));
    let mut not_blocks = prompt_params(&sid, "v", "hi");
    not_blocks["prompt"] = json!("hi");
    assert_eq!(error(&c.call(22, "session/prompt", not_blocks)).0, -32602);
    let mut untyped = prompt_params(&sid, "w", "hi");
    untyped["prompt"] = json!([{"text": "hi"}]);
    assert!(error(&c.call(23, "session/prompt", untyped))
        .1
        .contains("prompt[0]: no type"));

    // A second prompt while the session's turn runs is refused; the turn goes on.
    c.request(
        json!(30),
        "session/prompt",
        prompt_params(&sid, "busy-1", "[[sim:stall]]"),
    );
    let (code, message) = error(&c.call(31, "session/prompt", prompt_params(&sid, "busy-2", "hi")));
    assert_eq!(code, -32000);
    assert!(message.contains("has a prompt running"), "{message}");
    c.notify("session/cancel", json!({"sessionId": sid}));
    let turn = prompt_rest(&mut c, 30, &sid, "busy-1");
    assert_eq!(turn.answer["result"], json!({"stopReason": "cancelled"}));
}

#[test]
fn cancel_stops_the_running_turn() {
    let sim = Sim::start("acp-cancel", &[]);
    let mut c = sim.connect();
    let sid = new_session(&mut c, 1);
    c.request(
        json!(2),
        "session/prompt",
        prompt_params(&sid, "k-1", "[[sim:stall]]"),
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = c.next();
        assert_eq!(msg["method"], "session/update", "{msg}");
        let update = &msg["params"]["update"];
        if update["sessionUpdate"] == "agent_message_chunk" {
            seen.push(update["content"]["text"].as_str().unwrap().to_string());
        }
    }
    let r = c.call(3, "session/cancel", json!({"sessionId": sid}));
    assert_eq!(r["result"], json!({}));
    let turn = prompt_rest(&mut c, 2, &sid, "k-1");
    let fin = turn.notification("chat_finish");
    assert_eq!(
        (&fin["reason"], &fin["statusCode"]),
        (&json!("cancelled"), &json!(200))
    );
    assert_eq!(fin["fullAnswer"], json!(seen.concat()));
    assert_eq!(turn.answer["result"], json!({"stopReason": "cancelled"}));
    assert!(sim.log().contains(&format!(
        "session/cancel sessionId={sid} reached 1 generation(s)"
    )));
    // The session takes the next prompt at once; the cancelled turn is in its history, as
    // a stopped chat/ask is.
    let turn = prompt(&mut c, 4, prompt_params(&sid, "k-2", "[[sim:turn]]"));
    assert_eq!(
        turn.text("agent_message_chunk"),
        format!("turn 2 of session {sid}")
    );
}

#[test]
fn forced_failures_finish_with_their_status_and_fail_the_prompt() {
    let sim = Sim::start("acp-fail", &[]);
    let mut c = sim.connect();
    let sid = new_session(&mut c, 1);
    let turn = prompt(&mut c, 2, prompt_params(&sid, "f-1", "[[sim:status=429]]"));
    let fin = turn.notification("chat_finish");
    assert_eq!(
        (&fin["statusCode"], &fin["reason"]),
        (&json!(429), &json!("error"))
    );
    assert_eq!(turn.kinds(), ["notification"], "nothing before the finish");
    let (code, message) = error(&turn.answer);
    assert_eq!(code, -32603);
    assert!(message.contains("statusCode 429"), "{message}");
    assert_eq!(turn.answer["error"]["data"]["statusCode"], 429);
    // An unknown model fails the turn as chat/ask does.
    let mut params = prompt_params(&sid, "f-2", "hi");
    params["_meta"]["ai-coding/model"] = json!("gpt-4");
    let turn = prompt(&mut c, 3, params);
    assert_eq!(turn.notification("chat_finish")["statusCode"], 500);
    // A content-filter finish is a refusal.
    let turn = prompt(&mut c, 4, prompt_params(&sid, "f-3", "[[sim:status=406]]"));
    assert_eq!(turn.answer["result"], json!({"stopReason": "refusal"}));
}

#[test]
fn native_tools_are_tool_calls_and_still_invoked() {
    let sim = Sim::start("acp-native", &[]);
    let mut c = sim.connect();
    let sid = new_session(&mut c, 1);
    let params = prompt_params(&sid, "n-1", "read it [[sim:native=read_file]]");
    let turn = prompt_with(&mut c, 2, params, |c, msg| {
        assert_eq!(msg["method"], "tool/invoke", "ACP asks no approval: {msg}");
        let p = &msg["params"];
        let result = json!({"toolCallId": p["toolCallId"], "name": "read_file",
            "success": true, "errorMessage": "", "result": {"content": "hello"}});
        c.send(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}));
    });
    assert_eq!(turn.requests.len(), 1);
    let id = turn.requests[0]["params"]["toolCallId"].clone();
    let tools: Vec<&Value> = turn
        .updates
        .iter()
        .filter(|u| u["toolCallId"] == id)
        .collect();
    assert_eq!(tools.len(), 3, "{:?}", turn.updates);
    assert_eq!(tools[0]["sessionUpdate"], "tool_call");
    assert_eq!(
        (&tools[0]["title"], &tools[0]["kind"]),
        (&json!("read_file"), &json!("read"))
    );
    assert_eq!(tools[0]["status"], "pending");
    assert_eq!(tools[0]["rawInput"], json!({"path": "README.md"}));
    assert_eq!(tools[0]["_meta"]["ai-coding/tool-name"], "read_file");
    let statuses: Vec<&Value> = tools[1..].iter().map(|u| &u["status"]).collect();
    assert_eq!(statuses, [&json!("in_progress"), &json!("completed")]);
    assert_eq!(tools[1]["sessionUpdate"], "tool_call_update");
    assert_eq!(tools[2]["rawOutput"]["result"], json!({"content": "hello"}));
    assert!(turn
        .text("agent_message_chunk")
        .ends_with("Tool read_file finished: success=true"));
    assert_eq!(turn.answer["result"], json!({"stopReason": "end_turn"}));
}

/// Reads the rest of the turn of a prompt already sent as request `id`.
fn prompt_rest(c: &mut Client, id: i64, sid: &str, rid: &str) -> Turn {
    let mut turn = Turn {
        updates: Vec::new(),
        requests: Vec::new(),
        answer: Value::Null,
    };
    loop {
        let msg = c.next();
        if msg["id"] == json!(id) && msg.get("method").is_none() {
            turn.answer = msg;
            return turn;
        }
        let p = &msg["params"];
        assert_eq!(
            (&p["sessionId"], &p["_meta"]["ai-coding/request-id"]),
            (&json!(sid), &json!(rid))
        );
        turn.updates.push(p["update"].clone());
    }
}
