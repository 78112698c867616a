//! Golden transcripts of the three chat protocols: for fixed event sequences, the exact SSE
//! bytes each encoder writes (`<case>.sse`) and the exact non-stream body (`<case>.json`),
//! compared with `tests/fixtures/{openai_chat,anthropic,responses}/`. Ids and timestamps are
//! fixed inputs, so every byte is deterministic; any change to a wire format shows up as a
//! diff of these files.
//!
//! Both files of a case come from one encoder type, in `Form::Stream` and in `Form::Body`.
//! A `.sse` file is the body of the stream as `SseWriter` writes it, before chunked framing.
//! A `.json` file is the non-stream body pretty-printed (one field per line, so a change
//! diffs by line); the wire carries the same value compact. For a case that fails mid-way,
//! the `.json` is the error envelope a non-stream client gets instead.
//!
//! After a deliberate change of a wire format, rewrite the fixtures and review their diff:
//! `UPDATE_GOLDEN=1 cargo test --lib golden`.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::anthropic::decode::MessagesOptions;
use super::anthropic::encode::MessagesEncoder;
use super::encoder::{fold, Encoder, Form, Frame};
use super::errors;
use super::openai::decode::ChatOptions;
use super::openai::encode::ChunkEncoder;
use super::responses::decode::{parse_responses, ResponsesOptions};
use super::responses::encode::ResponsesEncoder;
use crate::error::{ErrorKind, GatewayError};
use crate::http::sse::{comment_text, event_text};
use crate::model::{Event, NativeTool, StopReason, ToolCall, Usage};

const ID_CREATED: u64 = 1_700_000_000;
const MODEL: &str = "golden-model";
const INPUT_TOKENS: u64 = 12;

/// One step of an answer as the stream writer meets it.
enum Step {
    Event(Event),
    /// Lingma was silent for a keep-alive interval.
    Idle,
    /// The answer failed after its head was sent.
    Fail(GatewayError),
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
}

impl Case {
    fn events(&self) -> Vec<Event> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn failure(&self) -> Option<&GatewayError> {
        self.steps.iter().find_map(|s| match s {
            Step::Fail(e) => Some(e),
            _ => None,
        })
    }
}

fn text(t: &str) -> Step {
    Step::Event(Event::Text(t.into()))
}

fn reasoning(t: &str) -> Step {
    Step::Event(Event::Reasoning(t.into()))
}

fn call(id: &str, name: &str, arguments: Value) -> Step {
    Step::Event(Event::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }))
}

fn finish(reason: StopReason) -> Step {
    Step::Event(Event::Finish {
        reason,
        usage: Usage {
            input_tokens: INPUT_TOKENS,
            output_tokens: 34,
        },
    })
}

/// The sequences every protocol is checked on.
fn common_cases() -> Vec<Case> {
    let native = NativeTool {
        id: "tool_1".into(),
        name: "read_file".into(),
        input: json!({"path": "README.md"}),
        status: "FINISHED".into(),
        output: "# lingma-gateway".into(),
        is_error: false,
    };
    vec![
        Case {
            name: "text",
            steps: vec![
                reasoning("Let me think."),
                reasoning(" Done."),
                Step::Idle,
                text("Hello"),
                text(", world."),
                finish(StopReason::EndTurn),
            ],
        },
        Case {
            name: "tool_calls",
            steps: vec![
                reasoning("Two lookups."),
                text("Checking."),
                call("call_1", "get_weather", json!({"city": "Paris"})),
                call(
                    "call_2",
                    "get_time",
                    json!({"tz": "Europe/Paris", "24h": true}),
                ),
                finish(StopReason::ToolUse),
            ],
        },
        Case {
            name: "stop_sequence",
            steps: vec![
                text("One, two"),
                finish(StopReason::StopSequence("END".into())),
            ],
        },
        Case {
            name: "length",
            steps: vec![text("A long answer cut"), finish(StopReason::Length)],
        },
        Case {
            name: "content_filter",
            steps: vec![text("I can"), finish(StopReason::ContentFilter)],
        },
        Case {
            name: "native_tool",
            steps: vec![
                text("Reading."),
                Step::Event(Event::NativeTool(native)),
                text("It is the README."),
                finish(StopReason::EndTurn),
            ],
        },
        Case {
            name: "error",
            steps: vec![
                reasoning("Hm."),
                text("Partial"),
                Step::Fail(GatewayError::new(
                    ErrorKind::Upstream,
                    "Lingma closed the connection mid-answer",
                )),
            ],
        },
    ]
}

/// The SSE bytes of a case through `enc`, as the stream writer sends them.
fn transcript(enc: &mut dyn Encoder, case: &Case) -> String {
    let mut frames = enc.start();
    for step in &case.steps {
        match step {
            Step::Event(e) => frames.extend(enc.encode(e)),
            Step::Idle => frames.push(enc.keepalive()),
            Step::Fail(e) => frames.extend(enc.error(e)),
        }
    }
    frames
        .iter()
        .map(|f| match f {
            Frame::Event { name, data } => event_text(*name, data),
            Frame::Comment(c) => comment_text(c),
        })
        .collect()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("a value") + "\n"
}

fn openai_files(case: &Case, opts: &ChatOptions, out: &mut Vec<(PathBuf, String)>) {
    let encoder = |form| {
        ChunkEncoder::new(
            "chatcmpl-golden".into(),
            ID_CREATED,
            MODEL.into(),
            opts,
            form,
        )
    };
    let sse = transcript(&mut encoder(Form::Stream), case);
    let body = match case.failure() {
        Some(e) => errors::openai_body(e),
        None => fold(&mut encoder(Form::Body), &case.events()),
    };
    push(out, "openai_chat", case.name, sse, pretty(&body));
}

fn anthropic_files(case: &Case, opts: &MessagesOptions, out: &mut Vec<(PathBuf, String)>) {
    let encoder =
        |form| MessagesEncoder::new("msg_golden".into(), MODEL.into(), INPUT_TOKENS, opts, form);
    let sse = transcript(&mut encoder(Form::Stream), case);
    let body = match case.failure() {
        Some(e) => errors::anthropic_body(e),
        None => fold(&mut encoder(Form::Body), &case.events()),
    };
    push(out, "anthropic", case.name, sse, pretty(&body));
}

/// Item ids `<prefix>_golden<n>`, counted per encoder.
fn golden_ids() -> impl FnMut(&str) -> String + Send + 'static {
    let mut n = 0;
    move |prefix: &str| {
        n += 1;
        format!("{prefix}_golden{n}")
    }
}

fn responses_options() -> ResponsesOptions {
    let body = json!({
        "model": MODEL, "instructions": "Be brief.", "input": "Hi", "metadata": {"k": "v"},
        "tools": [
            {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
            {"type": "function", "name": "get_time"},
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "spawn"}]},
            {"type": "custom", "name": "apply_patch"}
        ]
    });
    parse_responses(&body).expect("a valid body").1
}

fn responses_files(case: &Case, out: &mut Vec<(PathBuf, String)>) {
    let opts = responses_options();
    let encoder = |form| {
        ResponsesEncoder::new("resp_golden".into(), ID_CREATED, MODEL.into(), &opts, form)
            .with_item_ids(golden_ids())
    };
    let sse = transcript(&mut encoder(Form::Stream), case);
    let body = match case.failure() {
        Some(e) => errors::openai_body(e),
        None => fold(&mut encoder(Form::Body), &case.events()),
    };
    push(out, "responses", case.name, sse, pretty(&body));
}

fn push(out: &mut Vec<(PathBuf, String)>, dir: &str, name: &str, sse: String, json: String) {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    out.push((base.join(format!("{name}.sse")), sse));
    out.push((base.join(format!("{name}.json")), json));
}

/// Every fixture file and what the encoders make of it now.
fn produce() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let usage = ChatOptions {
        include_usage: true,
        prompt_cache_key: None,
    };
    let thinking = MessagesOptions {
        thinking: true,
        ..Default::default()
    };
    for case in common_cases() {
        openai_files(&case, &usage, &mut out);
        anthropic_files(&case, &thinking, &mut out);
        responses_files(&case, &mut out);
    }
    let plain = Case {
        name: "text_without_usage",
        steps: vec![reasoning("Hm."), text("Hi."), finish(StopReason::EndTurn)],
    };
    openai_files(&plain, &ChatOptions::default(), &mut out);
    let plain = Case {
        name: "reasoning_without_thinking",
        steps: vec![
            text("Hi"),
            reasoning("hidden"),
            text(" there."),
            finish(StopReason::EndTurn),
        ],
    };
    anthropic_files(&plain, &MessagesOptions::default(), &mut out);
    let wire = Case {
        name: "wire_tools",
        steps: vec![
            call("call_1", "ns__spawn", json!({"task": "t"})),
            call(
                "call_2",
                "apply_patch",
                json!({"input": "*** Begin Patch\n*** End Patch"}),
            ),
            finish(StopReason::ToolUse),
        ],
    };
    responses_files(&wire, &mut out);
    out
}

/// Where `actual` first differs from `expected`, by line, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let (mut e, mut a) = (expected.lines(), actual.lines());
    for n in 1.. {
        match (e.next(), a.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => return "the same lines, different line endings".into(),
            (x, y) => {
                return format!(
                    "line {n}:\n    expected: {}\n    actual:   {}",
                    x.unwrap_or("(end of file)"),
                    y.unwrap_or("(end of file)")
                )
            }
        }
    }
    unreachable!()
}

#[test]
fn encoders_match_the_golden_transcripts() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for (path, actual) in produce() {
        if update {
            std::fs::create_dir_all(path.parent().expect("a fixture directory")).unwrap();
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{} differs at {}",
                path.display(),
                first_difference(&expected, &actual)
            )),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden transcript(s) differ from what the encoders write now:\n{}\n\
         If the change is meant, rewrite them with `UPDATE_GOLDEN=1 cargo test --lib golden` \
         and review the diff.",
        failures.len(),
        failures.join("\n")
    );
}
