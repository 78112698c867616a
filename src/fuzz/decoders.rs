//! Properties of the request decoders (`openai::parse_chat`, `responses::parse_responses`,
//! `anthropic::parse_messages`): random JSON and random mutations of valid bodies never
//! panic, and give either a request or a 400 that names the parameter and says what is
//! wrong. What the route does next with a body and a decoded request without Lingma (the
//! debug ring's redaction, the prompt, the session key, the folded answer, the error body)
//! must not panic either.

use serde_json::{json, Value};

use super::{check, mutate, Json, Rng};
use crate::error::{ErrorKind, GatewayError};
use crate::http::api::anthropic::{decode as anthropic, encode::MessagesEncoder};
use crate::http::api::encoder::{fold, Encoder, Form};
use crate::http::api::errors;
use crate::http::api::openai::{decode as openai, encode::ChunkEncoder};
use crate::http::api::responses::{decode as responses, encode::ResponsesEncoder};
use crate::model::{ChatRequest, Event, StopReason, ToolCall, Usage};

/// What a decoder's answer must look like, and the pure steps the route takes next. A
/// request comes back to be folded; `None` is a well-formed refusal.
fn judge<O>(
    body: &Value,
    decoded: Result<(ChatRequest, O), GatewayError>,
) -> Result<Option<(ChatRequest, O)>, String> {
    let mut redacted = body.clone();
    crate::redact::redact_debug(&mut redacted, &["sk-known".to_string()]);
    let e = match decoded {
        Ok((req, opts)) => {
            let _ = crate::prompt::question(&req);
            let mut conversation = crate::sessions::Conversation::new("scope", &req);
            for m in &req.messages {
                conversation.push(m);
            }
            let _ = conversation.key();
            return Ok(Some((req, opts)));
        }
        Err(e) => e,
    };
    if e.kind != ErrorKind::InvalidRequest {
        return Err(format!("a {:?} error, not InvalidRequest: {e:?}", e.kind));
    }
    if e.param.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return Err(format!("the error names no parameter: {e:?}"));
    }
    if e.message.trim().is_empty() {
        return Err(format!("the error has no message: {e:?}"));
    }
    let o = errors::openai_body(&e);
    let a = errors::anthropic_body(&e);
    if o["error"]["message"] != e.message.as_str()
        || o["error"]["type"] != "invalid_request_error"
        || a["error"]["type"] != "invalid_request_error"
    {
        return Err(format!("error bodies {o} / {a}"));
    }
    Ok(None)
}

/// An answer in events: reasoning, some text, a call of the first declared tool, the finish.
fn answer(req: &ChatRequest) -> Vec<Event> {
    let mut events = vec![Event::Reasoning("hm".into()), Event::Text("hi".into())];
    if let Some(t) = req.tools.first() {
        events.push(Event::ToolCall(ToolCall {
            id: "call_1".into(),
            name: t.name.clone(),
            arguments: json!({"a": 1}),
        }));
    }
    events.push(Event::Finish {
        reason: StopReason::EndTurn,
        usage: Usage {
            input_tokens: 1,
            output_tokens: 1,
        },
    });
    events
}

/// The chat decoder on `body`, then the answer folded and streamed as the route would.
fn chat(body: &Value) -> Result<(), String> {
    let Some((req, opts)) = judge(body, openai::parse_chat(body))? else {
        return Ok(());
    };
    let mut body = ChunkEncoder::new("id".into(), 0, req.model.clone(), &opts, Form::Body);
    let folded = fold(&mut body, &answer(&req));
    let mut enc = ChunkEncoder::new("id".into(), 0, req.model.clone(), &opts, Form::Stream);
    let frames: usize = answer(&req).iter().map(|ev| enc.encode(ev).len()).sum();
    if folded["object"] != "chat.completion" || frames == 0 {
        return Err(format!("folded {folded}, {frames} frames"));
    }
    Ok(())
}

fn responses(body: &Value) -> Result<(), String> {
    let Some((req, opts)) = judge(body, responses::parse_responses(body))? else {
        return Ok(());
    };
    let mut enc = ResponsesEncoder::new("resp_1".into(), 0, req.model.clone(), &opts, Form::Body);
    let folded = fold(&mut enc, &answer(&req));
    if folded["object"] != "response" || folded["status"] != "completed" {
        return Err(format!("folded {folded}"));
    }
    Ok(())
}

fn messages(body: &Value, for_count: bool) -> Result<(), String> {
    let Some((req, opts)) = judge(body, anthropic::parse_messages(body, for_count))? else {
        return Ok(());
    };
    let _ = anthropic::count_tokens(&crate::prompt::question(&req), &opts);
    let mut enc = MessagesEncoder::new("msg_1".into(), req.model.clone(), 1, &opts, Form::Body);
    let folded = fold(&mut enc, &answer(&req));
    if folded["type"] != "message" {
        return Err(format!("folded {folded}"));
    }
    Ok(())
}

const TOOL_SCHEMA: &str =
    r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;

fn schema() -> Value {
    serde_json::from_str(TOOL_SCHEMA).expect("a schema")
}

/// Valid chat bodies that between them use every field the decoder reads.
fn chat_bodies() -> Vec<Value> {
    vec![
        json!({"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}),
        json!({
            "model": "auto", "stream": true, "stream_options": {"include_usage": true},
            "stop": ["ZZZ"], "n": 1, "max_tokens": 100, "max_completion_tokens": 90,
            "temperature": 0.5, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0,
            "user": "u", "prompt_cache_key": "k", "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema()}},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Really."}]},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}],
                    "function_call": {"name": "get_weather", "arguments": "{}"}},
                {"role": "function", "name": "get_weather", "content": "rain"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": schema()}}],
            "functions": [{"name": "legacy", "parameters": schema()}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }),
        json!({"model": "auto", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required",
            "response_format": {"type": "json_object"}, "stop": "END"}),
    ]
}

fn responses_bodies() -> Vec<Value> {
    vec![
        json!({"model": "auto", "input": "Hi"}),
        json!({
            "model": "auto", "instructions": "Be brief.", "store": false, "stream": true,
            "max_output_tokens": 100, "temperature": 0.5, "top_p": 1, "user": "u",
            "prompt_cache_key": "k", "safety_identifier": "s", "metadata": {"k": "v"},
            "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"],
            "truncation": "auto", "parallel_tool_calls": false, "background": false,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": schema()}},
            "input": [
                {"type": "message", "role": "developer", "content": "Really."},
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "reasoning", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me see."}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "custom_tool_call", "call_id": "call_2", "name": "patch", "input": "*** Begin"},
                {"type": "function_call", "call_id": "call_3", "namespace": "ns", "name": "inner", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
                {"type": "function_call_output", "call_id": "call_3", "output": "done"},
                {"type": "web_search_call", "id": "ws_1"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [
                {"type": "function", "name": "get_weather", "description": "d", "parameters": schema()},
                {"type": "custom", "name": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
                {"type": "namespace", "name": "ns", "description": "group", "tools": [{"type": "function", "name": "inner"}]},
                {"type": "web_search"}
            ],
            "tool_choice": {"type": "function", "name": "get_weather"}
        }),
        json!({"model": "auto", "input": "x", "tools": [{"type": "function", "name": "f"}],
            "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": []}}),
    ]
}

fn messages_bodies() -> Vec<Value> {
    vec![
        json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
        json!({
            "model": "auto", "max_tokens": 100, "stream": true, "stop_sequences": ["ZZZ"],
            "temperature": 0.5, "top_p": 1, "top_k": 5, "metadata": {"user_id": "u"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "output_format": {"type": "json_schema", "schema": schema()},
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "system", "content": "Note."},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "redacted_thinking", "data": "xx"},
                    {"type": "text", "text": "Let me see."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": false,
                        "content": [{"type": "text", "text": "sunny"}, {"type": "image", "source": {}}]},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "tools": [
                {"name": "get_weather", "description": "d", "input_schema": schema()},
                {"type": "web_search_20250305", "name": "web_search"}
            ],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}
        }),
        // A count_tokens body: no max_tokens (its messages are required like /v1/messages').
        json!({"model": "auto", "system": "s", "messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "any"}}),
    ]
}

/// Random bodies: mostly objects of fields the decoders read, sometimes anything at all.
fn random_body(rng: &mut Rng) -> Json {
    if rng.one_in(10) {
        return Json(super::value(rng, 4));
    }
    let mut o = super::object(rng, 4);
    if rng.one_in(2) {
        o.insert("model".into(), json!("auto"));
    }
    Json(Value::Object(o))
}

fn mutated(rng: &mut Rng, valid: &[Value]) -> Json {
    let body = rng.pick(valid);
    Json(mutate(rng, body))
}

#[test]
fn the_valid_bodies_decode() {
    for b in chat_bodies() {
        openai::parse_chat(&b).unwrap_or_else(|e| panic!("{b}: {e:?}"));
        chat(&b).unwrap();
    }
    for b in responses_bodies() {
        responses::parse_responses(&b).unwrap_or_else(|e| panic!("{b}: {e:?}"));
        responses(&b).unwrap();
    }
    let bodies = messages_bodies();
    for b in &bodies[..2] {
        anthropic::parse_messages(b, false).unwrap_or_else(|e| panic!("{b}: {e:?}"));
        messages(b, false).unwrap();
    }
    for b in &bodies {
        anthropic::parse_messages(b, true).unwrap_or_else(|e| panic!("{b}: {e:?}"));
    }
}

#[test]
fn chat_decoder_takes_any_json() {
    check("chat_decoder_takes_any_json", 400, random_body, |b| {
        chat(&b.0)
    });
}

#[test]
fn chat_decoder_takes_mutated_bodies() {
    let valid = chat_bodies();
    check(
        "chat_decoder_takes_mutated_bodies",
        400,
        |rng| mutated(rng, &valid),
        |b| chat(&b.0),
    );
}

#[test]
fn responses_decoder_takes_any_json() {
    check("responses_decoder_takes_any_json", 400, random_body, |b| {
        responses(&b.0)
    });
}

#[test]
fn responses_decoder_takes_mutated_bodies() {
    let valid = responses_bodies();
    check(
        "responses_decoder_takes_mutated_bodies",
        400,
        |rng| mutated(rng, &valid),
        |b| responses(&b.0),
    );
}

#[test]
fn messages_decoder_takes_any_json() {
    check("messages_decoder_takes_any_json", 400, random_body, |b| {
        messages(&b.0, false)?;
        messages(&b.0, true)
    });
}

#[test]
fn messages_decoder_takes_mutated_bodies() {
    let valid = messages_bodies();
    check(
        "messages_decoder_takes_mutated_bodies",
        400,
        |rng| mutated(rng, &valid),
        |b| {
            messages(&b.0, false)?;
            messages(&b.0, true)
        },
    );
}
