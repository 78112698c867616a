//! Lingma's ACP dialect of a chat turn (`session/new`, `session/set_model`,
//! `session/prompt`, `session/cancel`; the runtime answers with `session/update`
//! notifications): the params the gateway sends, and the decoder that turns what comes back
//! into dialect-free `ChatEvent`s. Pure: no socket, tested on literal frames. The shapes are
//! those of `lingma-protocol.md` §7; where a field has two spellings in the wild both are read.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::cosy;
use super::turn::{Ask, ChatEvent, Finish, ToolStatus, ToolUpdate};
use crate::jsonrpc::{method, RpcError};

/// `_meta` key of the request id: every prompt carries it (real runtimes refuse a prompt
/// without it with "requestId is empty"), and every update of its turn echoes it.
const META_REQUEST_ID: &str = "ai-coding/request-id";
const META_MODE: &str = "ai-coding/mode";
const META_MODEL: &str = "ai-coding/model";
const META_TOOL_NAME: &str = "ai-coding/tool-name";
/// The cosy status of a tool (`FINISHED`, `CANCELLED`, ...), finer than ACP's own.
const META_TOOL_STATUS: &str = "ai-coding/tool-status";

/// The `session/new` params: a session rooted at `cwd`, without MCP servers.
pub(crate) fn new_session_params(cwd: &str) -> Value {
    json!({"cwd": cwd, "mcpServers": [], "_meta": {}})
}

/// The session id a `session/new` result names: `{sessionId}`, or `{id}` from some builds.
pub(crate) fn session_id_of(result: &Value) -> Option<String> {
    ["sessionId", "id"]
        .iter()
        .filter_map(|k| result.get(k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

pub(crate) fn set_model_params(session_id: &str, model_key: &str) -> Value {
    json!({"sessionId": session_id, "modelId": model_key})
}

/// The `session/prompt` params of one turn. The model rides in `_meta` too, so a runtime
/// that ignored `session/set_model` still answers with it.
pub(crate) fn prompt_params(request_id: &str, session_id: &str, ask: &Ask) -> Value {
    assert!(
        !request_id.is_empty(),
        "a prompt without a request id is refused"
    );
    if ask.forward_tools.is_some() {
        log::debug!("the ACP dialect has no field for forwarded tools; the prompt carries them");
    }
    json!({
        "sessionId": session_id,
        "prompt": [{"type": "text", "text": ask.question}],
        "_meta": {
            META_REQUEST_ID: request_id,
            META_MODE: "agent",
            META_MODEL: ask.model_key,
        },
    })
}

/// The `session/cancel` params (a notification: the turn ends with its finish).
pub(crate) fn cancel_params(session_id: &str) -> Value {
    json!({"sessionId": session_id})
}

/// The request id a `session/update` carries in its `_meta` (on the params, or on the update).
pub(crate) fn request_id_of(params: &Value) -> Option<&str> {
    [
        params.get("_meta"),
        params.get("update").and_then(|u| u.get("_meta")),
    ]
    .into_iter()
    .flatten()
    .find_map(|m| m.get(META_REQUEST_ID).and_then(Value::as_str))
}

/// Most sessions whose model is remembered; past it the memory starts again (a forgotten
/// session costs one `session/set_model` more).
const MAX_REMEMBERED_MODELS: usize = 4096;

/// The model each session on one connection was last set to, so `session/set_model` is sent
/// only when it changes.
#[derive(Debug, Default)]
pub(crate) struct SessionModels {
    models: Mutex<HashMap<String, String>>,
}

impl SessionModels {
    /// Whether `session` needs `session/set_model` to run `model`.
    pub(crate) fn needs(&self, session: &str, model: &str) -> bool {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models.get(session).map(String::as_str) != Some(model)
    }

    pub(crate) fn set(&self, session: &str, model: &str) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if models.len() >= MAX_REMEMBERED_MODELS && !models.contains_key(session) {
            models.clear();
        }
        models.insert(session.to_string(), model.to_string());
    }
}

/// Decodes one turn's `session/update`s and the answer to its `session/prompt`.
#[derive(Debug)]
pub(crate) struct Decoder {
    request_id: String,
    session_id: String,
    /// The `stopReason` the prompt's result gave, while no `chat_finish` has come.
    answered: Option<String>,
}

impl Decoder {
    pub(crate) fn new(request_id: &str, session_id: &str) -> Self {
        Decoder {
            request_id: request_id.to_string(),
            session_id: session_id.to_string(),
            answered: None,
        }
    }

    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The chat event a routed notification carries, if any. Updates of another turn (a
    /// request id not ours) carry none.
    pub(crate) fn decode(&mut self, method: &str, params: &Value) -> Option<ChatEvent> {
        if method == method::TOOL_INVOKE {
            // Shared by both dialects: Lingma asks the IDE to run its tool (the reader has
            // answered that it cannot).
            return Some(ChatEvent::Tool(ToolUpdate {
                tool_call_id: str_of(params, "toolCallId").to_string(),
                name: str_of(params, "name").to_string(),
                status: ToolStatus::Invoke,
                parameters: params.get("parameters").cloned().unwrap_or(Value::Null),
                results: Value::Null,
                error: String::new(),
            }));
        }
        if method != method::SESSION_UPDATE {
            log::trace!("acp: {method} carries no chat event");
            return None;
        }
        if request_id_of(params).is_some_and(|r| r != self.request_id) {
            return None;
        }
        let update = params.get("update")?;
        match str_of(update, "sessionUpdate") {
            "agent_message_chunk" => content_text(update).map(ChatEvent::Text),
            "agent_thought_chunk" => content_text(update).map(ChatEvent::Reasoning),
            "tool_call" | "tool_call_update" => Some(ChatEvent::Tool(tool_update(update))),
            "notification" => self.notification(update),
            other => {
                log::trace!("acp: session/update {other:?} carries no chat event");
                None
            }
        }
    }

    /// The answer to the turn's `session/prompt`. An error ends the turn as a failed finish;
    /// a result does not (Lingma's turn ends with `chat_finish`, which may come after it),
    /// but one with a `stopReason` is noted: should no `chat_finish` follow, the stream ends
    /// the turn with it (`finish_from_reply`).
    pub(crate) fn decode_reply(&mut self, reply: Result<Value, RpcError>) -> Option<ChatEvent> {
        match reply {
            Ok(result) => {
                log::debug!("acp: session/prompt answered {result}");
                self.answered = result
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                None
            }
            Err(e) => Some(ChatEvent::Finish(Finish {
                session_id: self.session_id.clone(),
                status_code: rpc_status(e.code),
                reason: e.to_string(),
                full_answer: String::new(),
            })),
        }
    }

    /// Whether the prompt's result said the turn stopped.
    pub(crate) fn answered(&self) -> bool {
        self.answered.is_some()
    }

    /// The finish the prompt's result stands for, when no `chat_finish` came: ACP's
    /// `refusal` is a content-filter finish (406, as cosy's), any other stop a success.
    pub(crate) fn finish_from_reply(&mut self) -> Option<ChatEvent> {
        let reason = self.answered.take()?;
        Some(ChatEvent::Finish(Finish {
            session_id: self.session_id.clone(),
            status_code: if reason == "refusal" { 406 } else { 200 },
            reason,
            full_answer: String::new(),
        }))
    }

    /// `notification`: `chat_finish` (data as cosy's `chat/finish`) or `context_usage`.
    fn notification(&mut self, update: &Value) -> Option<ChatEvent> {
        let data = update.get("data").unwrap_or(update);
        match str_of(update, "type") {
            "chat_finish" => Some(ChatEvent::Finish(Finish {
                // The ACP session is the one to continue, whatever `data` calls its own.
                session_id: self.session_id.clone(),
                status_code: cosy::status_code(data),
                reason: str_of(data, "reason").to_string(),
                full_answer: str_of(data, "fullAnswer").to_string(),
            })),
            "context_usage" => {
                let number = |k: &str| data.get(k).or_else(|| update.get(k)).and_then(as_u64);
                Some(ChatEvent::Usage {
                    used_tokens: number("usedTokens")?,
                    limit_tokens: number("limitTokens").filter(|&n| n > 0),
                })
            }
            other => {
                log::trace!("acp: notification {other:?} carries no chat event");
                None
            }
        }
    }
}

/// A JSON-RPC error code as a finish status: an HTTP-like code stays (a runtime that says
/// 429 means it), anything else is an internal failure.
fn rpc_status(code: i64) -> i64 {
    if (400..=699).contains(&code) {
        code
    } else {
        500
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A count as a number or a numeric string.
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The text of a chunk's `content` (one content block, or a list of them); `None` when
/// it has none.
fn content_text(update: &Value) -> Option<String> {
    let blocks = match update.get("content")? {
        Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    let text: String = blocks
        .into_iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then_some(text)
}

/// One `tool_call` (the call announced) or `tool_call_update` (its progress).
fn tool_update(update: &Value) -> ToolUpdate {
    let meta = update.get("_meta").and_then(Value::as_object);
    let name = meta
        .and_then(|m| m.get(META_TOOL_NAME))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| str_of(update, "title"));
    let cosy_status = meta
        .and_then(|m| m.get(META_TOOL_STATUS))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let status = match cosy_status.or_else(|| update.get("status").and_then(Value::as_str)) {
        Some(s) => tool_status(s),
        None if str_of(update, "sessionUpdate") == "tool_call" => ToolStatus::Init,
        None => ToolStatus::Running,
    };
    // One result as cosy's list of them, so the native path shapes it the same way.
    let results = match update.get("rawOutput") {
        Some(Value::Object(one)) => json!([one]),
        Some(out) if !out.is_null() => out.clone(),
        _ => update.get("content").cloned().unwrap_or(Value::Null),
    };
    ToolUpdate {
        tool_call_id: str_of(update, "toolCallId").to_string(),
        name: name.to_string(),
        status,
        parameters: update.get("rawInput").cloned().unwrap_or(Value::Null),
        results,
        error: meta.map(error_text).unwrap_or_default(),
    }
}

/// ACP's tool statuses (`pending`, `in_progress`, `completed`, `failed`), and cosy's names
/// should a runtime send those.
fn tool_status(s: &str) -> ToolStatus {
    match s.to_ascii_lowercase().as_str() {
        "pending" => ToolStatus::Pending,
        "in_progress" | "running" => ToolStatus::Running,
        "completed" | "finished" => ToolStatus::Finished,
        "failed" | "error" => ToolStatus::Error,
        "cancelled" | "canceled" => ToolStatus::Cancelled,
        "init" => ToolStatus::Init,
        "request_finished" => ToolStatus::RequestFinished,
        "invoke" => ToolStatus::Invoke,
        _ => ToolStatus::Other(s.to_ascii_uppercase()),
    }
}

/// The error a tool's `_meta` reports: its first non-empty string field named like an error
/// message (`ai-coding/error-message`, `…/errorMsg`, …), else like an error.
fn error_text(meta: &Map<String, Value>) -> String {
    let strings = || {
        meta.iter()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?)))
            .filter(|(k, v)| k.contains("error") && !v.is_empty())
    };
    strings()
        .find(|(k, _)| k.contains("msg") || k.contains("message"))
        .or_else(|| strings().find(|(k, _)| !k.contains("code")))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
