//! The route table and the handlers. Each handler runs on a worker thread with one
//! `Exchange`; errors are returned and rendered in the route's protocol by the caller.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::auth::ApiKeys;
use super::exchange::Exchange;
use super::openai::{self, ChunkEncoder};
use super::sse::SseWriter;
use crate::error::{ErrorKind, GatewayError};
use crate::model::Event;
use crate::service::{Answer, Gateway, Poll};

pub struct App {
    pub gw: Arc<Gateway>,
    pub keys: ApiKeys,
}

#[derive(Clone, Copy)]
enum Route {
    Root,
    Health,
    Models,
    ChatCompletions,
}

/// `(path, allowed methods, route)`. `/v1` is optional on the OpenAI paths, as many
/// clients are configured with a base URL that already ends in `/v1` or lacks it.
const ROUTES: &[(&str, &[&str], Route)] = &[
    ("/", &["GET", "HEAD"], Route::Root),
    ("/healthz", &["GET", "HEAD"], Route::Health),
    ("/v1/models", &["GET"], Route::Models),
    ("/models", &["GET"], Route::Models),
    ("/v1/chat/completions", &["POST"], Route::ChatCompletions),
    ("/chat/completions", &["POST"], Route::ChatCompletions),
];

pub fn handle(app: &App, ex: &mut Exchange) {
    if let Err(e) = dispatch(app, ex) {
        if !ex.responded() {
            ex.error(&e);
        }
    }
}

fn dispatch(app: &App, ex: &mut Exchange) -> Result<(), GatewayError> {
    let Some((_, methods, route)) = ROUTES.iter().find(|(p, _, _)| *p == ex.path) else {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("Unknown request URL: {} {}.", ex.method, ex.path),
        )
        .with_code("unknown_url"));
    };
    if !methods.contains(&ex.method.as_str()) {
        let mut e = GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!(
                "Method {} is not allowed on {}; use {}.",
                ex.method,
                ex.path,
                methods.join(", ")
            ),
        );
        e.param = Some(methods.join(", "));
        return Err(e);
    }
    match route {
        Route::Root => {
            ex.json(
                200,
                &json!({"name": "lingma-gateway", "version": env!("CARGO_PKG_VERSION")}),
            );
            Ok(())
        }
        Route::Health => health(app, ex),
        Route::Models => {
            app.keys.check(ex)?;
            models(app, ex)
        }
        Route::ChatCompletions => {
            app.keys.check(ex)?;
            chat_completions(app, ex)
        }
    }
}

fn health(app: &App, ex: &mut Exchange) -> Result<(), GatewayError> {
    let statuses = app.gw.pool.statuses();
    let ready = statuses
        .iter()
        .filter(|s| s.state.as_str() == "ready")
        .count();
    let instances: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({
                "name": s.name, "state": s.state.as_str(), "in_flight": s.in_flight, "served": s.served,
                "pid": s.pid, "port": s.port, "attached": s.attached, "restarts": s.restarts,
                "last_error": s.last_error,
            })
        })
        .collect();
    let body = json!({
        "status": if ready > 0 { "ok" } else { "unavailable" },
        "ready": ready,
        "instances": instances,
        "simulator": app.gw.cfg.simulator,
    });
    ex.json(if ready > 0 { 200 } else { 503 }, &body);
    Ok(())
}

fn models(app: &App, ex: &mut Exchange) -> Result<(), GatewayError> {
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

fn chat_completions(app: &App, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json(app.gw.cfg.max_body_bytes)?;
    let (req, opts) = openai::parse_chat(&body)?;
    ex.model = req.model.clone();
    ex.stream = req.stream;
    let mut answer = app.gw.start_chat(&req)?;
    ex.instance = answer.instance().to_string();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let model = if req.model.is_empty() {
        answer.model.key.clone()
    } else {
        req.model.clone()
    };
    if !req.stream {
        let events = collect(&mut answer)?;
        ex.json(200, &openai::fold_completion(&id, created, &model, &events));
        return Ok(());
    }
    let enc = ChunkEncoder::new(id, created, model, &opts);
    stream_chat(app, ex, answer, enc)
}

/// Streams an answer as OpenAI chunks: the head waits for Lingma's first event (so a failure
/// before any text still gets its proper HTTP status), keep-alives fill Lingma's silences,
/// and a client that went away ends the answer (dropping it sends `chat/stop`).
fn stream_chat(
    app: &App,
    ex: &mut Exchange,
    mut answer: Answer,
    mut enc: ChunkEncoder,
) -> Result<(), GatewayError> {
    let first = match answer.next_event() {
        Some(Ok(ev)) => ev,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(GatewayError::new(
                ErrorKind::Upstream,
                "Lingma ended the answer without any event",
            ))
        }
    };
    let headers = [("x-request-id", ex.id.clone())];
    let http10 = ex.is_http10();
    let Ok(mut sse) = SseWriter::start(ex.into_stream_writer(), http10, &headers) else {
        ex.status = 499;
        return Ok(());
    };
    let keepalive = Some(app.gw.cfg.stream_keepalive);
    let mut next = Poll::Event(Ok(first));
    loop {
        let sent = match next {
            Poll::Done => break,
            Poll::Idle => sse.comment("keep-alive"),
            Poll::Event(Ok(ev)) => enc
                .encode(&ev)
                .iter()
                .try_for_each(|payload| sse.event(None, payload)),
            Poll::Event(Err(e)) => {
                log::warn!(
                    "{} stream failed after the head was sent: {}",
                    ex.id,
                    e.message
                );
                let _ = sse.event(None, &openai::error_body(&e).to_string());
                break;
            }
        };
        if let Err(gone) = sent {
            log::info!(
                "{} client went away mid-stream ({}); stopping Lingma's answer",
                ex.id,
                gone.0
            );
            ex.status = 499;
            return Ok(()); // dropping `answer` sends chat/stop
        }
        next = answer.poll(keepalive);
    }
    let _ = sse.finish();
    Ok(())
}

/// Drains an answer for a non-streaming response.
fn collect(answer: &mut Answer) -> Result<Vec<Event>, GatewayError> {
    let mut events = Vec::new();
    while let Some(item) = answer.next_event() {
        events.push(item?);
    }
    Ok(events)
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
