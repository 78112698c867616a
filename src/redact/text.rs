//! Text (a log line, a prompt, a chat message) without the configured secrets, the values
//! of secret-named fields written out in it, and inline `data:` URLs.

use std::borrow::Cow;

use super::fields::{is_secret, REDACTED};

/// The configured secrets as they may appear in text: as configured, and escaped the way a
/// JSON string (once or nested in another) or a Rust `{:?}` writes them. Longest first, so
/// a secret containing another is replaced whole.
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub(super) needles: Vec<String>,
}

impl Known {
    pub(crate) fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Known {
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
pub(crate) fn redact_text<'a>(text: &'a str, known: &Known) -> Cow<'a, str> {
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

pub(super) fn data_url_note(bytes: usize) -> String {
    format!("<redacted data URL, {bytes} bytes>")
}
