//! The one error type every request path returns, and its HTTP status. Each wire protocol
//! renders its own error body from it (`openai::error_body`, later `anthropic::error_body`).
//! The errors of the layers below (leasing an instance, talking to Lingma) become it here,
//! in one place, with the message a client reads.

use std::fmt;

use crate::upstream::pool::{LeaseError, NamedLeaseError};
use crate::upstream::UpstreamError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or semantically invalid request (400).
    InvalidRequest,
    /// Missing or wrong API key (401).
    Authentication,
    /// Lingma refused: account not allowed, quota (403).
    PermissionDenied,
    /// Unknown route or model (404).
    NotFound,
    /// Known route, wrong method (405).
    MethodNotAllowed,
    /// The request conflicts with the current state, e.g. exporting a logged-out login (409).
    Conflict,
    /// The client stopped sending its request (408).
    RequestTimeout,
    /// Body over `max_body_bytes` (413).
    PayloadTooLarge,
    /// Too many requests, upstream rate limit (429).
    RateLimited,
    /// A bug or panic inside the gateway (500).
    Internal,
    /// Lingma failed the request or died (502).
    Upstream,
    /// No ready instance, too many workers, shutting down (503).
    Unavailable,
    /// Lingma did not answer in time (504).
    Timeout,
}

impl ErrorKind {
    pub(crate) fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::Upstream => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    /// The request field at fault (`messages[0].content`), when there is one.
    pub(crate) param: Option<String>,
    /// A machine-readable code (`model_not_found`, `invalid_api_key`, ...).
    pub(crate) code: Option<&'static str>,
    /// Seconds a client should wait before retrying (sent as `Retry-After`).
    pub(crate) retry_after: Option<u64>,
}

impl GatewayError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::InvalidRequest, message);
        e.param = Some(param.into());
        e
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub(crate) fn status(&self) -> u16 {
        self.kind.status()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status())
    }
}

impl std::error::Error for GatewayError {}

impl From<LeaseError> for GatewayError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::NotReady(states) => GatewayError::new(
                ErrorKind::Unavailable,
                format!("no Lingma instance is ready ({states})"),
            )
            .retry_after(5),
            LeaseError::ShuttingDown => {
                GatewayError::new(ErrorKind::Unavailable, "the gateway is shutting down")
            }
        }
    }
}

/// The instance called `name` could not be leased (operator routes name the instance they
/// want; the pool's error does not carry the name).
pub(crate) struct NamedLease<'a> {
    pub(crate) name: &'a str,
    pub(crate) error: NamedLeaseError,
}

impl From<NamedLease<'_>> for GatewayError {
    fn from(NamedLease { name, error }: NamedLease<'_>) -> Self {
        match error {
            NamedLeaseError::Unknown => GatewayError::new(
                ErrorKind::NotFound,
                format!("There is no Lingma instance named `{name}`; /healthz lists them."),
            ),
            NamedLeaseError::NotReady(state) => GatewayError::new(
                ErrorKind::Unavailable,
                format!("Lingma instance {name} is {state}, not ready."),
            )
            .retry_after(5),
        }
    }
}

impl From<UpstreamError> for GatewayError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Timeout(what) => GatewayError::new(
                ErrorKind::Timeout,
                format!("Lingma did not answer in time: timed out waiting for {what}"),
            ),
            UpstreamError::Status { code, message } => status_error(code, &message),
            other => GatewayError::new(ErrorKind::Upstream, other.to_string()),
        }
    }
}

/// A `chat/finish` statusCode other than success, as the client's error.
fn status_error(code: i64, reason: &str) -> GatewayError {
    let detail = if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    match code {
        401 | 403 => GatewayError::new(
            ErrorKind::PermissionDenied,
            format!("Lingma refused the request with status {code}{detail}: the account is not logged in, not allowed, or out of quota"),
        ),
        408 => GatewayError::new(ErrorKind::Timeout, format!("Lingma timed out (status 408{detail})")),
        429 => GatewayError::new(ErrorKind::RateLimited, format!("Lingma rate limit reached (status 429{detail})"))
            .with_code("rate_limit_exceeded")
            .retry_after(10),
        _ => GatewayError::new(ErrorKind::Upstream, format!("Lingma failed the request with status {code}{detail}")),
    }
}
