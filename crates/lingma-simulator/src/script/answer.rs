//! What a turn answers, in priority order: tool results acknowledged, Lingma's own tool
//! path, a call of a declared tool through the prompt's contract, or a body directive (the
//! greeting by default); and the answer's text cut into deltas, think block first.

use serde_json::{json, Value};

use super::call::{arguments, call_answer, native_card, DEFAULT_COMMAND};
use super::directives::{Body, Directives, Style};
use super::steps::{NativeCall, Turn};
use super::text::{quote, split_deltas, user_text, with_empty_deltas};
use crate::models::Model;
use crate::prompt::{Prompt, ToolChoice};

/// Opens the think block reasoning models put in front of the answer, as the real server
/// frames it (protocol §6): on a new line, four backticks; the placeholder is sent
/// literally, as the real server sometimes does.
const THINK_OPEN: &str = "\n````think::{THINK_TIME}\n";
/// Closes it: the newline before the fence is the marker's, not the reasoning's.
const THINK_CLOSE: &str = "\n````\n";
/// The answer of `[[sim:unicode]]`: multi-byte characters of 2, 3 and 4 bytes.
pub(crate) const UNICODE_ANSWER: &str = "你好，世界 — héllo 🌍 ünïcödé ✓";
/// How much of each tool result the answer to a tool-result turn quotes.
const RESULT_CHARS: usize = 2000;

/// What the body of an answer is, in priority order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// The latest turn carries tool results: acknowledge them.
    ToolResults(String),
    /// `[[sim:native=NAME]]`.
    Native(NativeCall),
    /// Call a declared tool through the prompt's contract.
    Call {
        name: String,
        arguments: Value,
        calls: usize,
        style: Style,
    },
    /// A body directive, or the greeting.
    Body(Body),
}

pub(crate) fn choose_answer(turn: &Turn, prompt: &Prompt, d: &Directives) -> Answer {
    if prompt.tool_result_turn() {
        return Answer::ToolResults(tool_results_answer(prompt));
    }
    if let Some(name) = &d.native {
        // Without `[[sim:native_args=JSON]]`, what a `read_file` call takes.
        let parameters = d
            .native_args
            .clone()
            .unwrap_or_else(|| json!({"path": "README.md"}));
        return Answer::Native(NativeCall {
            name: name.clone(),
            tool_call_id: turn.tool_call_id.to_string(),
            parameters,
            asynchronous: d.native_async,
        });
    }
    if let Some((name, schema)) = tool_to_call(prompt, d) {
        let command = d.cmd.as_deref().unwrap_or(DEFAULT_COMMAND);
        return Answer::Call {
            arguments: arguments(&schema, command),
            name,
            calls: d.calls.unwrap_or(1),
            style: d.style.unwrap_or_default(),
        };
    }
    Answer::Body(d.body.unwrap_or(Body::Greeting))
}

/// The tool (name and schema) this turn calls through the prompt's contract: the tool the
/// choice forces, else the declared tool `[[sim:tool=NAME]]` names. None when the choice is
/// `none`, or under `[[sim:lazy]]` until the retry instruction is there.
fn tool_to_call(prompt: &Prompt, d: &Directives) -> Option<(String, Value)> {
    let tools = prompt.tools.as_ref()?;
    if tools.choice == ToolChoice::None || (d.lazy && !prompt.retry) {
        return None;
    }
    let directed = d.tool.as_deref().and_then(|name| tools.get(name));
    let tool = match &tools.choice {
        ToolChoice::Named(name) => match tools.get(name) {
            Some(tool) => tool,
            // Not declared: the gateway broke the contract; call it anyway, visibly.
            None => return Some((name.clone(), Value::Null)),
        },
        ToolChoice::Any => directed.or(tools.tools.first())?,
        ToolChoice::Auto | ToolChoice::None => directed?,
    };
    Some((tool.name.clone(), tool.schema.clone()))
}

/// `Tool result received: ` and the first 2000 characters of each result, joined by ` | `.
fn tool_results_answer(prompt: &Prompt) -> String {
    let parts: Vec<String> = prompt
        .results
        .iter()
        .map(|r| r.text.chars().take(RESULT_CHARS).collect())
        .collect();
    format!("Tool result received: {}", parts.join(" | "))
}

/// The log line's summary of the prompt and the answer chosen.
pub(crate) fn note(prompt: &Prompt, answer: &Answer) -> String {
    let choice = match prompt.tools.as_ref().map(|t| &t.choice) {
        None => "-".to_string(),
        Some(ToolChoice::Auto) => "auto".into(),
        Some(ToolChoice::None) => "none".into(),
        Some(ToolChoice::Any) => "required".into(),
        Some(ToolChoice::Named(name)) => format!("required:{name}"),
    };
    let answer = match answer {
        Answer::ToolResults(_) => format!("tool-results({})", prompt.results.len()),
        Answer::Native(call) => format!("native {} toolCallId={}", call.name, call.tool_call_id),
        Answer::Call {
            name, calls, style, ..
        } => format!("call {name} x{calls} style={}", style.as_str()),
        Answer::Body(_) => "text".into(),
    };
    format!(
        "prompt sections={} tools={} choice={choice} retry={} -> {answer}",
        prompt.sections,
        prompt.tools.as_ref().map_or(0, |t| t.tools.len()),
        prompt.retry,
    )
}

/// The answer's deltas, empty ones included, and the native tool call that follows them.
pub(crate) fn answer_deltas(
    turn: &Turn,
    model: &Model,
    d: &Directives,
    prompt: &Prompt,
    answer: Answer,
) -> (Vec<String>, Option<NativeCall>) {
    let quote = quote(user_text(prompt, turn.question));
    let mut deltas = Vec::new();
    if d.think || model.is_reasoning {
        // Both markers are cut across deltas, the opener's newline alone and the closer's
        // split from its fence, as the real server's 1–5 character deltas cut them.
        deltas = split_deltas(&format!("{THINK_OPEN}Thinking about: {quote}"));
        deltas.extend(split_deltas(THINK_CLOSE));
    }
    let mut native = None;
    let body = match answer {
        Answer::ToolResults(text) => text,
        Answer::Native(call) => {
            let text = native_card(&call.name, &call.tool_call_id);
            native = Some(call);
            text
        }
        Answer::Call {
            name,
            arguments,
            calls,
            style,
        } => call_answer(&name, &arguments, calls, style),
        Answer::Body(Body::Chunks(n)) => {
            let pad = d.pad.unwrap_or(0);
            deltas.extend((1..=n).map(|i| {
                let mut delta = format!("c{i} ");
                let dots = pad.saturating_sub(delta.len());
                delta.extend(std::iter::repeat_n('.', dots));
                delta
            }));
            return (with_empty_deltas(deltas), None);
        }
        Answer::Body(Body::Greeting) => {
            let greeting = format!(
                "Hello from the Lingma simulator ({}). You said: {quote}",
                model.display_name
            );
            match &prompt.json_format {
                None => greeting,
                // Asked for JSON, it answers in a ```json fence, as models like to.
                Some(schema) => {
                    let value = match schema {
                        Value::Null => json!({"answer": greeting}),
                        schema => arguments(schema, DEFAULT_COMMAND),
                    };
                    format!("```json\n{value}\n```")
                }
            }
        }
        Answer::Body(Body::Turn) => format!("turn {} of session {}", turn.number, turn.session_id),
        Answer::Body(Body::Whoami) => format!("instance {} pid {}", turn.instance, turn.pid),
        Answer::Body(Body::Echo) => turn.question.to_string(),
        Answer::Body(Body::Unicode) => UNICODE_ANSWER.to_string(),
    };
    deltas.extend(split_deltas(&body));
    (with_empty_deltas(deltas), native)
}
