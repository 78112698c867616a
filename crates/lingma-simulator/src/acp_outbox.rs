//! How a turn asked with `session/prompt` is written (protocol §7): the cosy events the turn's
//! generator produces (`chat/answer`, `tool/call/sync`, `context/usage/sync`, `chat/finish`)
//! become `session/update` notifications, and the prompt's own answer follows the finish.
//! Reasoning goes out as `agent_thought_chunk` with the think block's markers taken off
//! (`ThinkSplit`); the preprocessing steps and the title have no ACP form and are dropped.
//! Pure: used by the generator's `Outbox`, tested on literal events.

use std::collections::HashMap;

use lingma_protocol::jsonrpc::{self, method};
use serde_json::{json, Value};

use crate::script::Step;

/// The notification every event of an ACP turn is.
pub(crate) const SESSION_UPDATE: &str = "session/update";
/// The `_meta` key of the request id every update carries (and a prompt must).
pub(crate) const REQUEST_ID_META: &str = "ai-coding/request-id";
/// The error code of a prompt whose turn failed (after its `chat_finish`).
const TURN_FAILED: i64 = -32603;

/// What the generator of an ACP turn needs to know: the id of the `session/prompt` request,
/// answered after the turn (`None`: sent as a notification, answered never).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AcpTurn {
    pub(crate) prompt_id: Option<Value>,
}

/// Turns one ACP turn's cosy events into ACP messages.
pub(crate) struct Encoder {
    prompt_id: Option<Value>,
    /// Native tools' names by `toolCallId` (`tool/call/sync` does not carry the name).
    tool_names: HashMap<String, String>,
    think: ThinkSplit,
    /// The answer as the client sees it, without the think block: `chat_finish.fullAnswer`.
    answer: String,
    /// The prompt's answer once the finish is written, for `take_answer`.
    prompt_answer: Option<Value>,
}

impl Encoder {
    pub(crate) fn new(turn: &AcpTurn, steps: &[Step]) -> Encoder {
        let tool_names = steps
            .iter()
            .filter_map(|s| match s {
                Step::Native(call) => Some((call.tool_call_id.clone(), call.name.clone())),
                _ => None,
            })
            .collect();
        Encoder {
            prompt_id: turn.prompt_id.clone(),
            tool_names,
            think: ThinkSplit::default(),
            answer: String::new(),
            prompt_answer: None,
        }
    }

    /// The answer to the prompt, once its turn has finished: the generator sends it after it
    /// has left the running turns, so that a client that has it can prompt the session again.
    pub(crate) fn take_answer(&mut self) -> Option<Value> {
        self.prompt_answer.take()
    }

    /// The ACP messages one cosy event of the turn (`params` with `requestId`, `sessionId`)
    /// becomes; none for the events ACP has no form of.
    pub(crate) fn encode(&mut self, name: &str, params: &Value) -> Vec<Value> {
        let ids = Ids::of(params);
        match name {
            method::CHAT_ANSWER => {
                // Some builds carry a delta in `content` instead (§6).
                let text = ["text", "content"]
                    .iter()
                    .find_map(|k| params.get(*k).and_then(Value::as_str))
                    .unwrap_or("");
                let pieces = self.think.push(text);
                self.chunks(&ids, pieces)
            }
            method::CONTEXT_USAGE => {
                let data = json!({"usedTokens": params["usedTokens"], "limitTokens": params["limitTokens"]});
                vec![ids.update(
                    json!({"sessionUpdate": "notification", "type": "context_usage", "data": data}),
                )]
            }
            method::TOOL_CALL_SYNC => vec![ids.update(self.tool_update(params))],
            method::CHAT_FINISH => {
                let pieces = self.think.finish();
                let mut out = self.chunks(&ids, pieces);
                let mut data = params.clone();
                data["fullAnswer"] = json!(self.answer);
                out.push(ids.update(
                    json!({"sessionUpdate": "notification", "type": "chat_finish", "data": data}),
                ));
                self.prompt_answer = self.prompt_id.take().map(|id| prompt_answer(id, params));
                out
            }
            _ => Vec::new(),
        }
    }

    fn chunks(&mut self, ids: &Ids, pieces: Vec<Piece>) -> Vec<Value> {
        pieces
            .into_iter()
            .map(|piece| {
                let (kind, text) = match piece {
                    Piece::Thought(t) => ("agent_thought_chunk", t),
                    Piece::Message(t) => {
                        self.answer.push_str(&t);
                        ("agent_message_chunk", t)
                    }
                };
                let content = json!({"type": "text", "text": text});
                ids.update(json!({"sessionUpdate": kind, "content": content}))
            })
            .collect()
    }

    /// `tool_call` for a call's first (pending) sync, `tool_call_update` for the others; the
    /// cosy status and the tool's name ride in `_meta`.
    fn tool_update(&self, params: &Value) -> Value {
        let id = params["toolCallId"].as_str().unwrap_or("");
        let status = params["toolCallStatus"].as_str().unwrap_or("");
        let name = self.tool_names.get(id).map_or("", String::as_str);
        let mut meta = json!({"ai-coding/tool-name": name, "ai-coding/tool-status": status});
        let error = params["errorMsg"].as_str().unwrap_or("");
        if !error.is_empty() {
            meta["ai-coding/error-message"] = json!(error);
        }
        let output = match params["results"].as_array().map(Vec::as_slice) {
            Some([one]) => one.clone(),
            _ => params["results"].clone(),
        };
        match status {
            "INIT" | "PENDING" => json!({
                "sessionUpdate": "tool_call", "toolCallId": id, "title": name,
                "kind": tool_kind(name), "status": "pending",
                "rawInput": params["parameters"], "_meta": meta,
            }),
            other => {
                let status = match other {
                    "RUNNING" => "in_progress",
                    "FINISHED" => "completed",
                    _ => "failed",
                };
                json!({
                    "sessionUpdate": "tool_call_update", "toolCallId": id,
                    "status": status, "rawOutput": output, "_meta": meta,
                })
            }
        }
    }
}

/// The request and session of an event, which every update names.
struct Ids {
    request_id: Value,
    session_id: Value,
}

impl Ids {
    fn of(params: &Value) -> Ids {
        Ids {
            request_id: params["requestId"].clone(),
            session_id: params["sessionId"].clone(),
        }
    }

    fn update(&self, update: Value) -> Value {
        jsonrpc::notification(
            SESSION_UPDATE,
            json!({
                "sessionId": self.session_id,
                "_meta": {REQUEST_ID_META: self.request_id},
                "update": update,
            }),
        )
    }
}

/// The answer to `session/prompt` once its turn has finished: `{stopReason}` (`end_turn`,
/// `cancelled`, `refusal` for a content-filter finish), or an error for a failed turn.
fn prompt_answer(id: Value, finish: &Value) -> Value {
    let status = finish["statusCode"].as_u64().unwrap_or(500);
    let reason = finish["reason"].as_str().unwrap_or("");
    let stop = match (status, reason) {
        (_, "cancelled") => "cancelled",
        (200, _) => "end_turn",
        (406 | 601, _) => "refusal",
        _ => {
            let message = format!("chat failed: statusCode {status} ({reason})");
            let mut error = jsonrpc::error_response(id, TURN_FAILED, &message);
            error["error"]["data"] = json!({"statusCode": status, "reason": reason});
            return error;
        }
    };
    jsonrpc::response(id, json!({"stopReason": stop}))
}

/// ACP's `ToolKind` of one of Lingma's IDE tools.
fn tool_kind(name: &str) -> &'static str {
    match name {
        "read_file" | "get_problems" => "read",
        "save_file" | "replace_text_by_path" | "create_file_with_text" | "search_replace" => "edit",
        "delete_file_by_path" => "delete",
        "run_in_terminal" | "get_terminal_output" => "execute",
        "todo_write" => "think",
        _ => "other",
    }
}

/// A piece of answer text after the think block's markers are taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Thought(String),
    Message(String),
}

/// Where the splitter is in the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Nothing decided: the answer may open with a think block.
    #[default]
    Start,
    /// Inside the opening marker's line (`think::{THINK_TIME}` up to its newline).
    Header,
    /// Inside the reasoning; `line_start` while nothing of the current line was emitted.
    Think { line_start: bool },
    /// Just after the closing fence, whose newline may still come.
    Closed,
    /// The answer proper.
    Answer,
}

/// Takes the think block (`"\n````think::…\n"` … `"\n````\n"`, the leading newline optional)
/// off the front of a streamed answer, however the deltas cut the markers.
#[derive(Debug, Default)]
struct ThinkSplit {
    state: State,
    held: String,
}

const OPEN: &str = "````think::";
const CLOSE: &str = "\n````";

impl ThinkSplit {
    fn push(&mut self, text: &str) -> Vec<Piece> {
        self.held.push_str(text);
        let mut out = Vec::new();
        while self.step(&mut out) {}
        out
    }

    /// Advances over `held` once; false when it needs more text.
    fn step(&mut self, out: &mut Vec<Piece>) -> bool {
        let held = &self.held;
        match self.state {
            State::Start => {
                let body = held.strip_prefix('\n').unwrap_or(held);
                if body.starts_with(OPEN) {
                    self.held.drain(..held.len() - body.len() + OPEN.len());
                    self.state = State::Header;
                } else if OPEN.starts_with(body) {
                    return false;
                } else {
                    self.state = State::Answer;
                }
            }
            State::Header => {
                let Some(end) = held.find('\n') else {
                    return false;
                };
                self.held.drain(..=end);
                self.state = State::Think { line_start: true };
            }
            State::Think { line_start } => return self.think(line_start, out),
            State::Closed => {
                if held.is_empty() {
                    return false;
                }
                if held.starts_with('\n') {
                    self.held.remove(0);
                }
                self.state = State::Answer;
            }
            State::Answer => {
                if !held.is_empty() {
                    out.push(Piece::Message(std::mem::take(&mut self.held)));
                }
                return false;
            }
        }
        true
    }

    /// Inside the reasoning: emits it up to the closing fence, or up to what may be its start.
    fn think(&mut self, line_start: bool, out: &mut Vec<Piece>) -> bool {
        let held = &self.held;
        let close = match held.find(CLOSE) {
            Some(at) => Some((at, CLOSE.len())),
            None if line_start && held.starts_with(&CLOSE[1..]) => Some((0, CLOSE.len() - 1)),
            None => None,
        };
        if let Some((at, len)) = close {
            out.extend(thought(&held[..at]));
            self.held.drain(..at + len);
            self.state = State::Closed;
            return true;
        }
        if line_start && CLOSE[1..].starts_with(held.as_str()) {
            return false;
        }
        let keep = (1..=CLOSE.len().min(held.len()))
            .rev()
            .find(|&k| held.ends_with(&CLOSE[..k]))
            .unwrap_or(0);
        let emit = held.len() - keep;
        if emit > 0 {
            out.extend(thought(&held[..emit]));
            self.held.drain(..emit);
            self.state = State::Think { line_start: false };
        }
        false
    }

    /// What is held at the end of the answer.
    fn finish(&mut self) -> Vec<Piece> {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Think { .. } => thought(&held).into_iter().collect(),
            State::Start | State::Answer if !held.is_empty() => vec![Piece::Message(held)],
            _ => Vec::new(),
        }
    }
}

fn thought(text: &str) -> Option<Piece> {
    (!text.is_empty()).then(|| Piece::Thought(text.to_string()))
}

#[cfg(test)]
mod tests;
