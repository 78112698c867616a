//! The tool contract: how client-declared tools, the tool choice and earlier calls are put
//! into Lingma's prompt, so that a model with no native function calling answers with
//! ```` ```json action ```` blocks the gateway can parse. The format is shared with the
//! simulator (which reads it as an obedient model would); keep the two in step.

use crate::model::{ToolCall, ToolChoice, ToolSpec};

/// The opening fence line of an action block.
pub(crate) const ACTION_FENCE: &str = "```json action";

/// Marks the retry instruction; the simulator looks for it.
pub(crate) const RETRY_MARKER: &str = "Your previous answer did not call a tool";

/// How the contract begins: how to write a call, and the rules.
pub(crate) const INTRO: &str = "You can call tools. To call one, write a fenced block tagged `json action` that holds one JSON object with the tool's exact name and its parameters:

```json action
{\"tool\": \"TOOL_NAME\", \"parameters\": {\"PARAMETER\": \"VALUE\"}}
```

Rules:
- Use a tool's name exactly as listed below, and give every required parameter.
- One block per call; write several blocks to call several tools.
- After your last block, stop. The results come back as [tool_result] sections.
- Never write a tool result yourself.";

/// The body of the `[tools]` section.
pub(crate) fn render(tools: &[ToolSpec], choice: &ToolChoice) -> String {
    let mut out = String::with_capacity(1024 + tools.len() * 512);
    out.push_str(INTRO);
    out.push_str("\n\nTool choice: ");
    out.push_str(&choice_line(choice));
    for t in tools {
        out.push_str("\n\n## Tool: ");
        out.push_str(&t.name);
        let description = t.description.trim();
        if !description.is_empty() {
            out.push('\n');
            out.push_str(description);
        }
        out.push_str("\nParameters (JSON schema): ");
        out.push_str(&t.schema.to_string());
    }
    out
}

fn choice_line(choice: &ToolChoice) -> String {
    match choice {
        ToolChoice::Auto => {
            "auto. Call a tool when it helps; otherwise answer in plain text.".into()
        }
        ToolChoice::None => "none. Do not call any tool in this answer.".into(),
        ToolChoice::Any => {
            "required. You must call at least one of the tools in this answer.".into()
        }
        ToolChoice::Named(n) => {
            format!("required. You must call the tool \"{n}\" in this answer.")
        }
    }
}

/// The instruction appended when a forced tool choice got an answer without a call.
pub(crate) fn retry_instruction(choice: &ToolChoice) -> String {
    let what = match choice {
        ToolChoice::Named(n) => format!("the tool \"{n}\""),
        _ => "one of the tools".to_string(),
    };
    format!("{RETRY_MARKER}, but this answer must. Reply with only a ```json action block that calls {what} with all its required parameters.")
}

/// An earlier call, written back the way the model is asked to write calls.
pub(crate) fn action_block(call: &ToolCall) -> String {
    let name = serde_json::Value::String(call.name.clone());
    format!(
        "{ACTION_FENCE}\n{{\"tool\": {name}, \"parameters\": {}}}\n```",
        call.arguments
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: "Get the weather.\nIn a city.".into(),
            schema: json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}),
        }
    }

    #[test]
    fn contract_lists_tools_with_one_line_schemas_and_the_choice() {
        let text = render(
            &[spec("get_weather")],
            &ToolChoice::Named("get_weather".into()),
        );
        assert!(text.starts_with("You can call tools."));
        assert!(text.contains(
            "Tool choice: required. You must call the tool \"get_weather\" in this answer."
        ));
        assert!(text.contains("\n\n## Tool: get_weather\nGet the weather.\nIn a city.\nParameters (JSON schema): {\"properties\":{\"location\":{\"type\":\"string\"}},\"required\":[\"location\"],\"type\":\"object\"}"));
    }

    #[test]
    fn earlier_calls_are_written_as_action_blocks() {
        let call = ToolCall {
            id: "c1".into(),
            name: "Bash".into(),
            arguments: json!({"command": "ls"}),
        };
        assert_eq!(
            action_block(&call),
            "```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\":\"ls\"}}\n```"
        );
        assert!(retry_instruction(&ToolChoice::Any).starts_with(RETRY_MARKER));
    }
}
