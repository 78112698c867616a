//! One `chat/ask` turn on a connection: sends the ask, and waits, with deadlines, for the
//! turn's events up to its finish, decoded by the dialect's decoder (`cosy.rs`). Dropping an
//! unfinished stream sends `chat/stop`, so a client that goes away (or a timeout) never
//! leaves Lingma generating into the void. Runs on the request's worker thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::connection::{Connection, Subscription, UpstreamError};
use super::cosy;
use super::mailbox::Routed;
use super::turn::{Ask, ChatEvent, ToolStatus, ToolUpdate};
use crate::jsonrpc::method;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// From `chat/ask` to the first answer text.
    pub(crate) first_token: Duration,
    /// Between two events once text flows.
    pub(crate) idle: Duration,
}

pub(crate) struct ChatStream {
    conn: Arc<Connection>,
    sub: Subscription,
    request_id: String,
    decoder: cosy::Decoder,
    deadlines: Deadlines,
    started: Instant,
    last_event_at: Instant,
    got_text: bool,
    done: bool,
    approve_tools: bool,
}

impl ChatStream {
    /// Subscribes, then sends `chat/ask` (as a notification, or as a request whose ack nobody
    /// waits for: waiting for it cost the seed 30 s per request).
    pub(crate) fn start(
        conn: Arc<Connection>,
        ask: &Ask,
        as_request: bool,
        deadlines: Deadlines,
    ) -> Result<Self, UpstreamError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let sub = conn.subscribe_chat(&request_id)?;
        let params = cosy::ask_params(&request_id, ask);
        if as_request {
            conn.send_request_no_wait(method::CHAT_ASK, params)?;
        } else {
            conn.notify(method::CHAT_ASK, params)?;
        }
        Ok(ChatStream {
            conn,
            sub,
            request_id,
            decoder: cosy::Decoder::new(&ask.session_id),
            deadlines,
            started: Instant::now(),
            last_event_at: Instant::now(),
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
            let Some(routed) = self.wait(slice)? else {
                return Ok(None);
            };
            self.last_event_at = Instant::now();
            let Routed::Event { method, params } = routed else {
                continue;
            };
            let Some(event) = self.decoder.decode(&method, &params) else {
                continue;
            };
            match &event {
                ChatEvent::Text(_) | ChatEvent::Reasoning(_) => self.got_text = true,
                ChatEvent::Finish(_) => self.done = true,
                ChatEvent::Tool(u) if u.status == ToolStatus::Pending => self.approve(u),
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
        let wait = slice.map_or(left, |s| s.min(left));
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

impl Drop for ChatStream {
    fn drop(&mut self) {
        if !self.done {
            log::debug!(
                "chat {} abandoned before chat/finish; sending chat/stop",
                self.request_id
            );
            let params = cosy::stop_params(&self.request_id, self.decoder.session_id());
            if let Err(e) = self.conn.send_request_no_wait(method::CHAT_STOP, params) {
                log::debug!("chat/stop for {} not sent: {e}", self.request_id);
            }
        }
    }
}
