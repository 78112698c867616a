//! What one simulated chat turn sends, decided up front: parses the `[[sim:NAME]]` /
//! `[[sim:NAME=VALUE]]` test directives out of the latest user text of the question (see
//! `crate::prompt`) and turns the turn into a `Plan` (a list of `Step`s): plain answers, answers
//! that call a declared tool the way the prompt's tool contract asks (or in a variant a real
//! model writes), answers to tool results, and Lingma's own agent-tool path. Pure code, no
//! sockets, threads or clocks: the generators (`crate::execute`) only execute plans, so every
//! behaviour here is tested on string literals (`tests.rs` for whole turns).
//!
//! `plan` reads the prompt (`crate::prompt`) and the directives (`directives`), chooses the
//! answer (`answer`, which writes tool calls with `call` and shapes text with `text`) and lays
//! it out as `steps`.

mod answer;
mod call;
mod directives;
mod steps;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use directives::{Deaf, Wire};
pub(crate) use steps::{NativeCall, Plan, Reason, Step, Turn, GARBAGE};
pub(crate) use text::{split_deltas, split_points, title};

use answer::{answer_deltas, choose_answer, note};
use directives::{parse_directives, Directives};
use text::{title_of, user_text};

use crate::prompt;

/// The status codes of turns the server refuses before any text.
const STATUS_LOGGED_OUT: u16 = 403;
const STATUS_INTERNAL: u16 = 500;

/// What `turn` sends, from the first step callback to the finish (or the fault that ends it).
pub(crate) fn plan(turn: &Turn) -> Plan {
    let prompt = prompt::read(turn.question);
    // Directives come from the latest user text only: older turns, tool results and system
    // text in a transcript must not fire again.
    let mut d = parse_directives(prompt.user);
    if d.on.as_deref().is_some_and(|on| on != turn.instance) {
        (
            d.status, d.crash, d.stall, d.close, d.garbage, d.oversize, d.deaf,
        ) = (None, None, None, None, None, None, None);
    }
    let mut plan = Plan {
        steps: vec![Step::Progress("step_start"), Step::Progress("step_end")],
        first_ms: d.first_ms,
        delay_ms: d.delay_ms,
        wire: d.wire,
        content_every: d.content,
        deaf: d.deaf,
        ignored: d.ignored.clone(),
        note: None,
        answer: String::new(),
    };
    let refusal = if !turn.logged_in {
        Some(STATUS_LOGGED_OUT)
    } else if turn.model.is_none() || turn.question.trim().is_empty() {
        Some(STATUS_INTERNAL)
    } else {
        d.status
    };
    let model = match (refusal, turn.model) {
        (None, Some(model)) => model,
        (status, _) => {
            let status = status.unwrap_or(STATUS_INTERNAL);
            plan.steps.push(Step::Finish {
                status,
                reason: Reason::Error,
            });
            return plan;
        }
    };
    if turn.new_session {
        plan.steps
            .push(Step::Title(title_of(user_text(&prompt, turn.question))));
    }
    let answer = choose_answer(turn, &prompt, &d);
    if let Some(name) = d.tool.as_deref() {
        if prompt.tools.as_ref().is_none_or(|t| t.get(name).is_none()) {
            plan.ignored.push(format!("tool={name} (not declared)"));
        }
    }
    if prompt.sections > 1 || prompt.tools.is_some() || d.native.is_some() || d.tool.is_some() {
        plan.note = Some(note(&prompt, &answer));
    }
    let (deltas, native) = answer_deltas(turn, model, &d, &prompt, answer);
    plan.answer = deltas.concat();
    if push_deltas(&mut plan.steps, deltas, &d) {
        plan.steps.extend(native.map(Step::Native));
        // The context the turn fills, as the real server counts it: the session's history
        // and the new question (a deterministic four bytes a token, so tests can check it).
        let used = (turn.history_bytes + turn.question.len()) as u64 / 4;
        plan.steps.push(Step::Usage {
            used,
            limit: model.max_input_tokens,
            by_session: d.usage_by_session,
        });
        plan.steps.push(Step::Finish {
            status: 200,
            reason: Reason::Success,
        });
    }
    plan
}

/// Appends the deltas with the fault directives placed after their counts; returns false when
/// a terminal fault (crash, close, stall) ends the plan before the finish.
fn push_deltas(steps: &mut Vec<Step>, deltas: Vec<String>, d: &Directives) -> bool {
    let n = deltas.len();
    // A count past the last delta acts after the last one (before the usage and finish).
    let at = |k: Option<usize>, i: usize| k.is_some_and(|k| k.min(n) == i);
    let mut deltas = deltas.into_iter();
    for i in 0..=n {
        if at(d.garbage, i) {
            steps.push(Step::Garbage);
        }
        if at(d.oversize, i) {
            steps.push(Step::Oversize);
        }
        let terminal = [
            (d.crash, Step::Crash),
            (d.close, Step::Close),
            (d.stall, Step::Stall),
        ];
        if let Some((_, step)) = terminal.into_iter().find(|(k, _)| at(*k, i)) {
            steps.push(step);
            return false;
        }
        if let Some(delta) = deltas.next() {
            steps.push(Step::Delta(delta));
        }
    }
    true
}
