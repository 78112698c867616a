//! Events a dialect carries as structured data (ACP): reasoning apart from the text, and
//! the context usage Lingma reports.

use super::*;

fn thought(t: &str) -> ChatEvent {
    ChatEvent::Reasoning(t.into())
}

fn usage(used_tokens: u64, limit_tokens: Option<u64>) -> ChatEvent {
    ChatEvent::Usage {
        used_tokens,
        limit_tokens,
    }
}

#[test]
fn reasoning_events_are_reasoning_as_a_think_block_is_and_count_as_output() {
    let upstream = [thought("Let me see"), thought("."), text("Four."), end()];
    let (events, actions) = fold(&req(), setup(), &upstream);
    assert_eq!(
        events,
        [
            Event::Reasoning("Let me see".into()),
            Event::Reasoning(".".into()),
            said("Four."),
            // 4 + 1 + 2.
            finished(StopReason::EndTurn, ASKED, 7),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn reasoning_is_no_answer_text_so_the_full_answer_still_counts() {
    let upstream = [thought("Hmm"), finish_with(200, "", "Hi there")];
    let (events, _) = fold(&req(), setup(), &upstream);
    assert_eq!(
        events,
        [
            Event::Reasoning("Hmm".into()),
            said("Hi there"),
            finished(StopReason::EndTurn, ASKED, 4),
        ]
    );
}

#[test]
fn reasoning_counts_toward_max_tokens() {
    let req = ChatRequest {
        max_tokens: Some(3),
        ..req()
    };
    let (events, actions) = fold(&req, setup(), &[thought("Let me see"), text("Four.")]);
    assert_eq!(
        events,
        [
            Event::Reasoning("Let me see".into()),
            finished(StopReason::Length, ASKED, 4),
        ]
    );
    assert_eq!(actions, [Action::Stop]);
}

#[test]
fn a_retried_attempts_reasoning_never_reaches_the_client() {
    let req = with_tools(ToolChoice::Any);
    let upstream = [
        thought("No tool needed"),
        text("It is sunny."),
        end(),
        thought("Calling"),
        text(WEATHER_CALL),
        end(),
    ];
    let (events, actions) = fold(&req, retrying(), &upstream);
    assert_eq!(events[0], Event::Reasoning("Calling".into()));
    assert_eq!(events[1], weather("call_1"));
    assert!(
        !events.contains(&Event::Reasoning("No tool needed".into())),
        "{events:?}"
    );
    assert_eq!(actions, [Action::Retry, Action::Stop]);
}

#[test]
fn reported_context_usage_is_the_prompts_tokens_instead_of_the_estimate() {
    let upstream = [usage(1234, Some(131_072)), text("Hello"), end()];
    let (events, _) = fold(&req(), setup(), &upstream);
    assert_eq!(
        events,
        [said("Hello"), finished(StopReason::EndTurn, 1234, 2)]
    );
    // Reported late (after the text, as cosy does): the finish still carries it.
    let upstream = [text("Hello"), usage(99, None), end()];
    let (events, _) = fold(&req(), setup(), &upstream);
    assert_eq!(events.last(), Some(&finished(StopReason::EndTurn, 99, 2)));
    // Unreported: the estimate stays.
    let (events, _) = fold(&req(), setup(), &[text("Hello"), end()]);
    assert_eq!(
        events.last(),
        Some(&finished(StopReason::EndTurn, ASKED, 2))
    );
}

#[test]
fn a_retry_adds_its_reported_usage_to_the_first_attempts() {
    let req = with_tools(ToolChoice::Any);
    let upstream = [
        usage(100, None),
        text("It is sunny."),
        end(),
        usage(150, None),
        text(WEATHER_CALL),
        end(),
    ];
    let (events, _) = fold(&req, retrying(), &upstream);
    assert_eq!(
        events.last(),
        Some(&finished(StopReason::ToolUse, 250, WEATHER_TOKENS))
    );
}

#[test]
fn nothing_comes_of_reasoning_or_usage_after_the_finish() {
    let mut fold = AnswerFold::new(&req(), setup());
    fold.push(end());
    assert_eq!(fold.push(thought("late")), Step::default());
    assert_eq!(fold.push(usage(5, None)), Step::default());
    assert_eq!(fold.usage().input_tokens, ASKED);
}
