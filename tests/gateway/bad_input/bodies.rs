//! Valid bodies of the JSON routes, what stays valid when one of their fields changes, and
//! the cases made from them: every field replaced by each JSON kind and removed; broken
//! JSON, bad UTF-8 and escapes, deep nesting, odd numbers, duplicate keys, bodies at and
//! over the size limit.

use serde_json::{json, Value};

use super::{anthropic_path, Expect, Kind, MAX_BODY};

pub(super) fn schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

pub(super) fn chat_valid() -> Value {
    json!({
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": schema()}}],
        "tool_choice": "auto",
        "stream": false,
        "stream_options": {"include_usage": true},
        "stop": ["ZZZ"],
        "n": 1,
        "max_tokens": 200,
        "temperature": 0.5,
        "user": "bad-input",
        "response_format": {"type": "text"}
    })
}

/// Replacement kinds: `n` null, `N` a number, `s` a string, `b` a boolean, `a` an array,
/// `o` an object.
pub(super) const KINDS: &[(char, &str)] = &[
    ('n', "null"),
    ('N', "7"),
    ('s', "\"x\""),
    ('b', "true"),
    ('a', "[]"),
    ('o', "{}"),
];

/// For each location of `chat_valid()`: the kinds it stays valid with (a `-`: removing it
/// is fine though `null` is not; removing is otherwise like `null`).
pub(super) const CHAT_TABLE: &[(&str, &str)] = &[
    ("model", ""),
    ("messages", ""),
    ("messages[0]", ""),
    ("messages[0].role", ""),
    // A system message's content is required, as in OpenAI's API.
    ("messages[0].content", "sa"),
    ("messages[1]", ""),
    ("messages[1].role", ""),
    ("messages[1].content", "nsa"),
    ("messages[1].content[0]", ""),
    ("messages[1].content[0].type", ""),
    ("messages[1].content[0].text", "s"),
    ("messages[2]", ""),
    ("messages[2].role", ""),
    ("messages[2].content", "nsa"),
    ("messages[2].tool_calls", "na"),
    ("messages[2].tool_calls[0]", ""),
    ("messages[2].tool_calls[0].id", "nNsbao"),
    ("messages[2].tool_calls[0].type", "nNsbao"),
    ("messages[2].tool_calls[0].function", ""),
    ("messages[2].tool_calls[0].function.name", "s"),
    ("messages[2].tool_calls[0].function.arguments", "nso"),
    ("messages[3]", ""),
    ("messages[3].role", ""),
    ("messages[3].tool_call_id", "s"),
    ("messages[3].content", "nsa"),
    ("messages[4]", ""),
    ("messages[4].role", ""),
    ("messages[4].content", "nsa"),
    ("tools", "na"),
    ("tools[0]", ""),
    ("tools[0].type", "nNsbao"),
    ("tools[0].function", ""),
    ("tools[0].function.name", "s"),
    ("tools[0].function.description", "nNsbao"),
    ("tools[0].function.parameters", "no"),
    ("tool_choice", "n"),
    ("stream", "nb"),
    ("stream_options", "no"),
    ("stream_options.include_usage", "nb"),
    ("stop", "nsa"),
    ("stop[0]", "s"),
    ("n", "n"),
    ("max_tokens", "nN"),
    ("temperature", "nN"),
    ("user", "ns"),
    ("response_format", "n"),
    ("response_format.type", ""),
];

pub(super) fn responses_valid() -> Value {
    json!({
        "model": "auto",
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": schema()}],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "store": false,
        "stream": false,
        "max_output_tokens": 200,
        "temperature": 0.5,
        "top_p": 1,
        "metadata": {"k": "v"},
        "text": {"format": {"type": "text"}},
        "reasoning": {"effort": "low"},
        "include": [],
        "truncation": "disabled",
        "user": "bad-input",
        "prompt_cache_key": "bad-input"
    })
}

pub(super) const RESPONSES_TABLE: &[(&str, &str)] = &[
    ("model", ""),
    ("instructions", "ns"),
    // `[]`: the instructions alone are still something to send.
    ("input", "sa"),
    ("input[0]", ""),
    ("input[0].type", "n"),
    ("input[0].role", ""),
    ("input[0].content", "nsa"),
    ("input[0].content[0]", ""),
    ("input[0].content[0].type", ""),
    ("input[0].content[0].text", "s"),
    ("input[1]", ""),
    ("input[1].type", ""),
    ("input[1].call_id", "nNsbao"),
    ("input[1].name", "s"),
    ("input[1].arguments", "ns"),
    ("input[2]", ""),
    ("input[2].type", ""),
    ("input[2].call_id", "s"),
    ("input[2].output", "nsa"),
    ("input[3]", ""),
    ("input[3].role", ""),
    ("input[3].content", "nsa"),
    ("tools", "na"),
    ("tools[0]", ""),
    ("tools[0].type", "s"),
    ("tools[0].name", "s"),
    ("tools[0].description", "nNsbao"),
    ("tools[0].parameters", "no"),
    ("tool_choice", "n"),
    ("parallel_tool_calls", "nb"),
    ("store", "nb"),
    ("stream", "nb"),
    ("max_output_tokens", "nN"),
    ("temperature", "nN"),
    ("top_p", "nN"),
    ("metadata", "no"),
    ("metadata.k", "s-"),
    ("text", "no"),
    ("text.format", "n"),
    ("text.format.type", ""),
    ("reasoning", "no"),
    ("reasoning.effort", "nNsbao"),
    ("include", "na"),
    ("truncation", "n"),
    ("user", "ns"),
    ("prompt_cache_key", "ns"),
];

pub(super) fn messages_valid() -> Value {
    json!({
        "model": "auto",
        "max_tokens": 200,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "sunny"}]}]},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [{"name": "get_weather", "description": "Weather in a city", "input_schema": schema()}],
        "tool_choice": {"type": "auto"},
        "stream": false,
        "stop_sequences": ["ZZZ"],
        "temperature": 0.5,
        "top_k": 5,
        "metadata": {"user_id": "bad-input"},
        "thinking": {"type": "disabled"}
    })
}

/// `messages_valid()` on `/v1/messages`; count_tokens differs only in `max_tokens`
/// (optional).
pub(super) const MESSAGES_TABLE: &[(&str, &str)] = &[
    ("model", ""),
    ("max_tokens", "N"),
    ("system", "nsa"),
    ("system[0]", ""),
    ("system[0].type", ""),
    ("system[0].text", "s"),
    ("messages", ""),
    ("messages[0]", ""),
    ("messages[0].role", ""),
    ("messages[0].content", "sa"),
    ("messages[0].content[0]", ""),
    ("messages[0].content[0].type", "s"),
    ("messages[0].content[0].text", "s"),
    ("messages[1]", ""),
    ("messages[1].role", ""),
    ("messages[1].content", "sa"),
    ("messages[1].content[0]", ""),
    ("messages[1].content[0].type", "s"),
    ("messages[1].content[0].thinking", "nNsbao"),
    ("messages[1].content[0].signature", "nNsbao"),
    ("messages[1].content[1]", ""),
    ("messages[1].content[1].type", "s"),
    ("messages[1].content[1].id", "nNsbao"),
    ("messages[1].content[1].name", "s"),
    ("messages[1].content[1].input", "no"),
    ("messages[1].content[1].input.city", "nNsbao"),
    ("messages[2]", ""),
    ("messages[2].role", ""),
    ("messages[2].content", "sa"),
    ("messages[2].content[0]", ""),
    ("messages[2].content[0].type", "s"),
    ("messages[2].content[0].tool_use_id", "s"),
    ("messages[2].content[0].content", "nsa"),
    ("messages[2].content[0].content[0]", "nNsbao"),
    ("messages[2].content[0].content[0].type", "nNsbao"),
    ("messages[2].content[0].content[0].text", "nNsbao"),
    ("messages[3]", ""),
    ("messages[3].role", ""),
    ("messages[3].content", "sa"),
    ("tools", "na"),
    ("tools[0]", ""),
    ("tools[0].name", "s"),
    ("tools[0].description", "nNsbao"),
    ("tools[0].input_schema", "o"),
    ("tool_choice", "n"),
    ("tool_choice.type", ""),
    ("stream", "nb"),
    ("stop_sequences", "na"),
    ("stop_sequences[0]", "s"),
    ("temperature", "nN"),
    ("top_k", "nN"),
    ("metadata", "no"),
    ("metadata.user_id", "nNsbao"),
    ("thinking", "no"),
    ("thinking.type", "nNsbao"),
];

pub(super) const COUNT_TOKENS_CHANGES: &[(&str, &str)] = &[("max_tokens", "nN")];

/// The valid body of a JSON route and its table.
pub(super) fn valid_body(kind: Kind) -> (Value, Vec<(&'static str, &'static str)>) {
    match kind {
        Kind::Chat => (chat_valid(), CHAT_TABLE.to_vec()),
        Kind::Responses => (responses_valid(), RESPONSES_TABLE.to_vec()),
        Kind::Messages => (messages_valid(), MESSAGES_TABLE.to_vec()),
        Kind::CountTokens => {
            let mut table = MESSAGES_TABLE.to_vec();
            for (at, ok) in COUNT_TOKENS_CHANGES {
                table.iter_mut().find(|(p, _)| p == at).unwrap().1 = ok;
            }
            (messages_valid(), table)
        }
        other => panic!("{other:?} takes no JSON body"),
    }
}

/// Every location in `v` below the root, as `(path, pointer)` (`messages[1].content`,
/// `/messages/1/content`). Tool schemas are opaque: replaced whole, not entered.
pub(super) fn locations(v: &Value, at: &str, ptr: &str, out: &mut Vec<(String, String)>) {
    let children: Vec<(String, String, &Value)> = match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, c)| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                (path, format!("{ptr}/{k}"), c)
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{at}[{i}]"), format!("{ptr}/{i}"), c))
            .collect(),
        _ => Vec::new(),
    };
    for (path, pointer, child) in children {
        out.push((path.clone(), pointer.clone()));
        let opaque = ["parameters", "input_schema"]
            .iter()
            .any(|k| path.ends_with(&format!(".{k}")));
        if !opaque {
            locations(child, &path, &pointer, out);
        }
    }
}

/// `messages[1].content[0]` as Anthropic's errors spell it: `messages.1.content.0`.
pub(super) fn anthropic_spelling(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// The wrong-type and missing-field cases of one JSON route.
pub(super) fn field_cases(path: &str, kind: Kind) -> Vec<(String, Vec<u8>, Expect)> {
    let (valid, table) = valid_body(kind);
    let mut all = Vec::new();
    locations(&valid, "", "", &mut all);
    let mut out = Vec::new();
    for (at, pointer) in all {
        let ok = table
            .iter()
            .find(|(p, _)| *p == at)
            .unwrap_or_else(|| panic!("{path}: no expectation for the field {at}"))
            .1;
        let named = if anthropic_path(path) {
            anthropic_spelling(&at)
        } else {
            at.clone()
        };
        for (letter, replacement) in KINDS {
            let mut body = valid.clone();
            *body.pointer_mut(&pointer).unwrap() = serde_json::from_str(replacement).unwrap();
            // A model named "x" does not exist (404 model_not_found), to count_tokens too.
            let unknown_model = at == "model" && *letter == 's';
            let expect = if ok.contains(*letter) {
                Expect::Ok
            } else if unknown_model {
                Expect::Error(404)
            } else {
                Expect::BadField(named.clone())
            };
            out.push((
                format!("{at} = {replacement}"),
                body.to_string().into_bytes(),
                expect,
            ));
        }
        // Removed (object members only).
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let mut body = valid.clone();
        let removed = body
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .map(|o| o.remove(key));
        if removed.is_some() {
            let expect = if ok.contains('n') || ok.contains('-') {
                Expect::Ok
            } else {
                Expect::BadField(named.clone())
            };
            out.push((
                format!("{at} removed"),
                body.to_string().into_bytes(),
                expect,
            ));
        }
    }
    out
}

/// Broken JSON, non-objects, bad UTF-8 and escapes, deep nesting, odd numbers, duplicate
/// keys and multi-byte text, for one JSON route.
pub(super) fn body_cases(kind: Kind) -> Vec<(String, Vec<u8>, Expect)> {
    let (valid, _) = valid_body(kind);
    let text = valid.to_string();
    let bytes = text.as_bytes();
    let bad = || Expect::BadField("body".into());
    let mut out: Vec<(String, Vec<u8>, Expect)> = Vec::new();
    let mut add = |label: String, body: Vec<u8>, e: Expect| out.push((label, body, e));
    add("valid".into(), bytes.to_vec(), Expect::Ok);
    add("empty".into(), Vec::new(), bad());
    add("one space".into(), b" ".to_vec(), bad());
    add("whitespace".into(), b"\r\n\t \n".to_vec(), bad());
    for k in 1..10 {
        let n = bytes.len() * k / 10;
        add(format!("cut at {n}"), bytes[..n].to_vec(), bad());
    }
    add(
        "last byte cut".into(),
        bytes[..bytes.len() - 1].to_vec(),
        bad(),
    );
    for tail in ["x", "}", "{}", ",", "\0", " []", "\"", "]"] {
        add(
            format!("trailing {tail:?}"),
            [bytes, tail.as_bytes()].concat(),
            bad(),
        );
    }
    add(
        "trailing whitespace".into(),
        [bytes, b" \r\n\t"].concat(),
        Expect::Ok,
    );
    add(
        "byte order mark".into(),
        [b"\xef\xbb\xbf", bytes].concat(),
        bad(),
    );
    for other in [
        "[]", "\"text\"", "1", "-0", "null", "true", "false", "1e999", "{}x",
    ] {
        add(format!("body {other}"), other.as_bytes().to_vec(), bad());
    }
    add(
        "body [valid]".into(),
        format!("[{text}]").into_bytes(),
        bad(),
    );
    add(
        "body {}".into(),
        b"{}".to_vec(),
        Expect::BadField("model".into()),
    );
    // Invalid UTF-8, as raw bytes in the body.
    let with = |from: &str, to: &[u8]| -> Vec<u8> {
        let i = text
            .find(from)
            .unwrap_or_else(|| panic!("{from} not in {text}"));
        [&bytes[..i], to, &bytes[i + from.len()..]].concat()
    };
    add("0xff first".into(), [b"\xff", bytes].concat(), bad());
    for (name, seq) in [
        ("0xff", &b"\xff"[..]),
        ("overlong /", b"\xc0\xaf"),
        ("surrogate as UTF-8", b"\xed\xa0\x80"),
        ("cut multi-byte", b"\xe4\xbd"),
        ("raw control", b"\x01"),
        ("raw newline", b"\n"),
    ] {
        add(
            format!("{name} in a string"),
            with("Thanks", &[b"Th", seq, b"anks"].concat()),
            bad(),
        );
    }
    add(
        "0xff in a key".into(),
        with("\"model\"", b"\"mo\xffdel\""),
        bad(),
    );
    // Escapes.
    for esc in [
        "\\ud800",
        "\\udc00",
        "\\ud800\\ud800",
        "\\ud800x",
        "\\udfff\\ud800",
        "\\x41",
        "\\u12",
        "\\'",
        "\\",
    ] {
        add(
            format!("escape {esc}"),
            with("Thanks", format!("Th{esc}anks").as_bytes()),
            bad(),
        );
    }
    for esc in ["\\ud83e\\udd80", "\\u0000", "\\u001f", "\\/", "\\uFFFF"] {
        add(
            format!("escape {esc}"),
            with("Thanks", format!("Th{esc}anks").as_bytes()),
            Expect::Ok,
        );
    }
    // Text that starts with multi-byte characters (a prefix check must cut at a character
    // boundary).
    for t in [
        "你好",
        "日本語のテキスト",
        "ℌello",
        "é",
        "🦀🦀",
        "\u{feff}data:x",
    ] {
        add(
            format!("text {t:?}"),
            with("\"Thanks\"", json!(t).to_string().as_bytes()),
            Expect::Ok,
        );
    }
    add(
        "model 你好模型".into(),
        with("\"model\":\"auto\"", "\"model\":\"你好模型\"".as_bytes()),
        Expect::Error(404),
    );
    // Deep nesting: refused by the JSON parser's depth limit, never a stack overflow.
    add("100 000 [".into(), vec![b'['; 100_000], bad());
    add("20 000 {\"a\":".into(), b"{\"a\":".repeat(20_000), bad());
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    add(
        "depth 200 in a field".into(),
        with(
            "\"model\"",
            format!("\"x\":{},\"model\"", deep(200)).as_bytes(),
        ),
        bad(),
    );
    add(
        "depth 100 in an unknown field".into(),
        with(
            "\"model\"",
            format!("\"x\":{},\"model\"", deep(100)).as_bytes(),
        ),
        Expect::Ok,
    );
    add(
        "depth 100 of objects in an unknown field".into(),
        with(
            "\"model\"",
            format!(
                "\"x\":{}1{},\"model\"",
                "{\"a\":".repeat(100),
                "}".repeat(100)
            )
            .as_bytes(),
        ),
        Expect::Ok,
    );
    // Numbers.
    let limit = if kind == Kind::Responses {
        "max_output_tokens"
    } else {
        "max_tokens"
    };
    let limit_named = limit.to_string();
    for (n, e) in [
        ("1e999", bad()),
        ("-1e999", bad()),
        (
            "99999999999999999999",
            Expect::BadField(limit_named.clone()),
        ),
        (
            "18446744073709551616",
            Expect::BadField(limit_named.clone()),
        ),
        ("1e2", Expect::BadField(limit_named.clone())),
        ("200.0", Expect::BadField(limit_named.clone())),
        ("1.5", Expect::BadField(limit_named.clone())),
        ("-1", Expect::BadField(limit_named.clone())),
        ("0", Expect::BadField(limit_named.clone())),
        ("-0", Expect::BadField(limit_named.clone())),
        ("18446744073709551615", Expect::Ok),
        ("0200", bad()),
        ("+200", bad()),
        ("0x10", bad()),
        ("NaN", bad()),
        ("Infinity", bad()),
    ] {
        let body = with(
            &format!("\"{limit}\":200"),
            format!("\"{limit}\":{n}").as_bytes(),
        );
        add(format!("{limit} {n}"), body, e);
    }
    for (n, e) in [
        ("1e308", Expect::Ok),
        ("-1e308", Expect::Ok),
        ("1e-400", Expect::Ok),
        ("1e400", bad()),
        ("0.5e", bad()),
        (".5", bad()),
    ] {
        add(
            format!("temperature {n}"),
            with(
                "\"temperature\":0.5",
                format!("\"temperature\":{n}").as_bytes(),
            ),
            e,
        );
    }
    // Duplicate keys: the last one counts.
    let inner = &text[1..text.len() - 1];
    add(
        "model twice".into(),
        format!("{{\"model\":\"auto\",{inner}}}").into_bytes(),
        Expect::Ok,
    );
    add(
        "model 7, then valid".into(),
        format!("{{\"model\":7,{inner}}}").into_bytes(),
        Expect::Ok,
    );
    add(
        "valid, then model 7".into(),
        format!("{{{inner},\"model\":7}}").into_bytes(),
        Expect::BadField("model".into()),
    );
    let messages_error = Expect::BadField("messages".into());
    let list = if kind == Kind::Responses {
        "input"
    } else {
        "messages"
    };
    let list_error = if kind == Kind::Responses {
        Expect::Ok
    } else {
        messages_error
    };
    add(
        format!("valid, then {list} []"),
        format!("{{{inner},\"{list}\":[]}}").into_bytes(),
        list_error,
    );
    add(
        format!("valid, then {list} 5"),
        format!("{{{inner},\"{list}\":5}}").into_bytes(),
        Expect::BadField(list.into()),
    );
    // At the body limit (valid) and one byte over it.
    let pad = |total: usize| -> Vec<u8> {
        let head = "{\"pad\":\"";
        let tail = format!("\",{inner}}}");
        let fill = total - head.len() - tail.len();
        [head.as_bytes(), &vec![b'a'; fill], tail.as_bytes()].concat()
    };
    add("exactly max_body_bytes".into(), pad(MAX_BODY), Expect::Ok);
    add(
        "max_body_bytes + 1".into(),
        pad(MAX_BODY + 1),
        Expect::Error(413),
    );
    add(
        "10 x max_body_bytes".into(),
        pad(10 * MAX_BODY),
        Expect::Error(413),
    );
    out
}
