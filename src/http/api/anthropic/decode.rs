//! Anthropic Messages requests: a `/v1/messages` (or `count_tokens`) body →
//! `model::ChatRequest` and the options only its encoder needs, and the token count of
//! `/v1/messages/count_tokens`. Pure.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::http::api::fields::{Dialect, Fields, Want};
use crate::http::api::structured::output_format;
use crate::http::limits;
use crate::model::{
    estimate_tokens, ChatRequest, Message, Role, ToolCall, ToolChoice, ToolResult, ToolSpec,
};

const D: Dialect = Dialect::Anthropic;

/// What only the Anthropic encoder needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessagesOptions {
    /// `thinking` enabled (or adaptive): reasoning goes out as thinking blocks; otherwise
    /// it is dropped (it never leaks into the text).
    pub(crate) thinking: bool,
    /// Tokens of thinking blocks in the history, which Lingma is not sent but which
    /// count_tokens counts (to lean high).
    pub(crate) history_thinking_tokens: u64,
    /// `metadata.user_id`, an affinity hint.
    pub(crate) user_id: Option<String>,
}

/// Parses and validates a `/v1/messages` body (`for_count`: a count_tokens body, which has
/// no `max_tokens`; otherwise it is validated the same way).
pub(crate) fn parse_messages(
    body: &Value,
    for_count: bool,
) -> Result<(ChatRequest, MessagesOptions), GatewayError> {
    let f = Fields::body(body, D)?;
    let model = f.str("model")?.to_string();
    let max_tokens = match f.opt_positive("max_tokens")? {
        None if !for_count => return Err(f.missing("max_tokens")),
        n => n,
    };
    let mut opts = MessagesOptions::default();
    let messages = messages(&f, &mut opts)?;
    let stream = f.opt_bool("stream")?.unwrap_or(false);
    let stop = f.strings("stop_sequences", D.want(Want::Array), "a list of strings")?;
    f.numbers(&["temperature", "top_p", "top_k"])?;
    opts.thinking = thinking(&f)?;
    opts.user_id = f
        .typed("metadata", "an object", Value::as_object)?
        .and_then(|m| m.get("user_id").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(String::from);
    let tools = parse_tools(&f)?;
    let tool_choice = parse_tool_choice(&f, &tools)?;
    let one_tool_call = f
        .get("tool_choice")
        .and_then(|c| c.get("disable_parallel_tool_use"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // The structured-outputs beta's `output_format`.
    let output_format = match f.get("output_format") {
        Some(v) => output_format("output_format", v)?,
        None => None,
    };
    let req = ChatRequest {
        model,
        messages: crate::model::join_assistant_runs(messages),
        stream,
        stop,
        max_tokens,
        affinity: None,
        tools,
        tool_choice,
        one_tool_call,
        output_format,
        scope: String::new(),
    };
    Ok((req, opts))
}

/// `system`, then `messages`.
fn messages(f: &Fields, opts: &mut MessagesOptions) -> Result<Vec<Message>, GatewayError> {
    let mut messages: Vec<Message> = system(f)?.into_iter().collect();
    let items = f.array("messages")?;
    if items.is_empty() {
        return Err(GatewayError::invalid(
            "messages",
            "messages: at least one message is required",
        ));
    }
    limits::check_messages("messages", items)?;
    for (i, m) in items.iter().enumerate() {
        messages.push(parse_message(i, m, opts)?);
    }
    Ok(messages)
}

/// Whether `thinking` is on (`enabled` or `adaptive`).
fn thinking(f: &Fields) -> Result<bool, GatewayError> {
    let thinking = f.typed("thinking", "an object", Value::as_object)?;
    Ok(thinking.is_some_and(|t| {
        matches!(
            t.get("type").and_then(Value::as_str),
            Some("enabled") | Some("adaptive")
        )
    }))
}

/// The top-level `system`: a string, or text blocks joined by a blank line.
fn system(f: &Fields) -> Result<Option<Message>, GatewayError> {
    let text = match f.get("system") {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks_text("system", blocks)?,
        Some(other) => {
            return Err(f.type_error("system", "a valid string or a list of text blocks", other))
        }
    };
    Ok(Some(Message::new(Role::System, text)))
}

fn parse_message(i: usize, m: &Value, opts: &mut MessagesOptions) -> Result<Message, GatewayError> {
    let m = Fields::object(m, format!("messages.{i}"), D)?;
    let role = match m.typed("role", "a string", Value::as_str)? {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        // Claude Code's mid-conversation system messages.
        Some("system") => Role::System,
        Some(other) => {
            let param = m.param("role");
            return Err(GatewayError::invalid(
                param.clone(),
                format!("{param}: Input should be 'user' or 'assistant', not '{other}'"),
            ));
        }
        None => return Err(m.missing("role")),
    };
    let mut message = Message::new(role, String::new());
    match m.get("content") {
        Some(Value::String(s)) => message.text = s.clone(),
        Some(Value::Array(blocks)) => {
            content_blocks(&m.param("content"), blocks, &mut message, opts)?
        }
        Some(other) => {
            return Err(m.type_error("content", "a valid string or list of content blocks", other))
        }
        None => return Err(m.missing("content")),
    }
    Ok(message)
}

/// A message's content blocks (`at` names the content) into `message`.
fn content_blocks(
    at: &str,
    blocks: &[Value],
    message: &mut Message,
    opts: &mut MessagesOptions,
) -> Result<(), GatewayError> {
    let mut texts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let b = Fields::lenient(b, format!("{at}.{j}"), D);
        let kind = b.raw("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => texts.push(text_of(&b)?),
            "tool_use" | "server_tool_use" if message.role == Role::Assistant => {
                if kind == "tool_use" {
                    message.tool_calls.push(tool_use(&b)?);
                }
            }
            "tool_result" => message.tool_results.push(tool_result(&b)?),
            "thinking" | "redacted_thinking" => {
                let t = b.raw("thinking").or_else(|| b.raw("data"));
                opts.history_thinking_tokens +=
                    estimate_tokens(t.and_then(Value::as_str).unwrap_or(""));
            }
            "image" | "document" => {
                let at = b.at();
                return Err(GatewayError::invalid(
                    at,
                    format!("{at}: content blocks of type '{kind}' are not supported yet: Lingma's chat takes text only."),
                ));
            }
            "" => return Err(b.missing("type")),
            other => log::debug!("{at}.{j}: ignoring a content block of type {other:?}"),
        }
    }
    message.text = texts.join("\n");
    Ok(())
}

/// A text block's `text` (`null` is a wrong type here, not an absent field).
fn text_of(b: &Fields) -> Result<String, GatewayError> {
    match b.raw("text") {
        Some(Value::String(t)) => Ok(t.clone()),
        Some(other) => Err(b.type_error("text", D.want(Want::String), other)),
        None => Err(b.missing("text")),
    }
}

/// System blocks: text blocks only, as in Anthropic's API (their `cache_control` and
/// `citations` ignored).
fn blocks_text(at: &str, blocks: &[Value]) -> Result<String, GatewayError> {
    let mut out = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let b = Fields::object(b, format!("{at}.{j}"), D)?;
        match b.raw("type") {
            Some(Value::String(t)) if t == "text" => out.push(text_of(&b)?),
            Some(other) => {
                let param = b.param("type");
                return Err(GatewayError::invalid(
                    param.clone(),
                    format!("{param}: Input should be 'text', not {other}"),
                ));
            }
            None => return Err(b.missing("type")),
        }
    }
    Ok(out.join("\n\n"))
}

fn tool_use(b: &Fields) -> Result<ToolCall, GatewayError> {
    let name = b
        .raw("name")
        .and_then(Value::as_str)
        .ok_or_else(|| b.missing("name"))?;
    let input = match b.raw("input") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => json!({}),
        Some(other) => return Err(b.type_error("input", D.want(Want::Object), other)),
    };
    Ok(ToolCall {
        id: b
            .raw("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: name.to_string(),
        arguments: input,
    })
}

fn tool_result(b: &Fields) -> Result<ToolResult, GatewayError> {
    let call_id = b
        .raw("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| b.missing("tool_use_id"))?;
    let content = match b.raw("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => result_parts(parts),
        Some(other) => return Err(b.type_error("content", "a string or a list of blocks", other)),
    };
    Ok(ToolResult {
        call_id: call_id.to_string(),
        name: String::new(),
        content,
        is_error: b.raw("is_error").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A tool result's blocks as text.
fn result_parts(parts: &[Value]) -> String {
    let mut out = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => out.push(
                p.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            // A tool may return an image (Claude Code's Read of a picture); the model is
            // told it was left out rather than the whole turn refused.
            Some(kind) => out.push(format!("[{kind} omitted: lingma-gateway passes text only]")),
            None => {}
        }
    }
    out.join("\n")
}

/// Custom tools (`name`, `description`, `input_schema`). Anthropic's built-in tool types
/// (web search, code execution, text editor, ...) cannot be offered to Lingma: skipped.
fn parse_tools(f: &Fields) -> Result<Vec<ToolSpec>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in f.opt_array("tools")?.unwrap_or_default().iter().enumerate() {
        let t = Fields::lenient(t, format!("tools.{i}"), D);
        let kind = t.raw("type").and_then(Value::as_str).unwrap_or("custom");
        if kind != "custom" {
            log::warn!(
                "tools.{i} is Anthropic's built-in tool type {kind:?}, which Lingma cannot run; skipped"
            );
            continue;
        }
        let name = t
            .raw("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| t.missing("name"))?;
        let schema = match t.raw("input_schema") {
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => return Err(t.type_error("input_schema", D.want(Want::Object), other)),
            None => return Err(t.missing("input_schema")),
        };
        let description = t.raw("description").and_then(Value::as_str).unwrap_or("");
        out.push(ToolSpec {
            name: name.to_string(),
            description: description.to_string(),
            schema,
        });
    }
    Ok(out)
}

fn parse_tool_choice(f: &Fields, tools: &[ToolSpec]) -> Result<ToolChoice, GatewayError> {
    let Some(o) = f.typed("tool_choice", D.want(Want::Object), Value::as_object)? else {
        return Ok(ToolChoice::Auto);
    };
    let choice = match o.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("any") => ToolChoice::Any,
        Some("tool") => match o.get("name").and_then(Value::as_str) {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => return Err(D.missing("tool_choice.name")),
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

/// `count_tokens`: the prompt Lingma would be sent (system, every message, tool results,
/// the tool contract with every schema) plus thinking from the history, with the gateway's
/// high-leaning estimator.
pub(crate) fn count_tokens(question: &str, opts: &MessagesOptions) -> u64 {
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
}
