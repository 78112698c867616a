//! One HTTP request/response pair on a worker thread: header lookup, bounded body reading,
//! JSON and error responses in the route's protocol, the `x-request-id`, and the facts the
//! access log line reports.

use std::time::Instant;

use serde_json::Value;
use tiny_http::{BodyStatus, Header, Request, Response};

use super::api::errors::Protocol;
use crate::error::{ErrorKind, GatewayError};
use crate::metrics::AnswerStats;

/// A request as its head alone shows it (method, path, headers): what the admission checks
/// read, on the connection's thread before the body is read, and again on the worker.
pub(crate) struct Head<'a> {
    pub(crate) method: &'a str,
    /// The path, without the query string.
    pub(crate) path: &'a str,
    headers: &'a [Header],
}

impl<'a> Head<'a> {
    pub(crate) fn of(request: &'a Request) -> Head<'a> {
        let url = request.url();
        Head {
            method: request.method().as_str(),
            path: url.split_once('?').map_or(url, |(p, _)| p),
            headers: request.headers(),
        }
    }

    /// A header's value (the first, if repeated), its name compared without case.
    pub(crate) fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

pub(crate) struct Exchange {
    request: Option<Request>,
    pub(crate) id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) protocol: Protocol,
    pub(crate) started: Instant,
    /// Filled in as the request is handled, for the access log.
    pub(crate) status: u16,
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) instance: String,
    /// What the chat answer measured, for the metrics.
    pub(crate) answer: Option<AnswerStats>,
    /// The query string, without the `?`.
    query: String,
}

impl Exchange {
    pub(crate) fn new(request: Request) -> Self {
        let url = request.url();
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (url.to_string(), String::new()),
        };
        let id = Head::of(&request)
            .header("x-request-id")
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(String::from)
            .unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()));
        Exchange {
            method: request.method().as_str().to_string(),
            protocol: Protocol::for_path(&path),
            path,
            id,
            started: Instant::now(),
            status: 0,
            model: String::new(),
            stream: false,
            instance: String::new(),
            answer: None,
            query,
            request: Some(request),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head().header(name)
    }

    /// The request's head (no headers once it has been answered).
    pub(crate) fn head(&self) -> Head<'_> {
        Head {
            method: &self.method,
            path: &self.path,
            headers: self.request.as_ref().map_or(&[], |r| r.headers()),
        }
    }

    /// A query parameter's value (`+` and `%XX` decoded), if present.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    pub(crate) fn is_http10(&self) -> bool {
        self.request
            .as_ref()
            .is_some_and(|r| r.http_version() == &tiny_http::HTTPVersion(1, 0))
    }

    pub(crate) fn responded(&self) -> bool {
        self.request.is_none()
    }

    /// The request's body. tiny_http read it before a worker got the request, within
    /// `max_body_bytes`, `client_body_timeout_sec` and `max_buffered_body_bytes` (see
    /// `admission::body_policy`); what went wrong there is answered here, in the route's shape.
    pub(crate) fn read_body(&mut self) -> Result<Vec<u8>, GatewayError> {
        let request = self.request.as_mut().expect("body read after responding");
        match request.body_status() {
            BodyStatus::Complete => Ok(request.take_body()),
            BodyStatus::TooLarge { limit } => Err(GatewayError::new(
                ErrorKind::PayloadTooLarge,
                format!("Request body is larger than the limit of {limit} bytes."),
            )),
            BodyStatus::TimedOut => Err(GatewayError::new(
                ErrorKind::RequestTimeout,
                "The request body did not arrive in time (client_body_timeout_sec); send it whole.",
            )),
            BodyStatus::Overloaded => Err(GatewayError::new(
                ErrorKind::Unavailable,
                "The gateway holds its maximum of request bodies in memory (max_buffered_body_bytes); retry shortly.",
            )
            .retry_after(1)),
            BodyStatus::Malformed(why) => Err(GatewayError::invalid(
                "body",
                format!("The chunked request body is malformed: {why}."),
            )),
            // The body policy reads the body of every request a handler reads a body of.
            BodyStatus::Unread => Err(GatewayError::new(
                ErrorKind::Internal,
                "The request body was not read.",
            )),
        }
    }

    /// Reads and parses a JSON body.
    pub(crate) fn read_json(&mut self) -> Result<Value, GatewayError> {
        let body = self.read_body()?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(GatewayError::invalid(
                "body",
                "The request body is empty; expected a JSON object.",
            ));
        }
        super::limits::scan(&body)?;
        serde_json::from_slice(&body).map_err(|e| {
            GatewayError::invalid(
                "body",
                format!("We could not parse the JSON body of your request ({e}). The body must be valid UTF-8 JSON."),
            )
        })
    }

    /// Sends a JSON response.
    pub(crate) fn json(&mut self, status: u16, body: &Value) {
        self.send(
            status,
            "application/json",
            body.to_string().into_bytes(),
            &[],
        );
    }

    /// Sends a body of some other type (`/metrics`).
    pub(crate) fn text(&mut self, status: u16, content_type: &str, body: String) {
        self.send(status, content_type, body.into_bytes(), &[]);
    }

    /// Sends an error in the route's protocol shape, with `Retry-After`/`Allow` as needed.
    pub(crate) fn error(&mut self, e: &GatewayError) {
        let body = self.protocol.error_body(e).to_string().into_bytes();
        let mut extra = Vec::new();
        if let Some(s) = e.retry_after {
            extra.push(("Retry-After", s.to_string()));
        }
        if e.kind == ErrorKind::MethodNotAllowed {
            if let Some(allow) = e.param.as_deref() {
                extra.push(("Allow", allow.to_string()));
            }
        }
        let status = self.protocol.status(e);
        if status >= 500 {
            log::warn!(
                "{} {} {} -> {status}: {}",
                self.id,
                self.method,
                self.path,
                e.message
            );
        }
        self.send(status, "application/json", body, &extra);
    }

    fn send(&mut self, status: u16, content_type: &str, body: Vec<u8>, extra: &[(&str, String)]) {
        let Some(request) = self.request.take() else {
            return;
        };
        self.status = status;
        let mut resp = Response::from_data(body).with_status_code(status);
        resp.add_header(hdr("Content-Type", content_type));
        resp.add_header(hdr("x-request-id", &self.id));
        for (k, v) in extra {
            resp.add_header(hdr(k, v));
        }
        if let Err(e) = request.respond(resp) {
            log::debug!("{} response not delivered: {e}", self.id);
        }
    }

    /// Hands the raw connection to a streaming writer; the caller writes the head itself,
    /// with `Connection: close` when the flag says the connection closes after it.
    pub(crate) fn take_stream_writer(&mut self) -> (Box<dyn std::io::Write + Send>, bool) {
        self.status = 200;
        let request = self.request.take().expect("stream after responding");
        let close = request.will_close();
        (request.into_writer(), close)
    }
}

fn percent_decode(v: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1]).zip(hex(bytes[i + 2])),
            _ => None,
        };
        match (bytes[i], decoded) {
            (_, Some((hi, lo))) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hdr(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values we build are ASCII")
}
