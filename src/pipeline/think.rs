//! The think splitter: takes a reasoning model's ```` ````think::{THINK_TIME} ```` … ```` ```` ````
//! blocks out of the answer text as reasoning. The real server frames a block as
//! `"\n````think::{THINK_TIME}\n"` … `"\n````\n"`: the newline before each fence belongs to
//! the marker, so neither a stray `"\n"` of answer text before the reasoning nor a trailing
//! newline inside it reaches the client. Markers may be cut across deltas anywhere; only what
//! may still turn out to be a marker is held back. Pure.

/// A piece of answer after think-splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Text(String),
    Reasoning(String),
}

const THINK_OPEN: &str = "````think::";
const THINK_CLOSE: &str = "````";
/// Longest `{THINK_TIME}`-style token accepted after the opener before giving up waiting
/// for its end.
const MAX_THINK_TAG: usize = 40;

/// Splits think blocks (opened at the start of a line) out of the answer text as reasoning.
#[derive(Debug)]
pub(crate) struct ThinkSplitter {
    buf: String,
    in_think: bool,
    at_line_start: bool,
    /// The newline right after a closer belongs to the marker, even when it arrives in a
    /// later delta.
    eat_newline: bool,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        ThinkSplitter {
            buf: String::new(),
            in_think: false,
            at_line_start: true,
            eat_newline: false,
        }
    }
}

impl ThinkSplitter {
    pub(crate) fn push(&mut self, delta: &str) -> Vec<Segment> {
        self.buf.push_str(delta);
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            let progressed = if self.in_think {
                self.step_think(&mut out)
            } else {
                self.step_text(&mut out)
            };
            if !progressed {
                break;
            }
        }
        merge(out)
    }

    /// Whatever is still held back, as what it would have been.
    pub(crate) fn finish(&mut self) -> Vec<Segment> {
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            return Vec::new();
        }
        vec![if self.in_think {
            Segment::Reasoning(rest)
        } else {
            Segment::Text(rest)
        }]
    }

    fn step_text(&mut self, out: &mut Vec<Segment>) -> bool {
        if self.eat_newline {
            self.eat_newline = false;
            if self.buf.starts_with('\n') {
                self.buf.remove(0);
                return true;
            }
        }
        if self.at_line_start {
            // The real server opens a block with "\n````think::": a newline at the start of a
            // line is held while what follows may still be the opener, whose it then is. A
            // newline that ends a line of text goes out with that text: it makes no text
            // part of its own.
            if let Some(after) = self.buf.strip_prefix('\n') {
                if THINK_OPEN.starts_with(after) {
                    return false;
                }
                if after.starts_with(THINK_OPEN) {
                    self.buf.remove(0);
                    return true;
                }
            }
            if THINK_OPEN.starts_with(self.buf.as_str()) {
                return false; // could still become the opener
            }
            if let Some(rest) = self.buf.strip_prefix(THINK_OPEN) {
                // The tag runs to the end of the line (`{THINK_TIME}` or digits).
                let end = match rest.find('\n') {
                    Some(i) => i + 1,
                    None if rest.len() > MAX_THINK_TAG => {
                        rest.find(char::is_whitespace).unwrap_or(rest.len())
                    }
                    None => return false,
                };
                self.buf.drain(..THINK_OPEN.len() + end);
                self.in_think = true;
                return true;
            }
        }
        let take = match self.buf.find('\n') {
            Some(i) => {
                self.at_line_start = true;
                i + 1
            }
            None => {
                self.at_line_start = false;
                self.buf.len()
            }
        };
        let text: String = self.buf.drain(..take).collect();
        out.push(Segment::Text(text));
        true
    }

    fn step_think(&mut self, out: &mut Vec<Segment>) -> bool {
        if let Some(i) = self.buf.find(THINK_CLOSE) {
            let mut thought: String = self.buf.drain(..i).collect();
            self.buf.drain(..THINK_CLOSE.len());
            // The newline before the closing fence is the closer's.
            if thought.ends_with('\n') {
                thought.pop();
            }
            self.eat_newline = true;
            if !thought.is_empty() {
                out.push(Segment::Reasoning(thought));
            }
            self.in_think = false;
            self.at_line_start = true;
            return true;
        }
        // Hold back trailing backticks and the newline before them: they may be the start
        // of the closer.
        let ticks = self.buf.trim_end_matches('`');
        let mut keep = self.buf.len() - ticks.len();
        if ticks.ends_with('\n') {
            keep += 1;
        }
        let emit = self.buf.len() - keep;
        if emit == 0 {
            return false;
        }
        let thought: String = self.buf.drain(..emit).collect();
        out.push(Segment::Reasoning(thought));
        true
    }
}

fn merge(segments: Vec<Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    for s in segments {
        match (out.last_mut(), s) {
            (Some(Segment::Text(a)), Segment::Text(b)) => a.push_str(&b),
            (Some(Segment::Reasoning(a)), Segment::Reasoning(b)) => a.push_str(&b),
            (_, s) => out.push(s),
        }
    }
    out.retain(|s| !matches!(s, Segment::Text(t) | Segment::Reasoning(t) if t.is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(deltas: &[&str]) -> Vec<Segment> {
        let mut s = ThinkSplitter::default();
        let mut out = Vec::new();
        for d in deltas {
            out.extend(s.push(d));
        }
        out.extend(s.finish());
        merge(out)
    }

    fn chars(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    fn text(t: &str) -> Segment {
        Segment::Text(t.into())
    }

    fn thought(t: &str) -> Segment {
        Segment::Reasoning(t.into())
    }

    /// Splits `answer` at every pair of cuts (three deltas, empty ones included), and one
    /// character at a time: each gives `want`.
    fn every_cut(answer: &str, want: &[Segment]) {
        let bounds: Vec<usize> = (0..=answer.len())
            .filter(|&i| answer.is_char_boundary(i))
            .collect();
        for (n, &i) in bounds.iter().enumerate() {
            for &j in &bounds[n..] {
                let pieces = [&answer[..i], &answer[i..j], &answer[j..]];
                assert_eq!(run(&pieces), want, "cut at {i} and {j}: {pieces:?}");
            }
        }
        let one_by_one = chars(answer);
        let refs: Vec<&str> = one_by_one.iter().map(String::as_str).collect();
        assert_eq!(run(&refs), want, "one character at a time");
    }

    #[test]
    fn the_real_servers_framing_leaves_no_newline_on_either_side() {
        every_cut(
            "\n````think::{THINK_TIME}\nLet me see.\n````\nThe answer is 4.",
            &[thought("Let me see."), text("The answer is 4.")],
        );
        every_cut(
            "\n````think::1234\na\n``b\n\n````\nc\n",
            &[thought("a\n``b\n"), text("c\n")],
        );
        every_cut(
            "\n````think::{THINK_TIME}\nonly thinking\n````\n",
            &[thought("only thinking")],
        );
    }

    #[test]
    fn a_block_without_the_leading_newline_is_split_the_same() {
        every_cut(
            "````think::12\nhmm\n````\nok",
            &[thought("hmm"), text("ok")],
        );
        every_cut(
            "Sure.\n````think::1\nx\n````\nDone",
            &[text("Sure.\n"), thought("x"), text("Done")],
        );
    }

    #[test]
    fn newlines_that_precede_no_opener_stay_text() {
        every_cut(
            "Hi\n\nthere\n```rust\nx\n```\n\n````thinx\n",
            &[text("Hi\n\nthere\n```rust\nx\n```\n\n````thinx\n")],
        );
        // Only the newline right before the fence is the marker's.
        every_cut("\n\n````think::1\nx\n````\n", &[text("\n"), thought("x")]);
    }

    #[test]
    fn a_newline_is_held_only_while_it_may_be_the_openers() {
        let mut s = ThinkSplitter::default();
        assert_eq!(
            s.push("Hello\n"),
            [text("Hello\n")],
            "it ends a line of text"
        );
        assert_eq!(s.push("\n"), [], "at a line start it may open a block");
        assert_eq!(s.push("``"), []);
        assert_eq!(s.push("`x"), [text("\n```x")]);
        assert_eq!(s.push("\n"), [text("\n")]);
        assert_eq!(s.push("\n"), []);
        assert_eq!(s.finish(), [text("\n")]);
        // In a block, the newline and backticks that may begin the closer.
        let mut s = ThinkSplitter::default();
        assert_eq!(s.push("\n````think::1\nsee\n`"), [thought("see")]);
        assert_eq!(s.push("`x"), [thought("\n``x")]);
        assert_eq!(s.push("\n"), []);
        assert_eq!(s.push("````\nok"), [text("ok")]);
    }

    #[test]
    fn plain_text_passes_through_immediately() {
        let mut s = ThinkSplitter::default();
        assert_eq!(s.push("Hello"), vec![Segment::Text("Hello".into())]);
        assert_eq!(s.push(" world\n"), vec![Segment::Text(" world\n".into())]);
    }

    #[test]
    fn think_block_split_one_char_at_a_time() {
        let answer = "````think::{THINK_TIME}\nLet me see.\n````\nThe answer is 4.";
        let mut deltas = chars(answer);
        deltas.insert(
            deltas.iter().position(|d| d == "\n").unwrap() + 20,
            String::new(),
        );
        let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
        assert_eq!(
            run(&refs),
            vec![
                Segment::Reasoning("Let me see.".into()),
                Segment::Text("The answer is 4.".into())
            ]
        );
    }

    #[test]
    fn think_with_digits_in_one_delta() {
        assert_eq!(
            run(&["````think::1234\nhmm````\nok"]),
            vec![Segment::Reasoning("hmm".into()), Segment::Text("ok".into())]
        );
    }

    #[test]
    fn code_fences_are_not_think_blocks() {
        let out = run(&["```", "rust\nfn x() {}\n```\n"]);
        assert_eq!(out, vec![Segment::Text("```rust\nfn x() {}\n```\n".into())]);
    }

    #[test]
    fn opener_only_counts_at_line_start() {
        let out = run(&["see ````think::x\n"]);
        assert_eq!(out, vec![Segment::Text("see ````think::x\n".into())]);
    }

    #[test]
    fn unterminated_think_is_reasoning() {
        assert_eq!(
            run(&["````think::{THINK_TIME}\nstill thinking"]),
            vec![Segment::Reasoning("still thinking".into())]
        );
    }
}
