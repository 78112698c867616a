//! Tools by prompt emulation on OpenAI chat completions (calls, results, forced choices, the
//! tolerant parser, the allowlist), Lingma's own tool events on both protocols, and
//! reasoning next to tools.

use serde_json::{json, Value};

use crate::harness::*;

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "City"}},
            "required": ["location"]
        }
    }})
}

fn bash_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "Bash",
        "description": "Runs a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"]
        }
    }})
}

/// A chat body with the weather tool declared.
fn tool_body(text: &str) -> Value {
    let mut b = chat_body("auto", text);
    b["tools"] = json!([weather_tool()]);
    b
}

pub(crate) fn stream_of(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// The non-stream answer's first choice, after checking the status.
pub(crate) fn choice(gw: &GatewayProcess, body: &Value) -> Value {
    let r = gw.post("/v1/chat/completions", body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["choices"][0].clone()
}

/// The chunks of a stream (not `[DONE]`), after checking it ends with `[DONE]`.
pub(crate) fn stream_chunks(gw: &GatewayProcess, body: &Value) -> Vec<Value> {
    let mut s = gw.post_stream("/v1/chat/completions", body);
    assert_eq!(s.status, 200);
    let events = s.collect();
    assert_eq!(
        events.last().map(|e| e.data.as_str()),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect()
}

/// The `tool_calls` entries of a stream's deltas, in order.
fn tool_deltas(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().cloned())
        .flatten()
        .collect()
}

fn finish_reasons(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(String::from))
        .collect()
}

fn arguments(call: &Value) -> Value {
    let args = call["function"]["arguments"]
        .as_str()
        .unwrap_or_else(|| panic!("arguments are a JSON string: {call}"));
    serde_json::from_str(args).unwrap_or_else(|e| panic!("arguments not JSON ({e}): {args}"))
}

pub(crate) fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn tool_call_non_stream() {
    let gw = GatewayProcess::start();
    let c = choice(
        &gw,
        &tool_body("Weather in Paris? [[sim:tool=get_weather]]"),
    );
    assert_eq!(c["finish_reason"], "tool_calls", "{c}");
    let msg = &c["message"];
    assert_eq!(
        msg["content"].as_str().unwrap().trim_end(),
        "I'll call get_weather now."
    );
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{c}");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"), "{c}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(arguments(&calls[0]), json!({"location": "sim-location"}));
}

#[test]
fn tool_call_stream() {
    let gw = GatewayProcess::start();
    let chunks = stream_chunks(
        &gw,
        &stream_of(tool_body("Weather in Paris? [[sim:tool=get_weather]]")),
    );
    assert_eq!(text_of(&chunks).trim_end(), "I'll call get_weather now.");
    let deltas = tool_deltas(&chunks);
    assert!(!deltas.is_empty(), "{chunks:?}");
    let first = &deltas[0];
    assert_eq!(first["index"], 0);
    assert!(
        first["id"].as_str().unwrap().starts_with("call_"),
        "{first}"
    );
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "get_weather");
    assert_eq!(first["function"]["arguments"], "");
    assert!(deltas.iter().all(|d| d["index"] == 0), "{deltas:?}");
    let args: String = deltas
        .iter()
        .map(|d| d["function"]["arguments"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "sim-location"})
    );
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[test]
fn tool_results_are_answered() {
    let gw = GatewayProcess::start();
    let body = json!({"model": "auto", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}
        }]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}
    ]});
    let c = choice(&gw, &body);
    assert_eq!(c["finish_reason"], "stop", "{c}");
    assert!(c["message"]["tool_calls"].is_null(), "{c}");
    let text = c["message"]["content"].as_str().unwrap();
    assert!(text.contains("Tool result received: sunny, 21C"), "{text}");
}

#[test]
fn forced_tool_choice_calls_and_retries_once() {
    let gw = GatewayProcess::start();
    let forced = |text: &str, choice: Value| {
        let mut b = tool_body(text);
        b["tools"] = json!([weather_tool(), bash_tool()]);
        b["tool_choice"] = choice;
        b
    };
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    for tool_choice in [named.clone(), json!("required")] {
        let c = choice(&gw, &forced("How is the weather?", tool_choice.clone()));
        assert_eq!(c["finish_reason"], "tool_calls", "{tool_choice}: {c}");
        let call = &c["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{tool_choice}");
        assert_eq!(arguments(call), json!({"location": "sim-location"}));
    }
    // The named tool wins over what the question asks for.
    let c = choice(&gw, &forced("Run it [[sim:tool=Bash]]", named.clone()));
    assert_eq!(
        c["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );

    // A lazy model answers without a call first: the gateway asks once more.
    for tool_choice in [named, json!("required")] {
        let before = gw.sim_asks(0);
        let c = choice(
            &gw,
            &forced("How is the weather? [[sim:lazy]]", tool_choice.clone()),
        );
        assert_eq!(gw.sim_asks(0) - before, 2, "{tool_choice}");
        assert_eq!(c["finish_reason"], "tool_calls", "{tool_choice}: {c}");
        assert_eq!(
            c["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        let text = c["message"]["content"].as_str().unwrap_or("");
        assert!(!text.contains("Hello from the Lingma simulator"), "{c}");
    }
    // Without a forced choice a lazy answer is final: one ask, plain text.
    let before = gw.sim_asks(0);
    let c = choice(
        &gw,
        &tool_body("How is the weather? [[sim:lazy]] [[sim:tool=get_weather]]"),
    );
    assert_eq!(gw.sim_asks(0) - before, 1);
    assert_eq!(c["finish_reason"], "stop", "{c}");
}

#[test]
fn tolerant_parser_accepts_common_call_formats_only_when_valid() {
    let gw = GatewayProcess::start();
    for style in ["action", "fence", "qwen", "bare", "unclosed"] {
        let q = format!("Weather? [[sim:tool=get_weather]] [[sim:style={style}]]");
        let c = choice(&gw, &tool_body(&q));
        assert_eq!(c["finish_reason"], "tool_calls", "style={style}: {c}");
        let calls = c["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "style={style}: {c}");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(arguments(&calls[0]), json!({"location": "sim-location"}));
        let text = c["message"]["content"].as_str().unwrap_or("");
        assert!(
            !text.contains('{') && !text.contains("tool_call"),
            "style={style}: the call stays out of the text: {text:?}"
        );
        // Streamed the same.
        let chunks = stream_chunks(&gw, &stream_of(tool_body(&q)));
        assert_eq!(finish_reasons(&chunks), ["tool_calls"], "style={style}");
        assert_eq!(tool_deltas(&chunks)[0]["function"]["name"], "get_weather");
    }
    for (style, block) in [
        ("badname", "\"tool\": \"GET_WEATHER\""),
        ("noargs", "\"parameters\": {}"),
    ] {
        let q = format!("Weather? [[sim:tool=get_weather]] [[sim:style={style}]]");
        let c = choice(&gw, &tool_body(&q));
        assert_eq!(c["finish_reason"], "stop", "style={style}: {c}");
        assert!(c["message"]["tool_calls"].is_null(), "style={style}: {c}");
        let text = c["message"]["content"].as_str().unwrap();
        assert!(
            text.contains("```json action") && text.contains(block),
            "style={style}: {text}"
        );
        let chunks = stream_chunks(&gw, &stream_of(tool_body(&q)));
        assert_eq!(finish_reasons(&chunks), ["stop"], "style={style}");
        assert!(tool_deltas(&chunks).is_empty());
        assert_eq!(text_of(&chunks), text, "style={style}");
    }
}

#[test]
fn several_calls_in_one_answer() {
    let gw = GatewayProcess::start();
    let q = "Two cities [[sim:tool=get_weather]] [[sim:calls=2]]";
    let c = choice(&gw, &tool_body(q));
    assert_eq!(c["finish_reason"], "tool_calls");
    let calls = c["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{c}");
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    for call in calls {
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(arguments(call), json!({"location": "sim-location"}));
    }

    let chunks = stream_chunks(&gw, &stream_of(tool_body(q)));
    let deltas = tool_deltas(&chunks);
    let heads: Vec<&Value> = deltas.iter().filter(|d| d["id"].is_string()).collect();
    assert_eq!(heads.len(), 2, "{deltas:?}");
    assert_eq!(
        (heads[0]["index"].as_u64(), heads[1]["index"].as_u64()),
        (Some(0), Some(1))
    );
    assert_ne!(heads[0]["id"], heads[1]["id"]);
    for i in 0..2u64 {
        let args: String = deltas
            .iter()
            .filter(|d| d["index"].as_u64() == Some(i))
            .map(|d| d["function"]["arguments"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"location": "sim-location"}),
            "call {i}"
        );
    }
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[test]
fn tool_choice_none_answers_in_text() {
    let gw = GatewayProcess::start();
    let q = "Weather? [[sim:tool=get_weather]]";
    let mut body = tool_body(q);
    body["tool_choice"] = json!("none");
    let c = choice(&gw, &body);
    assert_eq!(c["finish_reason"], "stop", "{c}");
    assert!(c["message"]["tool_calls"].is_null(), "{c}");
    assert_eq!(c["message"]["content"], default_answer("Auto", q));
}

#[test]
fn the_tool_contract_reaches_the_prompt_and_the_allowlist_filters_it() {
    let gw = GatewayProcess::start();
    let c = choice(&gw, &tool_body("Show me [[sim:echo]]"));
    let prompt = c["message"]["content"].as_str().unwrap();
    assert!(prompt.contains("[tools]\n"), "{prompt}");
    assert!(prompt.contains("## Tool: get_weather"), "{prompt}");
    assert!(prompt.contains("Tool choice: auto"), "{prompt}");
    assert!(prompt.contains("[user]\nShow me [[sim:echo]]"), "{prompt}");

    let gw = GatewayProcess::start_with(Options::default().env("tool_allowlist", "get_weather"));
    let mut body = tool_body("Show me [[sim:echo]]");
    body["tools"] = json!([weather_tool(), bash_tool()]);
    let c = choice(&gw, &body);
    let prompt = c["message"]["content"].as_str().unwrap();
    assert!(prompt.contains("## Tool: get_weather"), "{prompt}");
    assert!(!prompt.contains("## Tool: Bash"), "{prompt}");

    body["tool_choice"] = json!({"type": "function", "function": {"name": "Bash"}});
    let r = gw.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "tool_choice", "{e}");
    assert!(e["message"].as_str().unwrap().contains("Bash"), "{e}");
}

#[test]
fn reasoning_streams_apart_from_content_and_calls() {
    let gw = GatewayProcess::start();
    let q = "Think it over [[sim:think]]";
    let chunks = stream_chunks(&gw, &stream_of(chat_body("auto", q)));
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(reasoning.contains(q), "{reasoning}");
    let text = text_of(&chunks);
    assert!(
        !text.contains("````") && !text.contains("think::"),
        "{text}"
    );
    assert_eq!(text, default_answer("Auto", q));

    // A think block in front of a call: reasoning, the narration, then the call.
    let chunks = stream_chunks(
        &gw,
        &stream_of(tool_body("Weather? [[sim:think]] [[sim:tool=get_weather]]")),
    );
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(!reasoning.is_empty());
    let text = text_of(&chunks);
    assert_eq!(text.trim_end(), "I'll call get_weather now.");
    assert_eq!(tool_deltas(&chunks)[0]["function"]["name"], "get_weather");
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}
