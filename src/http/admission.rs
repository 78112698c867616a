//! The route table, and the checks a request passes on its head alone before it is handled:
//! the host and origin it comes from (`origin.rs`, for a gateway without keys), its route,
//! method and credential. `admit` is the one place that decides; it runs twice for each
//! request: on the connection's thread, where `body_policy` uses it so that no body is read
//! for a request that will be refused (a client without a key cannot make the gateway hold
//! its upload), and on the worker, where the refusal is answered in the route's protocol.

use super::exchange::Head;
use super::state::HttpState;
use crate::error::{ErrorKind, GatewayError};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    /// The API keys (anyone when none are configured).
    Client,
    /// The admin credential (`admin_token`, else the API keys; see `auth::OperatorAuth`).
    Operator,
    /// `metrics_token`, the admin credential, or anyone with `metrics_public`.
    Metrics,
    /// `admin_token` and nothing else.
    Export,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Root,
    Health,
    Models,
    ChatCompletions,
    Responses,
    Messages,
    CountTokens,
    Metrics,
    Capabilities,
    CapabilitiesV1,
    Stats,
    EffectiveConfig,
    DebugRequests,
    ModelsRaw,
    AutoLoginStart,
    AutoLoginStatus,
    SessionExport,
    LoginUrl,
    /// `/v1/responses/{id}` (or `/responses/{id}`): a stored response, `GET` or `DELETE`.
    StoredResponse,
}

impl Route {
    /// Who may use the route.
    fn access(self) -> Access {
        match self {
            Route::Root | Route::Health | Route::Capabilities => Access::Public,
            Route::Models
            | Route::ChatCompletions
            | Route::Responses
            | Route::Messages
            | Route::CountTokens
            | Route::CapabilitiesV1
            | Route::StoredResponse => Access::Client,
            Route::Metrics => Access::Metrics,
            Route::Stats
            | Route::EffectiveConfig
            | Route::DebugRequests
            | Route::ModelsRaw
            | Route::AutoLoginStart
            | Route::AutoLoginStatus
            | Route::LoginUrl => Access::Operator,
            Route::SessionExport => Access::Export,
        }
    }

    /// Whether its handler reads the request body.
    fn takes_body(self) -> bool {
        matches!(
            self,
            Route::ChatCompletions | Route::Responses | Route::Messages | Route::CountTokens
        )
    }

    /// `(route, protocol)` labels for the metrics: the canonical path, whichever alias was
    /// used.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Route::Root => ("/", "gateway"),
            Route::Health => ("/healthz", "gateway"),
            Route::Models => ("/v1/models", "openai"),
            Route::ChatCompletions => ("/v1/chat/completions", "openai"),
            Route::Responses => ("/v1/responses", "openai"),
            Route::Messages => ("/v1/messages", "anthropic"),
            Route::CountTokens => ("/v1/messages/count_tokens", "anthropic"),
            Route::Metrics => ("/metrics", "gateway"),
            Route::Capabilities => ("/capabilities", "gateway"),
            Route::CapabilitiesV1 => ("/v1/capabilities", "gateway"),
            Route::Stats => ("/internal/stats", "gateway"),
            Route::EffectiveConfig => ("/internal/effective-config", "gateway"),
            Route::DebugRequests => ("/internal/debug/requests", "gateway"),
            Route::ModelsRaw => ("/internal/models/raw", "gateway"),
            Route::AutoLoginStart => ("/internal/auto-login/start", "gateway"),
            Route::AutoLoginStatus => ("/internal/auto-login/status", "gateway"),
            Route::SessionExport => ("/internal/session/export", "gateway"),
            Route::LoginUrl => ("/internal/login-url", "gateway"),
            Route::StoredResponse => ("/v1/responses/{id}", "openai"),
        }
    }
}

/// The metrics labels of a request path; one label for every unknown path.
pub(crate) fn labels(path: &str) -> (&'static str, &'static str) {
    find(path).map_or(("unmatched", "gateway"), |(_, r)| r.labels())
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
    ("/v1/responses", &["POST"], Route::Responses),
    ("/responses", &["POST"], Route::Responses),
    ("/v1/messages", &["POST"], Route::Messages),
    ("/messages", &["POST"], Route::Messages),
    ("/v1/messages/count_tokens", &["POST"], Route::CountTokens),
    ("/messages/count_tokens", &["POST"], Route::CountTokens),
    ("/metrics", &["GET"], Route::Metrics),
    ("/capabilities", &["GET"], Route::Capabilities),
    ("/v1/capabilities", &["GET"], Route::CapabilitiesV1),
    ("/internal/stats", &["GET"], Route::Stats),
    (
        "/internal/effective-config",
        &["GET"],
        Route::EffectiveConfig,
    ),
    ("/internal/debug/requests", &["GET"], Route::DebugRequests),
    ("/internal/models/raw", &["GET"], Route::ModelsRaw),
    (
        "/internal/auto-login/start",
        &["POST"],
        Route::AutoLoginStart,
    ),
    (
        "/internal/auto-login/status",
        &["GET"],
        Route::AutoLoginStatus,
    ),
    ("/internal/session/export", &["POST"], Route::SessionExport),
    ("/internal/login-url", &["GET"], Route::LoginUrl),
];

/// Every routed path with the methods it takes (aliases included; `/v1/responses/{id}` is
/// routed apart), for tests that must cover them all.
pub fn route_table() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    ROUTES.iter().map(|(path, methods, _)| (*path, *methods))
}

/// The route of `path`, with the methods it takes.
fn find(path: &str) -> Option<(&'static [&'static str], Route)> {
    if stored_response_id(path).is_some() {
        return Some((&["GET", "DELETE"], Route::StoredResponse));
    }
    ROUTES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, methods, route)| (*methods, *route))
}

/// `/v1/responses/{id}` (or `/responses/{id}`): the id, when the path is one.
pub(crate) fn stored_response_id(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/responses/")
        .or_else(|| path.strip_prefix("/responses/"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The checks a request passes before it is handled; see the module comment.
pub(crate) fn admit(app: &HttpState, head: &Head<'_>) -> Result<Route, GatewayError> {
    if app.keys.is_empty() {
        super::origin::check(head, &app.gw.cfg.allowed_hosts)?;
    }
    let Some((methods, route)) = find(head.path) else {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("Unknown request URL: {} {}.", head.method, head.path),
        )
        .with_code("unknown_url"));
    };
    if !methods.contains(&head.method) {
        return Err(method_not_allowed(head, methods));
    }
    match route.access() {
        Access::Public => Ok(()),
        Access::Client => app.keys.check(head),
        Access::Operator => app.operators.check_admin(head),
        Access::Metrics => app.operators.check_metrics(head),
        Access::Export => app.operators.check_export(head),
    }?;
    Ok(route)
}

/// tiny_http's body policy: read the body (up to `max_body_bytes`) only of a request that
/// is admitted to a route whose handler reads it. Every other body is left unread, and its
/// connection closes after the answer.
pub(crate) fn body_policy(app: &HttpState, request: &tiny_http::Request) -> tiny_http::BodyPolicy {
    match admit(app, &Head::of(request)) {
        Ok(route) if route.takes_body() => tiny_http::BodyPolicy::Read {
            limit: app.gw.cfg.max_body_bytes,
        },
        _ => tiny_http::BodyPolicy::Ignore,
    }
}

/// The 405 for a method the path does not take (`param` carries the `Allow` list).
pub(crate) fn method_not_allowed(head: &Head<'_>, methods: &[&str]) -> GatewayError {
    let allowed = methods.join(", ");
    let mut e = GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "Method {} is not allowed on {}; use {allowed}.",
            head.method, head.path
        ),
    );
    e.param = Some(allowed);
    e
}
