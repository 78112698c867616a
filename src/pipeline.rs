//! Pure stream transforms applied to Lingma's answer deltas, in order: split think blocks out
//! as reasoning, then (after the tool scanner) cut at the request's stop sequences, then,
//! when a JSON answer was asked for, take off a wrapping code fence. Each holds back only the
//! few characters that might start a marker, so text still streams as it arrives.

mod think;

pub(crate) use think::{Segment, ThinkSplitter};

/// Cuts the text at the first stop sequence. Holds back the longest tail that could begin
/// one.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    buf: String,
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        StopFilter {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            buf: String::new(),
        }
    }

    /// Returns the text that is safe to emit and, when a stop sequence was hit, which one
    /// (the text after it is dropped).
    pub fn push(&mut self, text: &str) -> (String, Option<String>) {
        if self.stops.is_empty() {
            return (text.to_string(), None);
        }
        self.buf.push_str(text);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.buf.find(s.as_str()).map(|i| (i, s)))
            .min_by_key(|(i, _)| *i);
        if let Some((i, s)) = hit {
            let s = s.clone();
            let out = self.buf[..i].to_string();
            self.buf.clear();
            return (out, Some(s));
        }
        let hold = self.holdback();
        let cut = self.buf.len() - hold;
        let out = self.buf[..cut].to_string();
        self.buf.drain(..cut);
        (out, None)
    }

    fn holdback(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(self.buf.len());
            for n in (best + 1..=max).rev() {
                let start = self.buf.len() - n;
                if self.buf.is_char_boundary(start) && s.starts_with(&self.buf[start..]) {
                    best = n;
                    break;
                }
            }
        }
        best
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.buf)
    }
}

/// With a JSON answer format: takes off the code fence models like to wrap their JSON in
/// (```` ```json ```` … ```` ``` ````), which the client's JSON parser would choke on. Holds
/// back only the opener line at the start and what may be the closer at the end; an answer
/// that does not open with a fence passes untouched.
#[derive(Debug, Default)]
pub struct Unfence {
    state: FenceState,
    buf: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum FenceState {
    #[default]
    Start,
    Fenced,
    Plain,
}

/// Longest opener line (```` ```json ````, ```` ```JSON5 ````, …) waited for.
const MAX_OPENER: usize = 64;

impl Unfence {
    pub fn push(&mut self, text: &str) -> String {
        match self.state {
            FenceState::Plain => text.to_string(),
            FenceState::Fenced => self.body(text),
            FenceState::Start => {
                self.buf.push_str(text);
                let t = self.buf.trim_start();
                if t.is_empty() {
                    return String::new();
                }
                let head = &t.as_bytes()[..t.len().min(3)];
                if !b"```".starts_with(head) {
                    self.state = FenceState::Plain;
                    return std::mem::take(&mut self.buf);
                }
                match t.find('\n') {
                    Some(i) if head == b"```" => {
                        let rest = t[i + 1..].to_string();
                        self.buf.clear();
                        self.state = FenceState::Fenced;
                        self.body(&rest)
                    }
                    None if t.len() <= MAX_OPENER => String::new(),
                    _ => {
                        self.state = FenceState::Plain;
                        std::mem::take(&mut self.buf)
                    }
                }
            }
        }
    }

    fn body(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        let keep = closer_start(&self.buf);
        self.buf.drain(..keep).collect()
    }

    /// The rest, without the closing fence; later text passes untouched.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.buf);
        let fenced = self.state == FenceState::Fenced;
        self.state = FenceState::Plain;
        if !fenced {
            return rest;
        }
        let t = rest.trim_end();
        match t.strip_suffix("```") {
            Some(before) => before.trim_end_matches(['\n', '\r']).to_string(),
            None => rest,
        }
    }
}

/// Where a possible closing fence (a line break, up to three backticks, blanks) starts at
/// the end of `s`.
fn closer_start(s: &str) -> usize {
    let t = s.trim_end();
    let ticks = t.trim_end_matches('`');
    if t.len() - ticks.len() > 3 {
        return t.len();
    }
    let line = ticks.strip_suffix('\n').unwrap_or(ticks);
    line.strip_suffix('\r').unwrap_or(line).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unfenced(pieces: &[&str]) -> String {
        let mut u = Unfence::default();
        let mut out: String = pieces.iter().map(|p| u.push(p)).collect();
        out.push_str(&u.finish());
        out
    }

    #[test]
    fn a_fenced_json_answer_loses_its_fence_however_it_is_split() {
        let answer = "```json\n{\"a\": 1}\n```\n";
        let chars: Vec<String> = answer.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(unfenced(&refs), "{\"a\": 1}");
        assert_eq!(unfenced(&[answer]), "{\"a\": 1}");
        assert_eq!(unfenced(&["  ```\n[1,", " 2]\n``", "`"]), "[1, 2]");
        // Streams while it goes: only the possible closer is held.
        let mut u = Unfence::default();
        assert_eq!(u.push("```json\n{\"a\":"), "{\"a\":");
        assert_eq!(u.push(" 1}\n`"), " 1}");
        assert_eq!(u.push("``"), "");
        assert_eq!(u.finish(), "");
    }

    #[test]
    fn unfenced_answers_and_inner_backticks_pass_untouched() {
        assert_eq!(unfenced(&["{\"a\": \"x``", "`y\"}"]), "{\"a\": \"x```y\"}");
        assert_eq!(unfenced(&["`{}`"]), "`{}`");
        assert_eq!(unfenced(&["``", "x"]), "``x");
        assert_eq!(
            unfenced(&["```json\n{\"code\": \"````\"}\n```"]),
            "{\"code\": \"````\"}"
        );
        let long = format!("```{}", "x".repeat(100));
        assert_eq!(unfenced(&[&long]), long, "no opener line: not a fence");
        assert_eq!(
            unfenced(&["```json\n{\"a\": 1}"]),
            "{\"a\": 1}",
            "an unclosed fence"
        );
    }

    #[test]
    fn stop_sequence_cuts_across_deltas() {
        let mut f = StopFilter::new(&["END".to_string()]);
        assert_eq!(f.push("abc E"), ("abc ".to_string(), None));
        assert_eq!(f.push("N"), (String::new(), None));
        assert_eq!(f.push("D tail"), (String::new(), Some("END".to_string())));
    }

    #[test]
    fn false_start_is_released() {
        let mut f = StopFilter::new(&["END".to_string()]);
        assert_eq!(f.push("EN"), (String::new(), None));
        assert_eq!(f.push("x"), ("ENx".to_string(), None));
        assert_eq!(f.finish(), "");
    }

    #[test]
    fn stop_holdback_respects_char_boundaries() {
        let mut f = StopFilter::new(&["世界!".to_string()]);
        assert_eq!(f.push("你好世"), ("你好".to_string(), None));
        assert_eq!(f.push("界?"), ("世界?".to_string(), None));
    }

    #[test]
    fn no_stops_is_passthrough() {
        let mut f = StopFilter::new(&[String::new()]);
        assert_eq!(f.push("x"), ("x".to_string(), None));
    }
}
