//! Anthropic Messages on the wire: request JSON → internal `ChatRequest`, internal events →
//! the named SSE events (`message_start` … `message_stop`) or one folded `message`, and the
//! token count of `/v1/messages/count_tokens`. Pure functions.

use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

use super::openai::{body_object, field, kind_of};
use super::stream::{Frame, StreamEncoder};
use crate::error::GatewayError;
use crate::model::{
    estimate_tokens, ChatRequest, Event, Message, NativeTool, Role, StopReason, ToolCall,
    ToolChoice, ToolResult, ToolSpec, Usage,
};

/// What only the Anthropic encoder needs.
#[derive(Debug, Clone, Default)]
pub struct MessagesOptions {
    /// `thinking` enabled (or adaptive): reasoning goes out as thinking blocks; otherwise
    /// it is dropped (it never leaks into the text).
    pub thinking: bool,
    /// Tokens of thinking blocks in the history, which Lingma is not sent but which
    /// count_tokens counts (to lean high).
    pub history_thinking_tokens: u64,
    /// `metadata.user_id`, an affinity hint.
    pub user_id: Option<String>,
}

fn type_error(param: &str, want: &str, got: &Value) -> GatewayError {
    GatewayError::invalid(
        param,
        format!("{param}: Input should be {want}, not {}", kind_of(got)),
    )
}

fn missing(param: &str) -> GatewayError {
    GatewayError::invalid(param, format!("{param}: Field required"))
}

/// Parses and validates a `/v1/messages` body (`for_count`: a count_tokens body, which has
/// no `max_tokens`; otherwise it is validated the same way).
pub fn parse_messages(
    body: &Value,
    for_count: bool,
) -> Result<(ChatRequest, MessagesOptions), GatewayError> {
    let obj = body_object(body)?;
    let model = match field(obj, "model") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(type_error("model", "a valid string", other)),
        None => return Err(missing("model")),
    };
    let max_tokens = match field(obj, "max_tokens") {
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(GatewayError::invalid(
                    "max_tokens",
                    "max_tokens: must be a positive integer",
                ))
            }
        },
        None if for_count => None,
        None => return Err(missing("max_tokens")),
    };
    let mut opts = MessagesOptions::default();
    let mut messages = Vec::new();
    match field(obj, "system") {
        Some(Value::String(s)) => messages.push(Message::new(Role::System, s.clone())),
        Some(Value::Array(blocks)) => {
            let text = blocks_text("system", blocks, &mut opts)?;
            messages.push(Message::new(Role::System, text));
        }
        Some(other) => {
            return Err(type_error(
                "system",
                "a valid string or a list of text blocks",
                other,
            ))
        }
        None => {}
    }
    match field(obj, "messages") {
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(GatewayError::invalid(
                "messages",
                "messages: at least one message is required",
            ))
        }
        Some(Value::Array(a)) => {
            super::limits::check_messages("messages", a)?;
            for (i, m) in a.iter().enumerate() {
                messages.push(parse_message(i, m, &mut opts)?);
            }
        }
        Some(other) => return Err(type_error("messages", "a valid list", other)),
        None => return Err(missing("messages")),
    }
    let stream = match field(obj, "stream") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(type_error("stream", "a valid boolean", other)),
        None => false,
    };
    let stop = match field(obj, "stop_sequences") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| type_error("stop_sequences", "a list of strings", v))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(type_error("stop_sequences", "a valid list", other)),
        None => Vec::new(),
    };
    super::openai::numbers(obj, &["temperature", "top_p", "top_k"], |n, v| {
        type_error(n, "a valid number", v)
    })?;
    opts.thinking = match field(obj, "thinking") {
        Some(Value::Object(t)) => matches!(
            t.get("type").and_then(Value::as_str),
            Some("enabled") | Some("adaptive")
        ),
        Some(other) => return Err(type_error("thinking", "an object", other)),
        None => false,
    };
    opts.user_id = match field(obj, "metadata") {
        Some(Value::Object(m)) => m
            .get("user_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from),
        Some(other) => return Err(type_error("metadata", "an object", other)),
        None => None,
    };
    let tools = parse_tools(obj)?;
    let tool_choice = parse_tool_choice(obj, &tools)?;
    let req = ChatRequest {
        model,
        messages: crate::model::join_assistant_runs(messages),
        stream,
        stop,
        max_tokens,
        affinity: None,
        tools,
        tool_choice,
        one_tool_call: obj
            .get("tool_choice")
            .and_then(|c| c.get("disable_parallel_tool_use"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        // The structured-outputs beta's `output_format`.
        output_format: match field(obj, "output_format") {
            Some(v) => super::openai::output_format("output_format", v)?,
            None => None,
        },
        scope: String::new(),
    };
    Ok((req, opts))
}

fn parse_message(i: usize, m: &Value, opts: &mut MessagesOptions) -> Result<Message, GatewayError> {
    let at = format!("messages.{i}");
    let Some(obj) = m.as_object() else {
        return Err(type_error(&at, "a valid dictionary", m));
    };
    let role = match field(obj, "role") {
        Some(Value::String(r)) => match r.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Claude Code's mid-conversation system messages.
            "system" => Role::System,
            other => {
                return Err(GatewayError::invalid(
                    format!("{at}.role"),
                    format!("{at}.role: Input should be 'user' or 'assistant', not '{other}'"),
                ))
            }
        },
        Some(other) => return Err(type_error(&format!("{at}.role"), "a string", other)),
        None => return Err(missing(&format!("{at}.role"))),
    };
    let mut message = Message::new(role, String::new());
    match field(obj, "content") {
        Some(Value::String(s)) => message.text = s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                let bat = format!("{at}.content.{j}");
                let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" => texts.push(text_of(&bat, b)?),
                    "tool_use" | "server_tool_use" if role == Role::Assistant => {
                        if kind == "tool_use" {
                            message.tool_calls.push(tool_use(&bat, b)?);
                        }
                    }
                    "tool_result" => message.tool_results.push(tool_result(&bat, b)?),
                    "thinking" | "redacted_thinking" => {
                        let t = b.get("thinking").or_else(|| b.get("data"));
                        opts.history_thinking_tokens +=
                            estimate_tokens(t.and_then(Value::as_str).unwrap_or(""));
                    }
                    "image" | "document" => {
                        return Err(GatewayError::invalid(
                            bat.clone(),
                            format!("{bat}: content blocks of type '{kind}' are not supported yet: Lingma's chat takes text only."),
                        ))
                    }
                    "" => return Err(missing(&format!("{bat}.type"))),
                    other => log::debug!("{bat}: ignoring a content block of type {other:?}"),
                }
            }
            message.text = texts.join("\n");
        }
        Some(other) => {
            return Err(type_error(
                &format!("{at}.content"),
                "a valid string or list of content blocks",
                other,
            ))
        }
        None => return Err(missing(&format!("{at}.content"))),
    }
    Ok(message)
}

fn text_of(at: &str, b: &Value) -> Result<String, GatewayError> {
    match b.get("text") {
        Some(Value::String(t)) => Ok(t.clone()),
        Some(other) => Err(type_error(&format!("{at}.text"), "a valid string", other)),
        None => Err(missing(&format!("{at}.text"))),
    }
}

/// System blocks: text blocks only, as in Anthropic's API (their `cache_control` and
/// `citations` ignored).
fn blocks_text(
    at: &str,
    blocks: &[Value],
    _opts: &mut MessagesOptions,
) -> Result<String, GatewayError> {
    let mut out = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bat = format!("{at}.{j}");
        if !b.is_object() {
            return Err(type_error(&bat, "a valid dictionary", b));
        }
        match b.get("type") {
            Some(Value::String(t)) if t == "text" => out.push(text_of(&bat, b)?),
            Some(other) => {
                return Err(GatewayError::invalid(
                    format!("{bat}.type"),
                    format!("{bat}.type: Input should be 'text', not {other}"),
                ))
            }
            None => return Err(missing(&format!("{bat}.type"))),
        }
    }
    Ok(out.join("\n\n"))
}

fn tool_use(at: &str, b: &Value) -> Result<ToolCall, GatewayError> {
    let name = b
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&format!("{at}.name")))?;
    let input = match b.get("input") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => json!({}),
        Some(other) => {
            return Err(type_error(
                &format!("{at}.input"),
                "a valid dictionary",
                other,
            ))
        }
    };
    Ok(ToolCall {
        id: b
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: name.to_string(),
        arguments: input,
    })
}

fn tool_result(at: &str, b: &Value) -> Result<ToolResult, GatewayError> {
    let call_id = b
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&format!("{at}.tool_use_id")))?;
    let content = match b.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(
                        p.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ),
                    // A tool may return an image (Claude Code's Read of a picture); the
                    // model is told it was left out rather than the whole turn refused.
                    Some(kind) => {
                        out.push(format!("[{kind} omitted: lingma-gateway passes text only]"))
                    }
                    None => {}
                }
            }
            out.join("\n")
        }
        Some(other) => {
            return Err(type_error(
                &format!("{at}.content"),
                "a string or a list of blocks",
                other,
            ))
        }
    };
    Ok(ToolResult {
        call_id: call_id.to_string(),
        name: String::new(),
        content,
        is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// Custom tools (`name`, `description`, `input_schema`). Anthropic's built-in tool types
/// (web search, code execution, text editor, ...) cannot be offered to Lingma: skipped.
fn parse_tools(obj: &Map<String, Value>) -> Result<Vec<ToolSpec>, GatewayError> {
    let tools = match field(obj, "tools") {
        Some(Value::Array(t)) => t,
        Some(other) => return Err(type_error("tools", "a valid list", other)),
        None => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools.{i}");
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("custom");
        if kind != "custom" {
            log::warn!(
                "{at} is Anthropic's built-in tool type {kind:?}, which Lingma cannot run; skipped"
            );
            continue;
        }
        let name = match t.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(missing(&format!("{at}.name"))),
        };
        let schema = match t.get("input_schema") {
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => {
                return Err(type_error(
                    &format!("{at}.input_schema"),
                    "a valid dictionary",
                    other,
                ))
            }
            None => return Err(missing(&format!("{at}.input_schema"))),
        };
        let description = t
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.push(ToolSpec {
            name,
            description,
            schema,
        });
    }
    Ok(out)
}

fn parse_tool_choice(
    obj: &Map<String, Value>,
    tools: &[ToolSpec],
) -> Result<ToolChoice, GatewayError> {
    let Some(v) = field(obj, "tool_choice") else {
        return Ok(ToolChoice::Auto);
    };
    let Some(o) = v.as_object() else {
        return Err(type_error("tool_choice", "a valid dictionary", v));
    };
    let choice = match o.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("any") => ToolChoice::Any,
        Some("tool") => match o.get("name").and_then(Value::as_str) {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => return Err(missing("tool_choice.name")),
        },
        _ => {
            return Err(GatewayError::invalid(
                "tool_choice.type",
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            ))
        }
    };
    if let ToolChoice::Named(n) = &choice {
        if !tools.iter().any(|t| &t.name == n) {
            return Err(GatewayError::invalid(
                "tool_choice.name",
                format!("tool_choice.name: tool '{n}' is not in tools"),
            ));
        }
    }
    if choice.is_forced() && tools.is_empty() {
        return Err(GatewayError::invalid(
            "tool_choice",
            "tool_choice: a tool is required but no tools were given",
        ));
    }
    Ok(choice)
}

pub fn stop_reason(reason: &StopReason) -> (&'static str, Option<&str>) {
    match reason {
        StopReason::EndTurn => ("end_turn", None),
        StopReason::StopSequence(s) => ("stop_sequence", Some(s.as_str())),
        StopReason::Length => ("max_tokens", None),
        StopReason::ToolUse => ("tool_use", None),
        StopReason::ContentFilter => ("refusal", None),
    }
}

/// A thinking block's signature. Lingma signs nothing; this lets a client that checks for
/// one find it (the gateway ignores signatures it gets back).
fn signature(thinking: &str) -> String {
    let digest = Sha1::digest(thinking.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("lingma-gateway-{hex}")
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

fn native_blocks(t: &NativeTool) -> [Value; 2] {
    [
        json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input}),
        json!({"type": "tool_result", "tool_use_id": t.id, "content": t.output, "is_error": t.is_error}),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
}

/// Internal events → Anthropic's named SSE events.
pub struct MessagesEncoder {
    id: String,
    model: String,
    input_tokens: u64,
    thinking: bool,
    index: usize,
    open: Option<Open>,
    thought: String,
}

impl MessagesEncoder {
    pub fn new(id: String, model: String, input_tokens: u64, opts: &MessagesOptions) -> Self {
        MessagesEncoder {
            id,
            model,
            input_tokens,
            thinking: opts.thinking,
            index: 0,
            open: None,
            thought: String::new(),
        }
    }

    fn ev(out: &mut Vec<Frame>, name: &'static str, data: Value) {
        out.push(Frame::Event {
            name: Some(name),
            data: data.to_string(),
        });
    }

    fn close(&mut self, out: &mut Vec<Frame>) {
        let Some(open) = self.open.take() else {
            return;
        };
        if open == Open::Thinking {
            let sig = signature(&std::mem::take(&mut self.thought));
            Self::ev(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "signature_delta", "signature": sig}}),
            );
        }
        Self::ev(
            out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.index}),
        );
        self.index += 1;
    }

    fn open(&mut self, out: &mut Vec<Frame>, kind: Open) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let block = match kind {
            Open::Text => json!({"type": "text", "text": ""}),
            Open::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
        };
        Self::ev(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = Some(kind);
    }

    /// A whole block: start, the deltas, stop.
    fn block(&mut self, out: &mut Vec<Frame>, start: Value, delta: Option<Value>) {
        self.close(out);
        Self::ev(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": start}),
        );
        if let Some(d) = delta {
            Self::ev(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": d}),
            );
        }
        Self::ev(
            out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.index}),
        );
        self.index += 1;
    }
}

impl StreamEncoder for MessagesEncoder {
    fn start(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        let usage = usage_json(&Usage {
            input_tokens: self.input_tokens,
            output_tokens: 0,
        });
        Self::ev(
            &mut out,
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
            }}),
        );
        out
    }

    fn encode(&mut self, ev: &Event) -> Vec<Frame> {
        let mut out = Vec::new();
        match ev {
            Event::Text(t) => {
                self.open(&mut out, Open::Text);
                Self::ev(
                    &mut out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": t}}),
                );
            }
            Event::Reasoning(r) if self.thinking => {
                self.open(&mut out, Open::Thinking);
                self.thought.push_str(r);
                Self::ev(
                    &mut out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "thinking_delta", "thinking": r}}),
                );
            }
            Event::Reasoning(_) => {}
            Event::ToolCall(c) => self.block(
                &mut out,
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
                Some(json!({"type": "input_json_delta", "partial_json": c.arguments.to_string()})),
            ),
            Event::NativeTool(t) => {
                let [tool_use, result] = native_blocks(t);
                let start = json!({"type": "tool_use", "id": t.id, "name": t.name, "input": {}});
                let _ = tool_use;
                self.block(
                    &mut out,
                    start,
                    Some(json!({"type": "input_json_delta", "partial_json": t.input.to_string()})),
                );
                self.block(&mut out, result, None);
            }
            Event::Finish { reason, usage } => {
                self.close(&mut out);
                let (reason, sequence) = stop_reason(reason);
                Self::ev(
                    &mut out,
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": usage_json(usage)}),
                );
                Self::ev(&mut out, "message_stop", json!({"type": "message_stop"}));
            }
        }
        out
    }

    fn keepalive(&self) -> Frame {
        Frame::Event {
            name: Some("ping"),
            data: json!({"type": "ping"}).to_string(),
        }
    }

    fn error(&mut self, e: &GatewayError) -> Vec<Frame> {
        vec![Frame::Event {
            name: Some("error"),
            data: super::exchange::anthropic_error_body(e).to_string(),
        }]
    }
}

/// Folds a whole event stream into one `message` body.
pub fn fold_message(id: &str, model: &str, opts: &MessagesOptions, events: &[Event]) -> Value {
    let mut content: Vec<Value> = Vec::new();
    let mut finish = None;
    for ev in events {
        match ev {
            Event::Text(t) => match content.last_mut() {
                Some(b) if b["type"] == "text" => {
                    let joined = format!("{}{t}", b["text"].as_str().unwrap_or(""));
                    b["text"] = Value::String(joined);
                }
                _ => content.push(json!({"type": "text", "text": t})),
            },
            Event::Reasoning(r) if opts.thinking => match content.last_mut() {
                Some(b) if b["type"] == "thinking" => {
                    let joined = format!("{}{r}", b["thinking"].as_str().unwrap_or(""));
                    b["thinking"] = Value::String(joined);
                }
                _ => content.push(json!({"type": "thinking", "thinking": r})),
            },
            Event::Reasoning(_) => {}
            Event::ToolCall(c) => content.push(
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
            ),
            Event::NativeTool(t) => content.extend(native_blocks(t)),
            Event::Finish { reason, usage } => finish = Some((reason.clone(), *usage)),
        }
    }
    for b in &mut content {
        if b["type"] == "thinking" {
            b["signature"] = Value::String(signature(b["thinking"].as_str().unwrap_or("")));
        }
    }
    let (reason, usage) = finish.unwrap_or((StopReason::EndTurn, Usage::default()));
    let (reason, sequence) = stop_reason(&reason);
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": reason, "stop_sequence": sequence,
        "usage": usage_json(&usage),
    })
}

/// `count_tokens`: the prompt Lingma would be sent (system, every message, tool results,
/// the tool contract with every schema) plus thinking from the history, with the gateway's
/// high-leaning estimator.
pub fn count_tokens(question: &str, opts: &MessagesOptions) -> u64 {
    estimate_tokens(question) + opts.history_thinking_tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<(ChatRequest, MessagesOptions), GatewayError> {
        parse_messages(&v, false)
    }

    #[test]
    fn parses_claude_code_shaped_requests() {
        let (r, o) = parse(json!({
            "model": "claude-opus-4-8", "max_tokens": 64000, "stream": true,
            "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
            "metadata": {"user_id": "{\"session_id\":\"s1\"}"},
            "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                {"role": "system", "content": "Available agent types"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a.txt"}], "is_error": false}]}
            ],
            "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "required": ["command"]}},
                      {"type": "web_search_20250305", "name": "web_search"}]
        })).unwrap();
        assert!(r.stream && o.thinking);
        assert_eq!(o.user_id.as_deref(), Some("{\"session_id\":\"s1\"}"));
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[0].text, "A\n\nB");
        assert_eq!(r.messages[2].role, Role::System);
        assert_eq!(r.messages[3].tool_calls[0].name, "Bash");
        assert_eq!(r.messages[4].tool_results[0].content, "a.txt");
        assert_eq!(r.tools.len(), 1);
        assert!(o.history_thinking_tokens > 0);
    }

    #[test]
    fn errors_name_the_field() {
        for (body, param) in [
            (json!({"max_tokens": 5, "messages": []}), "model"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
                "messages.0.content.0",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool", "name": "nope"}, "tools": []}),
                "tool_choice.name",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "system": [{"type": "image", "source": {}}], "messages": [{"role": "user", "content": "x"}]}),
                "system.0.type",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "system": ["be brief"], "messages": [{"role": "user", "content": "x"}]}),
                "system.0",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            // count_tokens validates the same way (max_tokens aside).
            if param != "max_tokens" {
                let e2 = parse_messages(&body, true).unwrap_err();
                assert_eq!((e2.param, e2.message), (e.param, e.message), "{body}");
            }
        }
    }

    #[test]
    fn stream_blocks_open_and_close_in_order() {
        let opts = MessagesOptions {
            thinking: true,
            ..Default::default()
        };
        let mut enc = MessagesEncoder::new("msg_1".into(), "m".into(), 9, &opts);
        let mut frames = enc.start();
        for ev in [
            Event::Reasoning("think".into()),
            Event::Text("a".into()),
            Event::Text("b".into()),
            Event::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "Bash".into(),
                arguments: json!({"command": "ls"}),
            }),
            Event::Finish {
                reason: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 9,
                    output_tokens: 4,
                },
            },
        ] {
            frames.extend(enc.encode(&ev));
        }
        let names: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Frame::Event { name, data } => {
                    let v: Value = serde_json::from_str(data).unwrap();
                    let d = v["delta"]["type"]
                        .as_str()
                        .map(|t| format!(":{t}"))
                        .unwrap_or_default();
                    format!("{}{d}@{}", name.unwrap(), v["index"])
                }
                Frame::Comment(_) => "comment".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "message_start@null",
                "content_block_start@0",
                "content_block_delta:thinking_delta@0",
                "content_block_delta:signature_delta@0",
                "content_block_stop@0",
                "content_block_start@1",
                "content_block_delta:text_delta@1",
                "content_block_delta:text_delta@1",
                "content_block_stop@1",
                "content_block_start@2",
                "content_block_delta:input_json_delta@2",
                "content_block_stop@2",
                "message_delta@null",
                "message_stop@null",
            ]
        );
    }

    #[test]
    fn folds_into_a_message() {
        let events = vec![
            Event::Reasoning("r".into()),
            Event::Text("a".into()),
            Event::Text("b".into()),
            Event::Finish {
                reason: StopReason::StopSequence("END".into()),
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                },
            },
        ];
        let v = fold_message("msg", "m", &MessagesOptions::default(), &events);
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "ab"}]),
            "no thinking unless enabled"
        );
        assert_eq!(v["stop_reason"], "stop_sequence");
        assert_eq!(v["stop_sequence"], "END");
        assert_eq!(v["usage"]["output_tokens"], 2);
    }
}
