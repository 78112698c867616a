//! `chat/ask`: checks the params, acks, places the turn in a session, plans it
//! (`script::plan`) and runs the plan (`execute`): on a generator thread of its own
//! (`sim-gen-N`, owned and joined by the connection thread) when it waits, else right on the
//! connection thread. Either writes its events through the connection's shared writer.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use lingma_protocol::jsonrpc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::conn::Conn;
use crate::generation::{Ask, Generation};
use crate::models::{self, Model};
use crate::script::{self, Plan, Step};
use crate::session::Placement;
use crate::shared::Shared;

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
pub(crate) fn model_key(params: &Value) -> &str {
    params
        .pointer("/extra/modelConfig/key")
        .and_then(Value::as_str)
        .unwrap_or(models::DEFAULT_KEY)
}

/// Handles `chat/ask` (`reply_to` is the request id, `None` for a notification) and returns
/// the generator thread, if one was started.
pub(crate) fn ask(
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
    if place.new_session {
        shared.log.line(&format!(
            "requestId={request_id}: new session {} sessions={}",
            place.session_id,
            shared.sessions.count()
        ));
    }
    let plan = plan_turn(shared, &question, model, &place);
    log_plan(shared, &request_id, &plan);
    if let Some(deaf) = plan.deaf {
        conn.go_deaf(deaf);
    }
    let ask = Ask {
        request_id,
        session_id: place.session_id,
        session_type: p
            .session_type
            .unwrap_or_else(|| DEFAULT_SESSION_TYPE.into()),
        question,
        acp: None,
    };
    start(Generation::enter(shared, conn, ask), plan)
}

/// The plan of a turn placed in its session.
pub(crate) fn plan_turn(
    shared: &Shared,
    question: &str,
    model: Option<&Model>,
    place: &Placement,
) -> Plan {
    let tool_call_id = shared.tool_calls.next_id();
    script::plan(&script::Turn {
        question,
        model,
        logged_in: shared.account().is_some(),
        session_id: &place.session_id,
        new_session: place.new_session,
        number: place.turn,
        history_bytes: place.history_bytes,
        instance: &shared.instance,
        pid: shared.pid,
        tool_call_id: &tool_call_id,
    })
}

/// What the plan ignored and how it read the prompt, for the simulator log.
pub(crate) fn log_plan(shared: &Shared, request_id: &str, plan: &Plan) {
    if !plan.ignored.is_empty() {
        shared.log.line(&format!(
            "requestId={request_id}: ignored directives {:?}",
            plan.ignored
        ));
    }
    if let Some(note) = &plan.note {
        shared.log.line(&format!("requestId={request_id}: {note}"));
    }
}

/// Runs the turn; returns its generator thread when it has one.
pub(crate) fn start(generation: Generation, plan: Plan) -> Option<JoinHandle<()>> {
    let shared = Arc::clone(&generation.shared);
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
        .name(format!("sim-gen-{}", generation.key()))
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
