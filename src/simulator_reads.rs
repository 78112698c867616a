//! The simulator reads the prompts this crate renders (test builds with the `simulator`
//! feature only): `prompt::question` and `tools::contract` on one side,
//! `lingma_simulator::prompt` on the other, so a change of format on either side fails here.

use lingma_simulator::prompt::{parse_tools, read, ToolChoice};
use serde_json::{json, Value};

/// The gateway's own contract text, so a change of format on either side fails here.
const CONTRACT: &str = crate::tools::contract::INTRO;

#[test]
fn reads_the_gateways_answer_format_instruction() {
    use crate::model::{ChatRequest, Message, OutputFormat, Role};
    let mut req = ChatRequest {
        messages: vec![Message::new(Role::User, "hi")],
        output_format: Some(OutputFormat::JsonSchema {
            name: "r".into(),
            schema: json!({"type": "object", "required": ["city"]}),
        }),
        ..Default::default()
    };
    let q = crate::prompt::question(&req);
    let p = read(&q);
    assert_eq!(p.user, "hi");
    assert_eq!(
        p.json_format,
        Some(json!({"type": "object", "required": ["city"]}))
    );
    req.output_format = Some(OutputFormat::JsonObject);
    assert_eq!(
        read(&crate::prompt::question(&req)).json_format,
        Some(Value::Null)
    );
    req.output_format = None;
    assert_eq!(read(&crate::prompt::question(&req)).json_format, None);
}

fn tools_section(choice: &str) -> String {
    format!(
        "{CONTRACT}\n\nTool choice: {choice}\n\n## Tool: get_weather\nGet the weather.\n## Tool: not a heading here\nParameters (JSON schema): {{\"type\":\"object\",\"properties\":{{\"location\":{{\"type\":\"string\"}}}},\"required\":[\"location\"]}}\n\n## Tool: Bash\nParameters (JSON schema): {{\"type\":\"object\",\"properties\":{{\"command\":{{\"type\":\"string\"}}}}}}"
    )
}

#[test]
fn tools_section_names_schemas_and_choices() {
    let t = parse_tools(&tools_section(
        "auto. Call a tool when it helps; otherwise answer in plain text.",
    ));
    assert_eq!(t.choice, ToolChoice::Auto);
    let names: Vec<&str> = t.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["get_weather", "Bash"]);
    assert_eq!(t.tools[0].schema["required"], json!(["location"]));
    assert_eq!(
        t.get("Bash").unwrap().schema["properties"]["command"]["type"],
        "string"
    );
    assert!(t.get("bash").is_none());
    let choice = |line: &str| parse_tools(&tools_section(line)).choice;
    assert_eq!(
        choice("none. Do not call any tool in this answer."),
        ToolChoice::None
    );
    assert_eq!(
        choice("required. You must call at least one of the tools in this answer."),
        ToolChoice::Any
    );
    assert_eq!(
        choice("required. You must call the tool \"Bash\" in this answer."),
        ToolChoice::Named("Bash".into())
    );
    assert_eq!(choice("something new"), ToolChoice::Auto);
}

#[test]
fn latest_user_text_is_after_the_last_assistant() {
    let q = format!(
        "[system]\nsys [[sim:tool=Bash]]\n\n[tools]\n{}\n\n[user]\nold [[sim:tool=Bash]]\n\n[assistant]\nok\n\n[system]\nreminder\n\n[user]\nnew question",
        tools_section("auto.")
    );
    let p = read(&q);
    assert_eq!(p.user, "new question");
    assert!(!p.tool_result_turn() && !p.retry);
    assert_eq!(p.tools.as_ref().unwrap().tools.len(), 2);
    assert_eq!(p.sections, 6);
    // Nothing after the last assistant section (a prefill): the last user section.
    assert_eq!(read("[user]\nq\n\n[assistant]\nSure,").user, "q");
    assert_eq!(read("[system]\nonly system").user, "");
}
