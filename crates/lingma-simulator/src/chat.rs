//! `chat/ask`: checks the params, places the turn in a session, acks, and runs the turn's
//! `script::Plan` on a generator thread of its own (`sim-gen-N`, owned and joined by the
//! connection thread), which writes events through the connection's shared writer. Also the
//! table through which `chat/stop` reaches running generators. Native tool steps are run by
//! `native.rs`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};
use serde::Deserialize;
use serde_json::{json, Value};

use super::outbox::Outbox;
use super::script::{self, Plan, Reason, Step};
use super::server::Conn;
use super::session::Record;
use super::{models, Shared};
use lingma_protocol::jsonrpc::{self, method};

const DEFAULT_SESSION_TYPE: &str = "chat";

/// The `chat/ask` params the simulator reads; the other ChatAskParam fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AskParams {
    request_id: Option<String>,
    session_id: Option<String>,
    question_text: Option<String>,
    session_type: Option<String>,
    extra: Option<AskExtra>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AskExtra {
    model_config: Option<ModelConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct ModelConfig {
    key: Option<String>,
}

/// The model key of raw `chat/ask` params (`auto` when absent), for the log line.
pub(super) fn model_key(params: &Value) -> &str {
    params
        .pointer("/extra/modelConfig/key")
        .and_then(Value::as_str)
        .unwrap_or(models::DEFAULT_KEY)
}

/// Generations in progress, so that `chat/stop` (from any connection) reaches them.
#[derive(Default)]
pub(super) struct Running {
    entries: Mutex<HashMap<u64, Entry>>,
    next_key: AtomicU64,
}

struct Entry {
    request_id: String,
    session_id: String,
    stop: Sender<()>,
}

impl Running {
    fn insert(&self, request_id: &str, session_id: &str) -> (u64, Receiver<()>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed) + 1;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let entry = Entry {
            request_id: request_id.into(),
            session_id: session_id.into(),
            stop,
        };
        self.lock().insert(key, entry);
        (key, stopped)
    }

    fn remove(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// Stops the generations of `request_id` (or, when that is empty, of `session_id`);
    /// returns how many were told.
    pub fn stop(&self, request_id: &str, session_id: &str) -> usize {
        let entries = self.lock();
        let matching = entries.values().filter(|e| match request_id {
            "" => !session_id.is_empty() && e.session_id == session_id,
            id => e.request_id == id,
        });
        // A full channel means a stop is already pending.
        matching
            .map(|e| e.stop.try_send(()).is_ok() || e.stop.is_full())
            .filter(|told| *told)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handles `chat/ask` (`reply_to` is the request id, `None` for a notification) and returns
/// the generator thread, if one was started.
pub(super) fn ask(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    params: Value,
    reply_to: Option<Value>,
) -> Option<JoinHandle<()>> {
    let p = match serde_json::from_value::<AskParams>(params) {
        Ok(p) if p.request_id.as_deref().is_some_and(|id| !id.is_empty()) => p,
        Ok(_) => return reject(shared, conn, reply_to, "requestId is required".into()),
        Err(e) => {
            return reject(
                shared,
                conn,
                reply_to,
                format!("invalid chat/ask params: {e}"),
            )
        }
    };
    let request_id = p.request_id.unwrap_or_default();
    if let Some(id) = reply_to {
        let ack = json!({"requestId": request_id, "isSuccess": true, "errorMessage": ""});
        if conn.send(&jsonrpc::response(id, ack)).is_err() {
            return None;
        }
    }
    let question = p.question_text.unwrap_or_default();
    let key = p.extra.and_then(|e| e.model_config).and_then(|m| m.key);
    let model = models::find(key.as_deref().unwrap_or(models::DEFAULT_KEY));
    let place = shared.sessions.place(
        p.session_id.as_deref().unwrap_or(""),
        &script::title(&question),
    );
    let tool_call_id = shared.tool_calls.next_id();
    let plan = script::plan(&script::Turn {
        question: &question,
        model,
        logged_in: shared.account().is_some(),
        session_id: &place.session_id,
        new_session: place.new_session,
        number: place.turn,
        instance: &shared.instance,
        pid: shared.pid,
        tool_call_id: &tool_call_id,
    });
    if !plan.ignored.is_empty() {
        shared.log.line(&format!(
            "requestId={request_id}: ignored directives {:?}",
            plan.ignored
        ));
    }
    if let Some(note) = &plan.note {
        shared.log.line(&format!("requestId={request_id}: {note}"));
    }
    if let Some(deaf) = plan.deaf {
        conn.go_deaf(deaf);
    }
    let (key, stopped) = shared.running.insert(&request_id, &place.session_id);
    let generation = Generation {
        shared: Arc::clone(shared),
        conn: Arc::clone(conn),
        key,
        stopped,
        request_id,
        session_id: place.session_id,
        session_type: p
            .session_type
            .unwrap_or_else(|| DEFAULT_SESSION_TYPE.into()),
        question,
    };
    // A turn that never waits (no delays, no stall, no native tool waiting for the client's
    // replies, which this thread reads) runs right here on the connection thread: a thread
    // per turn would cost more than the turn itself.
    let waits = plan.first_ms.unwrap_or(shared.first_token_ms) > 0
        || plan.delay_ms.unwrap_or(shared.chunk_ms) > 0
        || plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::Stall | Step::Native(_)));
    if !waits {
        generation.run(plan);
        return None;
    }
    match thread::Builder::new()
        .name(format!("sim-gen-{key}"))
        .spawn(move || generation.run(plan))
    {
        Ok(handle) => Some(handle),
        Err(e) => {
            shared.log.line(&format!("cannot start generator: {e}"));
            None
        }
    }
}

fn reject(
    shared: &Shared,
    conn: &Conn,
    reply_to: Option<Value>,
    message: String,
) -> Option<JoinHandle<()>> {
    match reply_to {
        Some(id) => drop(conn.send(&jsonrpc::error_response(id, -32602, &message))),
        None => shared
            .log
            .line(&format!("ignored chat/ask notification: {message}")),
    }
    None
}

/// One turn being generated; leaves the `Running` table when dropped.
pub(super) struct Generation {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Arc<Conn>,
    key: u64,
    pub(super) stopped: Receiver<()>,
    pub(super) request_id: String,
    session_id: String,
    session_type: String,
    question: String,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.shared.running.remove(self.key);
    }
}

/// Why a wait ended.
pub(super) enum Wake {
    Elapsed,
    Stop,
    Closed,
}

/// How executing a plan ended.
enum Outcome {
    Done,
    /// `chat/stop` arrived: finish `cancelled` with the text so far.
    Cancelled(String),
    /// The connection is gone (or this turn closed it): send nothing more.
    Gone,
}

impl Generation {
    fn run(self, plan: Plan) {
        let mut out = Outbox::new(&self.conn, plan.wire);
        let outcome = self.execute(&plan, &mut out).and_then(|outcome| {
            if let Outcome::Cancelled(text) = &outcome {
                self.record(text);
                self.finish(&mut out, 200, Reason::Cancelled, text)?;
            }
            if !matches!(outcome, Outcome::Gone) {
                out.flush()?;
            }
            Ok(())
        });
        if let Err(e) = outcome {
            log::debug!(
                "simulator: requestId={}: connection lost: {e}",
                self.request_id
            );
        }
    }

    fn execute(&self, plan: &Plan, out: &mut Outbox) -> io::Result<Outcome> {
        let first = Duration::from_millis(plan.first_ms.unwrap_or(self.shared.first_token_ms));
        let chunk = Duration::from_millis(plan.delay_ms.unwrap_or(self.shared.chunk_ms));
        // Registered before the tool card goes out, so an early approval is not lost.
        let waiter = plan.steps.iter().find_map(|s| match s {
            Step::Native(call) => Some(self.shared.tool_calls.register(&call.tool_call_id)),
            _ => None,
        });
        let mut text = String::new();
        let mut deltas_sent = 0;
        for step in &plan.steps {
            // Every step first looks for a stop or a dead connection, even without a delay.
            let pause = match step {
                Step::Delta(_) if deltas_sent == 0 => first,
                Step::Delta(_) => chunk,
                _ => Duration::ZERO,
            };
            if let Some(outcome) = self.pause(pause, &text) {
                return Ok(outcome);
            }
            match step {
                Step::Stall | Step::Close | Step::Crash => return self.fault(step, out, text),
                Step::Delta(delta) => {
                    text.push_str(delta);
                    deltas_sent += 1;
                }
                Step::Native(call) => {
                    let Some(waiter) = &waiter else {
                        continue;
                    };
                    let said = match self.native(call, waiter, out)? {
                        Ok(said) => said,
                        Err(Wake::Stop) => return Ok(Outcome::Cancelled(text)),
                        Err(_) => return Ok(Outcome::Gone),
                    };
                    for delta in script::split_deltas(&said) {
                        let pause = if deltas_sent == 0 { first } else { chunk };
                        if let Some(outcome) = self.pause(pause, &text) {
                            return Ok(outcome);
                        }
                        text.push_str(&delta);
                        deltas_sent += 1;
                        out.request(method::CHAT_ANSWER, self.answer_event(&delta))?;
                    }
                    continue;
                }
                _ => {}
            }
            self.send_step(step, out, &text)?;
        }
        Ok(Outcome::Done)
    }

    /// Waits `pause` unless a stop or the connection's end comes first; `text` is the answer
    /// so far.
    fn pause(&self, pause: Duration, text: &str) -> Option<Outcome> {
        match self.wait(Some(pause)) {
            Wake::Elapsed => None,
            Wake::Stop => Some(Outcome::Cancelled(text.to_string())),
            Wake::Closed => Some(Outcome::Gone),
        }
    }

    /// Sends the events of one non-terminal step; `text` is every delta sent so far.
    fn send_step(&self, step: &Step, out: &mut Outbox, text: &str) -> io::Result<()> {
        match step {
            Step::Progress(name) => out.notify(
                method::CHAT_STEP,
                self.event(json!({"step": name, "status": "done"})),
            ),
            Step::Title(title) => out.notify(
                method::TITLE_UPDATE,
                self.event(json!({"sessionTitle": title})),
            ),
            Step::Delta(delta) => out.request(method::CHAT_ANSWER, self.answer_event(delta)),
            Step::Garbage => out.garbage(),
            Step::Oversize => out.oversize(),
            Step::Usage { used, limit } => out.notify(
                method::CONTEXT_USAGE,
                self.event(json!({"usedTokens": used, "limitTokens": limit})),
            ),
            Step::Finish { status, reason } => {
                // Recorded first: a client that has seen the finish may ask the next turn.
                if *reason == Reason::Success {
                    self.record(text);
                }
                self.finish(out, *status, *reason, text)
            }
            Step::Native(_) | Step::Stall | Step::Close | Step::Crash => {
                unreachable!("run by execute")
            }
        }
    }

    /// Carries out a terminal fault directive; `text` is the answer sent so far.
    fn fault(&self, step: &Step, out: &mut Outbox, text: String) -> io::Result<Outcome> {
        let id = &self.request_id;
        match step {
            Step::Stall => {
                self.shared
                    .log
                    .line(&format!("requestId={id}: stalling until chat/stop"));
                Ok(match self.wait(None) {
                    Wake::Stop => Outcome::Cancelled(text),
                    _ => Outcome::Gone,
                })
            }
            Step::Close => {
                out.flush()?;
                let n = self.conn.number;
                self.shared
                    .log
                    .line(&format!("requestId={id}: closing connection {n}"));
                self.conn.shutdown();
                Ok(Outcome::Gone)
            }
            _ => {
                self.shared
                    .log
                    .line(&format!("requestId={id}: crash directive, exit code 101"));
                std::process::exit(101);
            }
        }
    }

    /// Waits `timeout` (`None`: for ever) unless `chat/stop` arrives or the connection ends.
    fn wait(&self, timeout: Option<Duration>) -> Wake {
        let closed = self.conn.closed();
        let woke = |stop: bool| if stop { Wake::Stop } else { Wake::Closed };
        match timeout {
            Some(t) => select! {
                recv(self.stopped) -> _ => woke(true),
                recv(closed) -> _ => woke(false),
                default(t) => Wake::Elapsed,
            },
            None => select! {
                recv(self.stopped) -> _ => woke(true),
                recv(closed) -> _ => woke(false),
            },
        }
    }

    fn finish(
        &self,
        out: &mut Outbox,
        status: u16,
        reason: Reason,
        full_answer: &str,
    ) -> io::Result<()> {
        let params = self.event(json!({
            "reason": reason.as_str(),
            "statusCode": status,
            "fullAnswer": full_answer,
            "extra": {"sessionType": self.session_type},
        }));
        out.request(method::CHAT_FINISH, params)
    }

    fn record(&self, answer: &str) {
        let record = Record {
            request_id: self.request_id.clone(),
            question: self.question.clone(),
            answer: answer.to_string(),
        };
        self.shared.sessions.record(&self.session_id, record);
    }

    fn answer_event(&self, delta: &str) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.event(json!({
            "text": delta,
            "overwrite": false,
            "isFiltered": false,
            "timestamp": timestamp,
            "extra": {"sessionType": self.session_type},
        }))
    }

    /// `fields` plus the `requestId` and `sessionId` every event of the turn carries.
    pub(super) fn event(&self, mut fields: Value) -> Value {
        fields["requestId"] = json!(self.request_id);
        fields["sessionId"] = json!(self.session_id);
        fields
    }
}
