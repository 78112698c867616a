//! The fold on literal upstream events: each path an answer can take, with the exact events
//! and actions it gives.

use serde_json::{json, Value};

use super::*;
use crate::error::ErrorKind;
use crate::model::{Message, OutputFormat, Role, ToolChoice, ToolSpec};

mod native;
mod reasoning;
mod usage;

/// Input tokens of the question, and of the forced tool choice's second question.
const ASKED: u64 = 10;
const ASKED_AGAIN: u64 = 20;

fn req() -> ChatRequest {
    ChatRequest {
        model: "auto".into(),
        messages: vec![Message::new(Role::User, "How is the weather?")],
        ..ChatRequest::default()
    }
}

fn with_tools(choice: ToolChoice) -> ChatRequest {
    let spec = |name: &str, required: &str| ToolSpec {
        name: name.into(),
        description: String::new(),
        schema: json!({"type": "object", "required": [required]}),
    };
    ChatRequest {
        tools: vec![spec("get_weather", "location"), spec("Bash", "command")],
        tool_choice: choice,
        ..req()
    }
}

fn setup() -> Setup {
    Setup {
        instance: "lingma-0".into(),
        input_tokens: ASKED,
        retry: false,
        remember: false,
        policy: ToolPolicy::default(),
    }
}

fn retrying() -> Setup {
    Setup {
        retry: true,
        ..setup()
    }
}

fn reporting() -> Setup {
    Setup {
        policy: ToolPolicy {
            report_native: true,
            ..ToolPolicy::default()
        },
        ..setup()
    }
}

/// Feeds the events; answers a `Retry` as the driver does when the new turn starts. Call
/// ids are random: they come back numbered `call_1`, `call_2`, ... once checked.
fn fold(req: &ChatRequest, setup: Setup, upstream: &[ChatEvent]) -> (Vec<Event>, Vec<Action>) {
    let mut fold = AnswerFold::new(req, setup);
    let (mut events, mut actions) = (Vec::new(), Vec::new());
    for e in upstream {
        let step = fold.push(e.clone());
        events.extend(step.events);
        for a in step.actions {
            if a == Action::Retry {
                fold.retried(ASKED_AGAIN);
            }
            actions.push(a);
        }
    }
    if let Some(Event::Finish { usage, .. }) = events.last() {
        assert_eq!(*usage, fold.usage(), "the finish carries the count");
    }
    number_calls(events.iter_mut().filter_map(|e| match e {
        Event::ToolCall(c) => Some(c),
        _ => None,
    }));
    for a in &mut actions {
        if let Action::Remember(r) = a {
            number_calls(r.calls.iter_mut());
        }
    }
    (events, actions)
}

fn number_calls<'a>(calls: impl Iterator<Item = &'a mut ToolCall>) {
    for (n, c) in calls.enumerate() {
        assert!(c.id.starts_with("call_") && c.id.len() == 29, "{}", c.id);
        c.id = format!("call_{}", n + 1);
    }
}

fn text(t: &str) -> ChatEvent {
    ChatEvent::Text(t.into())
}

fn finish_with(status_code: i64, reason: &str, full_answer: &str) -> ChatEvent {
    ChatEvent::Finish(Finish {
        session_id: "s1".into(),
        status_code,
        reason: reason.into(),
        full_answer: full_answer.into(),
    })
}

fn end() -> ChatEvent {
    finish_with(200, "success", "")
}

fn said(t: &str) -> Event {
    Event::Text(t.into())
}

fn finished(reason: StopReason, input_tokens: u64, output_tokens: u64) -> Event {
    Event::Finish {
        reason,
        usage: Usage {
            input_tokens,
            output_tokens,
        },
    }
}

fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

const WEATHER_CALL: &str =
    "```json action\n{\"tool\": \"get_weather\", \"parameters\": {\"location\": \"Paris\"}}\n```\n";
/// `{"location":"Paris"}`: 20 characters, 7 tokens.
const WEATHER_TOKENS: u64 = 7;

fn weather(id: &str) -> Event {
    Event::ToolCall(call(id, "get_weather", json!({"location": "Paris"})))
}

fn bash_block(command: &str) -> String {
    format!("```json action\n{{\"tool\": \"Bash\", \"parameters\": {{\"command\": \"{command}\"}}}}\n```\n")
}

#[test]
fn plain_text_streams_as_it_comes_and_the_finish_counts_it() {
    // 5 and 6 ASCII characters: 2 tokens each.
    let (events, actions) = fold(&req(), setup(), &[text("Hello"), text(" world"), end()]);
    assert_eq!(
        events,
        [
            said("Hello"),
            said(" world"),
            finished(StopReason::EndTurn, ASKED, 4)
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn the_full_answer_counts_only_when_no_delta_came() {
    let (events, _) = fold(&req(), setup(), &[finish_with(200, "", "Hi there")]);
    assert_eq!(
        events,
        [said("Hi there"), finished(StopReason::EndTurn, ASKED, 3)]
    );
    let (events, _) = fold(
        &req(),
        setup(),
        &[text("Hi"), finish_with(200, "", "Hi there")],
    );
    assert_eq!(
        events,
        [said("Hi"), finished(StopReason::EndTurn, ASKED, 1)]
    );
}

#[test]
fn a_think_block_is_reasoning_and_its_markers_are_gone() {
    let upstream = [
        text("````think::12\nLet me see"),
        text(".\n````\nFour."),
        end(),
    ];
    let (events, actions) = fold(&req(), setup(), &upstream);
    assert_eq!(
        events,
        [
            Event::Reasoning("Let me see".into()),
            // The newline before the closing fence is the closer's.
            Event::Reasoning(".".into()),
            said("Four."),
            // 4 + 1 + 2: reasoning counts as output.
            finished(StopReason::EndTurn, ASKED, 7),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn the_real_servers_think_framing_leaves_no_newline_before_or_inside_the_reasoning() {
    // "\n````think::{THINK_TIME}\n" … "\n````\n", cut where the real server may cut it.
    let upstream = [
        text("\n"),
        text("```"),
        text("`think::{THINK_TIME}\nLet"),
        text(" me see."),
        text("\n"),
        text("```"),
        text("`\nFour."),
        end(),
    ];
    let (events, actions) = fold(&req(), setup(), &upstream);
    assert_eq!(
        events,
        [
            Event::Reasoning("Let".into()),
            Event::Reasoning(" me see.".into()),
            said("Four."),
            finished(StopReason::EndTurn, ASKED, 6),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
    // A newline that opens no block is the answer's, held only until that is known.
    let (events, _) = fold(
        &req(),
        setup(),
        &[text("\n"), text("``"), text("Hi"), end()],
    );
    assert_eq!(
        events,
        [said("\n``Hi"), finished(StopReason::EndTurn, ASKED, 2)]
    );
}

#[test]
fn a_call_the_scanner_finds_is_a_tool_call_and_the_answer_ends_in_tool_use() {
    let upstream = [text("I'll check.\n"), text(WEATHER_CALL), end()];
    let (events, actions) = fold(&with_tools(ToolChoice::Auto), setup(), &upstream);
    assert_eq!(
        events,
        [
            said("I'll check.\n"),
            weather("call_1"),
            finished(StopReason::ToolUse, ASKED, 4 + WEATHER_TOKENS),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn without_declared_tools_a_call_is_text_and_lingmas_tool_cards_are_dropped() {
    let upstream = [
        text("```toolCall::read_file::tc1::INIT\n```\n"),
        text(WEATHER_CALL),
        end(),
    ];
    let (events, _) = fold(&req(), setup(), &upstream);
    let tokens = estimate_tokens(WEATHER_CALL);
    assert_eq!(tokens, 27, "80 characters");
    assert_eq!(
        events,
        [
            said(WEATHER_CALL),
            finished(StopReason::EndTurn, ASKED, tokens)
        ]
    );
}

#[test]
fn several_calls_go_out_unless_the_client_wants_one_at_most() {
    let answer = format!("{}{}", bash_block("a"), bash_block("b"));
    // `{"command":"a"}`: 15 characters, 5 tokens.
    let (events, _) = fold(
        &with_tools(ToolChoice::Auto),
        setup(),
        &[text(&answer), end()],
    );
    assert_eq!(
        events,
        [
            Event::ToolCall(call("call_1", "Bash", json!({"command": "a"}))),
            Event::ToolCall(call("call_2", "Bash", json!({"command": "b"}))),
            finished(StopReason::ToolUse, ASKED, 10),
        ]
    );
    let one = ChatRequest {
        one_tool_call: true,
        ..with_tools(ToolChoice::Auto)
    };
    let (events, _) = fold(&one, setup(), &[text(&answer), end()]);
    assert_eq!(
        events,
        [
            Event::ToolCall(call("call_1", "Bash", json!({"command": "a"}))),
            finished(StopReason::ToolUse, ASKED, 5),
        ]
    );
}

#[test]
fn a_forced_choice_holds_text_until_the_call_and_then_needs_no_retry() {
    let upstream = [text("Let me look.\n"), text(WEATHER_CALL), end()];
    let forced = with_tools(ToolChoice::Named("get_weather".into()));
    let (events, actions) = fold(&forced, retrying(), &upstream);
    assert_eq!(
        events,
        [
            said("Let me look.\n"),
            weather("call_1"),
            finished(StopReason::ToolUse, ASKED, 5 + WEATHER_TOKENS),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn a_forced_choice_without_a_call_asks_once_more_and_drops_what_the_first_try_said() {
    let upstream = [
        text("````think::1\nhmm\n````\n"),
        text("Sunny, I think."),
        end(),
        text(WEATHER_CALL),
        end(),
    ];
    let (events, actions) = fold(&with_tools(ToolChoice::Any), retrying(), &upstream);
    assert_eq!(
        events,
        [
            weather("call_1"),
            // Both questions count; only the retry's answer does.
            finished(StopReason::ToolUse, ASKED + ASKED_AGAIN, WEATHER_TOKENS),
        ]
    );
    assert_eq!(actions, [Action::Retry, Action::Stop]);
}

#[test]
fn a_retry_that_calls_nothing_either_is_the_answer() {
    let upstream = [text("Sunny."), end(), text("Still sunny."), end()];
    let (events, actions) = fold(&with_tools(ToolChoice::Any), retrying(), &upstream);
    assert_eq!(
        events,
        [
            said("Still sunny."),
            finished(StopReason::EndTurn, ASKED + ASKED_AGAIN, 4)
        ]
    );
    assert_eq!(actions, [Action::Retry, Action::Stop]);
}

#[test]
fn without_a_retry_to_ask_a_forced_choice_streams_its_text() {
    let (events, actions) = fold(
        &with_tools(ToolChoice::Any),
        setup(),
        &[text("Sunny."), end()],
    );
    assert_eq!(
        events,
        [said("Sunny."), finished(StopReason::EndTurn, ASKED, 2)]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn a_stop_sequence_cuts_the_text_across_deltas_and_stops_the_turn() {
    let stopping = ChatRequest {
        stop: vec!["END".into()],
        ..req()
    };
    let upstream = [text("one two EN"), text("D three"), end()];
    let (events, actions) = fold(&stopping, setup(), &upstream);
    assert_eq!(
        events,
        [
            said("one two "),
            finished(StopReason::StopSequence("END".into()), ASKED, 3)
        ]
    );
    // The turn's own finish comes after the stop: nothing more.
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn max_tokens_cuts_a_chunk_where_it_crosses_and_ends_the_answer() {
    let short = ChatRequest {
        max_tokens: Some(3),
        ..req()
    };
    let (events, actions) = fold(
        &short,
        setup(),
        &[text("abcdefghijkl"), text("more"), end()],
    );
    assert_eq!(
        events,
        [said("abcdefghi"), finished(StopReason::Length, ASKED, 3)]
    );
    assert_eq!(actions, [Action::Stop]);
    // Reaching it exactly ends the answer too.
    let exact = ChatRequest {
        max_tokens: Some(2),
        ..req()
    };
    let (events, _) = fold(&exact, setup(), &[text("abcdef"), text("more"), end()]);
    assert_eq!(
        events,
        [said("abcdef"), finished(StopReason::Length, ASKED, 2)]
    );
}

#[test]
fn a_json_answer_loses_its_fence() {
    let json = ChatRequest {
        output_format: Some(OutputFormat::JsonObject),
        ..req()
    };
    let (events, _) = fold(&json, setup(), &[text("```json\n{\"a\": 1}\n```"), end()]);
    assert_eq!(
        events,
        [said("{\"a\": 1}"), finished(StopReason::EndTurn, ASKED, 3)]
    );
}

#[test]
fn content_filter_codes_end_the_answer_as_filtered() {
    for code in [406, 601] {
        let (events, actions) = fold(&req(), setup(), &[text("Hi"), finish_with(code, "", "")]);
        assert_eq!(
            events,
            [said("Hi"), finished(StopReason::ContentFilter, ASKED, 1)],
            "{code}"
        );
        assert_eq!(actions, [Action::Stop], "{code}");
    }
}

#[test]
fn other_finish_codes_fail_the_answer_with_their_status() {
    let cases = [
        (401, ErrorKind::PermissionDenied, 403),
        (403, ErrorKind::PermissionDenied, 403),
        (408, ErrorKind::Timeout, 504),
        (429, ErrorKind::RateLimited, 429),
        (500, ErrorKind::Upstream, 502),
    ];
    for (code, kind, status) in cases {
        let (events, actions) = fold(
            &req(),
            setup(),
            &[text("Hi"), finish_with(code, "busy", "")],
        );
        assert_eq!(events, [said("Hi")], "{code}");
        let [Action::Fail(e)] = &actions[..] else {
            panic!("{code}: {actions:?}");
        };
        assert_eq!((e.kind, e.status()), (kind, status), "{code}");
        assert!(e.message.contains(&format!("{code} (busy)")), "{e}");
    }
    let (_, actions) = fold(&req(), setup(), &[finish_with(429, "", "")]);
    assert_eq!(
        actions,
        [Action::Fail(
            GatewayError::new(
                ErrorKind::RateLimited,
                "Lingma rate limit reached (status 429)"
            )
            .with_code("rate_limit_exceeded")
            .retry_after(10)
        )]
    );
}

#[test]
fn a_failed_finish_drops_what_a_forced_choice_held() {
    let upstream = [text("Sunny."), finish_with(500, "", "")];
    let (events, actions) = fold(&with_tools(ToolChoice::Any), retrying(), &upstream);
    assert_eq!(events, []);
    assert!(
        matches!(&actions[..], [Action::Fail(e)] if e.kind == ErrorKind::Upstream),
        "{actions:?}"
    );
}

#[test]
fn a_complete_answer_is_remembered_with_its_session_and_a_cut_one_is_not() {
    let remember = || Setup {
        remember: true,
        ..setup()
    };
    let (_, actions) = fold(&req(), remember(), &[text("Hi"), text(" there"), end()]);
    let hi = Remembered {
        session_id: "s1".into(),
        text: "Hi there".into(),
        calls: Vec::new(),
    };
    assert_eq!(actions, [Action::Remember(hi), Action::Stop]);

    let upstream = [text("Checking.\n"), text(WEATHER_CALL), end()];
    let (_, actions) = fold(&with_tools(ToolChoice::Auto), remember(), &upstream);
    let checking = Remembered {
        session_id: "s1".into(),
        text: "Checking.\n".into(),
        calls: vec![call("call_1", "get_weather", json!({"location": "Paris"}))],
    };
    assert_eq!(actions, [Action::Remember(checking), Action::Stop]);

    let stopping = ChatRequest {
        stop: vec!["there".into()],
        ..req()
    };
    let (_, actions) = fold(&stopping, remember(), &[text("Hi there"), end()]);
    assert_eq!(actions, [Action::Stop]);
    let (_, actions) = fold(&req(), remember(), &[text("Hi"), finish_with(406, "", "")]);
    assert_eq!(actions, [Action::Stop]);
    let nowhere = ChatEvent::Finish(Finish {
        session_id: String::new(),
        status_code: 200,
        reason: String::new(),
        full_answer: String::new(),
    });
    let (_, actions) = fold(&req(), remember(), &[text("Hi"), nowhere]);
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn nothing_comes_of_events_after_the_answer_is_over() {
    let mut fold = AnswerFold::new(&req(), setup());
    assert_eq!(fold.push(end()).actions, [Action::Stop]);
    assert_eq!(fold.push(text("late")), Step::default());
    assert_eq!(fold.push(end()), Step::default());
}
