//! OpenAI Responses requests: a `/v1/responses` body → `model::ChatRequest` (its input
//! items, function / custom / namespaced tools) and what the route and the encoder need
//! besides: instructions, the previous response, `store`, affinity hints, the tools' wire
//! forms and the request fields a response object echoes. Pure.

use serde_json::{json, Map, Value};

use super::items::parse_items;
use super::tools::{parse_tool_choice, parse_tools, WireTools};
use crate::error::GatewayError;
use crate::http::api::fields::{Dialect, Fields};
use crate::http::api::openai::decode::model;
use crate::http::api::structured::output_format;
use crate::http::limits;
use crate::model::{ChatRequest, Message, Role};

const D: Dialect = Dialect::OpenAi;

/// What the Responses route needs besides the `ChatRequest`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponsesOptions {
    pub(crate) instructions: Option<String>,
    pub(crate) previous_response_id: Option<String>,
    /// `store` (default true): keep the response for a later `previous_response_id`.
    pub(crate) store: bool,
    /// Affinity hints after the headers: `user`, then `prompt_cache_key`.
    pub(crate) hints: [Option<String>; 2],
    /// Prompt tool name → wire form (custom tools, tools inside a namespace).
    pub(crate) wire_tools: WireTools,
    /// Request fields the response object echoes.
    pub(crate) echo: Map<String, Value>,
}

/// Parses and validates a `/v1/responses` body. The messages are the new input only; the
/// route puts the instructions and a previous response's conversation in front.
pub(crate) fn parse_responses(
    body: &Value,
) -> Result<(ChatRequest, ResponsesOptions), GatewayError> {
    let f = Fields::body(body, D)?;
    let model = model(&f)?;
    refuse_unsupported(&f)?;
    let mut opts = ResponsesOptions {
        store: f.opt_bool("store")?.unwrap_or(true),
        ..Default::default()
    };
    opts.instructions = f.opt_str("instructions")?.map(String::from);
    opts.previous_response_id = f.opt_text("previous_response_id")?;
    let user = f.opt_text("user")?;
    let prompt_cache_key = f.opt_text("prompt_cache_key")?;
    opts.hints = [user, prompt_cache_key];
    f.opt_str("safety_identifier")?;
    let stream = f.opt_bool("stream")?.unwrap_or(false);
    let max_tokens = f.opt_positive("max_output_tokens")?;
    f.numbers(&["temperature", "top_p"])?;
    check_settings(&f)?;
    let parallel = f.opt_bool("parallel_tool_calls")?.unwrap_or(true);
    let tools = parse_tools(&f, &mut opts.wire_tools)?;
    let tool_choice = parse_tool_choice(&f, &tools)?;
    let messages = match f.get("input") {
        Some(Value::String(s)) => vec![Message::new(Role::User, s.clone())],
        Some(Value::Array(items)) => {
            limits::check_messages("input", items)?;
            parse_items(items, &opts.wire_tools)?
        }
        Some(other) => {
            return Err(f.type_error("input", "a string or an array of input items", other))
        }
        None if opts.previous_response_id.is_some() => Vec::new(),
        None => return Err(f.missing("input")),
    };
    opts.echo = echo(&f, parallel, opts.store);
    let req = ChatRequest {
        model,
        messages,
        stream,
        stop: Vec::new(),
        max_tokens,
        affinity: None,
        tools,
        tool_choice,
        one_tool_call: !parallel,
        output_format: match f.get("text").and_then(|t| t.get("format")) {
            Some(v) if !v.is_null() => output_format("text.format", v)?,
            _ => None,
        },
        scope: String::new(),
    };
    Ok((req, opts))
}

/// The features this gateway does not have, refused rather than ignored.
fn refuse_unsupported(f: &Fields) -> Result<(), GatewayError> {
    for (name, what) in [
        ("background", "Background responses are not supported by this gateway."),
        ("conversation", "Conversations are not supported by this gateway; continue a conversation with 'previous_response_id' or by sending the whole input."),
        ("prompt", "Stored prompt templates are not supported by this gateway; send 'instructions' and 'input' instead."),
    ] {
        match f.get(name) {
            None | Some(Value::Bool(false)) => {}
            Some(_) => return Err(GatewayError::invalid(name, what)),
        }
    }
    Ok(())
}

/// Settings the gateway does not act on, checked for their type as OpenAI checks them.
fn check_settings(f: &Fields) -> Result<(), GatewayError> {
    for name in ["metadata", "reasoning", "text", "stream_options"] {
        f.opt_object(name)?;
    }
    if let Some(m) = f.opt_object("metadata")? {
        if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
            return Err(f.type_error(&format!("metadata.{k}"), "a string", v));
        }
    }
    match f.get("include") {
        None => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(other) => return Err(f.type_error("include", "an array of strings", other)),
    }
    match f.get("truncation") {
        None => Ok(()),
        Some(Value::String(t)) if t == "auto" || t == "disabled" => Ok(()),
        Some(other) => Err(GatewayError::invalid(
            "truncation",
            format!("Invalid value for 'truncation': {other}. Supported values are: 'auto' and 'disabled'."),
        )),
    }
}

/// The request fields a response object carries, with the API's defaults.
fn echo(f: &Fields, parallel: bool, store: bool) -> Map<String, Value> {
    let get = |name: &str, default: Value| f.get(name).cloned().unwrap_or(default);
    let mut e = Map::new();
    e.insert("background".into(), json!(false));
    e.insert("instructions".into(), get("instructions", Value::Null));
    e.insert(
        "max_output_tokens".into(),
        get("max_output_tokens", Value::Null),
    );
    e.insert("max_tool_calls".into(), get("max_tool_calls", Value::Null));
    e.insert("metadata".into(), get("metadata", json!({})));
    e.insert("parallel_tool_calls".into(), json!(parallel));
    e.insert(
        "previous_response_id".into(),
        get("previous_response_id", Value::Null),
    );
    e.insert(
        "prompt_cache_key".into(),
        get("prompt_cache_key", Value::Null),
    );
    e.insert(
        "reasoning".into(),
        get("reasoning", json!({"effort": null, "summary": null})),
    );
    e.insert(
        "safety_identifier".into(),
        get("safety_identifier", Value::Null),
    );
    e.insert("service_tier".into(), json!("default"));
    e.insert("store".into(), json!(store));
    e.insert("temperature".into(), get("temperature", json!(1.0)));
    e.insert(
        "text".into(),
        get("text", json!({"format": {"type": "text"}})),
    );
    e.insert("tool_choice".into(), get("tool_choice", json!("auto")));
    e.insert("tools".into(), get("tools", json!([])));
    e.insert("top_logprobs".into(), get("top_logprobs", json!(0)));
    e.insert("top_p".into(), get("top_p", json!(1.0)));
    e.insert("truncation".into(), get("truncation", json!("disabled")));
    e.insert("user".into(), get("user", Value::Null));
    e
}

/// The 400 for a `previous_response_id` this gateway does not have (unknown, expired, made
/// with `store: false`, or another API key's).
pub(crate) fn unknown_previous(id: &str) -> GatewayError {
    GatewayError::invalid(
        "previous_response_id",
        format!("Previous response with id '{id}' not found."),
    )
    .with_code("previous_response_not_found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_output_items_become_one_assistant_message() {
        let (req, opts) = parse_responses(&json!({
            "model": "m",
            "tools": [
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "spawn"}]},
                {"type": "custom", "name": "apply_patch"},
                {"type": "web_search"},
            ],
            "input": [
                {"role": "developer", "content": "sys"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "On it."}]},
                {"type": "function_call", "call_id": "c1", "name": "spawn", "namespace": "ns", "arguments": "{\"task\":\"t\"}"},
                {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "spawned"}]},
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
            ],
        }))
        .unwrap();
        let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["ns__spawn", "apply_patch"],
            "hosted tools are skipped"
        );
        assert_eq!(req.tools[1].required(), ["input"]);
        assert_eq!(
            opts.wire_tools["ns__spawn"].namespace.as_deref(),
            Some("ns")
        );
        assert!(opts.wire_tools["apply_patch"].custom);
        let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool
            ]
        );
        let answer = &req.messages[2];
        assert_eq!(answer.text, "On it.");
        assert_eq!(answer.tool_calls[0].name, "ns__spawn");
        assert_eq!(answer.tool_calls[0].arguments, json!({"task": "t"}));
        assert_eq!(
            answer.tool_calls[1].arguments,
            json!({"input": "*** Begin Patch"})
        );
        assert_eq!(req.messages[3].tool_results[0].content, "spawned");
        assert!(opts.store, "store defaults to true");
    }
}
