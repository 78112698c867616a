//! The plans of whole turns, read from questions as the gateway renders them.

use serde_json::json;

use super::call::wrong_case;
use super::directives::{parse_directives, Deaf};
use super::steps::{NativeCall, Plan, Reason, Step, Turn};
use super::{answer::UNICODE_ANSWER, plan, Wire};
use crate::models::{self, Model};

fn turn<'a>(question: &'a str, model: Option<&'a Model>) -> Turn<'a> {
    Turn {
        question,
        model,
        logged_in: true,
        session_id: "s-1",
        new_session: true,
        number: 1,
        history_bytes: 0,
        instance: "inst-a",
        pid: 42,
        tool_call_id: "tc-1",
    }
}

fn auto() -> Option<&'static Model> {
    models::find("auto")
}

fn deltas(plan: &Plan) -> Vec<&str> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Delta(d) => Some(d.as_str()),
            _ => None,
        })
        .collect()
}

fn finish(plan: &Plan) -> (u16, Reason, &str) {
    match plan.steps.last() {
        Some(Step::Finish { status, reason }) => (*status, *reason, &plan.answer),
        other => panic!("plan does not end with a finish: {other:?}"),
    }
}

#[test]
fn deaf_is_for_ever_or_for_some_milliseconds_and_leaves_the_answer_alone() {
    assert_eq!(parse_directives("[[sim:deaf]]").deaf, Some(Deaf::Forever));
    assert_eq!(
        parse_directives("[[sim:deaf=250]]").deaf,
        Some(Deaf::For(250))
    );
    let d = parse_directives("[[sim:deaf=soon]] [[sim:deaf=-1]]");
    assert_eq!(
        (d.deaf, d.ignored),
        (None, vec!["deaf=soon".into(), "deaf=-1".into()])
    );
    let p = plan(&turn("[[sim:deaf]][[sim:chunks=2]]", auto()));
    assert_eq!(p.deaf, Some(Deaf::Forever));
    assert_eq!(deltas(&p), vec!["c1 ", "c2 "]);
    assert_eq!(finish(&p).0, 200);
    let p = plan(&turn("[[sim:on=elsewhere]][[sim:deaf]]", auto()));
    assert_eq!(p.deaf, None, "scoped to another instance");
}

#[test]
fn default_turn_streams_the_greeting() {
    let p = plan(&turn("first line\nhello there\n\n", auto()));
    assert_eq!(p.steps[0], Step::Progress("step_start"));
    assert_eq!(p.steps[1], Step::Progress("step_end"));
    assert_eq!(p.steps[2], Step::Title("hello there".into()));
    let ds = deltas(&p);
    let answer = "Hello from the Lingma simulator (Auto). You said: hello there";
    assert_eq!(ds.concat(), answer);
    assert!(ds.iter().all(|d| d.chars().count() <= 5));
    assert!(ds.iter().any(|d| d.is_empty()));
    assert!(matches!(
        p.steps[p.steps.len() - 2],
        Step::Usage { limit: 131_072, .. }
    ));
    assert_eq!(finish(&p), (200, Reason::Success, answer));
    assert_eq!(p.answer, answer);
}

#[test]
fn follow_up_turn_has_no_title() {
    let mut t = turn("[[sim:turn]]", auto());
    t.new_session = false;
    t.number = 3;
    let p = plan(&t);
    assert!(!p.steps.iter().any(|s| matches!(s, Step::Title(_))));
    assert_eq!(finish(&p).2, "turn 3 of session s-1");
}

#[test]
fn chunks_directive_gives_exact_deltas() {
    let p = plan(&turn("[[sim:chunks=9]]", auto()));
    let ds = deltas(&p);
    let mut want: Vec<String> = (1..=9).map(|i| format!("c{i} ")).collect();
    want.insert(7, String::new());
    assert_eq!(ds, want);
    assert_eq!(finish(&p).2, want.concat());
}

#[test]
fn reasoning_models_and_think_directive_add_the_think_block() {
    let block = "\n````think::{THINK_TIME}\nThinking about: why\n````\n";
    let thinking = models::find("dashscope_qwen_plus_20250428_thinking");
    let p = plan(&turn("why", thinking));
    assert!(finish(&p).2.starts_with(block), "{}", p.answer);
    let p = plan(&turn("[[sim:think]]\nwhy", auto()));
    assert!(p.answer.starts_with(block));
    let p = plan(&turn("[[sim:think]][[sim:chunks=2]]\nwhy", auto()));
    assert_eq!(p.answer, format!("{block}c1 c2 "));
    // Cut as the real server's short deltas cut it: the opener's newline alone, the
    // closer's newline apart from its fence.
    let p = plan(&turn("why", thinking));
    let ds: Vec<&str> = deltas(&p).into_iter().filter(|d| !d.is_empty()).collect();
    assert_eq!(ds[..2], ["\n", "```"]);
    assert!(
        ds.windows(3).skip(1).any(|w| w == ["\n", "```", "`\n"]),
        "{ds:?}"
    );
}

#[test]
fn body_directives() {
    assert_eq!(
        plan(&turn("[[sim:whoami]]", auto())).answer,
        "instance inst-a pid 42"
    );
    let q = "  [[sim:echo]]\r\n multi\nline  ";
    assert_eq!(plan(&turn(q, auto())).answer, q);
    let p = plan(&turn("[[sim:unicode]]", auto()));
    assert_eq!(p.answer, UNICODE_ANSWER);
    assert!(deltas(&p).iter().all(|d| d.chars().count() <= 5));
}

#[test]
fn refusals_finish_right_after_the_step_callbacks() {
    let mut t = turn("hi", auto());
    t.logged_in = false;
    let p = plan(&t);
    assert_eq!(p.steps.len(), 3);
    assert_eq!(finish(&p), (403, Reason::Error, ""));
    assert_eq!(finish(&plan(&turn("hi", None))), (500, Reason::Error, ""));
    assert_eq!(
        finish(&plan(&turn(" \n ", auto()))),
        (500, Reason::Error, "")
    );
    let p = plan(&turn("[[sim:status=429]]", auto()));
    assert_eq!(p.steps.len(), 3);
    assert_eq!(finish(&p), (429, Reason::Error, ""));
}

#[test]
fn faults_come_after_their_delta_counts() {
    let p = plan(&turn("[[sim:crash]]", auto()));
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| matches!(s, Step::Delta(_)))
            .count(),
        3
    );
    assert_eq!(p.steps.last(), Some(&Step::Crash));
    let p = plan(&turn("[[sim:stall=0]]", auto()));
    assert_eq!(p.steps.last(), Some(&Step::Stall));
    assert!(deltas(&p).is_empty());
    let p = plan(&turn("[[sim:close=2]]", auto()));
    assert_eq!(deltas(&p).len(), 2);
    assert_eq!(p.steps.last(), Some(&Step::Close));
    // The earliest terminal fault wins.
    let p = plan(&turn("[[sim:crash=5]][[sim:stall=1]]", auto()));
    assert_eq!(p.steps.last(), Some(&Step::Stall));
}

#[test]
fn oversize_and_faults_scoped_to_another_instance() {
    let p = plan(&turn("[[sim:oversize=2]]", auto()));
    let pos = p.steps.iter().position(|s| *s == Step::Oversize).unwrap();
    assert!(matches!(p.steps[pos - 1], Step::Delta(_)));
    assert!(matches!(p.steps[pos + 1], Step::Delta(_)));
    // `on=` names another instance: every fault is off, the answer is normal.
    let q = "[[sim:on=elsewhere]] [[sim:crash=0]] [[sim:status=500]] [[sim:oversize]]";
    let p = plan(&turn(q, auto()));
    assert!(!p.steps.contains(&Step::Crash) && !p.steps.contains(&Step::Oversize));
    assert_eq!(finish(&p).0, 200);
}

#[test]
fn garbage_is_sent_mid_stream_and_the_turn_goes_on() {
    let p = plan(&turn("[[sim:garbage]]", auto()));
    let pos = p.steps.iter().position(|s| *s == Step::Garbage).unwrap();
    assert!(matches!(p.steps[pos - 1], Step::Delta(_)));
    assert!(matches!(p.steps[pos + 1], Step::Delta(_)));
    assert_eq!(finish(&p).0, 200);
}

#[test]
fn counts_past_the_end_act_after_the_last_delta() {
    let p = plan(&turn("[[sim:chunks=2]][[sim:stall=50]]", auto()));
    assert_eq!(deltas(&p), vec!["c1 ", "c2 "]);
    assert_eq!(p.steps.last(), Some(&Step::Stall));
}

#[test]
fn timing_and_wire_overrides_pass_through() {
    let p = plan(&turn(
        "[[sim:delay=5]][[sim:first=7]][[sim:wire=packed]][[sim:wire=binary]][[sim:bogus]]",
        auto(),
    ));
    assert_eq!((p.first_ms, p.delay_ms), (Some(7), Some(5)));
    assert_eq!(
        p.wire,
        Wire {
            split: false,
            packed: true,
            binary: true
        }
    );
    assert_eq!(p.ignored, vec!["bogus"]);
}

const AUTO: &str = "auto. Call a tool when it helps; otherwise answer in plain text.";
const ANY: &str = "required. You must call at least one of the tools in this answer.";
const NONE: &str = "none. Do not call any tool in this answer.";
const WEATHER: &str = r#"{"type":"object","properties":{"location":{"type":"string","description":"City"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location","unit"]}"#;
const BASH: &str = r#"{"type":"object","properties":{"command":{"type":"string"},"timeout":{"type":"number"}},"required":["command"]}"#;
const RETRY: &str = "[system]\nYour previous answer did not call a tool, but this answer must. Reply with only a ```json action block that calls one of the tools with all its required parameters.";

/// A prompt as the gateway renders it: system text, the tool contract, then `turns`.
fn prompt(choice: &str, turns: &str) -> String {
    format!(
        "[system]\nYou are terse.\n\n[tools]\nYou can call tools. To call one, write a fenced block tagged `json action` that holds one JSON object with the tool's exact name and its parameters:\n\n```json action\n{{\"tool\": \"TOOL_NAME\", \"parameters\": {{\"PARAMETER\": \"VALUE\"}}}}\n```\n\nRules:\n- Use a tool's name exactly as listed below, and give every required parameter.\n\nTool choice: {choice}\n\n## Tool: get_weather\nGet the current weather.\nIn a city.\nParameters (JSON schema): {WEATHER}\n\n## Tool: Bash\nRuns a command.\nParameters (JSON schema): {BASH}\n\n{turns}"
    )
}

fn answer_of(question: &str) -> String {
    let p = plan(&turn(question, auto()));
    assert_eq!(finish(&p).0, 200, "{p:?}");
    p.answer
}

const BASH_CALL: &str =
    "```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\":\"echo sim-tool\"}}\n```\n";

#[test]
fn tool_directive_calls_a_declared_tool_with_schema_arguments() {
    let q = prompt(AUTO, "[user]\nWeather in Paris? [[sim:tool=get_weather]]");
    let p = plan(&turn(&q, auto()));
    assert_eq!(
        p.answer,
        "I'll call get_weather now.\n```json action\n{\"tool\": \"get_weather\", \"parameters\": {\"location\":\"sim-location\",\"unit\":\"celsius\"}}\n```\n"
    );
    assert!(deltas(&p).iter().all(|d| d.chars().count() <= 5));
    assert_eq!(
        p.note.as_deref(),
        Some(
            "prompt sections=3 tools=2 choice=auto retry=false -> call get_weather x1 style=action"
        )
    );
    // The title and the quote come from the user text, not the transcript's last line.
    assert_eq!(
        p.steps[2],
        Step::Title("Weather in Paris? [[sim:tool=g".into())
    );
    let q = prompt(AUTO, "[user]\n[[sim:tool=Bash]][[sim:cmd=ls -la /tmp]]");
    assert_eq!(
        answer_of(&q),
        "I'll call Bash now.\n```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\":\"ls -la /tmp\"}}\n```\n"
    );
}

#[test]
fn every_call_style() {
    let style = |s: &str| {
        let q = prompt(
            AUTO,
            &format!("[user]\ngo [[sim:tool=Bash]][[sim:style={s}]]"),
        );
        let a = answer_of(&q);
        a.strip_prefix("I'll call Bash now.\n")
            .unwrap_or_else(|| panic!("{a}"))
            .to_string()
    };
    let args = r#"{"command":"echo sim-tool"}"#;
    assert_eq!(style("action"), BASH_CALL);
    assert_eq!(
        style("fence"),
        format!("```json\n{{\n  \"name\": \"Bash\",\n  \"arguments\": {args}\n}}\n```\n")
    );
    assert_eq!(
        style("qwen"),
        format!("<tool_call>\n{{\"name\": \"Bash\", \"arguments\": {args}}}\n</tool_call>\n")
    );
    assert_eq!(
        style("bare"),
        format!("{{\"tool\": \"Bash\", \"parameters\": {args}}}\n")
    );
    assert_eq!(
        style("unclosed"),
        format!("```json action\n{{\"tool\": \"Bash\", \"parameters\": {args}}}")
    );
    assert_eq!(style("badname"), BASH_CALL.replace("\"Bash\"", "\"BASH\""));
    assert_eq!(
        style("noargs"),
        "```json action\n{\"tool\": \"Bash\", \"parameters\": {}}\n```\n"
    );
    assert_eq!(wrong_case("LS"), "ls");
    assert_eq!(wrong_case("42"), "42_X");
}

#[test]
fn calls_directive_writes_several_blocks() {
    let q = prompt(AUTO, "[user]\n[[sim:tool=Bash]][[sim:calls=3]]");
    assert_eq!(
        answer_of(&q),
        format!("I'll call Bash now.\n{BASH_CALL}\n{BASH_CALL}\n{BASH_CALL}")
    );
    // Unclosed: only the last block lacks its fence.
    let q = prompt(
        AUTO,
        "[user]\n[[sim:tool=Bash]][[sim:calls=2]][[sim:style=unclosed]]",
    );
    let a = answer_of(&q);
    assert!(a.starts_with(&format!(
        "I'll call Bash now.\n{BASH_CALL}\n```json action\n"
    )));
    assert!(a.ends_with("}}"), "{a}");
}

#[test]
fn forced_choices_call_without_a_directive() {
    let named = "required. You must call the tool \"get_weather\" in this answer.";
    let a = answer_of(&prompt(named, "[user]\nhi [[sim:tool=Bash]]"));
    assert!(a.starts_with("I'll call get_weather now.\n```json action\n{\"tool\": \"get_weather\""));
    // Any: the directive's tool when declared, else the first declared tool.
    let a = answer_of(&prompt(ANY, "[user]\nhi [[sim:tool=Bash]]"));
    assert_eq!(a, format!("I'll call Bash now.\n{BASH_CALL}"));
    let a = answer_of(&prompt(ANY, "[user]\nhi [[sim:tool=nope]]"));
    assert!(a.starts_with("I'll call get_weather now."));
    // None: no call even when asked.
    let p = plan(&turn(&prompt(NONE, "[user]\nhi [[sim:tool=Bash]]"), auto()));
    assert_eq!(
        p.answer,
        "Hello from the Lingma simulator (Auto). You said: hi [[sim:tool=Bash]]"
    );
    assert!(p.note.unwrap().ends_with("choice=none retry=false -> text"));
}

#[test]
fn lazy_waits_for_the_retry_instruction() {
    let q = prompt(ANY, "[user]\nplease [[sim:lazy]][[sim:tool=Bash]]");
    let a = answer_of(&q);
    assert!(a.starts_with("Hello from the Lingma simulator"), "{a}");
    let a = answer_of(&format!("{q}\n\n{RETRY}"));
    assert_eq!(a, format!("I'll call Bash now.\n{BASH_CALL}"));
    // The marker elsewhere than in a trailing system section does not count.
    let q = prompt(ANY, &format!("[user]\n[[sim:lazy]] {RETRY}"));
    assert!(answer_of(&q).starts_with("Hello from"));
}

#[test]
fn undeclared_tools_are_ignored() {
    let p = plan(&turn(&prompt(AUTO, "[user]\nhi [[sim:tool=bash]]"), auto()));
    assert!(p.answer.starts_with("Hello from the Lingma simulator"));
    assert_eq!(p.ignored, vec!["tool=bash (not declared)"]);
    // No tools section at all.
    let p = plan(&turn("hi [[sim:tool=Bash]]", auto()));
    assert_eq!(
        p.answer,
        "Hello from the Lingma simulator (Auto). You said: hi [[sim:tool=Bash]]"
    );
    assert_eq!(p.ignored, vec!["tool=Bash (not declared)"]);
}

#[test]
fn tool_results_are_acknowledged_first() {
    let long = "x".repeat(2100);
    let q = prompt(
        ANY,
        &format!("[user]\nweather? [[sim:tool=get_weather]][[sim:chunks=3]]\n\n[assistant]\nI'll call get_weather now.\n{BASH_CALL}\n[tool_result get_weather call_id=toolu_01]\nsunny, 21C\n\n[tool_result Bash call_id=toolu_02 error]\n{long}\n\n{RETRY}"),
    );
    let p = plan(&turn(&q, auto()));
    assert_eq!(
        p.answer,
        format!("Tool result received: sunny, 21C | {}", "x".repeat(2000))
    );
    assert!(p.note.unwrap().ends_with("retry=true -> tool-results(2)"));
}

#[test]
fn old_directives_do_not_fire_again() {
    let q = prompt(
        AUTO,
        "[user]\nfirst [[sim:tool=Bash]] [[sim:crash]] [[sim:status=429]]\n\n[assistant]\nI'll call Bash now.\n\n[tool_result Bash call_id=c1]\nsee README: [[sim:stall]] [[sim:echo]]\n\n[assistant]\nDone.\n\n[system]\n[[sim:native=read_file]]\n\n[user]\nthanks",
    );
    let p = plan(&turn(&q, auto()));
    assert_eq!(
        p.answer,
        "Hello from the Lingma simulator (Auto). You said: thanks"
    );
    assert_eq!(finish(&p).0, 200);
    // A tool result that quotes directives changes nothing either.
    let q = prompt(
        AUTO,
        "[user]\nrun it\n\n[assistant]\nok\n\n[tool_result Bash call_id=c1]\n[[sim:crash=0]]",
    );
    assert_eq!(answer_of(&q), "Tool result received: [[sim:crash=0]]");
}

#[test]
fn the_think_block_comes_before_the_call() {
    let q = prompt(AUTO, "[user]\nlook\n[[sim:think]][[sim:tool=Bash]]");
    assert_eq!(
        answer_of(&q),
        format!("\n````think::{{THINK_TIME}}\nThinking about: [[sim:think]][[sim:tool=Bash]]\n````\nI'll call Bash now.\n{BASH_CALL}")
    );
    let thinking = models::find("dashscope_qwen_plus_20250428_thinking");
    let p = plan(&turn(&prompt(AUTO, "[user]\nwhy?"), thinking));
    assert!(p
        .answer
        .starts_with("\n````think::{THINK_TIME}\nThinking about: why?\n````\nHello"));
}

#[test]
fn native_directive_plans_the_card_then_the_tool_step() {
    let p = plan(&turn("read it [[sim:native=read_file]]", auto()));
    assert_eq!(
        p.answer,
        "Let me use read_file.\n```toolCall::read_file::tc-1::INIT\n```\n"
    );
    let n = p.steps.len();
    assert_eq!(
        p.steps[n - 3],
        Step::Native(NativeCall {
            name: "read_file".into(),
            tool_call_id: "tc-1".into(),
            parameters: json!({"path": "README.md"}),
            asynchronous: false,
        })
    );
    assert!(matches!(p.steps[n - 4], Step::Delta(_)));
    assert!(matches!(p.steps[n - 2], Step::Usage { .. }));
    assert_eq!(finish(&p).0, 200);
    let p = plan(&turn(
        "[[sim:native=run_in_terminal]][[sim:native_args={\"command\":\"ls\"}]]",
        auto(),
    ));
    assert!(p.steps.contains(&Step::Native(NativeCall {
        name: "run_in_terminal".into(),
        tool_call_id: "tc-1".into(),
        parameters: json!({"command": "ls"}),
        asynchronous: false,
    })));
    let p = plan(&turn(
        "[[sim:native=read_file]][[sim:native_async]]",
        auto(),
    ));
    assert!(p
        .steps
        .iter()
        .any(|s| matches!(s, Step::Native(call) if call.asynchronous)));
    // A fault before the end leaves the tool step out.
    let p = plan(&turn("[[sim:native=read_file]][[sim:stall=2]]", auto()));
    assert!(!p.steps.iter().any(|s| matches!(s, Step::Native(_))));
}

#[test]
fn content_directive_moves_every_nth_delta_to_content() {
    let p = plan(&turn("[[sim:content=3]]", auto()));
    assert_eq!(p.content_every, Some(3));
    let fields: Vec<&str> = (1..=6).map(|n| p.delta_field(n)).collect();
    assert_eq!(
        fields,
        ["text", "text", "content", "text", "text", "content"]
    );
    assert_eq!(plan(&turn("hi", auto())).delta_field(3), "text");
    assert_eq!(
        plan(&turn("[[sim:content]]", auto())).delta_field(1),
        "content"
    );
}
