//! One WebDriver call over plain HTTP on loopback, and what its errors mean. Logs method
//! and path only, never a body (`send_keys` carries the password).

use std::time::Duration;

use serde_json::Value;

use super::error::LoginError;

/// Longest message (from chromedriver or a login page) kept in an error.
pub(super) const MAX_MESSAGE: usize = 300;

/// Plain-HTTP agent for chromedriver on loopback: no proxy (an `http_proxy` in the
/// environment must not capture 127.0.0.1), error statuses returned as responses (W3C puts
/// the error in the body), and a bound on every call.
pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A WebDriver error from the remote end (`{"value":{"error":..,"message":..}}`) or a failure
/// to talk to it at all.
pub(super) enum CallError {
    Remote { error: String, message: String },
    Local(LoginError),
}

impl CallError {
    pub(super) fn into_login(self, what: &str) -> LoginError {
        match self {
            CallError::Local(e) => e,
            CallError::Remote { error, message } if error == "timeout" => {
                log::debug!("auto-login: {what}: chromedriver timeout: {message}");
                LoginError::Timeout("the page to load")
            }
            CallError::Remote { error, message } => {
                // chromedriver's messages usually repeat the error code first.
                let message = message
                    .strip_prefix(error.as_str())
                    .and_then(|m| m.strip_prefix(": "))
                    .unwrap_or(&message);
                LoginError::Browser(format!("{what}: {error}: {}", first_line(message)))
            }
        }
    }
}

/// One WebDriver command: returns the response's `value`. Logs method and path only.
pub(super) fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, CallError> {
    log::trace!("auto-login: webdriver {method} {}", path_of(url));
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, Some(b)) => agent.post(url).send_json(b),
        (_, None) => agent.post(url).send_empty(),
    };
    let mut resp = result.map_err(|e| {
        CallError::Local(match e {
            ureq::Error::Timeout(_) => LoginError::Timeout("chromedriver to answer"),
            e => LoginError::Browser(format!(
                "cannot talk to chromedriver ({method} {}): {e}",
                path_of(url)
            )),
        })
    })?;
    let status = resp.status().as_u16();
    let mut v: Value = resp.body_mut().read_json().map_err(|e| {
        CallError::Local(LoginError::Browser(format!(
            "chromedriver sent a non-JSON answer (HTTP {status}) to {method} {}: {e}",
            path_of(url)
        )))
    })?;
    let value = v.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(CallError::Remote {
            error: error.to_string(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(CallError::Remote {
            error: format!("HTTP {status}"),
            message: String::new(),
        });
    }
    Ok(value)
}

/// The part of a chromedriver URL after the host, with the session id left in (not secret).
pub(super) fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}

/// The first line of a message, bounded (chromedriver appends stack traces and session info).
pub(crate) fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}
