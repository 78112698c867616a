//! OpenAI Chat Completions on the wire: request JSON → internal `ChatRequest`, internal
//! events → `chat.completion.chunk` SSE payloads or one folded `chat.completion`, and the
//! `{"error":{...}}` envelope. Pure functions.

use serde_json::{json, Map, Value};

use super::stream::{Frame, StreamEncoder};
use crate::error::{ErrorKind, GatewayError};
use crate::model::{
    ChatRequest, Event, Message, NativeTool, OutputFormat, Role, StopReason, ToolCall, ToolChoice,
    ToolResult, ToolSpec, Usage,
};

/// Per-request options that only matter to the OpenAI encoder.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    pub include_usage: bool,
    /// `prompt_cache_key`, an affinity hint after `user`.
    pub prompt_cache_key: Option<String>,
}

/// A body field, `null` counting as absent (both APIs read fields so).
pub fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

pub(super) fn type_error(param: &str, want: &str, got: &Value) -> GatewayError {
    GatewayError::invalid(
        param,
        format!(
            "Invalid type for '{param}': expected {want}, but got {}.",
            kind_of(got)
        ),
    )
}

/// The body as a JSON object, or the 400 every JSON route answers otherwise.
pub fn body_object(body: &Value) -> Result<&Map<String, Value>, GatewayError> {
    body.as_object().ok_or_else(|| {
        GatewayError::invalid(
            "body",
            format!(
                "The request body must be a JSON object, not {}.",
                kind_of(body)
            ),
        )
    })
}

/// The required `model` string of an OpenAI body.
pub(super) fn model_field(obj: &Map<String, Value>) -> Result<String, GatewayError> {
    match field(obj, "model") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(type_error("model", "a string", other)),
        None => Err(GatewayError::invalid(
            "model",
            "you must provide a model parameter",
        )),
    }
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses and validates a `/v1/chat/completions` body.
pub fn parse_chat(body: &Value) -> Result<(ChatRequest, ChatOptions), GatewayError> {
    let obj = body_object(body)?;
    // Anthropic's top-level `system` means nothing here; ignored, the client's instructions
    // would be lost without a word. OpenAI refuses it too.
    if obj.contains_key("system") {
        return Err(GatewayError::invalid(
            "system",
            "Unrecognized request argument supplied: system. Chat completions take the system prompt as a message with role 'system'.",
        ));
    }
    let model = model_field(obj)?;
    let messages = match field(obj, "messages") {
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(GatewayError::invalid(
                "messages",
                "'messages' must contain at least one message.",
            ))
        }
        Some(Value::Array(a)) => {
            super::limits::check_messages("messages", a)?;
            crate::model::join_assistant_runs(
                a.iter()
                    .enumerate()
                    .map(|(i, m)| parse_message(i, m))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        Some(other) => return Err(type_error("messages", "an array", other)),
        None => {
            return Err(GatewayError::invalid(
                "messages",
                "Missing required parameter: 'messages'.",
            ))
        }
    };
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let include_usage = match field(obj, "stream_options") {
        Some(Value::Object(o)) => opt_bool(o, "include_usage").map_err(|mut e| {
            e.param = Some("stream_options.include_usage".into());
            e
        })?,
        Some(other) => return Err(type_error("stream_options", "an object", other)),
        None => None,
    }
    .unwrap_or(false);
    let stop = match field(obj, "stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| type_error("stop", "an array of strings", v))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(type_error("stop", "a string or an array of strings", other)),
        None => Vec::new(),
    };
    if let Some(n) = field(obj, "n") {
        match n.as_u64() {
            Some(1) => {}
            Some(_) => {
                return Err(GatewayError::invalid(
                    "n",
                    "Only n=1 is supported: Lingma returns one answer per request.",
                ))
            }
            None => return Err(type_error("n", "an integer", n)),
        }
    }
    let mut max_tokens = None;
    for name in ["max_tokens", "max_completion_tokens"] {
        if let Some(n) = opt_positive(obj, name)? {
            max_tokens = Some(n);
        }
    }
    numbers(
        obj,
        &[
            "temperature",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
        ],
        |n, v| type_error(n, "a number", v),
    )?;
    let affinity = opt_string(obj, "user")?.filter(|s| !s.is_empty());
    let tools = parse_tools(obj)?;
    let tool_choice = parse_tool_choice(obj, &tools)?;
    let one_tool_call = !opt_bool(obj, "parallel_tool_calls")?.unwrap_or(true);
    let req = ChatRequest {
        model,
        messages,
        stream,
        stop,
        max_tokens,
        affinity,
        tools,
        tool_choice,
        one_tool_call,
        output_format: match field(obj, "response_format") {
            Some(v) => output_format("response_format", v)?,
            None => None,
        },
        scope: String::new(),
    };
    let prompt_cache_key = opt_string(obj, "prompt_cache_key")?.filter(|s| !s.is_empty());
    Ok((
        req,
        ChatOptions {
            include_usage,
            prompt_cache_key,
        },
    ))
}

/// A structured-output request, in any of its shapes: chat `response_format`
/// (`{"type": "json_schema", "json_schema": {"name", "schema"}}`), Responses `text.format`
/// (`{"type": "json_schema", "name", "schema"}`) and Anthropic `output_format`
/// (`{"type": "json_schema", "schema"}`); `{"type": "json_object"}`; `{"type": "text"}` is
/// plain text.
pub(super) fn output_format(param: &str, v: &Value) -> Result<Option<OutputFormat>, GatewayError> {
    let Some(o) = v.as_object() else {
        return Err(type_error(param, "an object", v));
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
        Some("json_schema") => {
            let inner = o.get("json_schema").and_then(Value::as_object).unwrap_or(o);
            let schema = match inner.get("schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                Some(other) => return Err(type_error(&format!("{param}.schema"), "an object", other)),
                None => {
                    return Err(GatewayError::invalid(
                        format!("{param}.schema"),
                        format!("Missing required parameter: '{param}.schema'."),
                    ))
                }
            };
            let name = inner.get("name").and_then(Value::as_str).unwrap_or("response");
            Ok(Some(OutputFormat::JsonSchema {
                name: name.to_string(),
                schema,
            }))
        }
        Some(other) => Err(GatewayError::invalid(
            format!("{param}.type"),
            format!("Invalid value: '{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."),
        )),
        None => Err(GatewayError::invalid(
            format!("{param}.type"),
            format!("Missing required parameter: '{param}.type'."),
        )),
    }
}

pub(super) fn opt_string(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, GatewayError> {
    match field(obj, name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_error(name, "a string", other)),
        None => Ok(None),
    }
}

/// An optional positive integer field.
pub(super) fn opt_positive(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, GatewayError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(GatewayError::invalid(
                name,
                format!("'{name}' must be a positive integer."),
            )),
        },
    }
}

/// Refuses any of `names` that is present and not a number, with the protocol's error.
pub fn numbers(
    obj: &Map<String, Value>,
    names: &[&str],
    error: impl Fn(&str, &Value) -> GatewayError,
) -> Result<(), GatewayError> {
    match names
        .iter()
        .find_map(|n| field(obj, n).filter(|v| !v.is_number()).map(|v| (n, v)))
    {
        Some((name, v)) => Err(error(name, v)),
        None => Ok(()),
    }
}

pub(super) fn opt_bool(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, GatewayError> {
    match field(obj, name) {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(type_error(name, "a boolean", other)),
        None => Ok(None),
    }
}

fn parse_message(i: usize, m: &Value) -> Result<Message, GatewayError> {
    let at = format!("messages[{i}]");
    let Some(obj) = m.as_object() else {
        return Err(type_error(&at, "an object", m));
    };
    let role = match field(obj, "role") {
        Some(Value::String(r)) => match r.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            other => {
                return Err(GatewayError::invalid(
                    format!("{at}.role"),
                    format!("Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'."),
                ))
            }
        },
        Some(other) => return Err(type_error(&format!("{at}.role"), "a string", other)),
        None => return Err(GatewayError::invalid(format!("{at}.role"), format!("Missing required parameter: '{at}.role'."))),
    };
    if role == Role::System {
        system_content(&at, field(obj, "content"))?;
    }
    let text = content_text(&format!("{at}.content"), field(obj, "content"))?;
    let mut message = Message::new(role, text);
    if role == Role::Assistant {
        match field(obj, "tool_calls") {
            Some(Value::Array(calls)) => {
                for (j, c) in calls.iter().enumerate() {
                    message
                        .tool_calls
                        .push(parse_history_call(&format!("{at}.tool_calls[{j}]"), c)?);
                }
            }
            Some(other) => return Err(type_error(&format!("{at}.tool_calls"), "an array", other)),
            None => {}
        }
        // The legacy single `function_call`.
        if let Some(fc) = field(obj, "function_call") {
            let call = json!({"id": "", "function": fc});
            message
                .tool_calls
                .push(parse_history_call(&format!("{at}.function_call"), &call)?);
        }
    }
    if role == Role::Tool {
        let call_id = match field(obj, "tool_call_id") {
            Some(Value::String(id)) => id.clone(),
            Some(other) => {
                return Err(type_error(&format!("{at}.tool_call_id"), "a string", other))
            }
            None => String::new(),
        };
        let name = field(obj, "name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if call_id.is_empty() && name.is_empty() {
            return Err(GatewayError::invalid(
                format!("{at}.tool_call_id"),
                format!("Missing required parameter: '{at}.tool_call_id'."),
            ));
        }
        message.tool_results.push(ToolResult {
            call_id,
            name,
            content: std::mem::take(&mut message.text),
            is_error: false,
        });
    }
    Ok(message)
}

/// A system or developer message's content, as OpenAI takes it: required, a string or an
/// array of text parts (`content_text` refuses the other types, but would take a refusal
/// or nothing).
fn system_content(at: &str, content: Option<&Value>) -> Result<(), GatewayError> {
    let at = format!("{at}.content");
    match content {
        None => Err(GatewayError::invalid(
            at.clone(),
            format!("Missing required parameter: '{at}'."),
        )),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                if let Some(kind @ "refusal") = part.get("type").and_then(Value::as_str) {
                    return Err(GatewayError::invalid(
                        format!("{at}[{j}].type"),
                        format!("Invalid value: '{kind}'. Supported values are: 'text'."),
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// An earlier assistant tool call: `{id, type:"function", function:{name, arguments}}`.
fn parse_history_call(at: &str, c: &Value) -> Result<ToolCall, GatewayError> {
    let name = c
        .pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GatewayError::invalid(
                format!("{at}.function.name"),
                format!("Missing required parameter: '{at}.function.name'."),
            )
        })?;
    let arguments = match c.pointer("/function/arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            // Whatever the model wrote is history: keep it visible rather than refuse.
            _ => json!({"raw": s}),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => {
            return Err(type_error(
                &format!("{at}.function.arguments"),
                "a string",
                other,
            ))
        }
    };
    Ok(ToolCall {
        id: c
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: name.to_string(),
        arguments,
    })
}

/// `tools` (function tools) and the legacy `functions`. Tool types Lingma cannot be given
/// (OpenAI's custom/freeform tools) are skipped with a log line.
fn parse_tools(obj: &Map<String, Value>) -> Result<Vec<ToolSpec>, GatewayError> {
    let mut out = Vec::new();
    let mut add = |at: String, f: &Value| -> Result<(), GatewayError> {
        let Some(fo) = f.as_object() else {
            return Err(type_error(&at, "an object", f));
        };
        let name = match fo.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => {
                return Err(GatewayError::invalid(
                    format!("{at}.name"),
                    format!("Missing required parameter: '{at}.name'."),
                ))
            }
        };
        let schema = match fo.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => return Err(type_error(&format!("{at}.parameters"), "an object", other)),
        };
        let description = fo
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.push(ToolSpec {
            name,
            description,
            schema,
        });
        Ok(())
    };
    match field(obj, "tools") {
        Some(Value::Array(tools)) => {
            for (i, t) in tools.iter().enumerate() {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
                if kind != "function" {
                    log::warn!(
                        "tools[{i}] has type {kind:?}, which cannot be offered to Lingma; skipped"
                    );
                    continue;
                }
                add(
                    format!("tools[{i}].function"),
                    t.get("function").unwrap_or(&Value::Null),
                )?;
            }
        }
        Some(other) => return Err(type_error("tools", "an array", other)),
        None => {}
    }
    match field(obj, "functions") {
        Some(Value::Array(fs)) => {
            for (i, f) in fs.iter().enumerate() {
                add(format!("functions[{i}]"), f)?;
            }
        }
        Some(other) => return Err(type_error("functions", "an array", other)),
        None => {}
    }
    Ok(out)
}

fn parse_tool_choice(
    obj: &Map<String, Value>,
    tools: &[ToolSpec],
) -> Result<ToolChoice, GatewayError> {
    let (param, v) = match (field(obj, "tool_choice"), field(obj, "function_call")) {
        (Some(v), _) => ("tool_choice", v),
        (None, Some(v)) => ("function_call", v),
        (None, None) => return Ok(ToolChoice::Auto),
    };
    let choice = match v {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            other => return Err(GatewayError::invalid(param, format!("Invalid value for '{param}': '{other}'. Supported values are: 'none', 'auto' and 'required'."))),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str);
            match (o.get("type").and_then(Value::as_str), name) {
                (_, Some(n)) => ToolChoice::Named(n.to_string()),
                (Some("allowed_tools"), _) => ToolChoice::Auto,
                _ => return Err(GatewayError::invalid(format!("{param}.function.name"), format!("Missing required parameter: '{param}.function.name'."))),
            }
        }
        other => return Err(type_error(param, "a string or an object", other)),
    };
    check_tool_choice(param, "function", choice, tools)
}

/// A tool choice the declared tools can satisfy: a named `kind` of tool must be declared,
/// and a forced call needs some tool.
pub(super) fn check_tool_choice(
    param: &str,
    kind: &str,
    choice: ToolChoice,
    tools: &[ToolSpec],
) -> Result<ToolChoice, GatewayError> {
    if let ToolChoice::Named(n) = &choice {
        if !tools.iter().any(|t| &t.name == n) {
            return Err(GatewayError::invalid(
                param,
                format!(
                    "Invalid value for '{param}': no {kind} named '{n}' was specified in 'tools'."
                ),
            ));
        }
    }
    if choice.is_forced() && tools.is_empty() {
        return Err(GatewayError::invalid(
            param,
            format!("Invalid value for '{param}': a tool call is required but 'tools' is empty."),
        ));
    }
    Ok(choice)
}

/// A message's text: a string, or text parts joined. Other part types are refused.
pub(super) fn content_text(at: &str, content: Option<&Value>) -> Result<String, GatewayError> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for (j, part) in parts.iter().enumerate() {
                let pat = format!("{at}[{j}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" | "input_text" | "output_text" => match part.get("text") {
                        Some(Value::String(t)) => {
                            if !out.is_empty() {
                                out.push('\n');
                            }
                            out.push_str(t);
                        }
                        other => return Err(type_error(&format!("{pat}.text"), "a string", other.unwrap_or(&Value::Null))),
                    },
                    // An assistant's refusal, echoed back: its text is what was said.
                    "refusal" => {
                        if let Some(Value::String(t)) = part.get("refusal") {
                            if !out.is_empty() {
                                out.push('\n');
                            }
                            out.push_str(t);
                        }
                    }
                    "image_url" | "input_image" | "input_audio" | "file" | "input_file" => {
                        return Err(GatewayError::invalid(
                            pat,
                            format!("Content parts of type '{kind}' are not supported: Lingma's chat takes text only."),
                        ))
                    }
                    "" => return Err(GatewayError::invalid(format!("{pat}.type"), "Each content part needs a 'type'.")),
                    other => return Err(GatewayError::invalid(format!("{pat}.type"), format!("Unknown content part type '{other}'."))),
                }
            }
            Ok(out)
        }
        Some(other) => Err(type_error(
            at,
            "a string or an array of content parts",
            other,
        )),
    }
}

pub fn finish_reason(reason: &StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence(_) => "stop",
        StopReason::Length => "length",
        StopReason::ContentFilter => "content_filter",
        StopReason::ToolUse => "tool_calls",
    }
}

/// A Lingma-side tool call, as the gateway's `lingma_tool_events` extension reports it.
pub fn native_tool_json(t: &NativeTool) -> Value {
    json!({"id": t.id, "name": t.name, "input": t.input, "status": t.status, "output": t.output, "is_error": t.is_error})
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// Turns internal events into `chat.completion.chunk` payloads (the `data:` of each event).
pub struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    sent_role: bool,
    calls: usize,
}

impl ChunkEncoder {
    pub fn new(id: String, created: u64, model: String, opts: &ChatOptions) -> Self {
        ChunkEncoder {
            id,
            created,
            model,
            include_usage: opts.include_usage,
            sent_role: false,
            calls: 0,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c.to_string()
    }

    /// The payloads for one event, in order. The stream's last payload is `[DONE]`.
    pub fn payloads(&mut self, ev: &Event) -> Vec<String> {
        let mut out = Vec::new();
        if !self.sent_role {
            self.sent_role = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        match ev {
            Event::Text(t) => out.push(self.chunk(json!({"content": t}), None)),
            Event::Reasoning(r) => out.push(self.chunk(json!({"reasoning_content": r}), None)),
            Event::ToolCall(c) => {
                let index = self.calls;
                self.calls += 1;
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    None,
                ));
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": c.arguments.to_string()}}]}),
                    None,
                ));
            }
            Event::NativeTool(t) => {
                out.push(self.chunk(json!({"lingma_tool_events": [native_tool_json(t)]}), None))
            }
            Event::Finish { reason, usage } => {
                out.push(self.chunk(json!({}), Some(finish_reason(reason))));
                if self.include_usage {
                    out.push(
                        json!({
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "system_fingerprint": null,
                            "choices": [],
                            "usage": usage_json(usage),
                        })
                        .to_string(),
                    );
                }
                out.push("[DONE]".to_string());
            }
        }
        out
    }
}

impl StreamEncoder for ChunkEncoder {
    fn encode(&mut self, ev: &Event) -> Vec<Frame> {
        self.payloads(ev)
            .into_iter()
            .map(|data| Frame::Event { name: None, data })
            .collect()
    }

    fn error(&mut self, e: &GatewayError) -> Vec<Frame> {
        vec![Frame::Event {
            name: None,
            data: error_body(e).to_string(),
        }]
    }
}

/// Folds a whole event stream into one `chat.completion` body.
pub fn fold_completion(id: &str, created: u64, model: &str, events: &[Event]) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let mut native = Vec::new();
    let mut finish = None;
    for ev in events {
        match ev {
            Event::Text(t) => text.push_str(t),
            Event::Reasoning(r) => reasoning.push_str(r),
            Event::ToolCall(c) => calls.push(json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}})),
            Event::NativeTool(t) => native.push(native_tool_json(t)),
            Event::Finish { reason, usage } => finish = Some((finish_reason(reason), *usage)),
        }
    }
    let (reason, usage) = finish.unwrap_or(("stop", Usage::default()));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !native.is_empty() {
        message["lingma_tool_events"] = Value::Array(native);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason}],
        "usage": usage_json(&usage),
    })
}

/// `{"error": {...}}` as OpenAI sends it.
pub fn error_body(e: &GatewayError) -> Value {
    let (kind, default_code) = match e.kind {
        ErrorKind::InvalidRequest
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Conflict
        | ErrorKind::PayloadTooLarge
        | ErrorKind::RequestTimeout => ("invalid_request_error", None),
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::PermissionDenied => ("permission_error", None),
        ErrorKind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::Timeout => ("server_error", Some("timeout")),
        ErrorKind::Unavailable => ("server_error", Some("service_unavailable")),
        ErrorKind::Internal | ErrorKind::Upstream => ("server_error", None),
    };
    json!({"error": {
        "message": e.message,
        "type": kind,
        "param": e.param,
        "code": e.code.or(default_code),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<(ChatRequest, ChatOptions), GatewayError> {
        parse_chat(&v)
    }

    #[test]
    fn parses_a_typical_request() {
        let (r, o) = parse(json!({
            "model": "kmodel", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "stop": "END", "user": "u-1", "max_tokens": 50, "temperature": 0.2, "unknown_field": 1
        }))
        .unwrap();
        assert_eq!(r.model, "kmodel");
        assert!(r.stream && o.include_usage);
        assert_eq!(r.messages[1].text, "a\nb");
        assert_eq!(r.stop, vec!["END"]);
        assert_eq!(r.affinity.as_deref(), Some("u-1"));
        assert_eq!(r.max_tokens, Some(50));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!([]), "body"),
            (json!({"messages": []}), "model"),
            (json!({"model": 3, "messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m", "messages": "hi"}), "messages"),
            (
                json!({"model": "m", "messages": [{"content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
                "stream",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}),
                "stop",
            ),
            (
                json!({"model": "m", "messages": [{"role": "system"}, {"role": "user", "content": "x"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "developer", "content": null}, {"role": "user", "content": "x"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "system", "content": {"text": "x"}}, {"role": "user", "content": "x"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "refusal", "refusal": "x"}]}, {"role": "user", "content": "x"}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "m", "system": "be brief", "messages": [{"role": "user", "content": "x"}]}),
                "system",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }

    #[test]
    fn stream_chunks_follow_openai_shape() {
        let mut enc = ChunkEncoder::new(
            "chatcmpl-1".into(),
            7,
            "m".into(),
            &ChatOptions {
                include_usage: true,
                prompt_cache_key: None,
            },
        );
        let first = enc.payloads(&Event::Text("Hi".into()));
        assert_eq!(first.len(), 2);
        let role: Value = serde_json::from_str(&first[0]).unwrap();
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert!(role["usage"].is_null() && role.get("usage").is_some());
        let text: Value = serde_json::from_str(&first[1]).unwrap();
        assert_eq!(text["choices"][0]["delta"]["content"], "Hi");
        let r: Value =
            serde_json::from_str(&enc.payloads(&Event::Reasoning("hmm".into()))[0]).unwrap();
        assert_eq!(r["choices"][0]["delta"]["reasoning_content"], "hmm");
        let end = enc.payloads(&Event::Finish {
            reason: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
            },
        });
        let fin: Value = serde_json::from_str(&end[0]).unwrap();
        assert_eq!(fin["choices"][0]["finish_reason"], "stop");
        let usage: Value = serde_json::from_str(&end[1]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 7);
        assert_eq!(end[2], "[DONE]");
    }

    #[test]
    fn folds_events_into_a_completion() {
        let events = vec![
            Event::Reasoning("r".into()),
            Event::Text("a".into()),
            Event::Text("b".into()),
            Event::Finish {
                reason: StopReason::ContentFilter,
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                },
            },
        ];
        let v = fold_completion("id", 1, "m", &events);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "ab");
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], "r");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn error_envelope() {
        let e = GatewayError::new(ErrorKind::NotFound, "nope").with_code("model_not_found");
        assert_eq!(
            error_body(&e),
            json!({"error": {"message": "nope", "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        );
    }
}
