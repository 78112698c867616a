//! The gateway's one internal form of a chat: request, messages, the stream of events an
//! answer is made of, stop reasons and usage. Every wire protocol translates to and from
//! these; nothing here knows about HTTP or Lingma.

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A call of a client-declared tool, as the model made it (in an earlier assistant turn, or
/// in the answer being produced).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Always a JSON object.
    pub arguments: serde_json::Value,
}

/// The client's result of an earlier tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    /// The tool's name when known (looked up from the call), else empty.
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

/// A tool the client declares.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// The JSON schema of the tool's parameters (an object).
    pub schema: serde_json::Value,
}

impl ToolSpec {
    /// The names of the parameters the schema requires.
    pub fn required(&self) -> Vec<&str> {
        self.schema
            .get("required")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// Which tool calls the client allows or demands in this answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    /// At least one call of any declared tool.
    Any,
    /// A call of this tool.
    Named(String),
}

impl ToolChoice {
    pub fn is_forced(&self) -> bool {
        matches!(self, ToolChoice::Any | ToolChoice::Named(_))
    }
}

/// One message of the conversation. Assistant messages may carry tool calls; the client's
/// tool results ride on `Tool` messages (OpenAI) or user messages (Anthropic).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_results: Vec<ToolResult>,
}

impl Message {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            text: text.into(),
            tool_calls: Vec::new(),
            tool_results: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.trim().is_empty() && self.tool_calls.is_empty() && self.tool_results.is_empty()
    }
}

/// The shape of answer a client asks for instead of free text.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any one JSON object.
    JsonObject,
    /// One JSON value matching `schema`.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
    },
}

/// Joins assistant messages that follow each other into one: some clients echo one answer
/// as several (Codex 0.94 sends its calls and its text as two), and one answer is one
/// message everywhere else (prompt turns, session-reuse keys).
pub fn join_assistant_runs(messages: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for m in messages {
        match out.last_mut() {
            Some(prev) if prev.role == Role::Assistant && m.role == Role::Assistant => {
                if !m.text.is_empty() {
                    if !prev.text.is_empty() {
                        prev.text.push('\n');
                    }
                    prev.text.push_str(&m.text);
                }
                prev.tool_calls.extend(m.tool_calls);
            }
            _ => out.push(m),
        }
    }
    out
}

/// A chat request in protocol-neutral form.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The model name as the client wrote it (resolved to a Lingma key later).
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    /// Stop sequences, applied by the gateway (Lingma has no such option).
    pub stop: Vec<String>,
    /// Upper bound on output tokens (estimated); the answer is cut with `StopReason::Length`.
    pub max_tokens: Option<u64>,
    /// Key that should land on the same Lingma instance as before (OpenAI `user`, ...).
    pub affinity: Option<String>,
    /// Tools the client declares (after the allowlist).
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    /// `parallel_tool_calls: false`: an answer carries at most one tool call (later ones are
    /// dropped).
    pub one_tool_call: bool,
    /// A structured answer the client asks for (OpenAI `response_format` / `text.format`,
    /// Anthropic `output_format`), asked of the model in the prompt.
    pub output_format: Option<OutputFormat>,
    /// Whose conversation this is (a digest of the client's API key): session reuse never
    /// crosses it.
    pub scope: String,
}

impl ChatRequest {
    /// A stable key for instance affinity: the client's hint, else a hash of the system
    /// prompt or, without one, of the first message.
    pub fn affinity_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match &self.affinity {
            Some(a) => ("hint", a).hash(&mut h),
            None => {
                let first = self
                    .messages
                    .iter()
                    .find(|m| m.role == Role::System)
                    .or_else(|| self.messages.first());
                ("first", first.map(|m| m.text.as_str()).unwrap_or("")).hash(&mut h)
            }
        }
        h.finish()
    }

    /// Whether tool calls may be parsed out of the answer.
    pub fn tools_active(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != ToolChoice::None
    }

    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Why an answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    /// One of the request's stop sequences was produced (it is not part of the text).
    StopSequence(String),
    /// `max_tokens` was reached.
    Length,
    /// Lingma's content filter ended the answer (statusCode 406/601).
    ContentFilter,
    /// The answer calls tools; the client runs them and sends the results in its next request.
    ToolUse,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A tool Lingma's own agent called and ran through its `tool/call/sync` / `tool/invoke`
/// path (not a client tool): reported so the client can see what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeTool {
    pub id: String,
    pub name: String,
    pub input: serde_json::Value,
    /// The final status as Lingma reported it (`FINISHED`, `ERROR`, `CANCELLED`).
    pub status: String,
    pub output: String,
    pub is_error: bool,
}

/// One piece of an answer, in order. A stream is zero or more `Text`/`Reasoning`/`ToolCall`/
/// `NativeTool` then exactly one `Finish` — or an error instead of the `Finish`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Reasoning(String),
    /// A validated call of a client-declared tool.
    ToolCall(ToolCall),
    NativeTool(NativeTool),
    Finish {
        reason: StopReason,
        usage: Usage,
    },
}

/// Token estimate for text (Lingma reports none). Leans high, because an undercount makes
/// clients such as Claude Code compact their context too late: one token per 3 ASCII
/// characters (English prose averages ~4, code and JSON ~3) and one per non-ASCII character
/// (CJK is about one each).
pub fn estimate_tokens(text: &str) -> u64 {
    let mut ascii = 0u64;
    let mut other = 0u64;
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(3) + other
}

/// Where to cut `text` so that its estimate stays within `budget` tokens: `None` when it
/// fits whole, else the byte length of the longest prefix that fits.
pub fn cut_to_tokens(text: &str, budget: u64) -> Option<usize> {
    if estimate_tokens(text) <= budget {
        return None;
    }
    let (mut ascii, mut other) = (0u64, 0u64);
    for (i, c) in text.char_indices() {
        let (a, o) = if c.is_ascii() {
            (ascii + 1, other)
        } else {
            (ascii, other + 1)
        };
        if a.div_ceil(3) + o > budget {
            return Some(i);
        }
        (ascii, other) = (a, o);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_its_token_budget() {
        assert_eq!(cut_to_tokens("abcdef", 2), None);
        assert_eq!(cut_to_tokens("abcdefg", 2), Some(6));
        assert_eq!(cut_to_tokens("ab你好", 2), Some(5));
        assert_eq!(cut_to_tokens("你好", 0), Some(0));
        let cut = cut_to_tokens("c1 c2 c3 c4 c5 c6 c7 c8", 5).unwrap();
        assert_eq!(estimate_tokens(&"c1 c2 c3 c4 c5 c6 c7 c8"[..cut]), 5);
    }

    #[test]
    fn an_answer_echoed_as_two_assistant_messages_is_one() {
        let mut calls = Message::new(Role::Assistant, "");
        calls.tool_calls.push(ToolCall {
            id: "c".into(),
            name: "shell".into(),
            arguments: serde_json::json!({}),
        });
        let joined = join_assistant_runs(vec![
            Message::new(Role::User, "u"),
            calls,
            Message::new(Role::Assistant, "I'll call shell now."),
            Message::new(Role::Tool, ""),
            Message::new(Role::Assistant, "a"),
        ]);
        assert_eq!(joined.len(), 4);
        assert_eq!(joined[1].text, "I'll call shell now.");
        assert_eq!(joined[1].tool_calls.len(), 1);
        assert_eq!(joined[3].text, "a");
    }

    fn msg(role: Role, text: &str) -> Message {
        Message::new(role, text)
    }

    #[test]
    fn affinity_prefers_hint_then_system_prompt() {
        let a = ChatRequest {
            messages: vec![msg(Role::System, "S"), msg(Role::User, "x")],
            ..Default::default()
        };
        let b = ChatRequest {
            messages: vec![msg(Role::System, "S"), msg(Role::User, "y")],
            ..Default::default()
        };
        assert_eq!(a.affinity_key(), b.affinity_key());
        let c = ChatRequest {
            affinity: Some("u1".into()),
            ..a.clone()
        };
        assert_ne!(a.affinity_key(), c.affinity_key());
    }

    #[test]
    fn token_estimate_leans_high() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcdefg"), 3);
        assert_eq!(estimate_tokens("你好"), 2);
        assert!(estimate_tokens("The quick brown fox jumps over the lazy dog.") >= 14);
    }
}
