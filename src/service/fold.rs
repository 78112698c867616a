//! The pure core of an answer: folds the upstream turn's events (`upstream::ChatEvent`) into
//! the internal event stream and says what the driver must do next. Lingma's text goes
//! through the think splitter, the tool scanner, the stop filter and (for a JSON answer
//! format) the fence remover, in that order; `max_tokens` cuts it; Lingma's own tools are
//! merged and reported; a forced tool choice without a call asks once more. No channel,
//! socket or clock: it is tested on literal events (`fold/tests.rs`).

use crate::error::GatewayError;
use crate::model::{estimate_tokens, ChatRequest, Event, StopReason, ToolCall, Usage};
use crate::pipeline::{Segment, StopFilter, ThinkSplitter, Unfence};
use crate::tools::scan::{Piece, ToolScanner};
use crate::tools::ToolPolicy;
use crate::upstream::{ChatEvent, Finish, UpstreamError};

use super::native::NativeTools;

/// What the driver does besides passing the events on, in order, after them.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// The answer is over: the upstream turn ends (one still running is stopped).
    Stop,
    /// The answer made no call the forced tool choice demands: ask once more, with the
    /// stronger instruction, in a new turn; then tell the fold (`retried`).
    Retry,
    /// The answer ends in this error instead of a finish.
    Fail(GatewayError),
    /// The answer is complete and Lingma's session now holds the conversation with it:
    /// remember where, once the client has taken the finish.
    Remember(Remembered),
}

/// A complete answer as the client will echo it back, and the session it lives in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Remembered {
    pub(super) session_id: String,
    pub(super) text: String,
    pub(super) calls: Vec<ToolCall>,
}

/// What one upstream event gave.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Step {
    pub(super) events: Vec<Event>,
    pub(super) actions: Vec<Action>,
}

/// What the fold knows of the chat besides the request.
pub(super) struct Setup {
    /// The instance answering (for the logs).
    pub(super) instance: String,
    /// Estimated tokens of the question sent.
    pub(super) input_tokens: u64,
    /// A forced tool choice may ask once more (`Action::Retry`).
    pub(super) retry: bool,
    /// Gather the answer for session reuse (`Action::Remember`).
    pub(super) remember: bool,
    pub(super) policy: ToolPolicy,
}

pub(super) struct AnswerFold {
    instance: String,
    usage: Usage,
    /// The input tokens of the attempts before this turn (a forced tool choice's retry):
    /// a turn's own count replaces only its own estimate.
    input_before: u64,
    /// The model's context size, when Lingma reported it (`limitTokens`).
    context_limit: Option<u64>,
    think: ThinkSplitter,
    scanner: ToolScanner,
    stop: StopFilter,
    stops: Vec<String>,
    max_tokens: Option<u64>,
    /// Text was cut at `max_tokens`: the answer ends at the next length check.
    cut_at_length: bool,
    finished: bool,
    saw_text: bool,
    /// With a forced tool choice, text and reasoning wait until a call shows up (or the
    /// answer ends): what an attempt that gets retried said must not reach the client.
    hold_text: bool,
    held: Vec<Event>,
    retry: bool,
    native: NativeTools,
    /// At most one tool call goes out (`parallel_tool_calls: false`).
    one_tool_call: bool,
    calls_out: usize,
    /// With a JSON answer format: the fence around the JSON comes off.
    unfence: Option<Unfence>,
    /// The answer so far, as the client gets it, when it is to be remembered.
    gathered: Option<(String, Vec<ToolCall>)>,
    /// The Lingma session the answer ran on (from the finish).
    session_id: String,
    out: Step,
}

impl AnswerFold {
    pub(super) fn new(req: &ChatRequest, setup: Setup) -> Self {
        AnswerFold {
            instance: setup.instance,
            usage: Usage {
                input_tokens: setup.input_tokens,
                output_tokens: 0,
            },
            input_before: 0,
            context_limit: None,
            think: ThinkSplitter::default(),
            scanner: ToolScanner::new(req.tools.clone(), req.tools_active()),
            stop: StopFilter::new(&req.stop),
            stops: req.stop.clone(),
            max_tokens: req.max_tokens,
            cut_at_length: false,
            finished: false,
            saw_text: false,
            hold_text: setup.retry,
            held: Vec::new(),
            retry: setup.retry,
            native: NativeTools::new(setup.policy),
            one_tool_call: req.one_tool_call,
            calls_out: 0,
            unfence: req.output_format.as_ref().map(|_| Unfence::default()),
            gathered: setup.remember.then(Default::default),
            session_id: String::new(),
            out: Step::default(),
        }
    }

    /// The tokens counted so far: the input as Lingma measured it where the turn reported
    /// its context usage, else estimated; the output estimated.
    pub(super) fn usage(&self) -> Usage {
        self.usage
    }

    /// The model's context size, if a turn reported it.
    pub(super) fn context_limit(&self) -> Option<u64> {
        self.context_limit
    }

    /// Folds one upstream event. Nothing comes of events after the answer is over.
    pub(super) fn push(&mut self, event: ChatEvent) -> Step {
        if !self.finished {
            match event {
                ChatEvent::Text(t) => {
                    self.saw_text = true;
                    for seg in self.think.push(&t) {
                        self.segment(seg);
                    }
                }
                // Reasoning a dialect carries apart from the text: what the think splitter
                // makes of a think block.
                ChatEvent::Reasoning(r) => self.segment(Segment::Reasoning(r)),
                ChatEvent::Tool(update) => {
                    if let Some(tool) = self.native.update(update) {
                        self.out.events.push(Event::NativeTool(tool));
                    }
                }
                ChatEvent::Usage {
                    used_tokens,
                    limit_tokens,
                } => {
                    // Lingma's count of the context this turn fills, with the session's
                    // history: what the model really read, so it replaces the estimate.
                    self.usage.input_tokens = self.input_before + used_tokens;
                    self.context_limit = limit_tokens.or(self.context_limit);
                }
                ChatEvent::Finish(f) => self.end_of_turn(f),
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The retry's turn is running (its question was `input_tokens` long): what comes now
    /// is a new answer, and it goes out as it comes.
    pub(super) fn retried(&mut self, input_tokens: u64) {
        self.input_before = self.usage.input_tokens;
        self.usage.input_tokens += input_tokens;
        self.usage.output_tokens = 0;
        self.think = ThinkSplitter::default();
        self.scanner = ToolScanner::new(self.scanner.tools().to_vec(), true);
        self.stop = StopFilter::new(&self.stops);
        self.saw_text = false;
        self.hold_text = false;
    }

    fn end_of_turn(&mut self, f: Finish) {
        self.session_id = f.session_id;
        let reason = match f.status_code {
            200 => StopReason::EndTurn,
            406 | 601 => StopReason::ContentFilter,
            code => {
                let error = UpstreamError::Status {
                    code,
                    message: f.reason,
                };
                self.finished = true;
                self.out.actions.push(Action::Fail(error.into()));
                return;
            }
        };
        if !self.saw_text && !f.full_answer.is_empty() {
            for seg in self.think.push(&f.full_answer) {
                self.segment(seg);
            }
        }
        for seg in self.think.finish() {
            self.segment(seg);
        }
        for piece in self.scanner.finish() {
            self.piece(piece);
        }
        if self.finished {
            return;
        }
        if self.scanner.calls() == 0 && reason == StopReason::EndTurn && self.retry {
            self.ask_again();
            return;
        }
        self.release_held();
        let rest = self.stop.finish();
        self.push_text(rest);
        self.native.log_unfinished();
        let reason = if self.scanner.calls() > 0 {
            StopReason::ToolUse
        } else {
            reason
        };
        self.finish(reason);
    }

    /// Drops what the first attempt said and asks for the retry.
    fn ask_again(&mut self) {
        self.retry = false;
        let dropped: usize = self
            .held
            .iter()
            .map(|e| match e {
                Event::Text(t) => t.len(),
                _ => 0,
            })
            .sum();
        log::info!(
            "{}: the tool choice demands a call but the answer made none; asking once more ({dropped} bytes of text dropped)",
            self.instance
        );
        self.held.clear();
        self.out.actions.push(Action::Retry);
    }

    fn segment(&mut self, seg: Segment) {
        if self.finished {
            return;
        }
        match seg {
            Segment::Reasoning(r) => {
                self.usage.output_tokens += estimate_tokens(&r);
                // Held like text: a retried attempt's thinking must not reach the client.
                self.say(Event::Reasoning(r));
            }
            Segment::Text(t) => {
                for piece in self.scanner.push(&t) {
                    self.piece(piece);
                }
            }
        }
        self.check_length();
    }

    fn piece(&mut self, piece: Piece) {
        if self.finished {
            return;
        }
        match piece {
            Piece::Text(t) => {
                let (out, hit) = self.stop.push(&t);
                self.push_text(out);
                if let Some(s) = hit {
                    self.finish(StopReason::StopSequence(s));
                }
            }
            Piece::Call(call) => {
                if self.one_tool_call && self.calls_out > 0 {
                    log::info!(
                        "{}: dropped a further call of {} (parallel_tool_calls is false)",
                        self.instance,
                        call.name
                    );
                    return;
                }
                self.calls_out += 1;
                let rest = self.stop.finish();
                self.push_text(rest);
                self.flush_unfence();
                self.release_held();
                self.hold_text = false;
                self.usage.output_tokens += estimate_tokens(&call.arguments.to_string());
                self.deliver(Event::ToolCall(call));
            }
        }
        self.check_length();
    }

    fn check_length(&mut self) {
        if let Some(max) = self.max_tokens {
            if !self.finished && (self.cut_at_length || self.usage.output_tokens >= max) {
                self.finish(StopReason::Length);
            }
        }
    }

    fn push_text(&mut self, text: String) {
        let mut text = match self.unfence.as_mut() {
            Some(u) => u.push(&text),
            None => text,
        };
        if text.is_empty() {
            return;
        }
        // `max_tokens` is a hard limit: a chunk that crosses it is cut there (a slow client's
        // chunks arrive joined, so a chunk can be long).
        let over = self.max_tokens.and_then(|max| {
            crate::model::cut_to_tokens(&text, max.saturating_sub(self.usage.output_tokens))
        });
        if let Some(at) = over {
            text.truncate(at);
        }
        self.usage.output_tokens += estimate_tokens(&text);
        if !text.is_empty() {
            self.say(Event::Text(text));
        }
        self.cut_at_length |= over.is_some();
    }

    /// Text or reasoning: held while a retry may still drop it.
    fn say(&mut self, e: Event) {
        if self.hold_text {
            self.held.push(e);
        } else {
            self.deliver(e);
        }
    }

    /// Out to the client (and into what is remembered of the answer).
    fn deliver(&mut self, e: Event) {
        if let Some((text, calls)) = self.gathered.as_mut() {
            match &e {
                Event::Text(t) => text.push_str(t),
                Event::ToolCall(c) => calls.push(c.clone()),
                _ => {}
            }
        }
        self.out.events.push(e);
    }

    fn release_held(&mut self) {
        for e in std::mem::take(&mut self.held) {
            self.deliver(e);
        }
    }

    /// What the fence remover still holds (it passes everything after this).
    fn flush_unfence(&mut self) {
        if let Some(rest) = self.unfence.as_mut().map(Unfence::finish) {
            self.push_text(rest);
        }
    }

    /// Ends the answer: what is held back goes out, then the finish. A stop sequence or a
    /// length cut ends it before Lingma does: the driver stops the turn.
    fn finish(&mut self, reason: StopReason) {
        self.flush_unfence();
        self.release_held();
        self.finished = true;
        // A cut answer (stop sequence, length) differs from what Lingma's session holds.
        let complete = matches!(reason, StopReason::EndTurn | StopReason::ToolUse);
        self.out.events.push(Event::Finish {
            reason,
            usage: self.usage,
        });
        if complete && !self.session_id.is_empty() {
            if let Some((text, calls)) = self.gathered.take() {
                self.out.actions.push(Action::Remember(Remembered {
                    session_id: self.session_id.clone(),
                    text,
                    calls,
                }));
            }
        }
        self.out.actions.push(Action::Stop);
    }
}

#[cfg(test)]
mod tests;
