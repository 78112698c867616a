//! Redaction of secrets in anything that may reach a log line or a debug endpoint: Lingma's
//! `auth/status` carries session tokens, later login calls carry passwords, client request
//! bodies may carry anything. Pure.

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

/// Longest string tool argument kept whole in the debug ring.
pub const MAX_DEBUG_ARGUMENTS: usize = 2048;
/// Longest other string kept whole in the debug ring (bounds its memory).
pub const MAX_DEBUG_STRING: usize = 16 * 1024;

pub const REDACTED: &str = "<redacted>";

fn is_secret(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s)) || norm.contains("sessionbundle")
}

/// A request body for the debug ring: secret fields redacted as in `redact_json`; `data:`
/// URLs replaced; tool arguments (`arguments`, `args`, `input` as a string) redacted inside
/// when they are JSON and cut past `MAX_DEBUG_ARGUMENTS`; any other string cut past
/// `MAX_DEBUG_STRING`; and every occurrence of a configured secret (`known`) replaced
/// wherever it appears.
pub fn redact_debug(v: &mut Value, known: &[String]) {
    redact_debug_at(v, known, 0);
}

/// How deep `redact_debug` goes, counting the levels inside argument strings it parses. The
/// JSON parser bounds each value to 128 levels, but argument strings can hold argument
/// strings: without a bound on the whole chain, a body of a few MB recursed until a
/// worker's stack overflowed, which aborts the process. Past it, an argument string is
/// redacted as text, not parsed.
const MAX_REDACT_DEPTH: usize = 128;

fn redact_debug_at(v: &mut Value, known: &[String], depth: usize) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret(k) && !val.is_null() && val.as_str() != Some("") {
                    *val = Value::String(REDACTED.into());
                } else if matches!(k.as_str(), "arguments" | "args" | "input" | "partial_json")
                    && val.is_string()
                {
                    let Value::String(text) = val else {
                        unreachable!()
                    };
                    let parsed = (depth < MAX_REDACT_DEPTH)
                        .then(|| serde_json::from_str::<Value>(text).ok())
                        .flatten();
                    let mut text = match parsed {
                        Some(mut inner) => {
                            redact_debug_at(&mut inner, known, depth + 1);
                            inner.to_string()
                        }
                        None => redact_string(text, known),
                    };
                    cut(&mut text, MAX_DEBUG_ARGUMENTS);
                    *val = Value::String(text);
                } else {
                    redact_debug_at(val, known, depth + 1);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| redact_debug_at(i, known, depth + 1)),
        Value::String(text) => {
            let mut out = redact_string(text, known);
            cut(&mut out, MAX_DEBUG_STRING);
            *text = out;
        }
        _ => {}
    }
}

fn redact_string(text: &str, known: &[String]) -> String {
    let trimmed = text.trim_start();
    // Bytes, not `str` slicing: the fifth byte may fall inside a character ("你好").
    if trimmed
        .as_bytes()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"data:"))
    {
        return format!("<redacted data URL, {} bytes>", text.len());
    }
    let mut out = text.to_string();
    for secret in known.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// Cuts `text` to at most `max` bytes (at a character boundary), saying how much went.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max / 2;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("... [{dropped} bytes truncated]"));
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

    /// `levels` tool-argument strings, each holding JSON `depth` arrays deep around the next.
    fn nested_arguments(levels: usize, depth: usize) -> Value {
        let mut inner = json!("x");
        for _ in 0..levels {
            let mut v = json!({"arguments": inner.to_string()});
            for _ in 0..depth {
                v = json!([v]);
            }
            inner = v;
        }
        inner
    }

    #[test]
    fn argument_strings_nested_in_argument_strings_do_not_recurse_without_bound() {
        // Each string is parsed to at most 128 levels, but a chain of them added up: a
        // 16 MB body overflowed a worker's stack and aborted the gateway. On a 512 KiB stack,
        // 14 links of 120 levels are over the bound and would overflow.
        let mut v = nested_arguments(14, 120);
        let redacted = std::thread::Builder::new()
            .stack_size(1 << 19)
            .spawn(move || {
                redact_debug(&mut v, &[]);
                v
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(redacted.to_string().contains("arguments"));
        // Shallow nesting is still redacted inside.
        let mut v = json!({"arguments": json!({"arguments": json!({"password": "hunter2"}).to_string()}).to_string()});
        redact_debug(&mut v, &[]);
        assert!(!v.to_string().contains("hunter2"), "{v}");
    }

    #[test]
    fn text_starting_with_multi_byte_characters_is_kept() {
        for text in ["你好", "日本語", "🦀🦀", "Th🦀anks", "é"] {
            let mut v = json!({"messages": [{"role": "user", "content": text}], "model": text});
            redact_debug(&mut v, &[]);
            assert_eq!(v["messages"][0]["content"], text);
            assert_eq!(v["model"], text);
        }
        let mut v = json!({"content": "DATA:image/png;base64,AAAA"});
        redact_debug(&mut v, &[]);
        assert!(v["content"]
            .as_str()
            .unwrap()
            .starts_with("<redacted data URL"));
    }

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
    fn debug_bodies_lose_secrets_data_urls_and_huge_arguments() {
        let big = "x".repeat(5000);
        let mut v = json!({
            "model": "m", "max_tokens": 10, "metadata": {"user_password": "hunter2"},
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "user", "content": "my key is sk-planted, keep it"},
                {"role": "assistant", "tool_calls": [{"function": {"name": "f",
                    "arguments": format!("{{\"password\":\"pw-1\",\"blob\":\"{big}\"}}")}}]},
            ],
            "headers": {"x-api-key": "sk-other"},
        });
        redact_debug(&mut v, &["sk-planted".to_string()]);
        let s = v.to_string();
        for secret in ["hunter2", "AAAA", "sk-planted", "pw-1", "sk-other"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(v["max_tokens"], 10);
        let args = v["messages"][2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert!(
            args.len() < 1200 && args.ends_with("bytes truncated]"),
            "{args}"
        );
        assert!(s.contains("<redacted data URL"));
    }

    #[test]
    fn frames_that_are_not_json_are_not_echoed() {
        assert_eq!(frame_for_log(b"password=hunter2"), "<16 bytes, not JSON>");
    }
}
