//! One chat turn on a connection, in the dialect its runtime speaks: sends the ask (cosy's
//! `chat/ask`; ACP's `session/new` when the turn opens a session, `session/set_model` when
//! the session's model changes, then `session/prompt`), and waits, with deadlines, for the
//! turn's events up to its finish, decoded by the dialect's decoder (`cosy.rs`, `acp.rs`).
//! Dropping an unfinished stream stops the turn (`chat/stop`, `session/cancel`), so a
//! client that goes away (or a timeout) never leaves Lingma generating into the void. Runs
//! on the request's worker thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::acp;
use super::connection::{Connection, Subscription, UpstreamError};
use super::cosy;
use super::mailbox::Routed;
use super::runtime::{Dialect, Runtime};
use super::turn::{Ask, ChatEvent, ToolStatus, ToolUpdate};
use crate::jsonrpc::method;

/// How long a turn whose `session/prompt` result says it stopped waits for the
/// `chat_finish` that normally ends it (and follows the result at once when it comes).
const FINISH_AFTER_RESULT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// From `chat/ask` to the first answer text.
    pub(crate) first_token: Duration,
    /// Between two events once text flows.
    pub(crate) idle: Duration,
    /// For a plain reply (ACP's `session/new`, `session/set_model`).
    pub(crate) rpc: Duration,
}

/// The turn's decoder, in its connection's dialect.
enum Codec {
    Cosy(cosy::Decoder),
    Acp(acp::Decoder),
}

impl Codec {
    fn session_id(&self) -> &str {
        match self {
            Codec::Cosy(d) => d.session_id(),
            Codec::Acp(d) => d.session_id(),
        }
    }

    /// Whether the prompt's result said the turn stopped (ACP).
    fn answered(&self) -> bool {
        matches!(self, Codec::Acp(d) if d.answered())
    }

    /// The finish a stopped prompt's result stands for.
    fn finish_from_reply(&mut self) -> Option<ChatEvent> {
        match self {
            Codec::Acp(d) => d.finish_from_reply(),
            Codec::Cosy(_) => None,
        }
    }

    fn decode(&mut self, routed: Routed) -> Option<ChatEvent> {
        match (self, routed) {
            (Codec::Cosy(d), Routed::Event { method, params }) => d.decode(&method, &params),
            (Codec::Acp(d), Routed::Event { method, params }) => d.decode(&method, &params),
            (Codec::Acp(d), Routed::Response(reply)) => d.decode_reply(reply),
            (Codec::Cosy(_), Routed::Response(_)) => None,
        }
    }
}

pub(crate) struct ChatStream {
    conn: Arc<Connection>,
    sub: Subscription,
    request_id: String,
    decoder: Codec,
    deadlines: Deadlines,
    started: Instant,
    last_event_at: Instant,
    /// When the prompt's result said the turn stopped, with no finish yet.
    answered_at: Option<Instant>,
    got_text: bool,
    done: bool,
    approve_tools: bool,
}

impl ChatStream {
    /// Subscribes, then asks in the connection's dialect (`as_request`: cosy's `chat/ask` as
    /// a request whose ack nobody waits for, instead of a notification; waiting for it cost
    /// the seed 30 s per request).
    pub(crate) fn start(
        conn: Arc<Connection>,
        ask: &Ask,
        as_request: bool,
        deadlines: Deadlines,
    ) -> Result<Self, UpstreamError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut sub = conn.subscribe_chat(&request_id)?;
        let decoder = match conn.runtime() {
            Some(runtime) if runtime.dialect == Dialect::Acp => {
                let rpc = deadlines.rpc;
                let session = prompt(&conn, runtime, &mut sub, &request_id, ask, rpc)?;
                Codec::Acp(acp::Decoder::new(&request_id, &session))
            }
            _ => {
                let params = cosy::ask_params(&request_id, ask);
                if as_request {
                    conn.send_request_no_wait(method::CHAT_ASK, params)?;
                } else {
                    conn.notify(method::CHAT_ASK, params)?;
                }
                Codec::Cosy(cosy::Decoder::new(&ask.session_id))
            }
        };
        Ok(ChatStream {
            conn,
            sub,
            request_id,
            decoder,
            deadlines,
            started: Instant::now(),
            last_event_at: Instant::now(),
            answered_at: None,
            got_text: false,
            done: false,
            approve_tools: ask.approve_tools,
        })
    }

    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The Lingma session the turn runs in, as far as its events said (`""`: none yet).
    pub(crate) fn session_id(&self) -> &str {
        self.decoder.session_id()
    }

    /// The next event, waiting at most `slice` (if given): `Ok(None)` means nothing arrived
    /// within the slice but the deadline is still ahead, so the caller can keep its client
    /// connection alive. After the finish (or an error) the stream is over.
    pub(crate) fn next_event(
        &mut self,
        slice: Option<Duration>,
    ) -> Result<Option<ChatEvent>, UpstreamError> {
        loop {
            if self
                .answered_at
                .is_some_and(|at| at.elapsed() >= FINISH_AFTER_RESULT)
            {
                log::debug!(
                    "chat {}: no chat_finish after the prompt's result; it ends the turn",
                    self.request_id
                );
                self.answered_at = None;
                if let Some(finish) = self.decoder.finish_from_reply() {
                    self.done = true;
                    return Ok(Some(finish));
                }
            }
            let Some(routed) = self.wait(slice)? else {
                return Ok(None);
            };
            self.last_event_at = Instant::now();
            let event = self.decoder.decode(routed);
            if self.answered_at.is_none() && self.decoder.answered() {
                self.answered_at = Some(Instant::now());
            }
            let Some(event) = event else {
                continue;
            };
            match &event {
                ChatEvent::Text(_) | ChatEvent::Reasoning(_) => self.got_text = true,
                ChatEvent::Finish(_) => self.done = true,
                // ACP's `pending` is no request for approval: that dialect has none.
                ChatEvent::Tool(u)
                    if u.status == ToolStatus::Pending
                        && matches!(self.decoder, Codec::Cosy(_)) =>
                {
                    self.approve(u)
                }
                ChatEvent::Tool(_) | ChatEvent::Usage { .. } => {}
            }
            return Ok(Some(event));
        }
    }

    /// The next routed message within `slice` and the deadline: the first token's until
    /// text flows, then the idle one. `Ok(None)` when the slice ran out first.
    fn wait(&mut self, slice: Option<Duration>) -> Result<Option<Routed>, UpstreamError> {
        let (deadline, what, limit) = if self.got_text {
            let idle = self.deadlines.idle;
            (self.last_event_at + idle, "the next answer chunk", idle)
        } else {
            let first = self.deadlines.first_token;
            (self.started + first, "the first answer chunk", first)
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let mut wait = slice.map_or(left, |s| s.min(left));
        if let Some(at) = self.answered_at {
            // Wakes up to end the turn with the result, unless its finish comes first.
            let grace = (at + FINISH_AFTER_RESULT).saturating_duration_since(Instant::now());
            wait = wait.min(grace);
        }
        match self.sub.recv_timeout(wait) {
            Ok(routed) => Ok(Some(routed)),
            Err(RecvTimeoutError::Timeout) if wait < left => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err(UpstreamError::Timeout(format!(
                "{what} from Lingma ({}s)",
                limit.as_secs()
            ))),
            // `done` stays false: dropping the stream sends chat/stop.
            Err(RecvTimeoutError::Disconnected) if self.sub.overflowed() => {
                Err(UpstreamError::Disconnected(format!(
                    "the client read the answer so much slower than Lingma wrote it that more than {} MiB waited; the answer was stopped",
                    super::mailbox::MAX_HELD_BYTES >> 20
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                let why = self
                    .conn
                    .stuck_reason()
                    .unwrap_or_else(|| "the connection to Lingma ended mid-answer".into());
                Err(UpstreamError::Disconnected(why))
            }
        }
    }

    /// Answers a pending native tool call with `tool/call/approve`.
    fn approve(&self, update: &ToolUpdate) {
        log::info!(
            "chat {}: Lingma asks to run its tool {} ({}); {}",
            self.request_id,
            update.name,
            update.tool_call_id,
            if self.approve_tools {
                "approved (tool_auto_approve)"
            } else {
                "refused (tool_auto_approve = false)"
            }
        );
        let params = cosy::approve_params(
            &self.request_id,
            self.decoder.session_id(),
            &update.tool_call_id,
            self.approve_tools,
        );
        if let Err(e) = self
            .conn
            .send_request_no_wait(method::TOOL_CALL_APPROVE, params)
        {
            log::warn!(
                "tool/call/approve for {} not sent: {e}",
                update.tool_call_id
            );
        }
    }
}

/// Opens the turn's ACP session when it has none (`session/new`), sets its model when it
/// changes (`session/set_model`), and sends `session/prompt`, whose answer goes to `sub`.
/// Returns the session.
fn prompt(
    conn: &Connection,
    runtime: &Runtime,
    sub: &mut Subscription,
    request_id: &str,
    ask: &Ask,
    rpc: Duration,
) -> Result<String, UpstreamError> {
    let session = match ask.session_id.as_str() {
        "" => {
            let params = acp::new_session_params(&runtime.cwd);
            let result = conn.call(method::SESSION_NEW, params, rpc)?;
            acp::session_id_of(&result).ok_or_else(|| UpstreamError::Status {
                code: 500,
                message: format!("session/new answered without a session id: {result}"),
            })?
        }
        known => known.to_string(),
    };
    if runtime.models.needs(&session, &ask.model_key) {
        let params = acp::set_model_params(&session, &ask.model_key);
        match conn.call(method::SESSION_SET_MODEL, params, rpc) {
            Ok(_) => runtime.models.set(&session, &ask.model_key),
            // The model rides in the prompt's `_meta` too.
            Err(UpstreamError::Rpc(e)) => {
                log::warn!(
                    "session/set_model {} for {session} refused: {e}",
                    ask.model_key
                )
            }
            Err(e) => return Err(e),
        }
    }
    conn.follow_session(sub, &session)?;
    let params = acp::prompt_params(request_id, &session, ask);
    conn.request_into(sub, method::SESSION_PROMPT, params)?;
    Ok(session)
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let sent = match &self.decoder {
            Codec::Cosy(d) => {
                log::debug!(
                    "chat {} abandoned before chat/finish; sending chat/stop",
                    self.request_id
                );
                let params = cosy::stop_params(&self.request_id, d.session_id());
                self.conn.send_request_no_wait(method::CHAT_STOP, params)
            }
            Codec::Acp(d) => {
                log::debug!(
                    "chat {} abandoned before chat_finish; sending session/cancel",
                    self.request_id
                );
                let params = acp::cancel_params(d.session_id());
                self.conn.notify(method::SESSION_CANCEL, params)
            }
        };
        if let Err(e) = sent {
            log::debug!("stopping chat {} not sent: {e}", self.request_id);
        }
    }
}
