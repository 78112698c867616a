//! Structured outputs: a JSON answer format asked for in any of the three APIs reaches the
//! model as an instruction, and the JSON comes back bare (the code fence models wrap it in
//! is taken off), plain and streamed.

use serde_json::{json, Value};

use crate::harness::*;

fn schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"], "additionalProperties": false})
}

/// What the simulator answers for `schema()`: a value for every required property.
fn expected() -> Value {
    json!({"city": "sim-city", "days": 1})
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not bare JSON ({e}): {text:?}"))
}

#[test]
fn chat_completions_response_format() {
    let gw = GatewayProcess::start();
    let mut body = chat_body("auto", "Plan a trip.");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "trip", "strict": true, "schema": schema()}});
    let v = gw.post("/v1/chat/completions", &body).json();
    assert_eq!(
        parse(v["choices"][0]["message"]["content"].as_str().unwrap()),
        expected()
    );

    body["stream"] = json!(true);
    let mut s = gw.post_stream("/v1/chat/completions", &body);
    assert_eq!(parse(&chat_stream_text(&s.collect())), expected());

    // The instruction, with the schema, is what the model was asked (echoed back).
    let mut body = chat_body("auto", "Plan a trip. [[sim:echo]]");
    body["response_format"] = json!({"type": "json_object"});
    let v = gw.post("/v1/chat/completions", &body).json();
    let question = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        question.contains("Answer with one JSON object and nothing else"),
        "{question}"
    );

    for (format, param) in [
        (json!("json"), "response_format"),
        (json!({"type": "yaml"}), "response_format.type"),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x"}}),
            "response_format.schema",
        ),
    ] {
        let mut body = chat_body("auto", "x");
        body["response_format"] = format;
        let r = gw.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["param"], param);
    }
    let mut body = chat_body("auto", "Say hi.");
    body["response_format"] = json!({"type": "text"});
    let v = gw.post("/v1/chat/completions", &body).json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        default_answer("Auto", "Say hi.")
    );
}

#[test]
fn responses_text_format() {
    let gw = GatewayProcess::start();
    let body = json!({"model": "auto", "input": "Plan a trip.", "stream": true,
        "text": {"format": {"type": "json_schema", "name": "trip", "schema": schema(), "strict": true}}});
    let mut s = gw.post_stream("/v1/responses", &body);
    let last = s.collect().last().unwrap().json();
    assert_eq!(last["type"], "response.completed");
    let text = last["response"]["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(parse(&text), expected());
    assert_eq!(
        last["response"]["text"]["format"]["name"], "trip",
        "the format is echoed"
    );

    let v = gw
        .post(
            "/v1/responses",
            &json!({"model": "auto", "input": "Hi.", "text": {"format": {"type": "json_object"}}}),
        )
        .json();
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(parse(text)["answer"], default_answer("Auto", "Hi."));
}

#[test]
fn anthropic_output_format() {
    let gw = GatewayProcess::start();
    let mut body = messages_body("auto", "Plan a trip.");
    body["output_format"] = json!({"type": "json_schema", "schema": schema()});
    let v = gw.post("/v1/messages", &body).json();
    assert_eq!(parse(v["content"][0]["text"].as_str().unwrap()), expected());
}
