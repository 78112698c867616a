//! Dispatch to the handlers, and the small ones: `/`, `/healthz`, `/v1/models`, stored
//! Responses and `count_tokens` (the chat routes are `chat.rs`, the operator routes
//! `admin.rs`). Each handler runs on a worker thread with one `Exchange`; errors are
//! returned and rendered in the route's protocol by the caller.

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use super::admin::{self, instance_json};
pub use super::admission::route_table;
use super::admission::{admit, method_not_allowed, stored_response_id, Route};
pub(crate) use super::admission::{body_policy, labels};
use super::api::anthropic::decode::{count_tokens as estimate, parse_messages};
use super::chat::{self, apply_tool_policy};
use super::exchange::Exchange;
pub(crate) use super::state::HttpState;
use crate::error::{ErrorKind, GatewayError};
use crate::prompt;

pub(crate) fn handle(app: &HttpState, ex: &mut Exchange) {
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
        Route::ChatCompletions => chat::serve::<chat::Completions>(app, ex),
        Route::Responses => chat::serve::<chat::Responses>(app, ex),
        Route::Messages => chat::serve::<chat::Messages>(app, ex),
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
            // What Lingma's turns reported, else what its catalogue says.
            let context = app.gw.context_sizes.get(&m.key).or(m.max_input_tokens);
            json!({
                "id": m.key, "object": "model", "created": created, "owned_by": "lingma",
                "type": "model", "display_name": if m.display_name.is_empty() { &m.key } else { &m.display_name },
                "created_at": created_at,
                "reasoning": m.is_reasoning, "max_input_tokens": context,
                // The context size under the name OpenAI-compatible listings use.
                "context_length": context,
            })
        })
        .collect();
    let first = list.models.first().map(|m| m.key.clone());
    let last = list.models.last().map(|m| m.key.clone());
    ex.json(200, &json!({"object": "list", "data": data, "has_more": false, "first_id": first, "last_id": last}));
    Ok(())
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

fn count_tokens(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json()?;
    let (mut req, opts) = parse_messages(&body, true)?;
    apply_tool_policy(app, &mut req)?;
    ex.model = req.model.clone();
    // What /v1/messages would refuse (no text, an unknown model) is refused here the same way.
    ex.instance = app.gw.check_chat(&req)?;
    let question = prompt::question(&req);
    ex.json(200, &json!({"input_tokens": estimate(&question, &opts)}));
    Ok(())
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
