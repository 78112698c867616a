//! One `chat/ask` turn: the payload, and the stream of its `chat/answer` deltas up to
//! `chat/finish`, with deadlines. Dropping an unfinished stream sends `chat/stop`, so a
//! client that goes away (or a timeout) never leaves Lingma generating into the void.
//! Runs on the request's worker thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::{json, Value};

use super::connection::{Connection, Subscription, UpstreamError};
use super::mailbox::Routed;
use crate::config::AskMode;
use crate::jsonrpc::method;

/// What the gateway asks.
#[derive(Debug, Clone)]
pub struct Ask {
    /// `""` for a new session.
    pub session_id: String,
    pub question: String,
    pub model_key: String,
    pub is_reply: bool,
    pub mode: AskMode,
    /// The client's tools and tool choice, forwarded as `tools` / `tool_choice` when
    /// `tool_forward_enabled` is set.
    pub forward_tools: Option<(Value, Value)>,
    /// How to answer Lingma's own pending tool calls: approve (true) or refuse (false).
    pub approve_tools: bool,
}

/// Builds the `chat/ask` params (ChatAskParam). The server reads `questionText`; the model is
/// chosen by `extra.modelConfig.key`.
pub fn ask_params(request_id: &str, ask: &Ask) -> Value {
    let agent = ask.mode == AskMode::Agent;
    let mut params = json!({
        "requestId": request_id,
        "sessionId": ask.session_id,
        "questionText": ask.question,
        "chatTask": "FREE_INPUT",
        "chatContext": {"text": ask.question, "features": [], "preferredLanguage": "en", "localeLang": "en"},
        "codeLanguage": "",
        "isReply": ask.is_reply,
        "source": 1,
        "stream": true,
        "taskDefinitionType": "system",
        "extra": {"modelConfig": {"key": ask.model_key}},
        "sessionType": if agent { "developer" } else { "chat" },
        "mode": ask.mode.as_str(),
        "pluginPayloadConfig": {"isEnableAskAgent": agent},
    });
    if let Some((tools, choice)) = &ask.forward_tools {
        params["tools"] = tools.clone();
        params["tool_choice"] = choice.clone();
    }
    params
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub session_id: String,
    pub status_code: i64,
    pub reason: String,
    pub full_answer: String,
}

/// One `tool/call/sync` or `tool/invoke` of Lingma's own agent tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUpdate {
    pub tool_call_id: String,
    pub name: String,
    /// `INIT`, `PENDING`, `RUNNING`, `FINISHED`, `ERROR`, `CANCELLED`, `REQUEST_FINISHED`;
    /// `INVOKE` for a `tool/invoke`.
    pub status: String,
    pub parameters: Value,
    pub results: Value,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// A delta of answer text (never empty).
    Text(String),
    Tool(ToolUpdate),
    Finish(Finish),
}

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From `chat/ask` to the first answer text.
    pub first_token: Duration,
    /// Between two events once text flows.
    pub idle: Duration,
}

pub struct ChatStream {
    conn: Arc<Connection>,
    sub: Subscription,
    request_id: String,
    session_id: String,
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
    pub fn start(
        conn: Arc<Connection>,
        ask: &Ask,
        as_request: bool,
        deadlines: Deadlines,
    ) -> Result<Self, UpstreamError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let sub = conn.subscribe_chat(&request_id)?;
        let params = ask_params(&request_id, ask);
        if as_request {
            conn.send_request_no_wait(method::CHAT_ASK, params)?;
        } else {
            conn.notify(method::CHAT_ASK, params)?;
        }
        Ok(ChatStream {
            conn,
            sub,
            request_id,
            session_id: ask.session_id.clone(),
            deadlines,
            started: Instant::now(),
            last_event_at: Instant::now(),
            got_text: false,
            done: false,
            approve_tools: ask.approve_tools,
        })
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The next text delta or the finish, waiting at most `slice` (if given): `Ok(None)`
    /// means nothing arrived within the slice but the deadline is still ahead, so the caller
    /// can keep its client connection alive. After the finish (or an error) the stream is over.
    pub fn next_event(
        &mut self,
        slice: Option<Duration>,
    ) -> Result<Option<ChatEvent>, UpstreamError> {
        loop {
            let deadline = if self.got_text {
                self.last_event_at + self.deadlines.idle
            } else {
                self.started + self.deadlines.first_token
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = slice.map_or(left, |s| s.min(left));
            let routed = match self.sub.recv_timeout(wait) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) if wait < left => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {
                    let (what, limit) = if self.got_text {
                        ("the next answer chunk", self.deadlines.idle)
                    } else {
                        ("the first answer chunk", self.deadlines.first_token)
                    };
                    return Err(UpstreamError::Timeout(format!(
                        "{what} from Lingma ({}s)",
                        limit.as_secs()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) if self.sub.overflowed() => {
                    // `done` stays false: dropping the stream sends chat/stop.
                    return Err(UpstreamError::Disconnected(format!(
                        "the client read the answer so much slower than Lingma wrote it that more than {} MiB waited; the answer was stopped",
                        super::mailbox::MAX_HELD_BYTES >> 20
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    let why = self
                        .conn
                        .stuck_reason()
                        .unwrap_or_else(|| "the connection to Lingma ended mid-answer".into());
                    return Err(UpstreamError::Disconnected(why));
                }
            };
            self.last_event_at = Instant::now();
            let Routed::Event { method, params } = routed else {
                continue;
            };
            if let Some(sid) = params
                .get("sessionId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.session_id = sid.to_string();
            }
            match method.as_str() {
                method::CHAT_ANSWER => {
                    let text = params.get("text").and_then(Value::as_str).unwrap_or("");
                    if !text.is_empty() {
                        self.got_text = true;
                        return Ok(Some(ChatEvent::Text(text.to_string())));
                    }
                }
                method::CHAT_FINISH => {
                    self.done = true;
                    return Ok(Some(ChatEvent::Finish(Finish {
                        session_id: self.session_id.clone(),
                        status_code: status_code(&params),
                        reason: params
                            .get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        full_answer: params
                            .get("fullAnswer")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })));
                }
                method::TOOL_CALL_SYNC | method::TOOL_INVOKE => {
                    let update = tool_update(&method, &params);
                    if update.status == "PENDING" {
                        self.approve(&update);
                    }
                    return Ok(Some(ChatEvent::Tool(update)));
                }
                other => log::trace!("chat {}: {other}", self.request_id),
            }
        }
    }
}

impl ChatStream {
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
        let params = json!({
            "sessionId": self.session_id, "requestId": self.request_id,
            "toolCallId": update.tool_call_id, "approval": self.approve_tools,
        });
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

fn tool_update(method: &str, params: &Value) -> ToolUpdate {
    let text = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let status = if method == method::TOOL_INVOKE {
        "INVOKE".to_string()
    } else {
        text("toolCallStatus").to_ascii_uppercase()
    };
    ToolUpdate {
        tool_call_id: text("toolCallId"),
        name: text("name"),
        status,
        parameters: params.get("parameters").cloned().unwrap_or(Value::Null),
        results: params.get("results").cloned().unwrap_or(Value::Null),
        error: text("errorMsg"),
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if !self.done {
            log::debug!(
                "chat {} abandoned before chat/finish; sending chat/stop",
                self.request_id
            );
            let params = json!({"requestId": self.request_id, "sessionId": self.session_id});
            if let Err(e) = self.conn.send_request_no_wait(method::CHAT_STOP, params) {
                log::debug!("chat/stop for {} not sent: {e}", self.request_id);
            }
        }
    }
}

/// `chat/finish.statusCode`: a number, or a numeric string from some builds; absent means
/// success.
fn status_code(params: &Value) -> i64 {
    match params.get("statusCode") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(500),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(500),
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_accepts_numbers_and_numeric_strings() {
        assert_eq!(status_code(&json!({"statusCode": 429})), 429);
        assert_eq!(status_code(&json!({"statusCode": "403"})), 403);
        assert_eq!(status_code(&json!({})), 200);
        assert_eq!(status_code(&json!({"statusCode": "weird"})), 500);
    }

    #[test]
    fn ask_params_carry_question_model_and_session() {
        let ask = Ask {
            session_id: String::new(),
            question: "hi".into(),
            model_key: "kmodel".into(),
            is_reply: false,
            mode: AskMode::Chat,
            forward_tools: None,
            approve_tools: true,
        };
        let p = ask_params("r1", &ask);
        assert_eq!(p["questionText"], "hi");
        assert_eq!(p["requestId"], "r1");
        assert_eq!(p["sessionId"], "");
        assert_eq!(p["extra"]["modelConfig"]["key"], "kmodel");
        assert_eq!(p["sessionType"], "chat");
        assert!(p.is_object());
    }
}
