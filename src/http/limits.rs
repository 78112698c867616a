//! How much a request body may make the gateway build, checked before the expensive step.
//! Pure functions, run on the worker thread that reads the body.
//!
//! Parsing is where a small body becomes a lot of memory: `serde_json::Value` costs from
//! 32 bytes per value (numbers, strings and empty containers in an array) to about 350 bytes
//! per value for one-key objects (a B-tree node of 640 bytes each), so 32 MiB of `{"a":0},`
//! would parse into 2.7 GB. `scan` counts a body's values on its raw bytes, without
//! allocating, and a body over `MAX_BODY_VALUES` is refused before it is parsed: a parsed
//! body then takes at most about 175 MB, whatever its shape. The message and content-part
//! counts bound the typed request built from the parsed body and give the client an error
//! naming the parameter.
//!
//! The limits are far above what real clients send: a Claude Code or Codex conversation at
//! the end of a 200k-token context is a few thousand messages and tool results, about 20 to
//! 100 thousand values with its tool schemas; a base64 image or a large file inside the body
//! is one string, one value.

use serde_json::Value;

use crate::error::{ErrorKind, GatewayError};

/// JSON values (objects, arrays, strings, numbers, literals; not object keys) one request
/// body may hold.
pub(crate) const MAX_BODY_VALUES: usize = 500_000;
/// Messages (chat, Anthropic) or input items (Responses) in one request.
pub(crate) const MAX_MESSAGES: usize = 50_000;
/// Content parts in one request, all messages together (and the parts of tool results
/// inside them).
pub(crate) const MAX_CONTENT_PARTS: usize = 100_000;

/// How many JSON values `body` holds, counting no further than just past `limit`. Exact for
/// valid JSON (the root, plus every element of every array and object: one more than each
/// container's commas, for each non-empty container); for anything else a number the parser
/// will not get to use, since it refuses the body anyway.
pub(crate) fn count_values(body: &[u8], limit: usize) -> usize {
    let mut count = 1;
    let mut i = 0;
    while i < body.len() && count <= limit {
        match body[i] {
            b'"' => {
                // Skip the string: its commas and brackets are text.
                i += 1;
                while i < body.len() {
                    match body[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b',' => count += 1,
            b'[' | b'{' => {
                let next = body[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if !matches!(next, Some(b']' | b'}')) {
                    count += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    count
}

/// Refuses a body with more than `MAX_BODY_VALUES` values (413, before it is parsed).
pub(crate) fn scan(body: &[u8]) -> Result<(), GatewayError> {
    if count_values(body, MAX_BODY_VALUES) <= MAX_BODY_VALUES {
        return Ok(());
    }
    let mut e = GatewayError::new(
        ErrorKind::PayloadTooLarge,
        format!("The JSON body holds more than {MAX_BODY_VALUES} values (strings, numbers, objects, arrays); this gateway parses at most that many in one request."),
    );
    e.param = Some("body".into());
    Err(e)
}

/// Refuses more than `MAX_MESSAGES` messages or items in `param`, or more than
/// `MAX_CONTENT_PARTS` content parts in them all (400 naming `param`).
pub(crate) fn check_messages(param: &str, items: &[Value]) -> Result<(), GatewayError> {
    if items.len() > MAX_MESSAGES {
        return Err(GatewayError::invalid(
            param,
            format!("Invalid '{param}': array too long. Expected an array with maximum length {MAX_MESSAGES}, but got an array with length {} instead.", items.len()),
        ));
    }
    let parts: usize = items.iter().map(parts_of).sum();
    if parts > MAX_CONTENT_PARTS {
        return Err(GatewayError::invalid(
            param,
            format!("Invalid '{param}': too many content parts. Expected at most {MAX_CONTENT_PARTS} content parts in all messages together, but got {parts} instead."),
        ));
    }
    Ok(())
}

/// The content parts of one message or item: its `content` parts, the parts of the tool
/// results among them (Anthropic), and its `output` parts (a Responses tool output).
fn parts_of(item: &Value) -> usize {
    let content = parts(item.get("content"));
    let nested: usize = content.iter().map(|p| parts(p.get("content")).len()).sum();
    content.len() + nested + parts(item.get("output")).len()
}

fn parts(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn count(text: &str) -> usize {
        count_values(text.as_bytes(), usize::MAX)
    }

    #[test]
    fn counts_values_not_keys_or_text() {
        assert_eq!(count("0"), 1);
        assert_eq!(count(" \"a\" "), 1);
        assert_eq!(count("[]"), 1);
        assert_eq!(count("{ \n }"), 1);
        assert_eq!(count("[1,2,3]"), 4);
        assert_eq!(count("[[],{},[ ]]"), 4);
        assert_eq!(count(r#"{"a":1,"b":[true,null]}"#), 5);
        assert_eq!(
            count(r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#),
            6
        );
        assert_eq!(
            count(r#"["a,b,[c]{", "\"],[", "\\", "{}"]"#),
            5,
            "strings are text"
        );
        assert_eq!(count(r#"{"k,{[":"v,]}"}"#), 2, "keys are not values");
    }

    #[test]
    fn counting_stops_just_past_the_limit() {
        let body = format!("[{}]", vec!["0"; 1000].join(","));
        assert_eq!(count_values(body.as_bytes(), usize::MAX), 1001);
        assert_eq!(count_values(body.as_bytes(), 10), 11);
        assert_eq!(count_values(body.as_bytes(), 1001), 1001);
    }

    #[test]
    fn broken_json_gives_some_count_and_no_panic() {
        for text in ["\"", "\"\\", "[", "{", "[\"a", ",,,", "\"\\\"", "[{"] {
            let _ = count(text);
        }
    }

    #[test]
    fn a_body_over_the_value_limit_is_too_large() {
        let under = format!("[{}]", vec!["0"; MAX_BODY_VALUES - 1].join(","));
        assert!(scan(under.as_bytes()).is_ok());
        let over = format!("[{}]", vec!["0"; MAX_BODY_VALUES].join(","));
        let e = scan(over.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(e.param.as_deref(), Some("body"));
        assert!(e.message.contains("500000 values"), "{}", e.message);
        let one_big_string = format!("\"{}\"", "a,".repeat(MAX_BODY_VALUES));
        assert!(
            scan(one_big_string.as_bytes()).is_ok(),
            "an image is one value"
        );
    }

    #[test]
    fn messages_and_parts_are_counted() {
        let msg = json!({"role": "user", "content": "hi"});
        let many = vec![msg.clone(); MAX_MESSAGES + 1];
        let e = check_messages("messages", &many).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(e.message.contains("maximum length 50000"), "{}", e.message);
        assert!(check_messages("messages", &many[1..]).is_ok());

        let part = json!({"type": "text", "text": "a"});
        let parts = |n: usize| json!({"role": "user", "content": vec![part.clone(); n]});
        let split = [parts(MAX_CONTENT_PARTS / 2), parts(MAX_CONTENT_PARTS / 2)];
        assert!(check_messages("input", &split).is_ok());
        let over = [
            parts(MAX_CONTENT_PARTS / 2),
            parts(MAX_CONTENT_PARTS / 2 + 1),
        ];
        let e = check_messages("input", &over).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        assert!(e.message.contains("100001"), "{}", e.message);

        let result = json!({"type": "tool_result", "tool_use_id": "t", "content": [part, part]});
        let nested = json!({"role": "user", "content": [result]});
        assert_eq!(parts_of(&nested), 3, "a tool result's parts count too");
        let output = json!({"type": "function_call_output", "output": [part]});
        assert_eq!(parts_of(&output), 1);
    }
}
