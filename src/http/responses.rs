//! OpenAI Responses on the wire: a `/v1/responses` body → internal `ChatRequest` (input
//! items, instructions, function / custom / namespaced tools), internal events → the typed
//! `response.*` SSE events with their `sequence_number`, or the same events folded into one
//! `response` object. Pure functions; errors use the OpenAI envelope (`openai::error_body`).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::openai::{
    body_object, check_tool_choice, content_text, field, model_field, numbers, opt_bool,
    opt_positive, opt_string, output_format, type_error,
};
use super::stream::{Frame, StreamEncoder};
use crate::error::{ErrorKind, GatewayError};
use crate::model::{
    estimate_tokens, ChatRequest, Event, Message, Role, StopReason, ToolCall, ToolChoice,
    ToolResult, ToolSpec, Usage,
};

/// How a tool the model sees in the prompt is called on the wire, for the tools that are
/// not plain top-level functions.
#[derive(Debug, Clone, PartialEq)]
pub struct WireTool {
    pub custom: bool,
    pub namespace: Option<String>,
    pub name: String,
}

/// What the Responses route needs besides the `ChatRequest`.
#[derive(Debug, Clone, Default)]
pub struct ResponsesOptions {
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    /// `store` (default true): keep the response for a later `previous_response_id`.
    pub store: bool,
    /// Affinity hints after the headers: `user`, then `prompt_cache_key`.
    pub hints: [Option<String>; 2],
    /// Prompt tool name → wire form (custom tools, tools inside a namespace).
    pub wire_tools: HashMap<String, WireTool>,
    /// Request fields the response object echoes.
    pub echo: Map<String, Value>,
}

/// The name a namespaced tool has in the prompt (and so in the model's calls).
fn prompt_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}__{name}"),
        None => name.to_string(),
    }
}

/// Parses and validates a `/v1/responses` body. The messages are the new input only; the
/// route puts the instructions and a previous response's conversation in front.
pub fn parse_responses(body: &Value) -> Result<(ChatRequest, ResponsesOptions), GatewayError> {
    let obj = body_object(body)?;
    let model = model_field(obj)?;
    for (name, what) in [
        ("background", "Background responses are not supported by this gateway."),
        ("conversation", "Conversations are not supported by this gateway; continue a conversation with 'previous_response_id' or by sending the whole input."),
        ("prompt", "Stored prompt templates are not supported by this gateway; send 'instructions' and 'input' instead."),
    ] {
        match field(obj, name) {
            None | Some(Value::Bool(false)) => {}
            Some(_) => return Err(GatewayError::invalid(name, what)),
        }
    }
    let mut opts = ResponsesOptions {
        store: opt_bool(obj, "store")?.unwrap_or(true),
        ..Default::default()
    };
    opts.instructions = opt_string(obj, "instructions")?;
    opts.previous_response_id = opt_string(obj, "previous_response_id")?.filter(|s| !s.is_empty());
    let user = opt_string(obj, "user")?.filter(|s| !s.is_empty());
    let prompt_cache_key = opt_string(obj, "prompt_cache_key")?.filter(|s| !s.is_empty());
    opts.hints = [user, prompt_cache_key];
    opt_string(obj, "safety_identifier")?;
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let max_tokens = opt_positive(obj, "max_output_tokens")?;
    numbers(obj, &["temperature", "top_p"], |n, v| {
        type_error(n, "a number", v)
    })?;
    for name in ["metadata", "reasoning", "text", "stream_options"] {
        match field(obj, name) {
            None | Some(Value::Object(_)) => {}
            Some(other) => return Err(type_error(name, "an object", other)),
        }
    }
    if let Some(Value::Object(m)) = field(obj, "metadata") {
        if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
            return Err(type_error(&format!("metadata.{k}"), "a string", v));
        }
    }
    match field(obj, "include") {
        None => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(other) => return Err(type_error("include", "an array of strings", other)),
    }
    match field(obj, "truncation") {
        None => {}
        Some(Value::String(t)) if t == "auto" || t == "disabled" => {}
        Some(other) => {
            return Err(GatewayError::invalid(
                "truncation",
                format!("Invalid value for 'truncation': {other}. Supported values are: 'auto' and 'disabled'."),
            ))
        }
    }
    let parallel = opt_bool(obj, "parallel_tool_calls")?.unwrap_or(true);
    let tools = parse_tools(obj, &mut opts.wire_tools)?;
    let tool_choice = parse_tool_choice(obj, &tools)?;
    let messages = match field(obj, "input") {
        Some(Value::String(s)) => vec![Message::new(Role::User, s.clone())],
        Some(Value::Array(items)) => {
            super::limits::check_messages("input", items)?;
            parse_items(items, &opts.wire_tools)?
        }
        Some(other) => {
            return Err(type_error(
                "input",
                "a string or an array of input items",
                other,
            ))
        }
        None if opts.previous_response_id.is_some() => Vec::new(),
        None => {
            return Err(GatewayError::invalid(
                "input",
                "Missing required parameter: 'input'.",
            ))
        }
    };
    opts.echo = echo(obj, parallel, opts.store);
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
        output_format: match field(obj, "text").and_then(|t| t.get("format")) {
            Some(v) if !v.is_null() => output_format("text.format", v)?,
            _ => None,
        },
        scope: String::new(),
    };
    Ok((req, opts))
}

/// The request fields a response object carries, with the API's defaults.
fn echo(obj: &Map<String, Value>, parallel: bool, store: bool) -> Map<String, Value> {
    let get = |name: &str, default: Value| field(obj, name).cloned().unwrap_or(default);
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

/// Function tools, custom (freeform) tools and the function/custom tools inside a
/// `namespace` become tools of the prompt contract; hosted tools (web search, file search,
/// computer use, ...) cannot be emulated and are skipped with a log line.
fn parse_tools(
    obj: &Map<String, Value>,
    wire: &mut HashMap<String, WireTool>,
) -> Result<Vec<ToolSpec>, GatewayError> {
    let tools = match field(obj, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(type_error("tools", "an array", other)),
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let Some(to) = t.as_object() else {
            return Err(type_error(&at, "an object", t));
        };
        match to.get("type").and_then(Value::as_str) {
            Some("namespace") => {
                let ns = required_name(to, &at)?;
                let Some(Value::Array(inner)) = to.get("tools") else {
                    return Err(GatewayError::invalid(
                        format!("{at}.tools"),
                        format!("Missing required parameter: '{at}.tools'."),
                    ));
                };
                let ns_desc = to.get("description").and_then(Value::as_str).unwrap_or("");
                for (j, t) in inner.iter().enumerate() {
                    let at = format!("{at}.tools[{j}]");
                    let Some(to) = t.as_object() else {
                        return Err(type_error(&at, "an object", t));
                    };
                    if let Some(spec) = tool_spec(to, &at, Some((&ns, ns_desc)), wire)? {
                        out.push(spec);
                    }
                }
            }
            _ => {
                if let Some(spec) = tool_spec(to, &at, None, wire)? {
                    out.push(spec);
                }
            }
        }
    }
    Ok(out)
}

fn required_name(to: &Map<String, Value>, at: &str) -> Result<String, GatewayError> {
    match to.get("name") {
        Some(Value::String(n)) if !n.is_empty() => Ok(n.clone()),
        _ => Err(GatewayError::invalid(
            format!("{at}.name"),
            format!("Missing required parameter: '{at}.name'."),
        )),
    }
}

/// One function or custom tool (`None`: a tool type that cannot be emulated, skipped).
fn tool_spec(
    to: &Map<String, Value>,
    at: &str,
    namespace: Option<(&str, &str)>,
    wire: &mut HashMap<String, WireTool>,
) -> Result<Option<ToolSpec>, GatewayError> {
    let kind = match to.get("type") {
        Some(Value::String(k)) => k.as_str(),
        _ => {
            return Err(GatewayError::invalid(
                format!("{at}.type"),
                format!("Missing required parameter: '{at}.type'."),
            ))
        }
    };
    if kind != "function" && kind != "custom" {
        log::warn!("{at} has type {kind:?}, a hosted tool Lingma cannot run; skipped");
        return Ok(None);
    }
    let name = required_name(to, at)?;
    let mut description = to
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some((ns, ns_desc)) = namespace {
        let group = if ns_desc.is_empty() {
            format!("(Part of the {ns} tools.)")
        } else {
            format!("(Part of the {ns} tools: {ns_desc})")
        };
        description = if description.is_empty() {
            group
        } else {
            format!("{description}\n{group}")
        };
    }
    let schema = if kind == "custom" {
        description.push_str(&freeform_note(to.get("format")));
        json!({"type": "object", "properties": {"input": {"type": "string", "description": "The tool's whole input, as free-form text."}}, "required": ["input"]})
    } else {
        match to.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => return Err(type_error(&format!("{at}.parameters"), "an object", other)),
        }
    };
    let prompt = prompt_name(namespace.map(|(ns, _)| ns), &name);
    if kind == "custom" || namespace.is_some() {
        wire.insert(
            prompt.clone(),
            WireTool {
                custom: kind == "custom",
                namespace: namespace.map(|(ns, _)| ns.to_string()),
                name,
            },
        );
    }
    Ok(Some(ToolSpec {
        name: prompt,
        description,
        schema,
    }))
}

/// What the contract tells the model about a custom tool's free-form input.
fn freeform_note(format: Option<&Value>) -> String {
    let mut note = String::from(
        "\nThis tool takes free-form text, not JSON: put its whole input in the `input` parameter.",
    );
    if let Some(f) = format.filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar")) {
        let syntax = f.get("syntax").and_then(Value::as_str).unwrap_or("lark");
        if let Some(def) = f.get("definition").and_then(Value::as_str) {
            note.push_str(&format!(
                "\nThe input must match this {syntax} grammar:\n{def}"
            ));
        }
    }
    note
}

fn parse_tool_choice(
    obj: &Map<String, Value>,
    tools: &[ToolSpec],
) -> Result<ToolChoice, GatewayError> {
    let choice = match field(obj, "tool_choice") {
        None => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            other => return Err(GatewayError::invalid("tool_choice", format!("Invalid value for 'tool_choice': '{other}'. Supported values are: 'none', 'auto' and 'required'."))),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") | Some("custom") => {
                let name = required_name(o, "tool_choice")?;
                let ns = o.get("namespace").and_then(Value::as_str);
                ToolChoice::Named(prompt_name(ns, &name))
            }
            Some("allowed_tools") => match o.get("mode").and_then(Value::as_str) {
                Some("required") => ToolChoice::Any,
                _ => ToolChoice::Auto,
            },
            Some(other) => {
                return Err(GatewayError::invalid(
                    "tool_choice",
                    format!("Invalid value for 'tool_choice': a '{other}' tool cannot be forced; this gateway runs no hosted tools."),
                ))
            }
            None => return Err(GatewayError::invalid("tool_choice.type", "Missing required parameter: 'tool_choice.type'.")),
        },
        Some(other) => return Err(type_error("tool_choice", "a string or an object", other)),
    };
    check_tool_choice("tool_choice", "tool", choice, tools)
}

/// Item types a client may echo back that carry nothing Lingma can use (hosted tools'
/// calls, opaque compaction state): skipped with a log line rather than refused, so a
/// client's whole conversation does not fail on them.
const SKIPPED_ITEMS: &[&str] = &[
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "compaction",
    "tool_search_call",
    "tool_search_output",
];

/// Input items → messages. An assistant's message items and its calls that follow each
/// other become one assistant message, as the answer they came from (the session-reuse key
/// depends on it); `reasoning` items are history Lingma does not need.
fn parse_items(
    items: &[Value],
    wire: &HashMap<String, WireTool>,
) -> Result<Vec<Message>, GatewayError> {
    let mut out: Vec<Message> = Vec::new();
    let mut assistant: Option<Message> = None;
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(type_error(&at, "an object", item));
        };
        let kind = match field(obj, "type") {
            None => "message",
            Some(Value::String(k)) => k.as_str(),
            Some(other) => return Err(type_error(&format!("{at}.type"), "a string", other)),
        };
        match kind {
            "message" => {
                let role = match field(obj, "role").and_then(Value::as_str) {
                    Some("user") => Role::User,
                    Some("assistant") => Role::Assistant,
                    Some("system") | Some("developer") => Role::System,
                    Some(other) => return Err(GatewayError::invalid(format!("{at}.role"), format!("Invalid value: '{other}'. Supported values are: 'user', 'assistant', 'system' and 'developer'."))),
                    None => return Err(GatewayError::invalid(format!("{at}.role"), format!("Missing required parameter: '{at}.role'."))),
                };
                let text = content_text(&format!("{at}.content"), field(obj, "content"))?;
                if role == Role::Assistant {
                    assistant.get_or_insert_with(|| Message::new(Role::Assistant, "")).text.push_str(&text);
                } else {
                    out.extend(assistant.take());
                    out.push(Message::new(role, text));
                }
            }
            "function_call" | "custom_tool_call" => {
                let call = history_call(obj, &at, kind == "custom_tool_call", wire)?;
                assistant.get_or_insert_with(|| Message::new(Role::Assistant, "")).tool_calls.push(call);
            }
            "function_call_output" | "custom_tool_call_output" => {
                out.extend(assistant.take());
                let call_id = match field(obj, "call_id") {
                    Some(Value::String(id)) if !id.is_empty() => id.clone(),
                    _ => return Err(GatewayError::invalid(format!("{at}.call_id"), format!("Missing required parameter: '{at}.call_id'."))),
                };
                let content = output_text(&format!("{at}.output"), field(obj, "output"))?;
                let mut m = Message::new(Role::Tool, "");
                m.tool_results.push(ToolResult { call_id, name: String::new(), content, is_error: false });
                out.push(m);
            }
            "reasoning" => {}
            "item_reference" => {
                return Err(GatewayError::invalid(at, "Item references are not supported by this gateway; send the item itself, or use 'previous_response_id'."))
            }
            k if SKIPPED_ITEMS.contains(&k) => {
                log::warn!("{at} is a {k:?} item, which Lingma cannot use; skipped");
            }
            other => {
                return Err(GatewayError::invalid(format!("{at}.type"), format!("Invalid value: '{other}'. This gateway reads 'message', 'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output' and 'reasoning' items.")))
            }
        }
    }
    out.extend(assistant);
    Ok(out)
}

/// An earlier call, named as the prompt names its tool.
fn history_call(
    obj: &Map<String, Value>,
    at: &str,
    custom: bool,
    wire: &HashMap<String, WireTool>,
) -> Result<ToolCall, GatewayError> {
    let name = required_name(obj, at)?;
    let namespace = obj.get("namespace").and_then(Value::as_str);
    let arguments = if custom {
        let input = obj.get("input").and_then(Value::as_str).unwrap_or("");
        json!({"input": input})
    } else {
        match field(obj, "arguments") {
            None => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({"raw": s}),
            },
            Some(other) => return Err(type_error(&format!("{at}.arguments"), "a string", other)),
        }
    };
    let mut prompt = prompt_name(namespace, &name);
    // A namespaced call echoed without its namespace still names the tool the prompt knows.
    if namespace.is_none() && !wire.contains_key(&prompt) {
        if let Some((p, _)) = wire
            .iter()
            .find(|(_, w)| w.name == name && w.namespace.is_some())
        {
            prompt = p.clone();
        }
    }
    Ok(ToolCall {
        id: obj
            .get("call_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: prompt,
        arguments,
    })
}

/// A tool output: a string, or content parts (text kept, images and files noted).
fn output_text(at: &str, v: Option<&Value>) -> Result<String, GatewayError> {
    match v {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (_, Some(Value::String(t))) => t.clone(),
                    (Some(k), _) => format!("[{k} omitted: Lingma takes text only]"),
                    _ => String::new(),
                },
            )
            .collect::<Vec<_>>()
            .join("\n")),
        Some(other) => Err(type_error(
            at,
            "a string or an array of content parts",
            other,
        )),
    }
}

mod ev {
    pub const CREATED: &str = "response.created";
    pub const IN_PROGRESS: &str = "response.in_progress";
    pub const COMPLETED: &str = "response.completed";
    pub const INCOMPLETE: &str = "response.incomplete";
    pub const FAILED: &str = "response.failed";
    pub const ITEM_ADDED: &str = "response.output_item.added";
    pub const ITEM_DONE: &str = "response.output_item.done";
    pub const PART_ADDED: &str = "response.content_part.added";
    pub const PART_DONE: &str = "response.content_part.done";
    pub const TEXT_DELTA: &str = "response.output_text.delta";
    pub const TEXT_DONE: &str = "response.output_text.done";
    pub const ARGS_DELTA: &str = "response.function_call_arguments.delta";
    pub const ARGS_DONE: &str = "response.function_call_arguments.done";
    pub const INPUT_DELTA: &str = "response.custom_tool_call_input.delta";
    pub const INPUT_DONE: &str = "response.custom_tool_call_input.done";
    pub const SUMMARY_PART_ADDED: &str = "response.reasoning_summary_part.added";
    pub const SUMMARY_PART_DONE: &str = "response.reasoning_summary_part.done";
    pub const SUMMARY_DELTA: &str = "response.reasoning_summary_text.delta";
    pub const SUMMARY_DONE: &str = "response.reasoning_summary_text.done";
}

/// The output item being written.
enum Open {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

type OnFinish = Box<dyn FnOnce(&Message, &Value) + Send>;
type ItemIds = Box<dyn FnMut(&str) -> String + Send>;

/// Turns internal events into Responses stream events, and keeps the response object they
/// add up to (the `response.completed` payload, and the non-stream body).
pub struct ResponsesEncoder {
    id: String,
    created_at: u64,
    model: String,
    echo: Map<String, Value>,
    wire: HashMap<String, WireTool>,
    seq: u64,
    output: Vec<Value>,
    open: Option<Open>,
    reasoning_tokens: u64,
    /// The answer as the conversation's next turn will hold it.
    answer: Message,
    end: Option<(StopReason, Usage)>,
    /// Runs with the answer when the response finishes, before its last event is written
    /// (so a follow-up sent the moment the client sees it finds it stored).
    on_finish: Option<OnFinish>,
    /// Makes an output item's id from its prefix (random; fixed in golden tests).
    item_ids: ItemIds,
}

impl ResponsesEncoder {
    pub fn new(id: String, created_at: u64, model: String, opts: &ResponsesOptions) -> Self {
        ResponsesEncoder {
            id,
            created_at,
            model,
            echo: opts.echo.clone(),
            wire: opts.wire_tools.clone(),
            seq: 0,
            output: Vec::new(),
            open: None,
            reasoning_tokens: 0,
            answer: Message::new(Role::Assistant, ""),
            end: None,
            on_finish: None,
            item_ids: Box::new(new_id),
        }
    }

    /// Output item ids from `f` instead of random ones, for transcripts that must not change.
    #[cfg(test)]
    pub(crate) fn with_item_ids(mut self, f: impl FnMut(&str) -> String + Send + 'static) -> Self {
        self.item_ids = Box::new(f);
        self
    }

    /// Sets what runs with the answer and the finished response object.
    pub fn on_finish(&mut self, f: impl FnOnce(&Message, &Value) + Send + 'static) {
        self.on_finish = Some(Box::new(f));
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The answer as an assistant message, once the response has finished.
    pub fn answer(&self) -> Option<&Message> {
        self.end.as_ref().map(|_| &self.answer)
    }

    fn frame(&mut self, name: &'static str, mut data: Value) -> Frame {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        Frame::Event {
            name: Some(name),
            data: data.to_string(),
        }
    }

    /// The response object as it stands: `status` is `in_progress` until the finish.
    pub fn response(&self, failed: Option<&GatewayError>) -> Value {
        let (status, incomplete, usage) = match (&self.end, failed) {
            (_, Some(_)) => ("failed", Value::Null, Value::Null),
            (None, None) => ("in_progress", Value::Null, Value::Null),
            (Some((reason, usage)), None) => {
                let incomplete = match reason {
                    StopReason::Length => json!({"reason": "max_output_tokens"}),
                    StopReason::ContentFilter => json!({"reason": "content_filter"}),
                    _ => Value::Null,
                };
                let status = if incomplete.is_null() {
                    "completed"
                } else {
                    "incomplete"
                };
                (status, incomplete, self.usage_json(usage))
            }
        };
        let error = failed.map_or(Value::Null, |e| {
            let code = match e.kind {
                ErrorKind::RateLimited => "rate_limit_exceeded",
                _ => "server_error",
            };
            json!({"code": code, "message": e.message})
        });
        let mut r = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": self.output,
            "usage": usage,
        });
        let o = r.as_object_mut().expect("an object");
        for (k, v) in &self.echo {
            o.insert(k.clone(), v.clone());
        }
        r
    }

    fn usage_json(&self, u: &Usage) -> Value {
        json!({
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens.min(u.output_tokens)},
            "total_tokens": u.input_tokens + u.output_tokens,
        })
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Ends the item being written (its `.done` events), if any.
    fn close(&mut self, status: &str, out: &mut Vec<Frame>) {
        let index = self.index();
        match self.open.take() {
            None => {}
            Some(Open::Reasoning { id, text }) => {
                let part = json!({"type": "summary_text", "text": text});
                out.push(self.frame(
                    ev::SUMMARY_DONE,
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                ));
                out.push(self.frame(
                    ev::SUMMARY_PART_DONE,
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part}),
                ));
                let item = json!({"id": id, "type": "reasoning", "summary": [part]});
                out.push(self.frame(ev::ITEM_DONE, json!({"output_index": index, "item": item})));
                self.output.push(item);
            }
            Some(Open::Message { id, text }) => {
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                out.push(self.frame(ev::TEXT_DONE, json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []})));
                out.push(self.frame(
                    ev::PART_DONE,
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                ));
                let item = json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": [part]});
                out.push(self.frame(ev::ITEM_DONE, json!({"output_index": index, "item": item})));
                self.output.push(item);
            }
        }
    }

    fn reasoning(&mut self, r: &str, out: &mut Vec<Frame>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close("completed", out);
            let id = (self.item_ids)("rs");
            let index = self.index();
            out.push(self.frame(ev::ITEM_ADDED, json!({"output_index": index, "item": {"id": id, "type": "reasoning", "summary": []}})));
            out.push(self.frame(ev::SUMMARY_PART_ADDED, json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})));
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        self.reasoning_tokens += estimate_tokens(r);
        let index = self.index();
        let Some(Open::Reasoning { id, text }) = self.open.as_mut() else {
            return;
        };
        text.push_str(r);
        let data = json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": r});
        out.push(self.frame(ev::SUMMARY_DELTA, data));
    }

    fn text(&mut self, t: &str, out: &mut Vec<Frame>) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close("completed", out);
            let id = (self.item_ids)("msg");
            let index = self.index();
            out.push(self.frame(ev::ITEM_ADDED, json!({"output_index": index, "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})));
            out.push(self.frame(ev::PART_ADDED, json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})));
            self.open = Some(Open::Message {
                id,
                text: String::new(),
            });
        }
        self.answer.text.push_str(t);
        let index = self.index();
        let Some(Open::Message { id, text }) = self.open.as_mut() else {
            return;
        };
        text.push_str(t);
        let data = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []});
        out.push(self.frame(ev::TEXT_DELTA, data));
    }

    fn call(&mut self, c: &ToolCall, out: &mut Vec<Frame>) {
        self.close("completed", out);
        self.answer.tool_calls.push(c.clone());
        let index = self.index();
        let wire = self.wire.get(&c.name).cloned();
        let name = wire.as_ref().map_or(c.name.as_str(), |w| w.name.as_str());
        let namespace = wire.as_ref().and_then(|w| w.namespace.clone());
        let custom = wire.as_ref().is_some_and(|w| w.custom);
        let (id, kind, body_key, body, delta_ev, done_ev) = if custom {
            let input = c
                .arguments
                .get("input")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (
                (self.item_ids)("ctc"),
                "custom_tool_call",
                "input",
                input,
                ev::INPUT_DELTA,
                ev::INPUT_DONE,
            )
        } else {
            (
                (self.item_ids)("fc"),
                "function_call",
                "arguments",
                c.arguments.to_string(),
                ev::ARGS_DELTA,
                ev::ARGS_DONE,
            )
        };
        let mut item = json!({"id": id, "type": kind, "status": "in_progress", "call_id": c.id, "name": name, body_key: ""});
        if let Some(ns) = namespace {
            item["namespace"] = json!(ns);
        }
        out.push(self.frame(ev::ITEM_ADDED, json!({"output_index": index, "item": item})));
        out.push(self.frame(
            delta_ev,
            json!({"item_id": id, "output_index": index, "delta": body}),
        ));
        let mut done = json!({"item_id": id, "output_index": index, body_key: body});
        if !custom {
            done["name"] = json!(name);
        }
        out.push(self.frame(done_ev, done));
        item["status"] = json!("completed");
        item[body_key] = json!(body);
        out.push(self.frame(ev::ITEM_DONE, json!({"output_index": index, "item": item})));
        self.output.push(item);
    }
}

impl StreamEncoder for ResponsesEncoder {
    fn start(&mut self) -> Vec<Frame> {
        let r = self.response(None);
        vec![
            self.frame(ev::CREATED, json!({"response": r})),
            self.frame(ev::IN_PROGRESS, json!({"response": r})),
        ]
    }

    fn encode(&mut self, e: &Event) -> Vec<Frame> {
        let mut out = Vec::new();
        match e {
            Event::Reasoning(r) => self.reasoning(r, &mut out),
            Event::Text(t) => self.text(t, &mut out),
            Event::ToolCall(c) => self.call(c, &mut out),
            // Lingma's own tool runs have no place among a Responses client's items.
            Event::NativeTool(t) => {
                log::debug!("native tool {} not reported on /v1/responses", t.name)
            }
            Event::Finish { reason, usage } => {
                let status = if matches!(reason, StopReason::Length | StopReason::ContentFilter) {
                    "incomplete"
                } else {
                    "completed"
                };
                self.close(status, &mut out);
                self.end = Some((reason.clone(), *usage));
                let r = self.response(None);
                if let Some(f) = self.on_finish.take() {
                    f(&self.answer, &r);
                }
                let name = if status == "completed" {
                    ev::COMPLETED
                } else {
                    ev::INCOMPLETE
                };
                out.push(self.frame(name, json!({"response": r})));
            }
        }
        out
    }

    fn error(&mut self, e: &GatewayError) -> Vec<Frame> {
        let r = self.response(Some(e));
        vec![self.frame(ev::FAILED, json!({"response": r}))]
    }
}

/// Folds a whole event stream into one `response` object, through the streaming encoder.
pub fn fold_response(enc: &mut ResponsesEncoder, events: &[Event]) -> Value {
    for e in events {
        enc.encode(e);
    }
    enc.response(None)
}

/// The 400 for a `previous_response_id` this gateway does not have (unknown, expired, made
/// with `store: false`, or another API key's).
pub fn unknown_previous(id: &str) -> GatewayError {
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

    #[test]
    fn calls_are_encoded_in_their_wire_shape() {
        let (_, opts) = parse_responses(&json!({"model": "m", "input": "x", "tools": [
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "spawn"}]},
            {"type": "custom", "name": "apply_patch"}]}))
        .unwrap();
        let mut enc = ResponsesEncoder::new("resp_1".into(), 1, "m".into(), &opts);
        let call = |name: &str, arguments: Value| {
            Event::ToolCall(ToolCall {
                id: format!("call_{name}"),
                name: name.into(),
                arguments,
            })
        };
        let r = fold_response(
            &mut enc,
            &[
                Event::Text("a".into()),
                call("ns__spawn", json!({"task": "t"})),
                call("apply_patch", json!({"input": "patch"})),
                Event::Finish {
                    reason: StopReason::ToolUse,
                    usage: Usage::default(),
                },
            ],
        );
        assert_eq!(r["status"], "completed");
        let out = r["output"].as_array().unwrap();
        assert_eq!(out[0]["type"], "message");
        assert_eq!(out[1]["type"], "function_call");
        assert_eq!(out[1]["name"], "spawn");
        assert_eq!(out[1]["namespace"], "ns");
        assert_eq!(out[1]["arguments"], "{\"task\":\"t\"}");
        assert_eq!(out[2]["type"], "custom_tool_call");
        assert_eq!(out[2]["input"], "patch");
        let answer = enc.answer().unwrap();
        assert_eq!(answer.text, "a");
        assert_eq!(answer.tool_calls.len(), 2);
    }

    #[test]
    fn a_failure_is_a_failed_response() {
        let mut enc = ResponsesEncoder::new("resp_1".into(), 1, "m".into(), &Default::default());
        let start = enc.start();
        let frames = enc.error(&GatewayError::new(ErrorKind::Upstream, "boom"));
        assert_eq!(start.len(), 2);
        let Frame::Event { name, data } = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(*name, Some("response.failed"));
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["sequence_number"], 2);
        assert_eq!(v["response"]["status"], "failed");
        assert_eq!(v["response"]["error"]["message"], "boom");
        assert!(enc.answer().is_none(), "a failed response is not stored");
    }
}
