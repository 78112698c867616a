//! The debug ring's copy of a request body: redacted while it is built, strings and tool
//! arguments cut, and given up as soon as it passes its budget.

use serde_json::Value;

use super::fields::{is_secret, REDACTED};
use super::text::{data_url_note, redact_text, Known};

/// Longest string tool argument kept whole in the debug ring.
pub(super) const MAX_DEBUG_ARGUMENTS: usize = 2048;
/// Longest other string kept whole in the debug ring (bounds its memory).
pub(super) const MAX_DEBUG_STRING: usize = 16 * 1024;
/// Longest tool-argument string parsed as JSON to redact it field by field; longer ones are
/// redacted as text (parsing a huge one would cost more than the ring keeps of it).
const MAX_PARSED_ARGUMENTS: usize = 256 * 1024;
/// Bytes of tool-argument strings one `debug_copy` parses at most (as a multiple of its
/// budget); past them, argument strings are redacted as text, so a body of many large
/// ones costs no more work than the budget allows.
pub(super) const PARSE_ALLOWANCE: usize = 4;

/// A request body for the debug ring: secret fields redacted as in `redact_json`; strings
/// redacted as in `redact_text`; tool arguments (`arguments`, `args`, `input`,
/// `partial_json` as a string) redacted inside when they are JSON and cut past
/// `MAX_DEBUG_ARGUMENTS`; any other string cut past `MAX_DEBUG_STRING`. Without a budget:
/// the tests' and the fuzzer's way to see what `debug_copy` keeps.
#[cfg(test)]
pub(crate) fn redact_debug(v: &mut Value, known: &[String]) {
    if let Some(copy) = debug_copy(v, &Known::new(known), usize::MAX).value {
        *v = copy;
    }
}

/// What `debug_copy` made of a body: the redacted copy (`None` when it would pass the
/// budget), and how many values it visited (the work done, bounded by the budget).
#[derive(Debug)]
pub(crate) struct DebugCopy {
    pub(crate) value: Option<Value>,
    // Only the tests read it: they check that the work stops with the budget.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) visited: usize,
}

/// The redacted copy `redact_debug` makes, built while `v` is read and given up as soon as
/// it passes `budget` (about its size as JSON): a huge body is never copied whole, and
/// the work stops with the budget (each value visited costs at least one unit of it).
pub(crate) fn debug_copy(v: &Value, known: &Known, budget: usize) -> DebugCopy {
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
pub(super) fn shortened(text: &str, known: &Known, max: usize) -> String {
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
