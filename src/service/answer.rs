//! A running answer: the driver that pulls the upstream turn's events through the pure
//! fold (`fold.rs`) and does what it says (stop the turn, ask again, remember the session).
//! It owns the stream and the lease, waits in slices so the HTTP layer can keep its client
//! alive, and measures the time spent waiting on Lingma. Runs on the worker thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::GatewayError;
use crate::metrics::AnswerStats;
use crate::model::{estimate_tokens, Event, Usage};
use crate::sessions::{Conversation, Place, SessionCache};
use crate::upstream::chat::{ChatStream, Deadlines};
use crate::upstream::cleanup::Cleanup;
use crate::upstream::models::{ContextSizes, ModelInfo};
use crate::upstream::pool::Lease;
use crate::upstream::{Ask, UpstreamError};

use super::fold::{Action, AnswerFold, Remembered, Step};

/// What `Answer::poll` found.
pub enum Poll {
    Event(Result<Event, GatewayError>),
    /// Nothing within the slice; the answer goes on.
    Idle,
    Done,
}

/// Why a try at a chat failed before its first event. `broken` names the instance when
/// the instance itself failed (not Lingma's answer), so another one may do better.
pub(super) struct Failed {
    pub(super) error: GatewayError,
    pub(super) broken: Option<String>,
}

impl From<GatewayError> for Failed {
    fn from(error: GatewayError) -> Self {
        Failed {
            error,
            broken: None,
        }
    }
}

impl Failed {
    pub(super) fn upstream(e: UpstreamError, instance: &str) -> Self {
        Failed {
            broken: matches!(e, UpstreamError::Disconnected(_)).then(|| instance.to_string()),
            error: e.into(),
        }
    }
}

/// The second `chat/ask` of a forced tool choice, ready to send.
pub(super) struct Retry {
    pub(super) ask: Ask,
    pub(super) as_request: bool,
    pub(super) deadlines: Deadlines,
}

/// Where to store the conversation for session reuse once the answer is complete.
pub(super) struct SessionNote {
    pub(super) cache: Arc<SessionCache>,
    /// The digest of the whole conversation the answer continues.
    pub(super) conv: Conversation,
    /// The instance's restart count when the chat started.
    pub(super) restarts: u64,
}

/// A running answer: yields internal events until `Finish` or an error.
pub struct Answer {
    // Field order is drop order: the stream (which may send chat/stop) goes before the lease
    // gives the instance back.
    stream: Option<ChatStream>,
    lease: Lease,
    pub(crate) model: ModelInfo,
    /// The fold's count, as of the last event it gave.
    pub(crate) usage: Usage,
    fold: AnswerFold,
    queue: VecDeque<Result<Event, GatewayError>>,
    retry: Option<Retry>,
    session: Option<SessionNote>,
    /// What the fold said to remember, stored when the client takes the finish.
    remembered: Option<Remembered>,
    /// Time spent blocked waiting on Lingma's events (for the gateway-added latency).
    upstream_wait: Duration,
    /// When the first text or tool call came out.
    first_output_at: Option<Instant>,
    /// The instance failed (its connection or process went away) during this answer.
    broke: bool,
    /// Deletes the Lingma sessions this answer leaves behind (`None`: they stay).
    cleanup: Option<Arc<Cleanup>>,
    /// The sessions of this answer's turns that ended (a forced choice's retry has two).
    sessions_used: Vec<String>,
    /// The one of them stored for the conversation's next turn.
    kept: Option<String>,
    /// Where the model's context size goes once a turn reports it, and what was noted.
    sizes: Option<Arc<ContextSizes>>,
    noted_size: Option<u64>,
}

impl Answer {
    pub(super) fn new(
        stream: ChatStream,
        lease: Lease,
        model: ModelInfo,
        fold: AnswerFold,
        retry: Option<Retry>,
        session: Option<SessionNote>,
    ) -> Self {
        Answer {
            stream: Some(stream),
            lease,
            model,
            usage: fold.usage(),
            fold,
            queue: VecDeque::new(),
            retry,
            session,
            remembered: None,
            upstream_wait: Duration::ZERO,
            first_output_at: None,
            broke: false,
            cleanup: None,
            sessions_used: Vec::new(),
            kept: None,
            sizes: None,
            noted_size: None,
        }
    }

    /// The name of the Lingma instance answering.
    pub(crate) fn instance(&self) -> &str {
        &self.lease.name
    }

    /// What this answer measured; `since` is the request's start.
    pub(crate) fn stats(&self, since: Instant) -> AnswerStats {
        AnswerStats {
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            upstream_wait: self.upstream_wait,
            first_token: self
                .first_output_at
                .map(|t| t.saturating_duration_since(since)),
        }
    }

    /// The next event, `None` after the finish. An `Err` ends the answer.
    pub(crate) fn next_event(&mut self) -> Option<Result<Event, GatewayError>> {
        loop {
            match self.poll(None) {
                Poll::Idle => continue,
                Poll::Event(e) => return Some(e),
                Poll::Done => return None,
            }
        }
    }

    /// Like `next_event`, but returns `Poll::Idle` when Lingma has been silent for `slice`
    /// (the stream writer uses it to keep the client connection alive and notice hang-ups).
    pub(crate) fn poll(&mut self, slice: Option<Duration>) -> Poll {
        loop {
            if let Some(item) = self.queue.pop_front() {
                if let Ok(e) = &item {
                    self.taken(e);
                }
                return Poll::Event(item);
            }
            if self.stream.is_none() {
                return Poll::Done;
            }
            if !self.pull(slice) {
                return Poll::Idle;
            }
        }
    }

    /// Waits until the first event is ready (or the answer is over) without taking it; an
    /// error instead is taken.
    pub(super) fn wait_first(&mut self) -> Result<(), Failed> {
        while self.queue.is_empty() && self.stream.is_some() {
            self.pull(None);
        }
        if matches!(self.queue.front(), Some(Err(_))) {
            if let Some(Err(error)) = self.queue.pop_front() {
                let broken = self.broke.then(|| self.lease.name.clone());
                return Err(Failed { error, broken });
            }
        }
        Ok(())
    }

    /// Takes one event from Lingma through the fold into the queue; false when Lingma was
    /// silent for the slice.
    fn pull(&mut self, slice: Option<Duration>) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return true;
        };
        let waiting = Instant::now();
        let next = stream.next_event(slice);
        self.upstream_wait += waiting.elapsed();
        match next {
            Ok(None) => return false,
            Ok(Some(event)) => {
                let step = self.fold.push(event);
                self.apply(step);
            }
            Err(e) => {
                self.broke = matches!(e, UpstreamError::Disconnected(_));
                self.end_stream();
                self.queue.push_back(Err(e.into()));
            }
        }
        true
    }

    fn apply(&mut self, step: Step) {
        self.queue.extend(step.events.into_iter().map(Ok));
        self.usage = self.fold.usage();
        let size = self.fold.context_limit();
        if let (Some(sizes), Some(limit)) = (&self.sizes, size) {
            if self.noted_size != size {
                sizes.note(&self.model.key, limit);
                self.noted_size = size;
            }
        }
        for action in step.actions {
            match action {
                // A stop sequence or length cut ends the answer before Lingma does: dropping
                // the stream sends chat/stop (after chat/finish it sends nothing).
                Action::Stop => self.end_stream(),
                Action::Fail(e) => {
                    self.end_stream();
                    self.queue.push_back(Err(e));
                }
                Action::Retry => self.ask_again(),
                Action::Remember(r) => self.remembered = Some(r),
            }
        }
    }

    /// Asks again with the stronger instruction on the same instance, in a new session.
    fn ask_again(&mut self) {
        self.end_stream(); // already finished: no chat/stop
        let Some(retry) = self.retry.take() else {
            return; // the fold asks only when there is a retry
        };
        match ChatStream::start(
            Arc::clone(&self.lease.conn),
            &retry.ask,
            retry.as_request,
            retry.deadlines,
        ) {
            Ok(stream) => {
                self.stream = Some(stream);
                self.fold.retried(estimate_tokens(&retry.ask.question));
                self.usage = self.fold.usage();
            }
            Err(e) => self.queue.push_back(Err(e.into())),
        }
    }

    /// Notes what the client takes; at the finish of a complete answer, stores where the
    /// conversation (now including this answer) lives, for its next turn.
    fn taken(&mut self, e: &Event) {
        if self.first_output_at.is_none() && matches!(e, Event::Text(_) | Event::ToolCall(_)) {
            self.first_output_at = Some(Instant::now());
        }
        if !matches!(e, Event::Finish { .. }) {
            return;
        }
        if let (Some(mut note), Some(r)) = (self.session.take(), self.remembered.take()) {
            note.conv.push_answer(&r.text, &r.calls);
            self.kept = Some(r.session_id.clone());
            note.cache.insert(
                note.conv.key(),
                Place {
                    instance: self.lease.name.clone(),
                    session_id: r.session_id,
                    restarts: note.restarts,
                },
            );
        }
    }

    /// Ends the upstream turn (an unfinished one gets chat/stop) and notes its session.
    fn end_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            let id = stream.session_id().to_string();
            drop(stream);
            if !id.is_empty() && !self.sessions_used.contains(&id) {
                self.sessions_used.push(id);
            }
        }
    }

    /// Deletes, through `cleanup`, the sessions it leaves behind (every one but the session
    /// stored for the next turn can never be continued), and notes the model's context size
    /// in `sizes` when a turn reports it.
    pub(super) fn with_upkeep(
        mut self,
        cleanup: Option<Arc<Cleanup>>,
        sizes: Arc<ContextSizes>,
    ) -> Self {
        self.cleanup = cleanup;
        self.sizes = Some(sizes);
        self
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // The stream goes first, so chat/stop is on the wire before the delete; the lease
        // (a field) is given back after this.
        self.end_stream();
        let Some(cleanup) = &self.cleanup else {
            return;
        };
        for id in &self.sessions_used {
            if self.kept.as_ref() != Some(id) {
                cleanup.delete(&self.lease.name, id);
            }
        }
    }
}
