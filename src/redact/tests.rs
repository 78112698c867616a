//! Redaction of literal values and text: secrets, secret-named fields, data URLs, bounds.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::debug::{debug_copy, redact_debug, shortened, MAX_DEBUG_STRING, PARSE_ALLOWANCE};
use super::fields::{frame_for_log, redact_json, REDACTED};
use super::text::{data_url_note, redact_text, Known};

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

fn text(t: &str, known: &[&str]) -> String {
    redact_text(t, &Known::new(known)).into_owned()
}

#[test]
fn text_loses_configured_secrets_in_every_escaping() {
    let known = ["sk-plain", "sk-\"quoted\\"];
    assert_eq!(text("key sk-plain here", &known), "key <redacted> here");
    let frame = json!({"text": "k=sk-\"quoted\\ and sk-plain"}).to_string();
    let nested = json!({"frame": frame}).to_string();
    let debug = format!("{:?}", "sk-\"quoted\\");
    for t in [&frame, &nested, &debug] {
        let out = text(t, &known);
        assert!(
            !out.contains("quoted") && !out.contains("sk-plain"),
            "{t} -> {out}"
        );
    }
    // Nothing to replace: the text is borrowed, not copied.
    assert!(matches!(
        redact_text("GET /v1/models 200 3ms", &Known::new(known)),
        Cow::Borrowed(_)
    ));
}

#[test]
fn secret_named_fields_written_out_in_text_lose_their_values() {
    let args = json!({"user": "u", "password": "pw-1", "api_token": "tok-2"}).to_string();
    let prompt = format!(
        "[assistant]\n```json action\n{{\"tool\": \"login\", \"parameters\": {args}}}\n```"
    );
    let frame = json!({"method": "chat/ask", "params": {"questionText": prompt}}).to_string();
    let twice = json!({"log": frame}).to_string();
    let debug = format!("{:?}", json!({"password": "pw-1", "user": "u"}));
    let prose = "password: \"pw-1\" tok-2";
    for t in [&args, &prompt, &frame, &twice, &debug]
        .map(String::as_str)
        .into_iter()
        .chain([prose])
    {
        let out = text(t, &[]);
        if t.starts_with("password: ") {
            // Not a quoted key: prose is left alone.
            assert_eq!(out, t);
            continue;
        }
        assert!(
            !out.contains("pw-1") && !out.contains("tok-2"),
            "{t} -> {out}"
        );
        assert!(
            out.contains("<redacted>") && out.contains("user"),
            "{t} -> {out}"
        );
    }
    // The rest of the text is untouched; an escaped quote inside the value stays inside.
    assert_eq!(
        text(r#"{"token":"a\"b","n":1}"#, &[]),
        r#"{"token":"<redacted>","n":1}"#
    );
    let inner = json!({"secret": "x\"y", "n": 1}).to_string();
    let outer = json!({"args": inner}).to_string();
    assert_eq!(
        text(&outer, &[]),
        json!({"args": r#"{"n":1,"secret":"<redacted>"}"#}).to_string()
    );
    // A value cut before its closing quote goes to the end; empty values stay.
    assert_eq!(
        text(r#"{"password":"abc"#, &[]),
        r#"{"password":"<redacted>"#
    );
    assert_eq!(text(r#"{"password":""}"#, &[]), r#"{"password":""}"#);
    assert_eq!(text(r#"{"max_tokens":"5"}"#, &[]), r#"{"max_tokens":"5"}"#);
}

#[test]
fn inline_data_urls_are_replaced_and_the_words_around_them_kept() {
    let out = text(
        "see data:image/png;base64,AAAA here, (DATA:text/plain,BBBB) and metadata:x,y",
        &[],
    );
    assert_eq!(
        out,
        "see <redacted data URL, 26 bytes> here, (<redacted data URL, 20 bytes>) and metadata:x,y"
    );
    // Inside JSON inside JSON.
    let frame = json!({"q": json!({"url": "data:a/b;base64,CCCC"}).to_string()}).to_string();
    assert!(!text(&frame, &[]).contains("CCCC"));
    // Prose with "data:" and no comma stays.
    assert_eq!(text("the data: five rows", &[]), "the data: five rows");
}

#[test]
fn long_strings_are_cut_before_they_are_copied_and_no_secret_is_split() {
    let known = Known::new(["sk-0123456789"]);
    // A secret straddling where a long string is cut loses its beginning too.
    let at = MAX_DEBUG_STRING / 2 - 4;
    let long = format!(
        "{}sk-0123456789{}",
        "a".repeat(at),
        "b".repeat(MAX_DEBUG_STRING)
    );
    let out = shortened(&long, &known, MAX_DEBUG_STRING);
    assert!(
        out.len() < MAX_DEBUG_STRING && out.ends_with("bytes truncated]"),
        "{}",
        out.len()
    );
    assert!(!out.contains("sk-0"), "{}", &out[out.len() - 60..]);
    // A long data URL is one note, never copied.
    let url = format!(
        "data:image/png;base64,{}",
        "A".repeat(10 * MAX_DEBUG_STRING)
    );
    assert_eq!(
        shortened(&url, &known, MAX_DEBUG_STRING),
        data_url_note(url.len())
    );
}

#[test]
fn a_body_too_large_for_the_budget_is_given_up_early() {
    // 200,000 tiny messages (about 7 MB of JSON, 600,000 values); a budget of 256 KiB.
    let messages: Vec<Value> = (0..200_000)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let body = json!({"model": "auto", "messages": messages});
    let budget = 256 * 1024;
    let copy = debug_copy(&body, &Known::default(), budget);
    assert!(copy.value.is_none());
    // Each value visited costs at least a unit of the budget: the work stopped with it.
    assert!(copy.visited <= budget, "visited {}", copy.visited);
    // Large tool-argument strings: parsing them stops at the allowance.
    let args = json!({"xs": vec![1; 60_000]}).to_string();
    let calls: Vec<Value> = (0..400).map(|_| json!({"arguments": args})).collect();
    let copy = debug_copy(&json!({"calls": calls}), &Known::default(), budget);
    assert!(copy.value.is_none());
    assert!(
        copy.visited <= budget * (PARSE_ALLOWANCE + 1),
        "visited {}",
        copy.visited
    );
    // A body within the budget is kept, redacted.
    let copy = debug_copy(
        &json!({"password": "p", "n": [1, 2]}),
        &Known::default(),
        budget,
    );
    assert_eq!(copy.value, Some(json!({"password": REDACTED, "n": [1, 2]})));
}

#[test]
fn frames_that_are_not_json_are_not_echoed() {
    assert_eq!(frame_for_log(b"password=hunter2"), "<16 bytes, not JSON>");
}
