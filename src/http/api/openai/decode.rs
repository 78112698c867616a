//! OpenAI Chat Completions requests: a `/v1/chat/completions` body → `model::ChatRequest`
//! and the options only its encoder needs. The message content and tool-choice rules here
//! are the Responses API's too. Pure.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::http::api::fields::{Dialect, Fields};
use crate::http::api::structured::output_format;
use crate::http::limits;
use crate::model::{ChatRequest, Message, Role, ToolCall, ToolChoice, ToolResult, ToolSpec};

const D: Dialect = Dialect::OpenAi;

/// Per-request options that only matter to the OpenAI encoder.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChatOptions {
    pub(crate) include_usage: bool,
    /// `prompt_cache_key`, an affinity hint after `user`.
    pub(crate) prompt_cache_key: Option<String>,
}

/// Parses and validates a `/v1/chat/completions` body.
pub(crate) fn parse_chat(body: &Value) -> Result<(ChatRequest, ChatOptions), GatewayError> {
    let f = Fields::body(body, D)?;
    // Anthropic's top-level `system` means nothing here; ignored, the client's instructions
    // would be lost without a word. OpenAI refuses it too.
    if f.has("system") {
        return Err(GatewayError::invalid(
            "system",
            "Unrecognized request argument supplied: system. Chat completions take the system prompt as a message with role 'system'.",
        ));
    }
    let model = model(&f)?;
    let messages = messages(&f)?;
    let stream = f.opt_bool("stream")?.unwrap_or(false);
    let include_usage = include_usage(&f)?;
    let stop = stop(&f)?;
    one_choice(&f)?;
    let max_tokens = max_tokens(&f)?;
    f.numbers(&[
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
    ])?;
    let affinity = f.opt_text("user")?;
    let tools = parse_tools(&f)?;
    let tool_choice = parse_tool_choice(&f, &tools)?;
    let one_tool_call = !f.opt_bool("parallel_tool_calls")?.unwrap_or(true);
    let output_format = match f.get("response_format") {
        Some(v) => output_format("response_format", v)?,
        None => None,
    };
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
        output_format,
        scope: String::new(),
    };
    let prompt_cache_key = f.opt_text("prompt_cache_key")?;
    Ok((
        req,
        ChatOptions {
            include_usage,
            prompt_cache_key,
        },
    ))
}

/// The required `model` string of an OpenAI body (chat or Responses).
pub(crate) fn model(f: &Fields) -> Result<String, GatewayError> {
    match f.opt_str("model")? {
        Some(m) => Ok(m.to_string()),
        None => Err(GatewayError::invalid(
            "model",
            "you must provide a model parameter",
        )),
    }
}

fn messages(f: &Fields) -> Result<Vec<Message>, GatewayError> {
    let items = f.array("messages")?;
    if items.is_empty() {
        return Err(GatewayError::invalid(
            "messages",
            "'messages' must contain at least one message.",
        ));
    }
    limits::check_messages("messages", items)?;
    let messages = items
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::model::join_assistant_runs(messages))
}

/// `stream_options.include_usage`. Its type error names the field as OpenAI does: the
/// message says `include_usage`, the param the whole path.
fn include_usage(f: &Fields) -> Result<bool, GatewayError> {
    let Some(o) = f.opt_object("stream_options")? else {
        return Ok(false);
    };
    let include = Fields::new(o, "", D)
        .opt_bool("include_usage")
        .map_err(|mut e| {
            e.param = Some("stream_options.include_usage".into());
            e
        })?;
    Ok(include.unwrap_or(false))
}

/// `stop`: one string or an array of them.
fn stop(f: &Fields) -> Result<Vec<String>, GatewayError> {
    match f.get("stop") {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        _ => f.strings(
            "stop",
            "a string or an array of strings",
            "an array of strings",
        ),
    }
}

/// `max_tokens`, or its newer name `max_completion_tokens`, which wins.
fn max_tokens(f: &Fields) -> Result<Option<u64>, GatewayError> {
    let mut max_tokens = None;
    for name in ["max_tokens", "max_completion_tokens"] {
        if let Some(n) = f.opt_positive(name)? {
            max_tokens = Some(n);
        }
    }
    Ok(max_tokens)
}

/// `n`: Lingma gives one answer per request.
fn one_choice(f: &Fields) -> Result<(), GatewayError> {
    let Some(n) = f.get("n") else {
        return Ok(());
    };
    match n.as_u64() {
        Some(1) => Ok(()),
        Some(_) => Err(GatewayError::invalid(
            "n",
            "Only n=1 is supported: Lingma returns one answer per request.",
        )),
        None => Err(f.type_error("n", "an integer", n)),
    }
}

fn parse_message(i: usize, m: &Value) -> Result<Message, GatewayError> {
    let m = Fields::object(m, format!("messages[{i}]"), D)?;
    let role = match m.str("role")? {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        other => {
            return Err(GatewayError::invalid(
                m.param("role"),
                format!("Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'."),
            ))
        }
    };
    if role == Role::System {
        system_content(&m.param("content"), m.get("content"))?;
    }
    let text = content_text(&m.param("content"), m.get("content"))?;
    let mut message = Message::new(role, text);
    if role == Role::Assistant {
        for (j, c) in m
            .opt_array("tool_calls")?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let at = format!("{}[{j}]", m.param("tool_calls"));
            message.tool_calls.push(parse_history_call(&at, c)?);
        }
        // The legacy single `function_call`.
        if let Some(fc) = m.get("function_call") {
            let call = json!({"id": "", "function": fc});
            let at = m.param("function_call");
            message.tool_calls.push(parse_history_call(&at, &call)?);
        }
    }
    if role == Role::Tool {
        let call_id = m.opt_str("tool_call_id")?.unwrap_or("").to_string();
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        if call_id.is_empty() && name.is_empty() {
            return Err(m.missing("tool_call_id"));
        }
        message.tool_results.push(ToolResult {
            call_id,
            name: name.to_string(),
            content: std::mem::take(&mut message.text),
            is_error: false,
        });
    }
    Ok(message)
}

/// A system or developer message's content (`at` names it), as OpenAI takes it: required,
/// a string or an array of text parts (`content_text` refuses the other types, but would
/// take a refusal or nothing).
fn system_content(at: &str, content: Option<&Value>) -> Result<(), GatewayError> {
    match content {
        None => Err(D.missing(at)),
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
        .ok_or_else(|| D.missing(&format!("{at}.function.name")))?;
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
            return Err(D.type_error(&format!("{at}.function.arguments"), "a string", other))
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

/// One function of `tools` or `functions`: `{name, description, parameters}`.
fn function_spec(at: String, f: &Value) -> Result<ToolSpec, GatewayError> {
    let f = Fields::object(f, at, D)?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| f.missing("name"))?;
    let schema = match f.opt_object("parameters")? {
        None => json!({"type": "object", "properties": {}}),
        Some(o) => Value::Object(o.clone()),
    };
    let description = f.get("description").and_then(Value::as_str).unwrap_or("");
    Ok(ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        schema,
    })
}

/// `tools` (function tools) and the legacy `functions`. Tool types Lingma cannot be given
/// (OpenAI's custom/freeform tools) are skipped with a log line.
fn parse_tools(f: &Fields) -> Result<Vec<ToolSpec>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in f.opt_array("tools")?.unwrap_or_default().iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            log::warn!("tools[{i}] has type {kind:?}, which cannot be offered to Lingma; skipped");
            continue;
        }
        let function = t.get("function").unwrap_or(&Value::Null);
        out.push(function_spec(format!("tools[{i}].function"), function)?);
    }
    for (i, function) in f
        .opt_array("functions")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        out.push(function_spec(format!("functions[{i}]"), function)?);
    }
    Ok(out)
}

fn parse_tool_choice(f: &Fields, tools: &[ToolSpec]) -> Result<ToolChoice, GatewayError> {
    let (param, v) = match (f.get("tool_choice"), f.get("function_call")) {
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
                _ => return Err(D.missing(&format!("{param}.function.name"))),
            }
        }
        other => return Err(D.type_error(param, "a string or an object", other)),
    };
    check_tool_choice(param, "function", choice, tools)
}

/// A tool choice the declared tools can satisfy: a named `kind` of tool must be declared,
/// and a forced call needs some tool.
pub(crate) fn check_tool_choice(
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

/// A message's text (`at` names its content): a string, or text parts joined. Other part
/// types are refused.
pub(crate) fn content_text(at: &str, content: Option<&Value>) -> Result<String, GatewayError> {
    let parts = match content {
        None => return Ok(String::new()),
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(other) => {
            return Err(D.type_error(at, "a string or an array of content parts", other))
        }
    };
    let mut out = String::new();
    for (j, part) in parts.iter().enumerate() {
        if let Some(t) = part_text(&format!("{at}[{j}]"), part)? {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
    }
    Ok(out)
}

/// One content part's text (`None`: a part that adds none).
fn part_text<'a>(at: &str, part: &'a Value) -> Result<Option<&'a str>, GatewayError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" | "input_text" | "output_text" => match part.get("text") {
            Some(Value::String(t)) => Ok(Some(t)),
            other => Err(D.type_error(
                &format!("{at}.text"),
                "a string",
                other.unwrap_or(&Value::Null),
            )),
        },
        // An assistant's refusal, echoed back: its text is what was said.
        "refusal" => Ok(part.get("refusal").and_then(Value::as_str)),
        "image_url" | "input_image" | "input_audio" | "file" | "input_file" => {
            Err(GatewayError::invalid(
                at,
                format!("Content parts of type '{kind}' are not supported: Lingma's chat takes text only."),
            ))
        }
        "" => Err(GatewayError::invalid(
            format!("{at}.type"),
            "Each content part needs a 'type'.",
        )),
        other => Err(GatewayError::invalid(
            format!("{at}.type"),
            format!("Unknown content part type '{other}'."),
        )),
    }
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
}
