//! Secret-named fields: which names hold secrets, and structured values (JSON) with those
//! fields' values replaced.

use serde_json::Value;

/// Field names whose values are secrets end in one of these, compared without case, `_` or
/// `-` (`token`, `refresh_token`, `x-api-key`, `client_secret`, `admin_password`, ...).
const SECRET_SUFFIXES: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "apikeys",
    "authorization",
    "cookie",
    "sessionbundle",
    "bundleb64",
    "privatekey",
];

pub(super) const REDACTED: &str = "<redacted>";

pub(super) fn is_secret(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s)) || norm.contains("sessionbundle")
}

/// Replaces the value of every secret field, at any depth, with `<redacted>`.
pub(crate) fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret(k) && !val.is_null() && val.as_str() != Some("") {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact_json(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// A frame body for the trace log: JSON with secrets redacted, or a note if it is not JSON.
pub(crate) fn frame_for_log(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redact_json(&mut v);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}
