//! Every error envelope the gateway sends, in one place: which shape a route answers in
//! (`Protocol`), the HTTP status of an error in that shape, OpenAI's `{"error": {...}}`,
//! Anthropic's `{"type": "error", "error": {...}}`, and the `error` of a failed Responses
//! `response`. The exchange renders refusals with it, the encoders their in-stream errors.
//! Pure.

use serde_json::{json, Value};

use crate::error::{ErrorKind, GatewayError};

/// Which wire protocol's error shape a route answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    OpenAi,
    Anthropic,
}

impl Protocol {
    pub(crate) fn for_path(path: &str) -> Protocol {
        if path.starts_with("/v1/messages") || path.starts_with("/messages") {
            Protocol::Anthropic
        } else {
            Protocol::OpenAi
        }
    }

    /// The name the debug ring shows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
        }
    }

    /// The HTTP status of an error. Anthropic's API has its own set: an overloaded server is
    /// 529, an upstream failure is `api_error` 500.
    pub(crate) fn status(self, e: &GatewayError) -> u16 {
        match (self, e.kind) {
            (Protocol::Anthropic, ErrorKind::Unavailable) => 529,
            (Protocol::Anthropic, ErrorKind::Upstream) => 500,
            _ => e.status(),
        }
    }

    pub(crate) fn error_body(self, e: &GatewayError) -> Value {
        match self {
            Protocol::OpenAi => openai_body(e),
            Protocol::Anthropic => anthropic_body(e),
        }
    }
}

/// `{"error": {...}}` as OpenAI sends it (Chat Completions and Responses alike).
pub(crate) fn openai_body(e: &GatewayError) -> Value {
    let (kind, default_code) = match e.kind {
        ErrorKind::InvalidRequest
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Conflict
        | ErrorKind::PayloadTooLarge
        | ErrorKind::RequestTimeout => ("invalid_request_error", None),
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::PermissionDenied => ("permission_error", None),
        ErrorKind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::Timeout => ("server_error", Some("timeout")),
        ErrorKind::Unavailable => ("server_error", Some("service_unavailable")),
        ErrorKind::Internal | ErrorKind::Upstream => ("server_error", None),
    };
    json!({"error": {
        "message": e.message,
        "type": kind,
        "param": e.param,
        "code": e.code.or(default_code),
    }})
}

/// `{"type": "error", "error": {...}}` with Anthropic's error types.
pub(crate) fn anthropic_body(e: &GatewayError) -> Value {
    let kind = match e.kind {
        ErrorKind::InvalidRequest
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Conflict
        | ErrorKind::RequestTimeout => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Unavailable => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Internal | ErrorKind::Upstream => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": e.message}})
}

/// The `error` of a Responses `response` that failed after its stream began.
pub(crate) fn response_error(e: &GatewayError) -> Value {
    let code = match e.kind {
        ErrorKind::RateLimited => "rate_limit_exceeded",
        _ => "server_error",
    };
    json!({"code": code, "message": e.message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_envelope() {
        let e = GatewayError::new(ErrorKind::NotFound, "nope").with_code("model_not_found");
        assert_eq!(
            openai_body(&e),
            json!({"error": {"message": "nope", "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        );
    }

    #[test]
    fn anthropic_envelope_and_statuses() {
        let e = GatewayError::new(ErrorKind::Unavailable, "busy");
        assert_eq!(
            Protocol::Anthropic.error_body(&e),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        );
        assert_eq!(Protocol::Anthropic.status(&e), 529);
        assert_eq!(Protocol::OpenAi.status(&e), e.status());
        assert_eq!(
            Protocol::for_path("/v1/messages/count_tokens"),
            Protocol::Anthropic
        );
        assert_eq!(Protocol::for_path("/responses"), Protocol::OpenAi);
    }
}
