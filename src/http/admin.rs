//! Operator routes: `/metrics`, `/capabilities`, and `/internal/*` (stats, the effective
//! configuration, the last request bodies, Lingma's raw model catalogue). Nothing here
//! shows a secret: configuration comes from the redacted view `check-config` prints,
//! request bodies go through `redact::debug_copy` before they are stored.

use serde_json::{json, Value};

use super::debug_ring::DEBUG_RING;
use super::exchange::Exchange;
use super::state::HttpState;
use crate::error::GatewayError;
use crate::metrics::Live;

pub(crate) fn metrics(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let counts = app.gate.counts();
    let instances = app.gw.pool.statuses();
    let sessions = app.gw.sessions.as_ref().map(|c| {
        (
            c.hits.load(std::sync::atomic::Ordering::Relaxed),
            c.misses.load(std::sync::atomic::Ordering::Relaxed),
            c.len(),
        )
    });
    let text = app.metrics.render(&Live {
        sessions,
        responses_stored: app.responses.len(),
        in_flight: counts.running,
        queued: counts.queued,
        instances: &instances,
    });
    ex.text(200, "text/plain; version=0.0.4; charset=utf-8", text);
    Ok(())
}

pub(crate) fn stats(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let m = app.metrics.snapshot();
    let counts = app.gate.counts();
    let uptime = app.gw.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    let instances: Vec<Value> = app.gw.pool.statuses().iter().map(instance_json).collect();
    let by_status: serde_json::Map<String, Value> = m
        .by_status
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    ex.json(
        200,
        &json!({
            "ok": true,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_sec": uptime,
            "requests": {"total": m.requests, "by_status": by_status, "by_route": m.by_route},
            "tokens": {"input": m.input_tokens, "output": m.output_tokens, "estimated": true},
            "concurrency": {
                "max_in_flight": app.gate.max(),
                "in_flight": counts.running,
                "queued": counts.queued,
                "queue_timeout_sec": app.gate.timeout().as_secs(),
                "rejected": m.queue_rejected,
            },
            "pool": instances,
            "session_cache": app.gw.sessions.as_ref().map_or(json!({"enabled": false}), |c| json!({
                "enabled": true,
                "entries": c.len(),
                "hits": c.hits.load(std::sync::atomic::Ordering::Relaxed),
                "misses": c.misses.load(std::sync::atomic::Ordering::Relaxed),
            })),
            "session_cleanup": app.gw.cleanup.as_ref().map_or(json!({"enabled": false}), |c| {
                let mut stats = c.stats();
                stats["enabled"] = json!(true);
                stats
            }),
            // limitTokens as Lingma's turns reported it, per model key.
            "context_tokens": app.gw.context_sizes.all(),
            "responses_store": {"entries": app.responses.len()},
            "debug_requests": app.debug.len(),
        }),
    );
    Ok(())
}

/// One instance as `/healthz` and `/internal/stats` show it.
pub(super) fn instance_json(s: &crate::upstream::pool::InstanceStatus) -> Value {
    json!({
        "name": s.name, "state": s.state.as_str(), "in_flight": s.in_flight, "served": s.served,
        "pid": s.pid, "port": s.port, "attached": s.attached, "restarts": s.restarts,
        "last_error": s.last_error, "dialect": s.dialect, "runtime_version": s.runtime_version,
    })
}

pub(crate) fn effective_config(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let mut settings = serde_json::Map::new();
    let mut origins = serde_json::Map::new();
    for (key, value, origin) in &app.effective_config {
        settings.insert(key.clone(), json!(value));
        origins.insert(key.clone(), json!(origin));
    }
    let source = app.gw.cfg.source.as_ref().map(|p| p.display().to_string());
    ex.json(
        200,
        &json!({"ok": true, "source": source, "settings": settings, "origins": origins}),
    );
    Ok(())
}

pub(crate) fn debug_requests(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let limit = match ex.query_param("limit") {
        None => 20,
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            GatewayError::invalid(
                "limit",
                format!("`limit` must be a whole number from 1 to {DEBUG_RING}, got {v:?}."),
            )
        })?,
    }
    .clamp(1, DEBUG_RING);
    let items = app.debug.latest(limit);
    ex.json(
        200,
        &json!({"ok": true, "count": items.len(), "items": items}),
    );
    Ok(())
}

pub(crate) fn models_raw(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let wanted = ex.query_param("instance").filter(|s| !s.is_empty());
    let (instance, raw) = app.gw.raw_models(wanted.as_deref())?;
    ex.instance = instance.clone();
    let list = crate::upstream::models::ModelList::from_query(&raw);
    let exposed: Vec<&str> = list.models.iter().map(|m| m.key.as_str()).collect();
    ex.json(
        200,
        &json!({"ok": true, "instance": instance, "raw": raw, "exposed_keys": exposed}),
    );
    Ok(())
}

/// The `instance` query parameter, else the first instance.
fn instance_param(ex: &Exchange) -> String {
    ex.query_param("instance")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "lingma-0".to_string())
}

/// `POST /internal/auto-login/start?instance=`: starts auto-login (it runs in the
/// background; `/internal/auto-login/status` follows it).
pub(crate) fn auto_login_start(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let name = instance_param(ex);
    ex.instance = name.clone();
    let state = app.gw.logins.start_named(&name)?;
    ex.json(202, &json!({"ok": true, "auto_login": state}));
    Ok(())
}

/// `GET /internal/auto-login/status`: where every instance's login stands.
pub(crate) fn auto_login_status(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    ex.json(200, &app.gw.logins.status());
    Ok(())
}

/// `POST /internal/session/export?instance=`: a logged-in instance's workDir as a session
/// bundle (409 when it is not logged in). The bundle is a login: it is never logged.
pub(crate) fn session_export(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let name = instance_param(ex);
    ex.instance = name.clone();
    let body = app.gw.logins.export(&name)?;
    ex.json(200, &body);
    Ok(())
}

/// `GET /internal/login-url?instance=`: a login URL for a person to open in a browser that
/// can reach this machine's 127.0.0.1 (Lingma's login callback listens there).
pub(crate) fn login_url(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let name = instance_param(ex);
    ex.instance = name.clone();
    let url = app.gw.logins.login_url(&name)?;
    ex.json(200, &json!({"instance": name, "login_url": url}));
    Ok(())
}

/// What this gateway speaks and how it is set up (no secrets): `GET /capabilities` (public)
/// and `GET /v1/capabilities` (behind the API keys).
pub(crate) fn capabilities(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let cfg = &app.gw.cfg;
    let tools = &cfg.tools;
    ex.json(
        200,
        &json!({
            "service": "lingma-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "protocols": {
                "openai": {
                    "models": true,
                    "chat_completions": true,
                    "responses": true,
                    "responses_previous_response_id": cfg.responses_store_max_entries > 0,
                    "streaming": true,
                    "reasoning_content": true,
                    "response_tool_calls": true,
                    "request_tools_forwarded": tools.forward,
                },
                "anthropic": {
                    "messages": true,
                    "count_tokens": true,
                    "streaming": true,
                    "thinking": true,
                    "response_tool_use": true,
                    "request_tools_forwarded": tools.forward,
                },
            },
            "features": {
                "tooling": {
                    "emulation_bridge_enabled": true,
                    "forward_enabled": tools.forward,
                    "allowlist": tools.allowlist,
                    "auto_approve_native": tools.auto_approve,
                    "report_native": tools.report_native,
                },
                "session_reuse": {
                    "enabled": cfg.session_reuse,
                    "max_entries": cfg.session_cache_max_entries,
                    "ttl_sec": cfg.session_cache_ttl.as_secs(),
                },
                "responses_store": {
                    "max_entries": cfg.responses_store_max_entries,
                    "ttl_sec": cfg.responses_store_ttl.as_secs(),
                },
                "pool": {
                    "configured_instance_count": cfg.instance_count,
                    "default_model": cfg.default_model,
                    "default_ask_mode": cfg.default_ask_mode.as_str(),
                    "lingma_dialect": cfg.lingma_dialect.as_str(),
                    "simulator": cfg.simulator,
                },
                "flow_control": {
                    "max_in_flight": app.gate.max(),
                    "queue_timeout_sec": app.gate.timeout().as_secs(),
                },
                "auth": {
                    "v1_requires_auth": !cfg.api_keys.is_empty(),
                    "admin_token_configured": cfg.admin_token.is_some(),
                    "metrics_token_configured": cfg.metrics_token.is_some(),
                    "metrics_public": cfg.metrics_public,
                },
            },
        }),
    );
    Ok(())
}
