//! The fold on Lingma's context-usage reports: the input count a turn reports, the estimate
//! without one, and a retry's own report.

use super::*;

fn usage(used_tokens: u64, limit_tokens: Option<u64>) -> ChatEvent {
    ChatEvent::Usage {
        used_tokens,
        limit_tokens,
    }
}

#[test]
fn a_reported_context_usage_is_the_input_count_and_its_limit_is_kept() {
    let upstream = [text("Sunny."), usage(1234, Some(131_072)), end()];
    let (events, actions) = fold(&req(), setup(), &upstream);
    assert_eq!(
        events,
        [said("Sunny."), finished(StopReason::EndTurn, 1234, 2)]
    );
    assert_eq!(actions, [Action::Stop]);
    let mut f = AnswerFold::new(&req(), setup());
    f.push(usage(5, None));
    assert_eq!((f.usage().input_tokens, f.context_limit()), (5, None));
    f.push(usage(6, Some(100)));
    f.push(usage(7, None));
    assert_eq!(
        (f.usage().input_tokens, f.context_limit()),
        (7, Some(100)),
        "the last count wins; a limit once said stays"
    );
}

#[test]
fn without_a_report_the_estimate_stays() {
    let (events, _) = fold(&req(), setup(), &[text("Sunny."), end()]);
    assert_eq!(
        events.last(),
        Some(&finished(StopReason::EndTurn, ASKED, 2))
    );
}

#[test]
fn a_retry_adds_its_own_report_to_what_the_first_try_counted() {
    let upstream = [
        text("Sunny."),
        usage(100, None),
        end(),
        text(WEATHER_CALL),
        usage(300, None),
        end(),
    ];
    let (events, _) = fold(&with_tools(ToolChoice::Any), retrying(), &upstream);
    assert_eq!(
        events,
        [
            weather("call_1"),
            finished(StopReason::ToolUse, 100 + 300, WEATHER_TOKENS),
        ]
    );
    // A retry that reports nothing keeps its estimate on top of the first try's count.
    let upstream = [
        text("Sunny."),
        usage(100, None),
        end(),
        text(WEATHER_CALL),
        end(),
    ];
    let (events, _) = fold(&with_tools(ToolChoice::Any), retrying(), &upstream);
    assert_eq!(
        events.last(),
        Some(&finished(
            StopReason::ToolUse,
            100 + ASKED_AGAIN,
            WEATHER_TOKENS
        ))
    );
}

#[test]
fn a_report_after_the_answer_is_over_changes_nothing() {
    let mut f = AnswerFold::new(&req(), setup());
    f.push(text("Sunny."));
    f.push(end());
    let step = f.push(usage(999, Some(1)));
    assert_eq!(step, Step::default());
    assert_eq!((f.usage().input_tokens, f.context_limit()), (ASKED, None));
}
