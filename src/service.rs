//! Runs one internal `ChatRequest` against the pool: lease an instance, resolve the model,
//! send `chat/ask`, and turn Lingma's deltas into the internal event stream (think blocks
//! split out, stop sequences and `max_tokens` applied, usage estimated). Every protocol's
//! stream and non-stream answers are built from this one stream. Runs on the worker thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::accounts::Logins;
use crate::config::Config;
use crate::error::{ErrorKind, GatewayError, NamedLease};
use crate::metrics::AnswerStats;
use crate::model::{
    estimate_tokens, ChatRequest, Event, NativeTool, StopReason, ToolChoice, Usage,
};
use crate::pipeline::{Segment, StopFilter, ThinkSplitter, Unfence};
use crate::prompt;
use crate::sessions::{self, Conversation, Place, SessionCache};
use crate::tools::scan::{Piece, ToolScanner};
use crate::tools::ToolPolicy;
use crate::upstream::chat::{ChatStream, Deadlines};
use crate::upstream::models::{ModelInfo, ModelList};
use crate::upstream::pool::{Lease, Pool};
use crate::upstream::UpstreamError;
use crate::upstream::{Ask, ChatEvent, ToolStatus, ToolUpdate};

/// The gateway's shared state, one per process.
pub struct ChatService {
    pub cfg: Config,
    pub pool: Arc<Pool>,
    /// The auth gate and auto-login.
    pub logins: Arc<Logins>,
    /// Conversations to continue on their Lingma session (`None`: reuse is off).
    pub sessions: Option<Arc<SessionCache>>,
    pub started: std::time::SystemTime,
}

impl ChatService {
    /// Leases an instance for a request that is not a chat (`/v1/models`), through the auth
    /// gate.
    pub fn lease_any(&self) -> Result<Lease, GatewayError> {
        let lease = self
            .pool
            .lease(None, self.cfg.pool_wait)
            .map_err(GatewayError::from)?;
        self.through_gate(lease)
    }

    /// The auth gate on a leased instance. One that is not logged in (and cannot be logged
    /// in now) is traded for another ready instance known to be logged in, when there is
    /// one; else the gate's error stands.
    fn through_gate(&self, lease: Lease) -> Result<Lease, GatewayError> {
        let Err(e) = self.logins.gate(&lease) else {
            return Ok(lease);
        };
        if e.kind != ErrorKind::Authentication {
            return Err(e);
        }
        let other = self
            .logins
            .logged_in_instances()
            .into_iter()
            .filter(|name| *name != lease.name)
            .filter_map(|name| self.pool.lease_named(&name).ok())
            .find(|other| self.logins.gate(other).is_ok());
        match other {
            Some(other) => {
                log::info!(
                    "{} is not logged in; serving from {} instead",
                    lease.name,
                    other.name
                );
                Ok(other)
            }
            None => Err(e),
        }
    }

    /// The leased instance's models. An empty list means Lingma is not logged in, which no
    /// request can get past.
    pub fn models(&self, lease: &Lease) -> Result<Arc<ModelList>, GatewayError> {
        let list = lease
            .models(self.cfg.lingma_rpc_timeout)
            .map_err(GatewayError::from)?;
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

    /// The model a request names, in a leased instance's catalogue, or `model_not_found`.
    fn resolve_model<'m>(
        &self,
        models: &'m ModelList,
        name: &str,
    ) -> Result<&'m ModelInfo, GatewayError> {
        models.resolve(name, &self.cfg.default_model, &self.cfg.model_aliases).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NotFound,
                format!("The model `{name}` does not exist or you do not have access to it. GET /v1/models lists the available models."),
            )
            .with_code("model_not_found")
        })
    }

    /// What `start_chat` refuses before it asks Lingma anything (no text to send, a model
    /// the catalogue lacks, no ready or logged-in instance), with the same errors, without
    /// starting a chat: `count_tokens` refuses what `/v1/messages` refuses. Returns the
    /// instance whose catalogue was read.
    pub fn check_chat(&self, req: &ChatRequest) -> Result<String, GatewayError> {
        check_text(req)?;
        let lease = self.lease_any()?;
        let models = self.models(&lease)?;
        self.resolve_model(&models, &req.model)?;
        Ok(lease.name.clone())
    }

    /// Starts a chat and waits for its first event, so that every error here happens
    /// before any byte reaches the client. When the instance itself fails before that
    /// (Lingma died, closed its socket, sent garbage), the chat is tried once more on
    /// another ready instance, with the whole conversation.
    pub fn start_chat(&self, req: &ChatRequest) -> Result<Answer, GatewayError> {
        let (error, broken) = match self.attempt(req, None) {
            Ok(answer) => return Ok(answer),
            Err(Failed {
                error,
                broken: Some(name),
            }) => (error, name),
            Err(Failed { error, .. }) => return Err(error),
        };
        let Ok(other) = self.pool.lease_other(Some(req.affinity_key()), &broken) else {
            log::warn!(
                "{broken} failed before the answer's first byte ({}); no other instance is ready to retry on",
                error.message
            );
            return Err(error);
        };
        log::warn!(
            "{broken} failed before the answer's first byte ({}); retrying once on {}",
            error.message,
            other.name
        );
        self.attempt(req, Some(other)).map_err(|f| f.error)
    }

    /// One try: start the chat (on `lease` when given) and wait for its first event.
    fn attempt(&self, req: &ChatRequest, lease: Option<Lease>) -> Result<Answer, Failed> {
        let mut answer = self.begin(req, lease)?;
        match answer.wait_first() {
            Ok(()) => Ok(answer),
            Err(error) => Err(Failed {
                broken: answer.broke.then(|| answer.lease.name.clone()),
                error,
            }),
        }
    }

    /// Leases an instance (or continues the conversation's session), resolves the model
    /// and sends `chat/ask`.
    fn begin(&self, req: &ChatRequest, lease: Option<Lease>) -> Result<Answer, Failed> {
        check_text(req)?;
        // One pass over the conversation gives both the key of its prefix (to continue a
        // session) and the digest of the whole (to store once the answer is in).
        let digests = self.sessions.as_ref().map(|_| digest_conversation(req));
        let prefix = digests.as_ref().and_then(|(_, prefix)| *prefix);
        let continued = match lease {
            Some(_) => None, // a retry elsewhere: the session lived on the failed instance
            None => prefix.and_then(|p| self.continue_session(p)),
        };
        let (lease, mut reused) = match (continued, lease) {
            (Some((lease, place, start)), _) => (lease, Some((place, start))),
            (None, Some(lease)) => (lease, None),
            (None, None) => {
                let lease = self
                    .pool
                    .lease(Some(req.affinity_key()), self.cfg.pool_wait)
                    .map_err(GatewayError::from)?;
                (lease, None)
            }
        };
        let first = lease.name.clone();
        let lease = self.through_gate(lease)?;
        if lease.name != first {
            reused = None; // the session lives on the other instance: send the whole conversation
        }
        let (question, session_id) = match &reused {
            Some((place, start)) => {
                log::debug!(
                    "session reuse: continuing {} on {} with the new turn only",
                    place.session_id,
                    lease.name
                );
                (prompt::question_from(req, *start), place.session_id.clone())
            }
            // Rendered only here: a continued session never needs the whole prompt (unless
            // a forced tool choice has to retry, below).
            None => (prompt::question(req), String::new()),
        };
        prompt::check_size(&question, self.cfg.max_prompt_bytes)?;
        let models = self.models(&lease)?;
        let model = self.resolve_model(&models, &req.model)?.clone();
        let policy = &self.cfg.tools;
        let forward_tools = (policy.forward && !req.tools.is_empty()).then(|| forwarded_tools(req));
        let ask = Ask {
            session_id,
            question: question.clone(),
            model_key: model.key.clone(),
            is_reply: reused.is_some(),
            mode: self.cfg.default_ask_mode,
            forward_tools,
            approve_tools: policy.auto_approve,
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
        .map_err(|e| Failed::upstream(e, &lease.name))?;
        log::debug!(
            "chat {} on {} model {} ({} tools, choice {:?})",
            stream.request_id(),
            lease.name,
            model.key,
            req.tools.len(),
            req.tool_choice
        );
        // A forced tool choice gets one more try, with a stronger instruction, when the
        // answer calls no tool.
        let retry = (req.tools_active() && req.tool_choice.is_forced()).then(|| {
            let mut ask = ask.clone();
            // A new session, with the whole conversation.
            ask.session_id = String::new();
            ask.is_reply = false;
            let full = match reused {
                Some(_) => prompt::question(req),
                None => question.clone(),
            };
            ask.question = prompt::with_retry_instruction(&full, &req.tool_choice);
            Retry {
                ask,
                as_request: self.cfg.chat_ask_as_request,
                deadlines,
            }
        });
        // A continued session's whole conversation may be over the limit its new turn was
        // under: then there is no retry, and the answer goes as it is.
        let retry = retry.filter(|r| {
            let fits = prompt::check_size(&r.ask.question, self.cfg.max_prompt_bytes).is_ok();
            if !fits {
                log::debug!(
                    "no forced-tool retry: the whole conversation is over max_prompt_bytes"
                );
            }
            fits
        });
        let remember = self
            .sessions
            .as_ref()
            .zip(digests)
            .map(|(cache, (conv, _))| Remember {
                cache: Arc::clone(cache),
                conv,
                restarts: self.pool.restarts(&lease.name).unwrap_or(0),
                text: String::new(),
                calls: Vec::new(),
            });
        Ok(Answer {
            stream: Some(stream),
            lease,
            model,
            usage: Usage {
                input_tokens: estimate_tokens(&question),
                output_tokens: 0,
            },
            think: ThinkSplitter::default(),
            scanner: ToolScanner::new(req.tools.clone(), req.tools_active()),
            stop: StopFilter::new(&req.stop),
            max_tokens: req.max_tokens,
            cut_at_length: false,
            queue: VecDeque::new(),
            finished: false,
            saw_text: false,
            hold_text: retry.is_some(),
            held: Vec::new(),
            retry,
            stops: req.stop.clone(),
            native: NativeTools::new(policy.clone()),
            upstream_wait: Duration::ZERO,
            first_output_at: None,
            remember,
            session_id: String::new(),
            one_tool_call: req.one_tool_call,
            calls_out: 0,
            unfence: req.output_format.as_ref().map(|_| Unfence::default()),
            broke: false,
        })
    }

    /// A reused session for this conversation, if the cache has one and its instance is
    /// ready: the lease, where the session lives, and where the new part starts.
    fn continue_session(
        &self,
        (key, start): (sessions::Key, usize),
    ) -> Option<(Lease, Place, usize)> {
        let cache = self.sessions.as_ref()?;
        let place = cache.take(&key, |p| {
            self.pool.restarts(&p.instance) == Some(p.restarts)
        })?;
        let lease = self.pool.lease_named(&place.instance).ok()?;
        Some((lease, place, start))
    }

    /// Lingma's raw `config/queryModels` answer from the named instance (any ready one when
    /// `None`), secrets redacted: what `/internal/models/raw` shows.
    pub fn raw_models(&self, instance: Option<&str>) -> Result<(String, Value), GatewayError> {
        let lease = match instance {
            None => self.lease_any()?,
            Some(name) => {
                // The instance asked for, or its error: never another one.
                let lease = lease_named(&self.pool, name)?;
                self.logins.gate(&lease)?;
                lease
            }
        };
        let mut raw = lease
            .raw_models(self.cfg.lingma_rpc_timeout)
            .map_err(GatewayError::from)?;
        crate::redact::redact_json(&mut raw);
        Ok((lease.name.clone(), raw))
    }
}

/// A chat needs something to send.
fn check_text(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.messages.iter().all(crate::model::Message::is_empty) {
        return Err(GatewayError::invalid(
            "messages",
            "messages contain no text to send",
        ));
    }
    Ok(())
}

/// The client's tools as `chat/ask` would carry them (OpenAI's function-tool shape).
fn forwarded_tools(req: &ChatRequest) -> (Value, Value) {
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema}}))
        .collect();
    let choice = match &req.tool_choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Any => json!("required"),
        ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
    };
    (Value::Array(tools), choice)
}

/// What `Answer::poll` found.
pub enum Poll {
    Event(Result<Event, GatewayError>),
    /// Nothing within the slice; the answer goes on.
    Idle,
    Done,
}

/// Why a try at a chat failed before its first event. `broken` names the instance when
/// the instance itself failed (not Lingma's answer), so another one may do better.
struct Failed {
    error: GatewayError,
    broken: Option<String>,
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
    fn upstream(e: UpstreamError, instance: &str) -> Self {
        Failed {
            broken: matches!(e, UpstreamError::Disconnected(_)).then(|| instance.to_string()),
            error: upstream_error(e),
        }
    }
}

/// The second `chat/ask` of a forced tool choice, ready to send.
struct Retry {
    ask: Ask,
    as_request: bool,
    deadlines: Deadlines,
}

/// A running answer: yields internal events until `Finish` or an error. Lingma's deltas go
/// through the think splitter, the tool scanner and the stop filter, in that order.
pub struct Answer {
    // Field order is drop order: the stream (which may send chat/stop) goes before the lease
    // gives the instance back.
    stream: Option<ChatStream>,
    lease: Lease,
    pub model: ModelInfo,
    pub usage: Usage,
    think: ThinkSplitter,
    scanner: ToolScanner,
    stop: StopFilter,
    max_tokens: Option<u64>,
    /// Text was cut at `max_tokens`: the answer ends at the next length check.
    cut_at_length: bool,
    queue: VecDeque<Event>,
    finished: bool,
    saw_text: bool,
    /// With a forced tool choice, text and reasoning wait until a call shows up (or the
    /// answer ends): what an attempt that gets retried said must not reach the client.
    hold_text: bool,
    held: Vec<Event>,
    retry: Option<Retry>,
    stops: Vec<String>,
    native: NativeTools,
    /// Time spent blocked waiting on Lingma's events (for the gateway-added latency).
    upstream_wait: Duration,
    /// When the first text or tool call came out.
    first_output_at: Option<Instant>,
    /// What to store for session reuse once the answer is complete.
    remember: Option<Remember>,
    /// The Lingma session the answer ran on (from `chat/finish`).
    session_id: String,
    /// At most one tool call goes out (`parallel_tool_calls: false`).
    one_tool_call: bool,
    calls_out: usize,
    /// With a JSON answer format: the fence around the JSON comes off.
    unfence: Option<Unfence>,
    /// The instance failed (its connection or process went away) during this answer.
    broke: bool,
}

/// The answer as the client will echo it back, gathered as it goes out, to store the
/// conversation's new key for session reuse.
struct Remember {
    cache: Arc<SessionCache>,
    conv: Conversation,
    restarts: u64,
    text: String,
    calls: Vec<crate::model::ToolCall>,
}

impl Answer {
    /// The name of the Lingma instance answering.
    pub fn instance(&self) -> &str {
        &self.lease.name
    }

    /// What this answer measured; `since` is the request's start.
    pub fn stats(&self, since: Instant) -> AnswerStats {
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
                if self.first_output_at.is_none()
                    && matches!(e, Event::Text(_) | Event::ToolCall(_))
                {
                    self.first_output_at = Some(Instant::now());
                }
                self.remember(&e);
                return Poll::Event(Ok(e));
            }
            if self.finished {
                return Poll::Done;
            }
            if let Some(p) = self.pull(slice) {
                return p;
            }
        }
    }

    /// Waits until the first event is ready (or the answer is over) without taking it.
    fn wait_first(&mut self) -> Result<(), GatewayError> {
        while self.queue.is_empty() && !self.finished {
            match self.pull(None) {
                Some(Poll::Event(Err(e))) => return Err(e),
                Some(Poll::Done) => break,
                _ => {}
            }
        }
        Ok(())
    }

    /// Takes one event from Lingma through the transforms into the queue. `Some` is for
    /// `poll` to return as it is: a silence, an error, the end.
    fn pull(&mut self, slice: Option<Duration>) -> Option<Poll> {
        let Some(stream) = self.stream.as_mut() else {
            return Some(Poll::Done);
        };
        let waiting = Instant::now();
        let ev = stream.next_event(slice);
        self.upstream_wait += waiting.elapsed();
        match ev {
            Ok(None) => return Some(Poll::Idle),
            Ok(Some(ChatEvent::Text(t))) => {
                self.saw_text = true;
                for seg in self.think.push(&t) {
                    self.emit(seg);
                }
            }
            Ok(Some(ChatEvent::Tool(update))) => {
                if let Some(tool) = self.native.update(update) {
                    self.queue.push_back(Event::NativeTool(tool));
                }
            }
            Ok(Some(ChatEvent::Finish(f))) => {
                self.session_id = f.session_id.clone();
                let reason = match f.status_code {
                    200 => StopReason::EndTurn,
                    406 | 601 => StopReason::ContentFilter,
                    code => {
                        self.end_upstream();
                        return Some(Poll::Event(Err(UpstreamError::Status {
                            code,
                            message: f.reason,
                        }
                        .into())));
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
                for piece in self.scanner.finish() {
                    self.piece(piece);
                }
                if self.finished {
                    return None;
                }
                if self.scanner.calls() == 0 && reason == StopReason::EndTurn {
                    if let Some(retry) = self.retry.take() {
                        if let Err(e) = self.start_retry(retry) {
                            return Some(Poll::Event(Err(e)));
                        }
                        return None;
                    }
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
            Err(e) => {
                self.broke = matches!(e, UpstreamError::Disconnected(_));
                self.end_upstream();
                return Some(Poll::Event(Err(upstream_error(e))));
            }
        }
        None
    }

    /// Asks again with the stronger instruction on the same instance, in a new session;
    /// what the first attempt said is dropped.
    fn start_retry(&mut self, retry: Retry) -> Result<(), GatewayError> {
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
            self.lease.name
        );
        self.held.clear();
        self.stream = None; // already finished: no chat/stop
        let stream = ChatStream::start(
            Arc::clone(&self.lease.conn),
            &retry.ask,
            retry.as_request,
            retry.deadlines,
        )
        .map_err(|e| {
            self.end_upstream();
            upstream_error(e)
        })?;
        self.stream = Some(stream);
        self.usage.input_tokens += estimate_tokens(&retry.ask.question);
        self.usage.output_tokens = 0;
        self.think = ThinkSplitter::default();
        self.scanner = ToolScanner::new(self.scanner_tools(), true);
        self.stop = StopFilter::new(&self.stops);
        self.saw_text = false;
        // The retry's answer is final: its text goes out as it comes.
        self.hold_text = false;
        Ok(())
    }

    fn scanner_tools(&self) -> Vec<crate::model::ToolSpec> {
        self.scanner.tools().to_vec()
    }

    /// Notes what the client gets; at a complete finish, stores where the conversation (now
    /// including this answer) lives, for its next turn.
    fn remember(&mut self, e: &Event) {
        let Some(r) = self.remember.as_mut() else {
            return;
        };
        match e {
            Event::Text(t) => r.text.push_str(t),
            Event::ToolCall(c) => r.calls.push(c.clone()),
            // A cut answer (stop sequence, length) differs from what Lingma's session holds.
            Event::Finish {
                reason: StopReason::EndTurn | StopReason::ToolUse,
                ..
            } if !self.session_id.is_empty() => {
                let mut r = self.remember.take().expect("checked above");
                r.conv.push_answer(&r.text, &r.calls);
                r.cache.insert(
                    r.conv.key(),
                    Place {
                        instance: self.lease.name.clone(),
                        session_id: self.session_id.clone(),
                        restarts: r.restarts,
                    },
                );
            }
            _ => {}
        }
    }

    fn emit(&mut self, seg: Segment) {
        if self.finished {
            return;
        }
        match seg {
            Segment::Reasoning(r) => {
                self.usage.output_tokens += estimate_tokens(&r);
                // Held like text: a retried attempt's thinking must not reach the client.
                if self.hold_text {
                    self.held.push(Event::Reasoning(r));
                } else {
                    self.queue.push_back(Event::Reasoning(r));
                }
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
                        self.lease.name,
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
                self.queue.push_back(Event::ToolCall(call));
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
        let text = match self.unfence.as_mut() {
            Some(u) => u.push(&text),
            None => text,
        };
        if text.is_empty() {
            return;
        }
        // `max_tokens` is a hard limit: a chunk that crosses it is cut there (a slow client's
        // chunks arrive joined, so a chunk can be long).
        let mut text = text;
        let over = self.max_tokens.and_then(|max| {
            crate::model::cut_to_tokens(&text, max.saturating_sub(self.usage.output_tokens))
        });
        if let Some(at) = over {
            text.truncate(at);
        }
        self.usage.output_tokens += estimate_tokens(&text);
        if !text.is_empty() {
            if self.hold_text {
                self.held.push(Event::Text(text));
            } else {
                self.queue.push_back(Event::Text(text));
            }
        }
        self.cut_at_length |= over.is_some();
    }

    fn release_held(&mut self) {
        self.queue.extend(self.held.drain(..));
    }

    /// What the fence remover still holds (it passes everything after this).
    fn flush_unfence(&mut self) {
        if let Some(rest) = self.unfence.as_mut().map(Unfence::finish) {
            self.push_text(rest);
        }
    }

    /// Ends the answer: what is held back goes out, then the finish.
    fn finish(&mut self, reason: StopReason) {
        self.flush_unfence();
        self.release_held();
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

/// Lingma's own tool calls in this answer, merged across their `tool/call/sync` updates.
struct NativeTools {
    policy: ToolPolicy,
    calls: Vec<NativeTool>,
    reported: Vec<String>,
}

impl NativeTools {
    fn new(policy: ToolPolicy) -> Self {
        NativeTools {
            policy,
            calls: Vec::new(),
            reported: Vec::new(),
        }
    }

    /// Merges one update; returns the call once it has ended, if it is to be reported.
    fn update(&mut self, u: ToolUpdate) -> Option<NativeTool> {
        if u.tool_call_id.is_empty() {
            log::debug!(
                "native tool event without a toolCallId ({})",
                u.status.as_str()
            );
            return None;
        }
        let i = match self.calls.iter().position(|c| c.id == u.tool_call_id) {
            Some(i) => i,
            None => {
                self.calls.push(NativeTool {
                    id: u.tool_call_id.clone(),
                    name: String::new(),
                    input: json!({}),
                    status: String::new(),
                    output: String::new(),
                    is_error: false,
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[i];
        if !u.name.is_empty() {
            call.name = u.name.clone();
        }
        if u.parameters.as_object().is_some_and(|o| !o.is_empty()) {
            call.input = u.parameters.clone();
        }
        if u.status == ToolStatus::Invoke {
            log::info!(
                "Lingma asked the gateway to run its IDE tool {} ({}); answered that it cannot",
                call.name,
                call.id
            );
            return None;
        }
        call.status = u.status.as_str().to_string();
        if !u.status.is_end() {
            return None;
        }
        call.is_error = u.status != ToolStatus::Finished;
        call.output = match &u.results {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            // Results as tool/invokeResult shapes them: the result, else the error message.
            Value::Array(items) => items
                .iter()
                .map(|r| match (r.get("result"), r.get("errorMessage")) {
                    (Some(Value::String(s)), _) => s.clone(),
                    (Some(v), _) if !v.is_null() => v.to_string(),
                    (_, Some(Value::String(e))) => e.clone(),
                    _ => r.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        };
        if call.is_error && !u.error.is_empty() && !call.output.contains(&u.error) {
            if !call.output.is_empty() {
                call.output.push('\n');
            }
            call.output.push_str(&u.error);
        }
        log::info!(
            "Lingma's tool {} ({}) ended {}",
            call.name,
            call.id,
            call.status
        );
        let report = self.policy.report_native
            && !self.reported.contains(&call.id)
            && (self.policy.allowlist.is_empty() || self.policy.allows(&call.name));
        if report {
            self.reported.push(call.id.clone());
            return Some(call.clone());
        }
        None
    }

    fn log_unfinished(&self) {
        for c in self
            .calls
            .iter()
            .filter(|c| !matches!(c.status.as_str(), "FINISHED" | "ERROR" | "CANCELLED" | ""))
        {
            log::info!("Lingma's tool {} ({}) was left {}", c.name, c.id, c.status);
        }
    }
}

/// The digest of the whole conversation, and the key of its prefix (everything up to its
/// last assistant message) with where the new part starts, when it has one.
fn digest_conversation(req: &ChatRequest) -> (Conversation, Option<(sessions::Key, usize)>) {
    let mut conv = Conversation::new(&req.scope, req);
    let start = sessions::new_part(&req.messages);
    let split = start.unwrap_or(0);
    for m in &req.messages[..split] {
        conv.push(m);
    }
    let prefix = start.map(|start| (conv.key(), start));
    for m in &req.messages[split..] {
        conv.push(m);
    }
    (conv, prefix)
}

/// Leases the instance called `name` if it is ready (operator routes, session reuse).
pub fn lease_named(pool: &Pool, name: &str) -> Result<Lease, GatewayError> {
    pool.lease_named(name)
        .map_err(|error| NamedLease { name, error }.into())
}

/// The client's error for an upstream one (kept for the HTTP layer; it is `From`).
pub fn upstream_error(e: UpstreamError) -> GatewayError {
    e.into()
}
