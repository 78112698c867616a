//! The route table and the handlers. Each handler runs on a worker thread with one
//! `Exchange`; errors are returned and rendered in the route's protocol by the caller.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::admin::{self, instance_json};
use super::admission::{admit, method_not_allowed, stored_response_id, Route};
pub use super::admission::{body_policy, labels, route_table};
use super::api::anthropic::{self, encode::MessagesEncoder};
use super::api::encoder::{fold, Form};
use super::api::openai::{self, encode::ChunkEncoder};
use super::api::responses::{self, encode::ResponsesEncoder};
use super::exchange::Exchange;
pub use super::state::HttpState;
use super::stream::stream_answer;
use crate::error::{ErrorKind, GatewayError};
use crate::model::{ChatRequest, Event, Message, Role, ToolChoice};
use crate::prompt;
use crate::service::Answer;

pub fn handle(app: &HttpState, ex: &mut Exchange) {
    if let Err(e) = dispatch(app, ex) {
        if !ex.responded() {
            ex.error(&e);
        }
    }
}

fn dispatch(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    match admit(app, &ex.head())? {
        Route::Root => {
            ex.json(
                200,
                &json!({"name": "lingma-gateway", "version": env!("CARGO_PKG_VERSION")}),
            );
            Ok(())
        }
        Route::Health => health(app, ex),
        Route::Models => models(app, ex),
        Route::ChatCompletions => chat_completions(app, ex),
        Route::Responses => responses(app, ex),
        Route::Messages => messages(app, ex),
        Route::CountTokens => count_tokens(app, ex),
        Route::StoredResponse => stored_response(app, ex),
        Route::Metrics => admin::metrics(app, ex),
        Route::Capabilities | Route::CapabilitiesV1 => admin::capabilities(app, ex),
        Route::Stats => admin::stats(app, ex),
        Route::EffectiveConfig => admin::effective_config(app, ex),
        Route::DebugRequests => admin::debug_requests(app, ex),
        Route::ModelsRaw => admin::models_raw(app, ex),
        Route::AutoLoginStart => admin::auto_login_start(app, ex),
        Route::AutoLoginStatus => admin::auto_login_status(app, ex),
        Route::SessionExport => admin::session_export(app, ex),
        Route::LoginUrl => admin::login_url(app, ex),
    }
}

fn health(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let statuses = app.gw.pool.statuses();
    let ready = statuses
        .iter()
        .filter(|s| s.state.as_str() == "ready")
        .count();
    let instances: Vec<Value> = statuses.iter().map(instance_json).collect();
    let body = json!({
        "status": if ready > 0 { "ok" } else { "unavailable" },
        "ready": ready,
        "instances": instances,
        "simulator": app.gw.cfg.simulator,
    });
    ex.json(if ready > 0 { 200 } else { 503 }, &body);
    Ok(())
}

fn models(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let lease = app.gw.lease_any()?;
    ex.instance = lease.name.clone();
    let list = app.gw.models(&lease)?;
    let created = app
        .gw
        .started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let created_at = rfc3339(created);
    // Each entry carries OpenAI's fields and Anthropic's, so both SDKs can list models.
    let data: Vec<Value> = list
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.key, "object": "model", "created": created, "owned_by": "lingma",
                "type": "model", "display_name": if m.display_name.is_empty() { &m.key } else { &m.display_name },
                "created_at": created_at,
                "reasoning": m.is_reasoning, "max_input_tokens": m.max_input_tokens,
            })
        })
        .collect();
    let first = list.models.first().map(|m| m.key.clone());
    let last = list.models.last().map(|m| m.key.clone());
    ex.json(200, &json!({"object": "list", "data": data, "has_more": false, "first_id": first, "last_id": last}));
    Ok(())
}

fn chat_completions(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json()?;
    app.debug.record(ex, &body);
    let (mut req, opts) = openai::decode::parse_chat(&body)?;
    drop(body);
    let user = req.affinity.take();
    req.affinity = affinity_hint(ex, None, [user, opts.prompt_cache_key.clone()]);
    let (_slot, mut answer, model) = start(app, ex, &mut req)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if !req.stream {
        let events = collect(ex, &mut answer)?;
        let mut enc = ChunkEncoder::new(id, now(), model, &opts, Form::Body);
        ex.json(200, &fold(&mut enc, &events));
        return Ok(());
    }
    let mut enc = ChunkEncoder::new(id, now(), model, &opts, Form::Stream);
    stream_answer(ex, answer, &mut enc, app.gw.cfg.stream_keepalive)
}

fn responses(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json()?;
    app.debug.record(ex, &body);
    let (mut req, opts) = responses::decode::parse_responses(&body)?;
    drop(body);
    // A previous response's conversation goes between the instructions (never carried
    // over) and the new input.
    let scope = super::auth::scope(ex);
    let previous = match &opts.previous_response_id {
        Some(id) => Some(
            app.responses
                .get(&scope, id)
                .ok_or_else(|| responses::decode::unknown_previous(id))?,
        ),
        None => None,
    };
    let input = std::mem::take(&mut req.messages);
    let instructions = opts.instructions.iter().filter(|i| !i.trim().is_empty());
    req.messages = instructions
        .map(|i| Message::new(Role::System, i.clone()))
        .chain(previous.iter().flat_map(|p| p.messages().cloned()))
        .chain(input.iter().cloned())
        .collect();
    if req.messages.iter().all(Message::is_empty) {
        return Err(GatewayError::invalid(
            "input",
            "The input contains no text to send.",
        ));
    }
    req.affinity = affinity_hint(ex, None, opts.hints.clone());
    let (_slot, mut answer, model) = start(app, ex, &mut req)?;
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let form = if req.stream { Form::Stream } else { Form::Body };
    let mut enc = ResponsesEncoder::new(id.clone(), now(), model, &opts, form);
    if opts.store {
        let store = Arc::clone(&app.responses);
        enc.on_finish(move |answer, response| {
            let mut turn = input;
            turn.push(answer.clone());
            store.insert(&scope, &id, previous.as_deref(), turn, response.clone());
        });
    }
    if !req.stream {
        let events = collect(ex, &mut answer)?;
        ex.json(200, &fold(&mut enc, &events));
        return Ok(());
    }
    stream_answer(ex, answer, &mut enc, app.gw.cfg.stream_keepalive)
}

/// `GET` a stored response object, or `DELETE` it (this API key's only).
fn stored_response(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let id = stored_response_id(&ex.path).unwrap_or_default().to_string();
    let id = id.as_str();
    let scope = super::auth::scope(ex);
    let not_found = || {
        GatewayError::new(
            ErrorKind::NotFound,
            format!("Response with id '{id}' not found."),
        )
    };
    match ex.method.as_str() {
        "GET" => {
            let stored = app.responses.get(&scope, id).ok_or_else(not_found)?;
            ex.json(200, &stored.response);
            Ok(())
        }
        "DELETE" => {
            if !app.responses.remove(&scope, id) {
                return Err(not_found());
            }
            ex.json(
                200,
                &json!({"id": id, "object": "response.deleted", "deleted": true}),
            );
            Ok(())
        }
        _ => Err(method_not_allowed(&ex.head(), &["GET", "DELETE"])),
    }
}

fn messages(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json()?;
    app.debug.record(ex, &body);
    let (mut req, opts) = anthropic::decode::parse_messages(&body, false)?;
    drop(body);
    req.affinity = affinity_hint(ex, opts.user_id.clone(), [None, None]);
    let (_slot, mut answer, model) = start(app, ex, &mut req)?;
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    if !req.stream {
        let events = collect(ex, &mut answer)?;
        let mut enc = MessagesEncoder::new(id, model, 0, &opts, Form::Body);
        ex.json(200, &fold(&mut enc, &events));
        return Ok(());
    }
    let mut enc = MessagesEncoder::new(id, model, answer.usage.input_tokens, &opts, Form::Stream);
    stream_answer(ex, answer, &mut enc, app.gw.cfg.stream_keepalive)
}

fn count_tokens(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json()?;
    let (mut req, opts) = anthropic::decode::parse_messages(&body, true)?;
    apply_tool_policy(app, &mut req)?;
    ex.model = req.model.clone();
    // What /v1/messages would refuse (no text, an unknown model) is refused here the same way.
    ex.instance = app.gw.check_chat(&req)?;
    let question = prompt::question(&req);
    ex.json(
        200,
        &json!({"input_tokens": anthropic::decode::count_tokens(&question, &opts)}),
    );
    Ok(())
}

/// The key that keeps a conversation on one instance, from the client's session hints in
/// this order: `X-Claude-Code-Session-Id`, Anthropic `metadata.user_id`, Codex's `session_id`
/// / `Session-Id` headers, `X-Session-Affinity`, OpenAI `user`, `prompt_cache_key`. Without
/// any, the request is placed by a hash of its system prompt or first message.
fn affinity_hint(
    ex: &Exchange,
    metadata_user_id: Option<String>,
    after_headers: [Option<String>; 2],
) -> Option<String> {
    let header = |name: &str| {
        ex.header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    header("x-claude-code-session-id")
        .or(metadata_user_id)
        .or_else(|| header("session_id"))
        .or_else(|| header("session-id"))
        .or_else(|| header("x-session-affinity"))
        .or_else(|| after_headers.into_iter().flatten().next())
}

/// Drops client tools the operator's allowlist does not name; a forced choice of a dropped
/// tool is refused.
fn apply_tool_policy(app: &HttpState, req: &mut ChatRequest) -> Result<(), GatewayError> {
    let policy = &app.gw.cfg.tools;
    if policy.allowlist.is_empty() || req.tools.is_empty() {
        return Ok(());
    }
    req.tools = policy.filter(std::mem::take(&mut req.tools));
    if let ToolChoice::Named(n) = &req.tool_choice {
        if req.tool(n).is_none() {
            return Err(GatewayError::invalid(
                "tool_choice",
                format!("The tool '{n}' is not allowed by this gateway's tool_allowlist."),
            ));
        }
    }
    if req.tools.is_empty() {
        req.tool_choice = ToolChoice::Auto;
    }
    Ok(())
}

/// Applies the tool policy, waits for a slot under `gateway_max_in_flight` and starts the
/// chat; returns the slot (hold it until the answer is done), the answer and the model name
/// the response carries (the client's, or the Lingma key it resolved to).
fn start<'a>(
    app: &'a HttpState,
    ex: &mut Exchange,
    req: &mut ChatRequest,
) -> Result<(super::gate::Permit<'a>, Answer, String), GatewayError> {
    apply_tool_policy(app, req)?;
    req.scope = super::auth::scope(ex);
    ex.model = req.model.clone();
    ex.stream = req.stream;
    let slot = enter(app)?;
    let answer = app.gw.start_chat(req)?;
    ex.instance = answer.instance().to_string();
    let model = if req.model.is_empty() {
        answer.model.key.clone()
    } else {
        req.model.clone()
    };
    Ok((slot, answer, model))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A chat slot (backpressure); a refusal is counted.
fn enter(app: &HttpState) -> Result<super::gate::Permit<'_>, GatewayError> {
    app.gate
        .enter()
        .inspect_err(|_| app.metrics.queue_rejected())
}

/// Drains an answer for a non-streaming response; notes what it measured.
fn collect(ex: &mut Exchange, answer: &mut Answer) -> Result<Vec<Event>, GatewayError> {
    let mut events = Vec::new();
    let mut failed = None;
    while let Some(item) = answer.next_event() {
        match item {
            Ok(ev) => events.push(ev),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    ex.answer = Some(answer.stats(ex.started));
    match failed {
        Some(e) => Err(e),
        None => Ok(events),
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
