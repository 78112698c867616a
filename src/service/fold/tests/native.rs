//! Lingma's own tools through the fold: merged across their updates, reported once when
//! they end (in each status), as the policy says.

use serde_json::{json, Value};

use super::*;
use crate::model::NativeTool;
use crate::upstream::{ToolStatus, ToolUpdate};

fn update(id: &str, name: &str, status: ToolStatus) -> ToolUpdate {
    ToolUpdate {
        tool_call_id: id.into(),
        name: name.into(),
        status,
        parameters: Value::Null,
        results: Value::Null,
        error: String::new(),
    }
}

fn tool(id: &str, name: &str, status: ToolStatus) -> ChatEvent {
    ChatEvent::Tool(update(id, name, status))
}

fn ended(id: &str, status: ToolStatus, results: Value, error: &str) -> ChatEvent {
    ChatEvent::Tool(ToolUpdate {
        results,
        error: error.into(),
        ..update(id, "", status)
    })
}

fn native(id: &str, name: &str, input: Value, status: &str, output: &str) -> Event {
    Event::NativeTool(NativeTool {
        id: id.into(),
        name: name.into(),
        input,
        status: status.into(),
        output: output.into(),
        is_error: status != "FINISHED",
    })
}

#[test]
fn lingmas_own_tools_are_reported_once_each_when_they_end() {
    let init = ChatEvent::Tool(ToolUpdate {
        parameters: json!({"path": "README.md"}),
        ..update("t1", "read_file", ToolStatus::Init)
    });
    let refused = json!([{"result": null, "errorMessage": "IDE tools are not available"}]);
    let upstream = [
        init,
        tool("t1", "", ToolStatus::Pending),
        tool("t1", "read_file", ToolStatus::Invoke),
        tool("t1", "", ToolStatus::Running),
        ended("t1", ToolStatus::Error, refused, "failed"),
        ended("t1", ToolStatus::Error, Value::Null, "again"),
        tool("t2", "search", ToolStatus::Running),
        ended(
            "t2",
            ToolStatus::Finished,
            json!([{"result": {"hits": 2}}]),
            "",
        ),
        tool("t3", "todo_write", ToolStatus::Pending),
        ended("t3", ToolStatus::Cancelled, Value::Null, ""),
        ended("t4", ToolStatus::Finished, json!("plain"), ""),
        tool("t5", "bash", ToolStatus::RequestFinished),
        tool("t6", "bash", ToolStatus::Other("PAUSED".into())),
        tool("", "nameless", ToolStatus::Finished),
        text("Done."),
        end(),
    ];
    let (events, actions) = fold(&req(), reporting(), &upstream);
    let readme = json!({"path": "README.md"});
    assert_eq!(
        events,
        [
            native(
                "t1",
                "read_file",
                readme,
                "ERROR",
                "IDE tools are not available\nfailed"
            ),
            native("t2", "search", json!({}), "FINISHED", "{\"hits\":2}"),
            native("t3", "todo_write", json!({}), "CANCELLED", ""),
            native("t4", "", json!({}), "FINISHED", "plain"),
            said("Done."),
            finished(StopReason::EndTurn, ASKED, 2),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn lingmas_tools_are_reported_only_when_the_policy_says_so() {
    let upstream = [
        tool("t1", "read_file", ToolStatus::Running),
        ended("t1", ToolStatus::Finished, json!("ok"), ""),
        tool("t2", "search", ToolStatus::Running),
        ended("t2", ToolStatus::Finished, json!("ok"), ""),
        end(),
    ];
    let (events, _) = fold(&req(), setup(), &upstream);
    assert_eq!(events, [finished(StopReason::EndTurn, ASKED, 0)]);
    let allowlisted = Setup {
        policy: ToolPolicy {
            report_native: true,
            allowlist: vec!["search".into()],
            ..ToolPolicy::default()
        },
        ..setup()
    };
    let (events, _) = fold(&req(), allowlisted, &upstream);
    assert_eq!(
        events,
        [
            native("t2", "search", json!({}), "FINISHED", "ok"),
            finished(StopReason::EndTurn, ASKED, 0)
        ]
    );
}

#[test]
fn a_reported_tool_goes_out_at_once_while_a_forced_choice_holds_text() {
    let upstream = [
        text("Reading."),
        ended("t1", ToolStatus::Finished, json!("ok"), ""),
    ];
    let retry = Setup {
        retry: true,
        ..reporting()
    };
    let (events, actions) = fold(&with_tools(ToolChoice::Any), retry, &upstream);
    assert_eq!(events, [native("t1", "", json!({}), "FINISHED", "ok")]);
    assert_eq!(actions, []);
}
