//! The ACP dialect's methods (protocol §7), on the connection thread (`sim-conn-N`):
//! `session/new`, `session/set_model`, `session/prompt` and `session/cancel`, and the fields
//! `initialize` adds when ACP is spoken. A prompt is checked as strictly as a real runtime
//! checks it, then runs as a `chat/ask` does (`chat::plan_turn`, `chat::start`), in the same
//! session store; only its events are written differently (`acp_outbox`).
//!
//! The wire: `initialize` adds `protocolVersion: 1`, `agentCapabilities` and `authMethods`;
//! `session/new` answers `{sessionId}`, `session/set_model` and `session/cancel` `{}`;
//! `session/prompt` is answered after its turn's `chat_finish` (see `acp_outbox`).

use std::sync::Arc;
use std::thread::JoinHandle;

use lingma_protocol::jsonrpc;
use serde_json::{json, Value};

use crate::acp_outbox::{AcpTurn, REQUEST_ID_META};
use crate::chat;
use crate::conn::Conn;
use crate::dialect::{SESSION_CANCEL, SESSION_NEW, SESSION_PROMPT, SESSION_SET_MODEL};
use crate::generation::{Ask, Generation};
use crate::models;
use crate::script::{self, NativeCall};
use crate::shared::Shared;
use crate::tool_calls;

const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
/// ACP's "resource not found": an unknown `sessionId`.
const NOT_FOUND: i64 = -32002;
/// A prompt for a session whose turn is still running.
const BUSY: i64 = -32000;
const MODEL_META: &str = "ai-coding/model";
const MODE_META: &str = "ai-coding/mode";
/// The ACP protocol version the simulator speaks (what it answers whatever a client asks).
const PROTOCOL_VERSION: u64 = 1;

type RpcError = (i64, String);

/// Adds what tells a client that ACP is spoken to the `initialize` result.
pub(crate) fn initialize_fields(result: &mut Value) {
    result["protocolVersion"] = json!(PROTOCOL_VERSION);
    result["agentCapabilities"] = json!({
        "loadSession": false,
        "promptCapabilities": {"image": true, "audio": false, "embeddedContext": false},
        "mcpCapabilities": {"http": false, "sse": false},
    });
    result["authMethods"] = json!([]);
}

/// Answers an ACP request; returns the generator thread a prompt started.
pub(crate) fn request(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    id: Value,
    name: &str,
    params: &Value,
) -> Option<JoinHandle<()>> {
    let result = match name {
        SESSION_NEW => new_session(shared, params),
        SESSION_SET_MODEL => set_model(shared, params),
        SESSION_CANCEL => cancel(shared, params),
        SESSION_PROMPT => match prompt(shared, conn, params, Some(id.clone())) {
            Ok(generator) => return generator,
            Err(e) => Err(e),
        },
        other => Err((METHOD_NOT_FOUND, format!("unknown method: {other}"))),
    };
    let reply = match result {
        Ok(value) => jsonrpc::response(id, value),
        Err((code, message)) => {
            shared.log.line(&format!("{name} refused: {message}"));
            jsonrpc::error_response(id, code, &message)
        }
    };
    if let Err(e) = conn.send(&reply) {
        log::debug!("simulator: connection {}: reply not sent: {e}", conn.number);
    }
    None
}

/// Handles an ACP notification: `session/cancel`, or a prompt that wants no answer.
pub(crate) fn notification(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    name: &str,
    params: &Value,
) -> Option<JoinHandle<()>> {
    let outcome = match name {
        SESSION_CANCEL => cancel(shared, params).map(|_| None),
        SESSION_PROMPT => prompt(shared, conn, params, None),
        other => Err((INVALID_PARAMS, format!("{other} wants an answer"))),
    };
    outcome.unwrap_or_else(|(_, message)| {
        shared
            .log
            .line(&format!("ignored notification {name}: {message}"));
        None
    })
}

/// The line the simulator log shows for a received ACP message. A prompt's `isReply` says
/// what cosy's `chat/ask` flag of that name says: the session already holds turns (`turns`).
pub(crate) fn recv_line(name: &str, params: &Value, turns: usize) -> String {
    let sid = str_param(params, "sessionId");
    match name {
        SESSION_PROMPT => format!(
            "recv {name} requestId={} sessionId={sid} isReply={} model={}",
            meta(params, REQUEST_ID_META).unwrap_or(""),
            turns > 0,
            meta(params, MODEL_META).unwrap_or("-"),
        ),
        SESSION_SET_MODEL => format!(
            "recv {name} sessionId={sid} modelId={}",
            str_param(params, "modelId")
        ),
        SESSION_CANCEL => format!("recv {name} sessionId={sid}"),
        _ => format!("recv {name} cwd={}", str_param(params, "cwd")),
    }
}

/// `session/new {cwd, mcpServers, _meta}` → `{sessionId}`: a session of the store, empty.
fn new_session(shared: &Shared, params: &Value) -> Result<Value, RpcError> {
    if params.get("mcpServers").is_some_and(|m| !m.is_array()) {
        return Err((INVALID_PARAMS, "mcpServers must be an array".into()));
    }
    if params.get("cwd").is_some_and(|c| !c.is_string()) {
        return Err((INVALID_PARAMS, "cwd must be a string".into()));
    }
    let session_id = shared.sessions.place("", "").session_id;
    shared.acp_models.retain(|id| shared.sessions.contains(id));
    shared.log.line(&format!(
        "session/new sessionId={session_id} ({} sessions)",
        shared.sessions.count()
    ));
    Ok(json!({"sessionId": session_id}))
}

/// `session/set_model {sessionId, modelId}` → `{}`. Any id is taken, as a key `chat/ask`
/// names is: a turn with an unknown one fails as it does there.
fn set_model(shared: &Shared, params: &Value) -> Result<Value, RpcError> {
    let session_id = known_session(shared, params)?;
    let model = params
        .get("modelId")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or((INVALID_PARAMS, "modelId must be a non-empty string".into()))?;
    shared.acp_models.set(session_id, model);
    Ok(json!({}))
}

/// `session/cancel {sessionId}`: stops the session's running turn, which finishes
/// `cancelled` and answers its prompt `{stopReason: "cancelled"}`.
fn cancel(shared: &Shared, params: &Value) -> Result<Value, RpcError> {
    let session_id = known_session(shared, params)?;
    let stopped = shared.running.stop("", session_id);
    shared.log.line(&format!(
        "session/cancel sessionId={session_id} reached {stopped} generation(s)"
    ));
    Ok(json!({}))
}

/// What a prompt's content blocks say.
struct Content {
    text: String,
    images: Vec<String>,
    /// Blocks of other types, ignored.
    other: usize,
}

/// `session/prompt {sessionId, prompt: [blocks], _meta}`: checks it, then starts its turn.
fn prompt(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    params: &Value,
    prompt_id: Option<Value>,
) -> Result<Option<JoinHandle<()>>, RpcError> {
    let request_id = meta(params, REQUEST_ID_META)
        .filter(|id| !id.is_empty())
        .ok_or((INVALID_PARAMS, "requestId is empty".to_string()))?;
    let session_id = known_session(shared, params)?;
    let content = content(params)?;
    log_content(shared, request_id, &content);
    let key = meta(params, MODEL_META)
        .map(str::to_string)
        .or_else(|| shared.acp_models.get(session_id))
        .unwrap_or_else(|| models::DEFAULT_KEY.to_string());
    let model = models::find(&key);
    let question = content.text;
    let place = shared.sessions.place(session_id, &script::title(&question));
    let plan = chat::plan_turn(shared, &question, model, &place);
    let session_type = match meta(params, MODE_META) {
        Some("agent") => "developer",
        _ => "chat",
    };
    let ask = Ask {
        request_id: request_id.to_string(),
        session_id: place.session_id,
        session_type: session_type.into(),
        question,
        acp: Some(AcpTurn { prompt_id }),
    };
    let generation = Generation::enter_alone(shared, conn, ask)
        .ok_or_else(|| (BUSY, format!("session {session_id} has a prompt running")))?;
    chat::log_plan(shared, request_id, &plan);
    if let Some(deaf) = plan.deaf {
        conn.go_deaf(deaf);
    }
    Ok(chat::start(generation, plan))
}

/// The prompt's text blocks joined, and its images; a block that is not a typed object, or
/// a text or image without its data, is refused.
fn content(params: &Value) -> Result<Content, RpcError> {
    let blocks = params
        .get("prompt")
        .and_then(Value::as_array)
        .ok_or((INVALID_PARAMS, "prompt must be an array".to_string()))?;
    let mut content = Content {
        text: String::new(),
        images: Vec::new(),
        other: 0,
    };
    for (i, block) in blocks.iter().enumerate() {
        let field = |key: &str| block.get(key).and_then(Value::as_str);
        let missing = |what: &str| (INVALID_PARAMS, format!("prompt[{i}]: {what}"));
        match field("type").ok_or_else(|| missing("no type"))? {
            "text" => content
                .text
                .push_str(field("text").ok_or_else(|| missing("text without text"))?),
            "image" => {
                let data = field("data").ok_or_else(|| missing("image without data"))?;
                let mime = field("mimeType").unwrap_or("?");
                content.images.push(format!("{mime}, {} bytes", data.len()));
            }
            _ => content.other += 1,
        }
    }
    Ok(content)
}

fn log_content(shared: &Shared, request_id: &str, content: &Content) {
    if !content.images.is_empty() {
        shared.log.line(&format!(
            "requestId={request_id}: {} image(s): {}",
            content.images.len(),
            content.images.join("; ")
        ));
    }
    if content.other > 0 {
        shared.log.line(&format!(
            "requestId={request_id}: ignored {} prompt block(s) of other types",
            content.other
        ));
    }
}

/// The `sessionId` of `params`, when the store has that session.
fn known_session<'a>(shared: &Shared, params: &'a Value) -> Result<&'a str, RpcError> {
    let id = str_param(params, "sessionId");
    if id.is_empty() || !shared.sessions.contains(id) {
        return Err((NOT_FOUND, format!("session not found: {id:?}")));
    }
    Ok(id)
}

fn meta<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get("_meta")?.get(key)?.as_str()
}

fn str_param<'a>(params: &'a Value, key: &str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or("")
}

impl Generation {
    /// ACP runtimes ask for no approval of their own tools (§7: no permission request was
    /// seen): the call approves itself, and the native path runs on to `tool/invoke`.
    pub(crate) fn approve_self(&self, call: &NativeCall) {
        let approval = json!({"toolCallId": call.tool_call_id, "approval": true});
        if let Err(e) = self
            .shared
            .tool_calls
            .receive(tool_calls::APPROVE, &approval)
        {
            self.log(&format!("cannot approve {}: {e}", call.tool_call_id));
        }
    }
}
