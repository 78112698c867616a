//! Text shaping for the answers: deltas of 1, 3, 5, 2, 4 characters with an empty one now
//! and then (as the real server sends), the quoted line, a new session's title, and the
//! byte positions where `wire=split` cuts a message.

use crate::prompt::{self, Prompt};

/// Delta sizes in characters, repeating.
const DELTA_SIZES: [usize; 5] = [1, 3, 5, 2, 4];
/// An empty delta follows every this many non-empty ones (the real server sends some).
const EMPTY_EVERY: usize = 7;
const QUOTE_CHARS: usize = 80;
const TITLE_CHARS: usize = 30;

/// Splits `text` into deltas of 1, 3, 5, 2, 4, ... characters (never inside a character).
pub(crate) fn split_deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    for size in DELTA_SIZES.iter().cycle() {
        let delta: String = chars.by_ref().take(*size).collect();
        if delta.is_empty() {
            break;
        }
        out.push(delta);
    }
    out
}

/// Inserts an empty delta after every `EMPTY_EVERY`-th non-empty one.
pub(crate) fn with_empty_deltas(deltas: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(deltas.len() + deltas.len() / EMPTY_EVERY);
    let mut non_empty = 0;
    for delta in deltas {
        let empty = delta.is_empty();
        out.push(delta);
        if !empty {
            non_empty += 1;
            if non_empty % EMPTY_EVERY == 0 {
                out.push(String::new());
            }
        }
    }
    out
}

/// The last non-empty line of the question, trimmed.
fn last_line(question: &str) -> &str {
    question
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

/// `<Q>` of the answers: the last non-empty line, cut to 80 characters with `...`.
pub(crate) fn quote(question: &str) -> String {
    let line = last_line(question);
    match line.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// A new session's title: the first 30 characters of the last non-empty line of the latest
/// user text.
pub(crate) fn title(question: &str) -> String {
    title_of(user_text(&prompt::read(question), question))
}

pub(crate) fn title_of(text: &str) -> String {
    last_line(text).chars().take(TITLE_CHARS).collect()
}

/// The text answers quote: the latest user text, or the whole question when it has none.
pub(crate) fn user_text<'a>(prompt: &Prompt<'a>, question: &'a str) -> &'a str {
    if prompt.user.trim().is_empty() {
        question
    } else {
        prompt.user
    }
}

/// Cuts one outgoing message into 2–3 parts for `wire=split`: inside the `Content-Length`
/// header, and inside the first multi-byte character after it (else the middle of the rest),
/// so a client that decodes per message or per character breaks visibly.
pub(crate) fn split_points(bytes: &[u8]) -> Vec<usize> {
    const IN_HEADER: usize = 9; // "Content-L|ength"
    if bytes.len() < 3 {
        return Vec::new();
    }
    let first = IN_HEADER.min(bytes.len() / 2).max(1);
    let second = bytes[first + 1..]
        .iter()
        .position(|b| b & 0xC0 == 0x80)
        .map(|p| p + first + 1)
        .unwrap_or(first + (bytes.len() - first) / 2);
    if second > first && second < bytes.len() {
        vec![first, second]
    } else {
        vec![first]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::answer::UNICODE_ANSWER;

    #[test]
    fn deltas_follow_the_size_pattern_on_char_boundaries() {
        assert_eq!(
            split_deltas("abcdefghijklmnopq"),
            vec!["a", "bcd", "efghi", "jk", "lmno", "p", "q"]
        );
        let parts = split_deltas(UNICODE_ANSWER);
        assert_eq!(parts.concat(), UNICODE_ANSWER);
        assert_eq!(parts[0], "你");
        assert_eq!(parts[1], "好，世");
        assert!(split_deltas("").is_empty());
    }

    #[test]
    fn an_empty_delta_follows_every_seventh() {
        let input: Vec<String> = (1..=15).map(|i| i.to_string()).collect();
        let out = with_empty_deltas(input);
        assert_eq!(out.len(), 17);
        assert_eq!(out[7], "");
        assert_eq!(out[15], "");
        assert_eq!(out.iter().filter(|d| d.is_empty()).count(), 2);
    }

    #[test]
    fn long_questions_are_quoted_and_titled_short() {
        let q = "x".repeat(100);
        assert_eq!(quote(&q), format!("{}...", "x".repeat(80)));
        assert_eq!(quote(&"é".repeat(80)), "é".repeat(80));
        assert_eq!(title(&format!("{}\n\n", "ü".repeat(40))), "ü".repeat(30));
    }

    #[test]
    fn split_points_cut_the_header_and_a_multibyte_char() {
        let frame = lingma_protocol::jsonrpc::encode_frame("{\"t\":\"ab 你\"}".as_bytes());
        let cuts = split_points(&frame);
        assert_eq!(cuts.len(), 2);
        assert_eq!(&frame[..cuts[0]], b"Content-L");
        assert!(
            std::str::from_utf8(&frame[cuts[1]..]).is_err(),
            "second cut is inside 你"
        );
        let ascii = lingma_protocol::jsonrpc::encode_frame(b"{\"a\":1}");
        let cuts = split_points(&ascii);
        assert_eq!(cuts.len(), 2);
        assert!(cuts[0] < cuts[1] && cuts[1] < ascii.len());
        assert!(split_points(b"ab").is_empty());
        assert_eq!(split_points(b"abc"), vec![1, 2]);
    }
}
