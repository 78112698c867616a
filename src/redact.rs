//! Redaction of secrets in anything that may reach a log line or a debug endpoint: Lingma's
//! `auth/status` carries session tokens, later login calls carry passwords. Pure.

use serde_json::Value;

/// Field names whose values are secrets, compared without case, `_` or `-`.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "refreshtoken",
    "accesstoken",
    "idtoken",
    "password",
    "passwd",
    "secret",
    "clientsecret",
    "apikey",
    "authorization",
    "cookie",
    "sessionbundle",
    "bundleb64",
];

pub const REDACTED: &str = "<redacted>";

fn is_secret(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    SECRET_FIELDS.contains(&norm.as_str())
}

/// Replaces the value of every secret field, at any depth, with `<redacted>`.
pub fn redact_json(v: &mut Value) {
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
pub fn frame_for_log(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redact_json(&mut v);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_tokens_at_any_depth() {
        let mut v = json!({"result": {"status": 2, "id": "u1", "token": "tok-123", "refreshToken": "r-9",
            "nested": [{"password": "hunter2", "api_key": "sk-1"}], "empty_token_ok": "", "token2": "kept"}});
        redact_json(&mut v);
        let s = v.to_string();
        for secret in ["tok-123", "r-9", "hunter2", "sk-1"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert_eq!(v["result"]["id"], "u1");
        assert_eq!(v["result"]["token2"], "kept");
    }

    #[test]
    fn frames_that_are_not_json_are_not_echoed() {
        assert_eq!(frame_for_log(b"password=hunter2"), "<16 bytes, not JSON>");
    }
}
