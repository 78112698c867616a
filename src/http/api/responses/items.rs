//! The `input` items of a Responses request → conversation messages: messages, earlier
//! function and custom tool calls (named as the prompt names their tools) and their
//! outputs. Items that carry nothing Lingma can use are skipped. Pure.

use serde_json::{json, Value};

use super::tools::{prompt_name, required_name, WireTools};
use crate::error::GatewayError;
use crate::http::api::fields::{Dialect, Fields};
use crate::http::api::openai::decode::content_text;
use crate::model::{Message, Role, ToolCall, ToolResult};

const D: Dialect = Dialect::OpenAi;

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
pub(crate) fn parse_items(items: &[Value], wire: &WireTools) -> Result<Vec<Message>, GatewayError> {
    let mut out: Vec<Message> = Vec::new();
    let mut assistant: Option<Message> = None;
    for (i, item) in items.iter().enumerate() {
        let it = Fields::object(item, format!("input[{i}]"), D)?;
        let kind = it.opt_str("type")?.unwrap_or("message");
        match kind {
            "message" => {
                let (role, text) = message_item(&it)?;
                if role == Role::Assistant {
                    assistant
                        .get_or_insert_with(|| Message::new(Role::Assistant, ""))
                        .text
                        .push_str(&text);
                } else {
                    out.extend(assistant.take());
                    out.push(Message::new(role, text));
                }
            }
            "function_call" | "custom_tool_call" => {
                let call = history_call(&it, kind == "custom_tool_call", wire)?;
                assistant
                    .get_or_insert_with(|| Message::new(Role::Assistant, ""))
                    .tool_calls
                    .push(call);
            }
            "function_call_output" | "custom_tool_call_output" => {
                out.extend(assistant.take());
                out.push(call_output(&it)?);
            }
            "reasoning" => {}
            "item_reference" => {
                return Err(GatewayError::invalid(it.at(), "Item references are not supported by this gateway; send the item itself, or use 'previous_response_id'."))
            }
            k if SKIPPED_ITEMS.contains(&k) => {
                log::warn!("{} is a {k:?} item, which Lingma cannot use; skipped", it.at());
            }
            other => {
                return Err(GatewayError::invalid(it.param("type"), format!("Invalid value: '{other}'. This gateway reads 'message', 'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output' and 'reasoning' items.")))
            }
        }
    }
    out.extend(assistant);
    Ok(out)
}

/// A `message` item's role and text.
fn message_item(it: &Fields) -> Result<(Role, String), GatewayError> {
    let role = match it.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") | Some("developer") => Role::System,
        Some(other) => return Err(GatewayError::invalid(it.param("role"), format!("Invalid value: '{other}'. Supported values are: 'user', 'assistant', 'system' and 'developer'."))),
        None => return Err(it.missing("role")),
    };
    let text = content_text(&it.param("content"), it.get("content"))?;
    Ok((role, text))
}

/// A `function_call_output` or `custom_tool_call_output` item: a tool message.
fn call_output(it: &Fields) -> Result<Message, GatewayError> {
    let call_id = match it.get("call_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(it.missing("call_id")),
    };
    let content = output_text(&it.param("output"), it.get("output"))?;
    let mut m = Message::new(Role::Tool, "");
    m.tool_results.push(ToolResult {
        call_id,
        name: String::new(),
        content,
        is_error: false,
    });
    Ok(m)
}

/// An earlier call, named as the prompt names its tool.
fn history_call(it: &Fields, custom: bool, wire: &WireTools) -> Result<ToolCall, GatewayError> {
    let name = required_name(it)?;
    let namespace = it.raw("namespace").and_then(Value::as_str);
    let arguments = if custom {
        let input = it.raw("input").and_then(Value::as_str).unwrap_or("");
        json!({"input": input})
    } else {
        match it.get("arguments") {
            None => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({"raw": s}),
            },
            Some(other) => return Err(it.type_error("arguments", "a string", other)),
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
        id: it
            .raw("call_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: prompt,
        arguments,
    })
}

/// A tool output (`at` names it): a string, or content parts (text kept, images and files
/// noted).
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
        Some(other) => Err(D.type_error(at, "a string or an array of content parts", other)),
    }
}
