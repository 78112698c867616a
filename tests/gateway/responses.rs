//! `/v1/responses` as an OpenAI Responses client sees it: the response object, the typed
//! stream events in order with their sequence numbers, function calls and their outputs,
//! reasoning items, `previous_response_id`, Codex's tools, and failures.

use serde_json::{json, Value};

use crate::harness::*;

fn body(input: Value) -> Value {
    json!({"model": "auto", "input": input})
}

fn streamed(mut b: Value) -> Value {
    b["stream"] = json!(true);
    b
}

/// The text of a response object's message items.
fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

fn items_of<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == kind)
        .collect()
}

/// Every event's data, checking what every Responses event must carry: `event:` equal to
/// its `type`, and sequence numbers counting up from 0.
fn events(s: &mut Stream) -> Vec<Value> {
    let evs: Vec<Value> = s
        .collect()
        .iter()
        .map(|e| {
            let v = e.json();
            assert_eq!(e.event.as_deref(), v["type"].as_str(), "{v}");
            v
        })
        .collect();
    for (i, v) in evs.iter().enumerate() {
        assert_eq!(v["sequence_number"], json!(i), "{v}");
    }
    evs
}

fn types(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|v| v["type"].as_str().unwrap()).collect()
}

/// The event types with runs of deltas collapsed to one.
fn shape(evs: &[Value]) -> Vec<&str> {
    let mut t = types(evs);
    t.dedup_by(|a, b| a == b && a.ends_with(".delta"));
    t
}

#[test]
fn a_text_answer_plain_and_streamed() {
    let gw = GatewayProcess::start();
    let q = "Say hello.";
    let r = gw.post(
        "/v1/responses",
        &json!({"model": "auto", "input": q, "instructions": "Be brief.", "metadata": {"k": "v"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "auto");
    assert_eq!(v["instructions"], "Be brief.");
    assert_eq!(v["metadata"], json!({"k": "v"}));
    let msg = items_of(&v, "message")[0];
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["status"], "completed");
    assert_eq!(msg["content"][0]["type"], "output_text");
    assert_eq!(output_text(&v), default_answer("Auto", q));
    let u = &v["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0 && u["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);

    let mut s = gw.post_stream(
        "/v1/responses",
        // Chunks 20 ms apart arrive as they come (deltas that wait together would be joined).
        &streamed(body(json!(format!(
            "{q} [[sim:chunks=8]] [[sim:delay=20]]"
        )))),
    );
    assert_eq!(s.status, 200);
    let evs = events(&mut s);
    assert_eq!(
        shape(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert!(
        types(&evs)
            .iter()
            .filter(|t| **t == "response.output_text.delta")
            .count()
            > 1,
        "the text arrived in pieces"
    );
    assert_eq!(evs[0]["response"]["status"], "in_progress");
    let deltas: String = evs
        .iter()
        .filter(|v| v["type"] == "response.output_text.delta")
        .map(|v| v["delta"].as_str().unwrap())
        .collect();
    let done = evs
        .iter()
        .find(|v| v["type"] == "response.output_item.done")
        .unwrap();
    assert_eq!(
        done["item"]["content"][0]["text"], deltas,
        "the item holds the whole text"
    );
    let completed = &evs.last().unwrap()["response"];
    assert_eq!(completed["id"], evs[0]["response"]["id"]);
    assert_eq!(completed["status"], "completed");
    assert_eq!(output_text(completed), deltas);
    assert!(completed["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn think_blocks_become_reasoning_items_with_summary_text() {
    let gw = GatewayProcess::start();
    let v = gw
        .post("/v1/responses", &body(json!("why? [[sim:think]]")))
        .json();
    let reasoning = items_of(&v, "reasoning");
    assert_eq!(reasoning.len(), 1, "{v}");
    assert_eq!(v["output"][0]["type"], "reasoning", "reasoning comes first");
    let summary = reasoning[0]["summary"][0]["text"].as_str().unwrap();
    assert!(summary.starts_with("Thinking about"), "{summary}");
    let text = output_text(&v);
    assert!(
        !text.contains("think>") && !text.contains("Thinking about"),
        "{text}"
    );
    assert!(
        v["usage"]["output_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let mut s = gw.post_stream(
        "/v1/responses",
        &streamed(body(json!("why? [[sim:think]]"))),
    );
    let evs = events(&mut s);
    assert_eq!(
        shape(&evs)[..8],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
        ]
    );
    assert_eq!(evs[2]["item"]["type"], "reasoning");
    let streamed_summary: String = evs
        .iter()
        .filter(|v| v["type"] == "response.reasoning_summary_text.delta")
        .map(|v| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed_summary, summary);
    // The message that follows is the next output item.
    let added: Vec<&Value> = evs
        .iter()
        .filter(|v| v["type"] == "response.output_item.added")
        .collect();
    assert_eq!(added[1]["item"]["type"], "message");
    assert_eq!(added[1]["output_index"], 1);
    assert_eq!(evs.last().unwrap()["type"], "response.completed");
}

const WEATHER: &str = r#"{"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}"#;

fn weather() -> Value {
    serde_json::from_str(WEATHER).unwrap()
}

#[test]
fn a_function_call_and_its_output_turn() {
    let gw = GatewayProcess::start();
    let input =
        json!([{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}]);
    let first = json!({"model": "auto", "input": input, "tools": [weather()],
        "tool_choice": {"type": "function", "name": "get_weather"}});
    let v = gw.post("/v1/responses", &first).json();
    assert_eq!(v["status"], "completed", "{v}");
    let calls = items_of(&v, "function_call");
    assert_eq!(calls.len(), 1, "{v}");
    let call = calls[0];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["status"], "completed");
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    let call_id = call["call_id"].as_str().unwrap();
    assert!(!call_id.is_empty());
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["location"].is_string(), "{args}");

    // Turn 2: the output echoed back, then the function's output.
    let mut next = input.as_array().unwrap().clone();
    next.extend(v["output"].as_array().unwrap().iter().cloned());
    next.push(json!({"type": "function_call_output", "call_id": call_id, "output": "sunny, 21C"}));
    let v2 = gw
        .post(
            "/v1/responses",
            &json!({"model": "auto", "input": next, "tools": [weather()]}),
        )
        .json();
    assert_eq!(output_text(&v2), "Tool result received: sunny, 21C", "{v2}");
    assert!(items_of(&v2, "function_call").is_empty());
    assert!(
        gw.sim_log(0).contains("isReply=true"),
        "the output turn continued the call's session"
    );

    // Streamed: the call as a function_call item with its argument events.
    let mut s = gw.post_stream("/v1/responses", &streamed(first));
    let evs = events(&mut s);
    let t = shape(&evs);
    let at = t
        .iter()
        .position(|x| *x == "response.function_call_arguments.delta")
        .unwrap_or_else(|| panic!("{t:?}"));
    assert_eq!(t[at - 1], "response.output_item.added");
    assert_eq!(t[at + 1], "response.function_call_arguments.done");
    assert_eq!(t[at + 2], "response.output_item.done");
    assert_eq!(*t.last().unwrap(), "response.completed");
    let added = &evs
        .iter()
        .find(|v| v["type"] == "response.output_item.added" && v["item"]["type"] == "function_call")
        .unwrap()["item"];
    assert_eq!(added["arguments"], "");
    assert_eq!(added["status"], "in_progress");
    let args_done = evs
        .iter()
        .find(|v| v["type"] == "response.function_call_arguments.done")
        .unwrap();
    let item_done = evs
        .iter()
        .rfind(|v| v["type"] == "response.output_item.done")
        .unwrap();
    assert_eq!(item_done["item"]["type"], "function_call");
    assert_eq!(item_done["item"]["arguments"], args_done["arguments"]);
    assert_eq!(item_done["item"]["call_id"], added["call_id"]);
    let completed = &evs.last().unwrap()["response"];
    assert_eq!(items_of(completed, "function_call").len(), 1);

    // The output turn, streamed.
    let mut s = gw.post_stream(
        "/v1/responses",
        &streamed(json!({"model": "auto", "input": next, "tools": [weather()]})),
    );
    let evs = events(&mut s);
    assert_eq!(
        output_text(&evs.last().unwrap()["response"]),
        "Tool result received: sunny, 21C"
    );
}

#[test]
fn parallel_tool_calls_false_keeps_the_first_call() {
    let gw = GatewayProcess::start();
    let ask = |parallel: bool| {
        let v = gw
            .post(
                "/v1/responses",
                &json!({"model": "auto", "input": "Paris and Rome [[sim:tool=get_weather]] [[sim:calls=2]]",
                    "tools": [weather()], "parallel_tool_calls": parallel}),
            )
            .json();
        assert_eq!(v["parallel_tool_calls"], parallel);
        items_of(&v, "function_call").len()
    };
    assert_eq!(ask(true), 2);
    assert_eq!(ask(false), 1);
}

#[test]
fn previous_response_id_continues_the_same_lingma_session() {
    let gw = GatewayProcess::start_with(Options {
        key: Some("sk-r1,sk-r2".into()),
        ..Options::default()
    });
    let post = |key: &str, b: &Value| gw.post_as(key, "/v1/responses", b);
    let r1 = post(
        "sk-r1",
        &json!({"model": "auto", "instructions": "Be terse.", "input": "first [[sim:turn]]"}),
    )
    .json();
    let (n1, session) = turn(&output_text(&r1));
    assert_eq!(n1, 1);
    let id1 = r1["id"].as_str().unwrap();
    let asks = gw.sim_asks(0);
    let r2 = post(
        "sk-r1",
        &json!({"model": "auto", "instructions": "Be terse.", "previous_response_id": id1, "input": "second [[sim:turn]]"}),
    )
    .json();
    assert_eq!(
        turn(&output_text(&r2)),
        (2, session.clone()),
        "same session, turn 2"
    );
    assert_eq!(r2["previous_response_id"], id1);
    assert_eq!(gw.sim_asks(0), asks + 1);
    assert!(gw
        .sim_log(0)
        .contains(&format!("sessionId={session} isReply=true")));
    // Only the new input reached Lingma.
    let r3 = post(
        "sk-r1",
        &json!({"model": "auto", "instructions": "Be terse.", "previous_response_id": r2["id"], "input": [{"role": "user", "content": "third [[sim:echo]]"}], "stream": true}),
    );
    let sse = String::from_utf8(r3.body).unwrap();
    assert!(sse.contains("event: response.completed"), "{sse}");
    assert!(sse.contains(r#""text":"third [[sim:echo]]""#), "{sse}");

    // A later response can still continue an earlier one: a branch, so a new session.
    let branch = post(
        "sk-r1",
        &json!({"model": "auto", "instructions": "Be terse.", "previous_response_id": id1, "input": "other [[sim:turn]]"}),
    )
    .json();
    assert_eq!(branch["status"], "completed", "{branch}");

    // Unknown, another key's, and unstored ids are a 400 naming the parameter and the id.
    for (key, id) in [("sk-r1", "resp_unknown"), ("sk-r2", id1)] {
        let r = post(
            key,
            &json!({"model": "auto", "previous_response_id": id, "input": "x"}),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["param"], "previous_response_id");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains(id), "{e}");
    }
    // A stored response can be retrieved and deleted, by its own API key only.
    let path = format!("/v1/responses/{id1}");
    let stored = |method: &str, key: &str| {
        request(
            &gw.addr,
            method,
            &path,
            &[("Authorization", &format!("Bearer {key}"))],
            None,
        )
    };
    let got = stored("GET", "sk-r1");
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), r1, "the same object as when it was made");
    let other = stored("GET", "sk-r2");
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"]["type"], "invalid_request_error");
    let deleted = stored("DELETE", "sk-r1");
    assert_eq!(
        deleted.json(),
        json!({"id": id1, "object": "response.deleted", "deleted": true})
    );
    let r = post(
        "sk-r1",
        &json!({"model": "auto", "previous_response_id": id1, "input": "x"}),
    );
    assert_eq!(r.status, 400, "a deleted response cannot be continued");
    assert_eq!(request(&gw.addr, "GET", &path, &[], None).status, 401);

    let unstored = post(
        "sk-r1",
        &json!({"model": "auto", "store": false, "input": "x"}),
    )
    .json();
    assert_eq!(unstored["store"], false);
    let r = post(
        "sk-r1",
        &json!({"model": "auto", "previous_response_id": unstored["id"], "input": "y"}),
    );
    assert_eq!(r.status, 400);
}

/// Codex's way: `store: false`, the whole conversation as input every turn.
#[test]
fn a_whole_input_conversation_continues_its_session_and_an_edit_misses() {
    let gw = GatewayProcess::start();
    let system = json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]});
    let user1 = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first [[sim:turn]]"}]});
    let ask = |input: Value| {
        gw.post(
            "/v1/responses",
            &json!({"model": "auto", "store": false, "input": input, "include": ["reasoning.encrypted_content"], "reasoning": {"summary": "auto"}}),
        )
        .json()
    };
    let r1 = ask(json!([system, user1]));
    let (_, session) = turn(&output_text(&r1));
    let user2 = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second [[sim:turn]]"}]});
    let mut input = vec![system.clone(), user1.clone()];
    // Codex echoes every output item, reasoning included (with content it cannot read).
    input.push(json!({"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": "opaque", "content": null}));
    input.extend(r1["output"].as_array().unwrap().iter().cloned());
    input.push(user2.clone());
    let r2 = ask(Value::Array(input.clone()));
    assert_eq!(turn(&output_text(&r2)), (2, session.clone()));
    let edited = json!([system, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first, edited [[sim:turn]]"}]}, r1["output"][0], user2]);
    let (n, s) = turn(&output_text(&ask(edited)));
    assert_eq!(n, 1, "an edited history starts a new session");
    assert_ne!(s, session);
}

#[test]
fn codex_namespace_and_custom_tools_come_back_in_their_own_shapes() {
    let gw = GatewayProcess::start();
    let tools = json!([
        {"type": "function", "name": "exec_command", "description": "Runs a command.", "strict": false,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
            {"type": "function", "name": "spawn_agent", "description": "Starts an agent.",
             "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}]},
        {"type": "custom", "name": "apply_patch", "description": "Applies a patch.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
        {"type": "web_search", "external_web_access": false},
    ]);
    let ask = |text: &str| {
        gw.post(
            "/v1/responses",
            &json!({"model": "auto", "input": text, "tools": tools}),
        )
        .json()
    };
    let v = ask("[[sim:tool=exec_command]] [[sim:cmd=echo hi]]");
    let call = items_of(&v, "function_call")[0];
    assert_eq!(call["name"], "exec_command");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"cmd": "echo hi"})
    );
    assert!(call.get("namespace").is_none());

    let v = ask("[[sim:tool=multi_agent_v1__spawn_agent]]");
    let call = items_of(&v, "function_call")[0];
    assert_eq!(call["name"], "spawn_agent", "{v}");
    assert_eq!(call["namespace"], "multi_agent_v1");

    let v = ask("[[sim:tool=apply_patch]]");
    let calls = items_of(&v, "custom_tool_call");
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["name"], "apply_patch");
    assert!(
        calls[0]["input"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert!(calls[0]["id"].as_str().unwrap().starts_with("ctc_"));
    gw.wait_log("a hosted tool Lingma cannot run");

    // The custom call's output turn, streamed; the namespaced call echoed back.
    let mut input = vec![json!({"role": "user", "content": "[[sim:tool=apply_patch]]"})];
    input.extend(v["output"].as_array().unwrap().iter().cloned());
    input.push(json!({"type": "custom_tool_call_output", "call_id": calls[0]["call_id"], "output": "patched OK"}));
    let mut s = gw.post_stream(
        "/v1/responses",
        &streamed(json!({"model": "auto", "input": input, "tools": tools})),
    );
    let evs = events(&mut s);
    assert_eq!(
        output_text(&evs.last().unwrap()["response"]),
        "Tool result received: patched OK"
    );

    let mut s = gw.post_stream(
        "/v1/responses",
        &streamed(json!({"model": "auto", "input": "[[sim:tool=apply_patch]]", "tools": tools})),
    );
    let t = types(&events(&mut s)).join(" ");
    assert!(t.contains("response.custom_tool_call_input.delta response.custom_tool_call_input.done response.output_item.done"), "{t}");
}

#[test]
fn a_failure_mid_stream_ends_with_response_failed_and_the_next_request_works() {
    let gw = GatewayProcess::start();
    let mut s = gw.post_stream(
        "/v1/responses",
        &streamed(body(json!("[[sim:chunks=20]] [[sim:crash=4]]"))),
    );
    assert_eq!(s.status, 200);
    let evs = events(&mut s);
    assert_eq!(evs[0]["type"], "response.created");
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{evs:?}");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert!(last["response"]["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(!types(&evs).contains(&"response.completed"));
    assert!(
        types(&evs).contains(&"response.output_text.delta"),
        "text before the crash arrived"
    );
    gw.wait_ready(1);
    let q = "Still there?";
    wait_for("an answer after the crash", || {
        let r = gw.post("/v1/responses", &body(json!(q)));
        r.status == 200 && output_text(&r.json()) == default_answer("Auto", q)
    });

    // A failure before any output is a plain HTTP error in OpenAI's shape.
    let mut s = gw.post_stream(
        "/v1/responses",
        &streamed(body(json!("[[sim:status=429]]"))),
    );
    assert_eq!(s.status, 429);
    assert!(s.header("retry-after").is_some());
    assert_eq!(s.body_json()["error"]["type"], "rate_limit_error");
    assert!(s.collect().is_empty());
}

#[test]
fn max_output_tokens_ends_incomplete() {
    let gw = GatewayProcess::start();
    let b = json!({"model": "auto", "input": "long [[sim:chunks=40]]", "max_output_tokens": 3});
    let v = gw.post("/v1/responses", &b).json();
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["output"][0]["status"], "incomplete");
    let mut s = gw.post_stream("/v1/responses", &streamed(b));
    let evs = events(&mut s);
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[test]
fn bad_requests_get_openai_errors_naming_the_parameter() {
    let gw = GatewayProcess::start();
    let cases = [
        (json!([]), "body"),
        (json!({"input": "x"}), "model"),
        (json!({"model": "auto"}), "input"),
        (json!({"model": "auto", "input": 5}), "input"),
        (json!({"model": "auto", "input": [5]}), "input[0]"),
        (
            json!({"model": "auto", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "auto", "input": [{"type": "teleport"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "auto", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0]",
        ),
        (
            json!({"model": "auto", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "auto", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:x"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "auto", "input": "x", "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "auto", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "auto", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "auto", "input": "x", "tools": "all"}),
            "tools",
        ),
        (
            json!({"model": "auto", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "auto", "input": "x", "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"model": "auto", "input": "x", "tools": [weather()], "tool_choice": {"type": "function", "name": "nope"}}),
            "tool_choice",
        ),
        (
            json!({"model": "auto", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
            "tool_choice",
        ),
        (
            json!({"model": "auto", "input": "x", "metadata": {"k": 1}}),
            "metadata.k",
        ),
        (
            json!({"model": "auto", "input": [{"role": "user", "content": ""}]}),
            "input",
        ),
    ];
    for (b, param) in cases {
        let r = gw.post("/v1/responses", &b);
        assert_eq!(r.status, 400, "{b}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{b}");
        assert_eq!(e["param"], param, "{b}: {e}");
    }
    let r = gw.post(
        "/v1/responses",
        &json!({"model": "no-such-model", "input": "x"}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let r = request(&gw.addr, "GET", "/v1/responses", &[], None);
    assert_eq!(r.status, 405);
    let r = request(&gw.addr, "PUT", "/v1/responses/resp_1", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, DELETE"));
    let r = request(&gw.addr, "GET", "/v1/responses/resp_1", &[], None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}
