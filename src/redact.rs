//! Redaction of secrets in anything that may reach a log line or a debug endpoint: Lingma's
//! `auth/status` carries session tokens, later login calls carry passwords, client request
//! bodies may carry anything. Structured values lose their secret-named fields; text (a
//! log line, a prompt, a chat message) loses the configured secrets, secret-named fields
//! written out in it (`"password":"…"`, at any level of JSON-in-JSON escaping) and inline
//! `data:` URLs. Pure.

use std::borrow::Cow;

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
/// Longest tool-argument string parsed as JSON to redact it field by field; longer ones are
/// redacted as text (parsing a huge one would cost more than the ring keeps of it).
const MAX_PARSED_ARGUMENTS: usize = 256 * 1024;
/// Bytes of tool-argument strings one `debug_copy` parses at most (as a multiple of its
/// budget); past them, argument strings are redacted as text, so a body of many large
/// ones costs no more work than the budget allows.
const PARSE_ALLOWANCE: usize = 4;

pub const REDACTED: &str = "<redacted>";

pub fn is_secret(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s)) || norm.contains("sessionbundle")
}

/// The configured secrets as they may appear in text: as configured, and escaped the way a
/// JSON string (once or nested in another) or a Rust `{:?}` writes them. Longest first, so
/// a secret containing another is replaced whole.
#[derive(Debug, Default, Clone)]
pub struct Known {
    needles: Vec<String>,
}

impl Known {
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Known {
        let json = |s: &str| {
            let quoted = serde_json::to_string(s).unwrap_or_default();
            quoted[1..quoted.len() - 1].to_string()
        };
        let mut needles = Vec::new();
        for secret in secrets {
            let s = secret.as_ref();
            if s.is_empty() {
                continue;
            }
            let once = json(s);
            let twice = json(&once);
            let debug = format!("{s:?}");
            needles.extend([
                s.to_string(),
                once,
                twice,
                debug[1..debug.len() - 1].to_string(),
            ]);
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        needles.dedup();
        Known { needles }
    }
}

/// `text` with the configured secrets, the values of secret-named fields written out in it
/// and inline `data:` URLs replaced. Borrows when there is nothing to replace.
pub fn redact_text<'a>(text: &'a str, known: &Known) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for needle in &known.needles {
        if out.contains(needle.as_str()) {
            out = Cow::Owned(out.replace(needle.as_str(), REDACTED));
        }
    }
    if let Some(s) = scrub_fields(&out) {
        out = Cow::Owned(s);
    }
    if let Some(s) = scrub_data_urls(&out) {
        out = Cow::Owned(s);
    }
    out
}

/// Replaces the values of secret-named fields written out as text: `"password":"x"` in
/// JSON, `\"token\":\"x\"` in JSON inside a JSON string (a prompt holding a tool call, a
/// frame holding that prompt), `"password": String("x")` in a `{:?}` dump. `None` when
/// there is none. A value whose closing quote is missing (the text was cut) is replaced to
/// the end.
fn scrub_fields(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if !b.contains(&b'"') {
        return None;
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b':') {
        let colon = from + off;
        from = colon + 1;
        let Some((run, level)) = secret_field_at(text, colon) else {
            continue;
        };
        // Skip `:`, blanks and a `{:?}` dump's `String(`, then the value's opening quote,
        // escaped like the key's.
        let mut v = colon + 1;
        while v < b.len() && (b[v] == b' ' || b[v] == b'\t') {
            v += 1;
        }
        if text[v..].starts_with("String(") {
            v += "String(".len();
        }
        if b.len() < v + run + 1 || b[v..v + run].iter().any(|&c| c != b'\\') || b[v + run] != b'"'
        {
            continue;
        }
        let start = v + run + 1;
        let end = closing_quote(b, start, level).map_or(b.len(), |q| q - run);
        if end <= start {
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..start]);
        o.push_str(REDACTED);
        copied = end;
        from = end.max(from);
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// At a `:` of `text`: when a quoted secret-named key ends right before it (blanks
/// allowed), the number of backslashes escaping its quotes and the escape level they mean
/// (0 for `"k"`, 1 for `\"k\"`, 2 for `\\\"k\\\"`, ...).
fn secret_field_at(text: &str, colon: usize) -> Option<(usize, u32)> {
    let b = text.as_bytes();
    let mut k = colon;
    while k > 0 && (b[k - 1] == b' ' || b[k - 1] == b'\t') {
        k -= 1;
    }
    let close = k.checked_sub(1).filter(|&c| b[c] == b'"')?;
    let run = backslashes_before(b, close);
    // A quote at level n is escaped by 2^n - 1 backslashes; deeper than 8 is not JSON we make.
    let level = (run + 1)
        .is_power_of_two()
        .then(|| (run + 1).trailing_zeros())?;
    if level > 8 {
        return None;
    }
    let key_end = close - run;
    let mut s = key_end;
    while s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_' || b[s - 1] == b'-') {
        s -= 1;
    }
    if s == key_end || s < run + 1 || b[s - 1] != b'"' || backslashes_before(b, s - 1) != run {
        return None;
    }
    is_secret(&text[s..key_end]).then_some((run, level))
}

fn backslashes_before(b: &[u8], i: usize) -> usize {
    b[..i].iter().rev().take_while(|&&c| c == b'\\').count()
}

/// The first quote at or after `from` that closes a string at escape `level`: preceded by
/// `2^level * r + 2^level - 1` backslashes with `r` even (an escaped quote or backslash of
/// a deeper level has more).
fn closing_quote(b: &[u8], from: usize, level: u32) -> Option<usize> {
    let unit = 1usize << level;
    (from..b.len()).find(|&i| {
        b[i] == b'"' && {
            let r = backslashes_before(b, i) + 1;
            r % unit == 0 && (r / unit) % 2 == 1
        }
    })
}

/// Replaces each `data:` URL inside `text` (one that starts a word and has its `,`) up to
/// the first blank, quote, bracket or backslash; a string that is a data URL is replaced
/// whole. `None` when there is none.
fn scrub_data_urls(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if !b.contains(&b':') {
        return None;
    }
    let trimmed = text.trim_start();
    // Bytes, not `str` slicing: the fifth byte may fall inside a character ("你好").
    if trimmed
        .as_bytes()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"data:"))
    {
        return Some(data_url_note(text.len()));
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b':') {
        let colon = from + off;
        from = colon + 1;
        let Some(start) = colon.checked_sub(4) else {
            continue;
        };
        if !b[start..colon].eq_ignore_ascii_case(b"data")
            || (start > 0 && b[start - 1].is_ascii_alphanumeric())
        {
            continue;
        }
        let end = (colon..b.len())
            .find(|&i| b[i].is_ascii_whitespace() || b"\"'`<>()[]{}\\".contains(&b[i]))
            .unwrap_or(b.len());
        if !b[colon..end].contains(&b',') {
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..start]);
        o.push_str(&data_url_note(end - start));
        copied = end;
        from = end;
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

fn data_url_note(bytes: usize) -> String {
    format!("<redacted data URL, {bytes} bytes>")
}

/// A request body for the debug ring: secret fields redacted as in `redact_json`; strings
/// redacted as in `redact_text`; tool arguments (`arguments`, `args`, `input`,
/// `partial_json` as a string) redacted inside when they are JSON and cut past
/// `MAX_DEBUG_ARGUMENTS`; any other string cut past `MAX_DEBUG_STRING`.
pub fn redact_debug(v: &mut Value, known: &[String]) {
    if let Some(copy) = debug_copy(v, &Known::new(known), usize::MAX).value {
        *v = copy;
    }
}

/// What `debug_copy` made of a body: the redacted copy (`None` when it would pass the
/// budget), and how many values it visited (the work done, bounded by the budget).
#[derive(Debug)]
pub struct DebugCopy {
    pub value: Option<Value>,
    pub visited: usize,
}

/// The redacted copy `redact_debug` makes, built while `v` is read and given up as soon as
/// it passes `budget` (about its size as JSON): a huge body is never copied whole, and
/// the work stops with the budget (each value visited costs at least one unit of it).
pub fn debug_copy(v: &Value, known: &Known, budget: usize) -> DebugCopy {
    let mut c = Copier {
        known,
        left: budget,
        parse_left: budget.saturating_mul(PARSE_ALLOWANCE),
        visited: 0,
    };
    let value = c.copy(v, 0);
    DebugCopy {
        value,
        visited: c.visited,
    }
}

/// How deep `debug_copy` goes, counting the levels inside argument strings it parses. The
/// JSON parser bounds each value to 128 levels, but argument strings can hold argument
/// strings: without a bound on the whole chain, a body of a few MB recursed until a
/// worker's stack overflowed, which aborts the process. Past it, an argument string is
/// redacted as text, not parsed.
const MAX_REDACT_DEPTH: usize = 128;

struct Copier<'k> {
    known: &'k Known,
    /// Budget left, in about bytes of JSON.
    left: usize,
    /// Bytes of argument strings that may still be parsed.
    parse_left: usize,
    visited: usize,
}

impl Copier<'_> {
    /// Takes `n` from the budget; `None` once it is spent.
    fn charge(&mut self, n: usize) -> Option<()> {
        self.left = self.left.checked_sub(n)?;
        Some(())
    }

    fn copy(&mut self, v: &Value, depth: usize) -> Option<Value> {
        self.visited += 1;
        match v {
            Value::Object(map) => {
                self.charge(2)?;
                let mut out = serde_json::Map::new();
                for (k, val) in map {
                    self.charge(k.len() + 4)?;
                    let copied = if is_secret(k) && !val.is_null() && val.as_str() != Some("") {
                        self.visited += 1;
                        self.charge(REDACTED.len() + 2)?;
                        Value::String(REDACTED.into())
                    } else if let (
                        "arguments" | "args" | "input" | "partial_json",
                        Value::String(text),
                    ) = (k.as_str(), val)
                    {
                        self.visited += 1;
                        let text = self.arguments(text, depth)?;
                        self.charge(text.len() + 2)?;
                        Value::String(text)
                    } else {
                        self.copy(val, depth + 1)?
                    };
                    out.insert(k.clone(), copied);
                }
                Some(Value::Object(out))
            }
            Value::Array(items) => {
                self.charge(2)?;
                let mut out = Vec::new();
                for item in items {
                    self.charge(1)?;
                    out.push(self.copy(item, depth + 1)?);
                }
                Some(Value::Array(out))
            }
            Value::String(text) => {
                let text = shortened(text, self.known, MAX_DEBUG_STRING);
                self.charge(text.len() + 2)?;
                Some(Value::String(text))
            }
            other => {
                self.charge(8)?;
                Some(other.clone())
            }
        }
    }

    /// A tool-argument string: parsed and redacted field by field when it is JSON (and
    /// not too deep or long), else redacted as text; then cut to `MAX_DEBUG_ARGUMENTS`.
    fn arguments(&mut self, text: &str, depth: usize) -> Option<String> {
        let affordable = text.len() <= MAX_PARSED_ARGUMENTS.min(self.parse_left);
        let parsed = (depth < MAX_REDACT_DEPTH && affordable)
            .then(|| {
                self.parse_left -= text.len();
                serde_json::from_str::<Value>(text).ok()
            })
            .flatten();
        if let Some(inner) = parsed {
            // Its own budget (a value parsed from at most `text.len()` bytes, and so about
            // that many values): it is cut to MAX_DEBUG_ARGUMENTS afterwards, and only that
            // is charged to the body's.
            let mut sub = Copier {
                known: self.known,
                left: MAX_PARSED_ARGUMENTS * 2,
                parse_left: self.parse_left,
                visited: 0,
            };
            let copied = sub.copy(&inner, depth + 1);
            self.visited += sub.visited;
            self.parse_left = sub.parse_left;
            if let Some(copied) = copied {
                let mut out = copied.to_string();
                cut(&mut out, MAX_DEBUG_ARGUMENTS);
                return Some(out);
            }
        }
        Some(shortened(text, self.known, MAX_DEBUG_ARGUMENTS))
    }
}

/// `text` redacted and cut to at most `max` bytes (at a character boundary), saying how
/// much went. A long text is cut before it is redacted, so no more than about `max` bytes
/// are ever copied; a secret or data URL the cut would split is left out whole.
fn shortened(text: &str, known: &Known, max: usize) -> String {
    if text.len() <= max {
        let mut out = redact_text(text, known).into_owned();
        cut(&mut out, max);
        return out;
    }
    if text
        .trim_start()
        .as_bytes()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"data:"))
    {
        return data_url_note(text.len());
    }
    let mut end = floor_boundary(text, max / 2);
    // A secret that starts before the cut and ends past it would leave its beginning: the
    // cut moves before it (and again if that splits another).
    'again: loop {
        for needle in &known.needles {
            let split = (1..needle.len().min(end + 1))
                .rev()
                .filter(|&k| needle.is_char_boundary(k))
                .find(|&k| text[..end].ends_with(&needle[..k]));
            if let Some(k) = split {
                end -= k;
                continue 'again;
            }
        }
        break;
    }
    let mut out = redact_text(&text[..end], known).into_owned();
    out.push_str(&format!("... [{} bytes truncated]", text.len() - end));
    out
}

/// The largest character boundary of `text` at or below `i`.
fn floor_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cuts `text` to at most `max` bytes (at a character boundary), saying how much went.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let end = floor_boundary(text, max / 2);
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
}
