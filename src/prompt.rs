//! Lingma takes one `questionText` per turn. This renders an internal `ChatRequest` into it:
//! a lone user message goes as it is; anything else becomes `[role]` sections (system text,
//! the tool contract, then the turns, with earlier tool calls as action blocks and the
//! client's results as `[tool_result ...]` sections). The simulator reads the same layout.

use std::collections::HashMap;

use crate::error::GatewayError;
use crate::model::{ChatRequest, Message, OutputFormat, Role, ToolChoice};
use crate::tools::contract;

/// Only the turn that continues a reused Lingma session (which holds the system text, the
/// tool contract and the history): the messages from `start` on. Tool results are named
/// after the calls earlier in the conversation.
pub(crate) fn question_from(req: &ChatRequest, start: usize) -> String {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for m in &req.messages[..start] {
        for c in &m.tool_calls {
            names.insert(&c.id, &c.name);
        }
    }
    let new: Vec<&Message> = req.messages[start..]
        .iter()
        .filter(|m| !m.is_empty())
        .collect();
    if let [only] = new.as_slice() {
        if only.role == Role::User && only.tool_results.is_empty() && req.output_format.is_none() {
            return only.text.clone();
        }
    }
    let mut out = Sections::default();
    turns(&mut out, &new, &mut names);
    format_section(&mut out, req);
    out.0
}

/// The question for a request.
pub(crate) fn question(req: &ChatRequest) -> String {
    let messages: Vec<&Message> = req.messages.iter().filter(|m| !m.is_empty()).collect();
    if req.tools.is_empty() && req.output_format.is_none() {
        if let [only] = messages.as_slice() {
            if only.role == Role::User && only.tool_results.is_empty() {
                return only.text.clone();
            }
        }
    }
    let mut out = Sections::default();
    let lead = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let system: Vec<&str> = messages[..lead].iter().map(|m| m.text.trim()).collect();
    if !system.is_empty() {
        out.section("[system]", &system.join("\n\n"));
    }
    if !req.tools.is_empty() {
        out.section("[tools]", &contract::render(&req.tools, &req.tool_choice));
    }
    let mut names: HashMap<&str, &str> = HashMap::new();
    turns(&mut out, &messages[lead..], &mut names);
    format_section(&mut out, req);
    out.0
}

/// Refuses a question longer than `limit` bytes (`max_prompt_bytes`): no model Lingma offers
/// reads that much in one turn, and the ask's frame must stay within the frame limit.
pub(crate) fn check_size(question: &str, limit: usize) -> Result<(), GatewayError> {
    if question.len() <= limit {
        return Ok(());
    }
    Err(GatewayError::new(
        crate::error::ErrorKind::InvalidRequest,
        format!(
            "The conversation is too long: as one prompt for Lingma it takes {} bytes, over this gateway's limit of {limit} bytes (max_prompt_bytes). Shorten it or start a new one.",
            question.len()
        ),
    )
    .with_code("context_length_exceeded"))
}

/// How the answer-format instruction starts (the simulator looks for it).
pub(crate) const FORMAT_MARKER: &str = "Answer format: one JSON value";
/// The line before the schema in that instruction.
pub(crate) const FORMAT_SCHEMA_LINE: &str = "JSON schema: ";

/// The answer-format instruction, last, so it is the last thing the model reads every turn
/// (a continued session gets it again with the new turn).
fn format_section(out: &mut Sections, req: &ChatRequest) {
    let Some(format) = &req.output_format else {
        return;
    };
    let text = match format {
        OutputFormat::JsonObject => format!(
            "{FORMAT_MARKER}. Answer with one JSON object and nothing else: no prose before or after it, no code fence."
        ),
        OutputFormat::JsonSchema { name, schema } => format!(
            "{FORMAT_MARKER}. Answer with one JSON value that matches the schema below (\"{name}\") and nothing else: no prose before or after it, no code fence.\n{FORMAT_SCHEMA_LINE}{schema}"
        ),
    };
    out.section("[system]", &text);
}

/// The conversation's sections; `names` maps call ids to tool names as calls go by.
fn turns<'a>(out: &mut Sections, messages: &[&'a Message], names: &mut HashMap<&'a str, &'a str>) {
    for m in messages {
        for r in &m.tool_results {
            let name = if r.name.is_empty() {
                names.get(r.call_id.as_str()).copied().unwrap_or("tool")
            } else {
                r.name.as_str()
            };
            let error = if r.is_error { " error" } else { "" };
            let header = format!("[tool_result {name} call_id={}{error}]", r.call_id);
            out.section(&header, &r.content);
        }
        let text = m.text.trim();
        match m.role {
            Role::System => out.section("[system]", text),
            Role::User => out.section("[user]", text),
            Role::Tool => out.section("[user]", text),
            Role::Assistant => {
                let mut body = text.to_string();
                for call in &m.tool_calls {
                    names.insert(&call.id, &call.name);
                    if !body.is_empty() {
                        body.push('\n');
                    }
                    body.push_str(&contract::action_block(call));
                }
                out.section("[assistant]", &body);
            }
        }
    }
}

/// The question of the one retry a forced tool choice gets when the answer called no tool.
pub(crate) fn with_retry_instruction(question: &str, choice: &ToolChoice) -> String {
    let mut out = Sections(question.to_string());
    out.section("[system]", &contract::retry_instruction(choice));
    out.0
}

#[derive(Default)]
struct Sections(String);

impl Sections {
    /// Appends `header\nbody`; an empty body adds nothing.
    fn section(&mut self, header: &str, body: &str) {
        if body.trim().is_empty() {
            return;
        }
        if !self.0.is_empty() {
            self.0.push_str("\n\n");
        }
        self.0.push_str(header);
        self.0.push('\n');
        self.0.push_str(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ToolCall, ToolResult, ToolSpec};
    use serde_json::json;

    fn msg(role: Role, text: &str) -> Message {
        Message::new(role, text)
    }

    #[test]
    fn lone_user_message_is_sent_verbatim() {
        let r = ChatRequest {
            messages: vec![msg(Role::User, "hi there")],
            ..Default::default()
        };
        assert_eq!(question(&r), "hi there");
    }

    #[test]
    fn transcript_has_one_section_per_message() {
        let r = ChatRequest {
            messages: vec![
                msg(Role::System, "be brief"),
                msg(Role::System, "and kind"),
                msg(Role::User, "hi"),
                msg(Role::Assistant, "hello"),
                msg(Role::System, "mid-conversation note"),
                msg(Role::User, "again"),
            ],
            ..Default::default()
        };
        assert_eq!(
            question(&r),
            "[system]\nbe brief\n\nand kind\n\n[user]\nhi\n\n[assistant]\nhello\n\n[system]\nmid-conversation note\n\n[user]\nagain"
        );
    }

    #[test]
    fn tools_history_and_results_use_the_contract_format() {
        let mut assistant = msg(Role::Assistant, "Checking.");
        assistant.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"location": "Paris"}),
        });
        let mut result = msg(Role::Tool, "");
        result.tool_results.push(ToolResult {
            call_id: "call_1".into(),
            name: String::new(),
            content: "sunny".into(),
            is_error: false,
        });
        let r = ChatRequest {
            messages: vec![msg(Role::User, "weather?"), assistant, result],
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather.".into(),
                schema: json!({"type": "object"}),
            }],
            ..Default::default()
        };
        let q = question(&r);
        assert!(q.starts_with("[tools]\nYou can call tools."), "{q}");
        assert!(q.ends_with("[user]\nweather?\n\n[assistant]\nChecking.\n```json action\n{\"tool\": \"get_weather\", \"parameters\": {\"location\":\"Paris\"}}\n```\n\n[tool_result get_weather call_id=call_1]\nsunny"), "{q}");
        assert!(check_size(&q, q.len()).is_ok());
        let e = check_size(&q, q.len() - 1).unwrap_err();
        assert_eq!((e.status(), e.code), (400, Some("context_length_exceeded")));
        assert!(
            e.message.contains(&format!("takes {} bytes", q.len())),
            "{}",
            e.message
        );
        let retry = with_retry_instruction(&q, &ToolChoice::Named("get_weather".into()));
        assert!(retry.starts_with(&q));
        assert!(retry.contains("\n\n[system]\nYour previous answer did not call a tool"));
    }
}
