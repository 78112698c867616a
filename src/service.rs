//! Runs one internal `ChatRequest` against the pool: lease an instance, resolve the model,
//! send `chat/ask`, and turn Lingma's deltas into the internal event stream (think blocks
//! split out, stop sequences and `max_tokens` applied, usage estimated). Every protocol's
//! stream and non-stream answers are built from this one stream. Runs on the worker thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{ErrorKind, GatewayError};
use crate::model::{estimate_tokens, ChatRequest, Event, StopReason, Usage};
use crate::pipeline::{Segment, StopFilter, ThinkSplitter};
use crate::upstream::chat::{Ask, ChatEvent, ChatStream, Deadlines};
use crate::upstream::models::{ModelInfo, ModelList};
use crate::upstream::pool::{Lease, LeaseError, Pool};
use crate::upstream::UpstreamError;

/// The gateway's shared state, one per process.
pub struct Gateway {
    pub cfg: Config,
    pub pool: Arc<Pool>,
    pub started: std::time::SystemTime,
}

impl Gateway {
    /// Leases an instance for a request that is not a chat (`/v1/models`).
    pub fn lease_any(&self) -> Result<Lease, GatewayError> {
        self.pool
            .lease(None, self.cfg.pool_wait)
            .map_err(lease_error)
    }

    /// The leased instance's models. An empty list means Lingma is not logged in, which no
    /// request can get past.
    pub fn models(&self, lease: &Lease) -> Result<Arc<ModelList>, GatewayError> {
        let list = lease
            .models(self.cfg.lingma_rpc_timeout)
            .map_err(upstream_error)?;
        if list.is_empty() {
            return Err(GatewayError::new(
                ErrorKind::Unavailable,
                format!(
                    "Lingma instance {} offers no models; it is probably not logged in",
                    lease.name
                ),
            ));
        }
        Ok(list)
    }

    /// Starts a chat. Errors here happen before any byte reaches the client.
    pub fn start_chat(&self, req: &ChatRequest) -> Result<Answer, GatewayError> {
        let question = req.question_text();
        if question.trim().is_empty() {
            return Err(GatewayError::invalid(
                "messages",
                "messages contain no text to send",
            ));
        }
        let lease = self
            .pool
            .lease(Some(req.affinity_key()), self.cfg.pool_wait)
            .map_err(lease_error)?;
        let models = self.models(&lease)?;
        let model = models.resolve(&req.model, &self.cfg.default_model, &self.cfg.model_aliases).cloned().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NotFound,
                format!("The model `{}` does not exist or you do not have access to it. GET /v1/models lists the available models.", req.model),
            )
            .with_code("model_not_found")
        })?;
        let ask = Ask {
            session_id: String::new(),
            question: question.clone(),
            model_key: model.key.clone(),
            is_reply: false,
            mode: self.cfg.default_ask_mode,
        };
        let deadlines = Deadlines {
            first_token: self.cfg.first_token_timeout,
            idle: self.cfg.idle_timeout,
        };
        let stream = ChatStream::start(
            Arc::clone(&lease.conn),
            &ask,
            self.cfg.chat_ask_as_request,
            deadlines,
        )
        .map_err(upstream_error)?;
        log::debug!(
            "chat {} on {} model {}",
            stream.request_id(),
            lease.name,
            model.key
        );
        Ok(Answer {
            stream: Some(stream),
            lease,
            model,
            usage: Usage {
                input_tokens: estimate_tokens(&question),
                output_tokens: 0,
            },
            think: ThinkSplitter::default(),
            stop: StopFilter::new(&req.stop),
            max_tokens: req.max_tokens,
            queue: VecDeque::new(),
            finished: false,
            saw_text: false,
        })
    }
}

/// What `Answer::poll` found.
pub enum Poll {
    Event(Result<Event, GatewayError>),
    /// Nothing within the slice; the answer goes on.
    Idle,
    Done,
}

/// A running answer: yields internal events until `Finish` or an error.
pub struct Answer {
    // Field order is drop order: the stream (which may send chat/stop) goes before the lease
    // gives the instance back.
    stream: Option<ChatStream>,
    lease: Lease,
    pub model: ModelInfo,
    pub usage: Usage,
    think: ThinkSplitter,
    stop: StopFilter,
    max_tokens: Option<u64>,
    queue: VecDeque<Event>,
    finished: bool,
    saw_text: bool,
}

impl Answer {
    /// The name of the Lingma instance answering.
    pub fn instance(&self) -> &str {
        &self.lease.name
    }

    /// The next event, `None` after the finish. An `Err` ends the answer.
    pub fn next_event(&mut self) -> Option<Result<Event, GatewayError>> {
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
    pub fn poll(&mut self, slice: Option<Duration>) -> Poll {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Poll::Event(Ok(e));
            }
            if self.finished {
                return Poll::Done;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Done;
            };
            let ev = stream.next_event(slice);
            match ev {
                Ok(None) => return Poll::Idle,
                Ok(Some(ChatEvent::Text(t))) => {
                    self.saw_text = true;
                    for seg in self.think.push(&t) {
                        self.emit(seg);
                    }
                }
                Ok(Some(ChatEvent::Finish(f))) => {
                    let reason = match f.status_code {
                        200 => StopReason::EndTurn,
                        406 | 601 => StopReason::ContentFilter,
                        code => {
                            self.end_upstream();
                            return Poll::Event(Err(status_error(code, &f.reason)));
                        }
                    };
                    if !self.saw_text && !f.full_answer.is_empty() {
                        for seg in self.think.push(&f.full_answer) {
                            self.emit(seg);
                        }
                    }
                    for seg in self.think.finish() {
                        self.emit(seg);
                    }
                    if !self.finished {
                        let rest = self.stop.finish();
                        self.push_text(rest);
                        self.finish(reason);
                    }
                }
                Err(e) => {
                    self.end_upstream();
                    return Poll::Event(Err(upstream_error(e)));
                }
            }
        }
    }

    fn emit(&mut self, seg: Segment) {
        if self.finished {
            return;
        }
        match seg {
            Segment::Reasoning(r) => {
                self.usage.output_tokens += estimate_tokens(&r);
                self.queue.push_back(Event::Reasoning(r));
            }
            Segment::Text(t) => {
                let (out, hit) = self.stop.push(&t);
                self.push_text(out);
                if let Some(s) = hit {
                    self.finish(StopReason::StopSequence(s));
                }
            }
        }
        if let Some(max) = self.max_tokens {
            if !self.finished && self.usage.output_tokens >= max {
                self.finish(StopReason::Length);
            }
        }
    }

    fn push_text(&mut self, text: String) {
        if !text.is_empty() {
            self.usage.output_tokens += estimate_tokens(&text);
            self.queue.push_back(Event::Text(text));
        }
    }

    fn finish(&mut self, reason: StopReason) {
        self.finished = true;
        self.queue.push_back(Event::Finish {
            reason,
            usage: self.usage,
        });
        // A stop sequence or length cut ends the answer before Lingma does: dropping the
        // stream sends chat/stop.
        self.end_upstream();
    }

    fn end_upstream(&mut self) {
        self.finished = true;
        self.stream = None;
    }
}

fn lease_error(e: LeaseError) -> GatewayError {
    match e {
        LeaseError::NotReady(states) => GatewayError::new(
            ErrorKind::Unavailable,
            format!("no Lingma instance is ready ({states})"),
        )
        .retry_after(5),
        LeaseError::ShuttingDown => {
            GatewayError::new(ErrorKind::Unavailable, "the gateway is shutting down")
        }
    }
}

pub fn upstream_error(e: UpstreamError) -> GatewayError {
    match e {
        UpstreamError::Timeout(what) => GatewayError::new(
            ErrorKind::Timeout,
            format!("Lingma did not answer in time: timed out waiting for {what}"),
        ),
        UpstreamError::Status { code, message } => status_error(code, &message),
        other => GatewayError::new(ErrorKind::Upstream, other.to_string()),
    }
}

/// Maps a `chat/finish` statusCode to the client-facing error.
fn status_error(code: i64, reason: &str) -> GatewayError {
    let detail = if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    match code {
        401 | 403 => GatewayError::new(
            ErrorKind::PermissionDenied,
            format!("Lingma refused the request with status {code}{detail}: the account is not logged in, not allowed, or out of quota"),
        ),
        408 => GatewayError::new(ErrorKind::Timeout, format!("Lingma timed out (status 408{detail})")),
        429 => GatewayError::new(ErrorKind::RateLimited, format!("Lingma rate limit reached (status 429{detail})"))
            .with_code("rate_limit_exceeded")
            .retry_after(10),
        _ => GatewayError::new(ErrorKind::Upstream, format!("Lingma failed the request with status {code}{detail}")),
    }
}
