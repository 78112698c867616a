//! What one simulated chat turn sends, decided up front: parses the `[[sim:NAME]]` /
//! `[[sim:NAME=VALUE]]` test directives out of the question and turns the turn into a `Plan`
//! (a list of `Step`s). Pure code, no sockets, threads or clocks: the generator threads in
//! `chat.rs` only execute plans, so every behaviour here is tested on string literals.

use super::models::Model;

/// Opens the think block reasoning models put in front of the answer (four backticks; the
/// placeholder is sent literally, as the real server sometimes does).
pub const THINK_OPEN: &str = "````think::{THINK_TIME}\n";
pub const THINK_CLOSE: &str = "````\n";
/// The answer of `[[sim:unicode]]`: multi-byte characters of 2, 3 and 4 bytes.
pub const UNICODE_ANSWER: &str = "你好，世界 — héllo 🌍 ünïcödé ✓";
/// The WebSocket text message `[[sim:garbage]]` sends: not an LSP frame.
pub const GARBAGE: &str = "this is not a frame";

/// Delta sizes in characters, repeating.
const DELTA_SIZES: [usize; 5] = [1, 3, 5, 2, 4];
/// An empty delta follows every this many non-empty ones (the real server sends some).
const EMPTY_EVERY: usize = 7;
const QUOTE_CHARS: usize = 80;
const TITLE_CHARS: usize = 30;
const DIRECTIVE_OPEN: &str = "[[sim:";
const DIRECTIVE_CLOSE: &str = "]]";

/// What the answer body is; the first body directive in the question wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `Hello from the Lingma simulator (<model>). You said: <Q>`.
    Greeting,
    /// `[[sim:chunks=N]]`: deltas `c1 ` .. `cN `.
    Chunks(usize),
    /// `[[sim:turn]]`: `turn <N> of session <id>`.
    Turn,
    /// `[[sim:whoami]]`: `instance <workDir basename> pid <pid>`.
    Whoami,
    /// `[[sim:echo]]`: the question text exactly as received.
    Echo,
    /// `[[sim:unicode]]`: `UNICODE_ANSWER`.
    Unicode,
}

/// How this request's frames go on the wire; the flags combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// `wire=split`: every frame (or the packed message) is cut into parts at byte positions.
    pub split: bool,
    /// `wire=packed`: every event after the ack goes out as one message at the end.
    pub packed: bool,
    /// `wire=binary`: binary WebSocket messages instead of text.
    pub binary: bool,
}

/// The directives found in one question. Counts (`crash=K` ...) are numbers of deltas sent
/// before the action, empty deltas included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub body: Option<Body>,
    pub think: bool,
    pub status: Option<u16>,
    pub crash: Option<usize>,
    pub stall: Option<usize>,
    pub close: Option<usize>,
    pub garbage: Option<usize>,
    pub delay_ms: Option<u64>,
    pub first_ms: Option<u64>,
    pub wire: Wire,
    /// Unknown or malformed directives, for the log.
    pub ignored: Vec<String>,
}

/// Parses every `[[sim:NAME]]` / `[[sim:NAME=VALUE]]` in `text`.
pub fn parse_directives(text: &str) -> Directives {
    let mut d = Directives::default();
    let mut rest = text;
    while let Some(start) = rest.find(DIRECTIVE_OPEN) {
        let after = &rest[start + DIRECTIVE_OPEN.len()..];
        let Some(end) = after.find(DIRECTIVE_CLOSE) else {
            break;
        };
        let inner = after[..end].trim();
        let (name, value) = match inner.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (inner, None),
        };
        if apply(&mut d, name, value).is_none() {
            d.ignored.push(inner.to_string());
        }
        rest = &after[end + DIRECTIVE_CLOSE.len()..];
    }
    d
}

/// Records one directive; `None` when the name is unknown or the value does not parse.
fn apply(d: &mut Directives, name: &str, value: Option<&str>) -> Option<()> {
    let count =
        |default: usize| -> Option<usize> { value.map_or(Some(default), |v| v.parse().ok()) };
    let number = || value.and_then(|v| v.parse::<u64>().ok());
    match name {
        "chunks" => set_body(d, Body::Chunks(value?.parse().ok()?)),
        "turn" => set_body(d, Body::Turn),
        "whoami" => set_body(d, Body::Whoami),
        "echo" => set_body(d, Body::Echo),
        "unicode" => set_body(d, Body::Unicode),
        "think" => d.think = true,
        "status" => d.status = Some(value?.parse().ok().filter(|c| (100..1000).contains(c))?),
        "crash" => d.crash = Some(count(3)?),
        "stall" => d.stall = Some(count(2)?),
        "close" => d.close = Some(count(2)?),
        "garbage" => d.garbage = Some(count(1)?),
        "delay" => d.delay_ms = Some(number()?),
        "first" => d.first_ms = Some(number()?),
        "wire" => match value? {
            "split" => d.wire.split = true,
            "packed" => d.wire.packed = true,
            "binary" => d.wire.binary = true,
            _ => return None,
        },
        _ => return None,
    }
    Some(())
}

fn set_body(d: &mut Directives, body: Body) {
    d.body.get_or_insert(body);
}

/// How a turn ended, as `chat/finish.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Success,
    Cancelled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Success => "success",
            Reason::Cancelled => "cancelled",
            Reason::Error => "error",
        }
    }
}

/// One thing the generator does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `chat/process_step_callback` with this `step` and status `done`.
    Progress(&'static str),
    /// `session/title/update` (new sessions only).
    Title(String),
    /// One `chat/answer` delta; the generator waits the first-token or chunk delay before it.
    Delta(String),
    /// A WebSocket text message that is not an LSP frame.
    Garbage,
    /// `context/usage/sync`.
    Usage { used: u64, limit: u64 },
    /// `chat/finish`; ends the plan.
    Finish {
        status: u16,
        reason: Reason,
        full_answer: String,
    },
    /// Send nothing more until `chat/stop` (then finish `cancelled`) or the connection ends.
    Stall,
    /// Shut this connection's socket down.
    Close,
    /// Exit the whole process with code 101.
    Crash,
}

/// Everything one turn sends, plus its per-request timing and wire overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub first_ms: Option<u64>,
    pub delay_ms: Option<u64>,
    pub wire: Wire,
    /// Directives that were not understood, for the log.
    pub ignored: Vec<String>,
    /// The turn's answer when it completes (stored in the session history).
    pub answer: String,
}

/// What the plan depends on besides the question.
#[derive(Debug, Clone)]
pub struct Turn<'a> {
    pub question: &'a str,
    /// `None`: the requested model key is unknown.
    pub model: Option<&'a Model>,
    pub logged_in: bool,
    pub session_id: &'a str,
    pub new_session: bool,
    /// 1-based position of this turn in its session.
    pub number: usize,
    /// Basename of the workDir (`[[sim:whoami]]`).
    pub instance: &'a str,
    pub pid: u32,
}

/// The status codes of turns the server refuses before any text.
pub const STATUS_LOGGED_OUT: u16 = 403;
pub const STATUS_INTERNAL: u16 = 500;

pub fn plan(turn: &Turn) -> Plan {
    let d = parse_directives(turn.question);
    let mut plan = Plan {
        steps: vec![Step::Progress("step_start"), Step::Progress("step_end")],
        first_ms: d.first_ms,
        delay_ms: d.delay_ms,
        wire: d.wire,
        ignored: d.ignored.clone(),
        answer: String::new(),
    };
    let refusal = if !turn.logged_in {
        Some(STATUS_LOGGED_OUT)
    } else if turn.model.is_none() || turn.question.trim().is_empty() {
        Some(STATUS_INTERNAL)
    } else {
        d.status
    };
    let model = match (refusal, turn.model) {
        (None, Some(model)) => model,
        (status, _) => {
            let status = status.unwrap_or(STATUS_INTERNAL);
            plan.steps.push(Step::Finish {
                status,
                reason: Reason::Error,
                full_answer: String::new(),
            });
            return plan;
        }
    };
    if turn.new_session {
        plan.steps.push(Step::Title(title(turn.question)));
    }
    let deltas = answer_deltas(turn, model, &d);
    plan.answer = deltas.concat();
    if push_deltas(&mut plan.steps, deltas, &d) {
        let used = (turn.question.chars().count() + plan.answer.chars().count()) as u64 / 4 + 1;
        plan.steps.push(Step::Usage {
            used,
            limit: model.max_input_tokens,
        });
        let full_answer = plan.answer.clone();
        plan.steps.push(Step::Finish {
            status: 200,
            reason: Reason::Success,
            full_answer,
        });
    }
    plan
}

/// The answer's deltas, empty ones included.
fn answer_deltas(turn: &Turn, model: &Model, d: &Directives) -> Vec<String> {
    let quote = quote(turn.question);
    let mut deltas = Vec::new();
    if d.think || model.is_reasoning {
        deltas = split_deltas(&format!(
            "{THINK_OPEN}Thinking about: {quote}\n{THINK_CLOSE}"
        ));
    }
    let body = match d.body.unwrap_or(Body::Greeting) {
        Body::Chunks(n) => {
            deltas.extend((1..=n).map(|i| format!("c{i} ")));
            return with_empty_deltas(deltas);
        }
        Body::Greeting => format!(
            "Hello from the Lingma simulator ({}). You said: {quote}",
            model.display_name
        ),
        Body::Turn => format!("turn {} of session {}", turn.number, turn.session_id),
        Body::Whoami => format!("instance {} pid {}", turn.instance, turn.pid),
        Body::Echo => turn.question.to_string(),
        Body::Unicode => UNICODE_ANSWER.to_string(),
    };
    deltas.extend(split_deltas(&body));
    with_empty_deltas(deltas)
}

/// Appends the deltas with the fault directives placed after their counts; returns false when
/// a terminal fault (crash, close, stall) ends the plan before the finish.
fn push_deltas(steps: &mut Vec<Step>, deltas: Vec<String>, d: &Directives) -> bool {
    let n = deltas.len();
    // A count past the last delta acts after the last one (before the usage and finish).
    let at = |k: Option<usize>, i: usize| k.is_some_and(|k| k.min(n) == i);
    let mut deltas = deltas.into_iter();
    for i in 0..=n {
        if at(d.garbage, i) {
            steps.push(Step::Garbage);
        }
        let terminal = [
            (d.crash, Step::Crash),
            (d.close, Step::Close),
            (d.stall, Step::Stall),
        ];
        if let Some((_, step)) = terminal.into_iter().find(|(k, _)| at(*k, i)) {
            steps.push(step);
            return false;
        }
        if let Some(delta) = deltas.next() {
            steps.push(Step::Delta(delta));
        }
    }
    true
}

/// Splits `text` into deltas of 1, 3, 5, 2, 4, ... characters (never inside a character).
pub fn split_deltas(text: &str) -> Vec<String> {
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
pub fn with_empty_deltas(deltas: Vec<String>) -> Vec<String> {
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
pub fn quote(question: &str) -> String {
    let line = last_line(question);
    match line.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// A new session's title: the first 30 characters of the question's last non-empty line.
pub fn title(question: &str) -> String {
    last_line(question).chars().take(TITLE_CHARS).collect()
}

/// Cuts one outgoing message into 2–3 parts for `wire=split`: inside the `Content-Length`
/// header, and inside the first multi-byte character after it (else the middle of the rest),
/// so a client that decodes per message or per character breaks visibly.
pub fn split_points(bytes: &[u8]) -> Vec<usize> {
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
    use crate::simulator::models;

    fn turn<'a>(question: &'a str, model: Option<&'a Model>) -> Turn<'a> {
        Turn {
            question,
            model,
            logged_in: true,
            session_id: "s-1",
            new_session: true,
            number: 1,
            instance: "inst-a",
            pid: 42,
        }
    }

    fn auto() -> Option<&'static Model> {
        models::find("auto")
    }

    fn deltas(plan: &Plan) -> Vec<&str> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Delta(d) => Some(d.as_str()),
                _ => None,
            })
            .collect()
    }

    fn finish(plan: &Plan) -> (u16, Reason, &str) {
        match plan.steps.last() {
            Some(Step::Finish {
                status,
                reason,
                full_answer,
            }) => (*status, *reason, full_answer),
            other => panic!("plan does not end with a finish: {other:?}"),
        }
    }

    #[test]
    fn parses_names_values_and_combinations() {
        let d = parse_directives(
            "a [[sim:chunks=4]] b [[sim:think]][[sim: delay = 15 ]]\n[[sim:wire=split]]",
        );
        assert_eq!(d.body, Some(Body::Chunks(4)));
        assert!(d.think);
        assert_eq!(d.delay_ms, Some(15));
        assert!(d.wire.split && !d.wire.packed && !d.wire.binary);
        assert!(d.ignored.is_empty());
    }

    #[test]
    fn fault_directives_have_defaults() {
        let d = parse_directives("[[sim:crash]][[sim:stall]][[sim:close]][[sim:garbage]]");
        assert_eq!(
            (d.crash, d.stall, d.close, d.garbage),
            (Some(3), Some(2), Some(2), Some(1))
        );
        let d =
            parse_directives("[[sim:crash=7]][[sim:stall=0]][[sim:first=250]][[sim:status=429]]");
        assert_eq!(
            (d.crash, d.stall, d.first_ms, d.status),
            (Some(7), Some(0), Some(250), Some(429))
        );
    }

    #[test]
    fn unknown_and_malformed_directives_are_reported_not_applied() {
        let d = parse_directives("[[sim:nope]] [[sim:chunks=x]] [[sim:status=42]] [[sim:wire=tcp]] [[sim:chunks]] [[sim:echo");
        assert_eq!(d.body, None);
        assert_eq!(d.status, None);
        assert_eq!(
            d.ignored,
            vec!["nope", "chunks=x", "status=42", "wire=tcp", "chunks"]
        );
    }

    #[test]
    fn first_body_directive_wins() {
        assert_eq!(
            parse_directives("[[sim:echo]][[sim:turn]]").body,
            Some(Body::Echo)
        );
    }

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
    fn default_turn_streams_the_greeting() {
        let p = plan(&turn("first line\nhello there\n\n", auto()));
        assert_eq!(p.steps[0], Step::Progress("step_start"));
        assert_eq!(p.steps[1], Step::Progress("step_end"));
        assert_eq!(p.steps[2], Step::Title("hello there".into()));
        let ds = deltas(&p);
        let answer = "Hello from the Lingma simulator (Auto). You said: hello there";
        assert_eq!(ds.concat(), answer);
        assert!(ds.iter().all(|d| d.chars().count() <= 5));
        assert!(ds.iter().any(|d| d.is_empty()));
        assert!(matches!(
            p.steps[p.steps.len() - 2],
            Step::Usage { limit: 131_072, .. }
        ));
        assert_eq!(finish(&p), (200, Reason::Success, answer));
        assert_eq!(p.answer, answer);
    }

    #[test]
    fn follow_up_turn_has_no_title() {
        let mut t = turn("[[sim:turn]]", auto());
        t.new_session = false;
        t.number = 3;
        let p = plan(&t);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Title(_))));
        assert_eq!(finish(&p).2, "turn 3 of session s-1");
    }

    #[test]
    fn long_questions_are_quoted_and_titled_short() {
        let q = "x".repeat(100);
        assert_eq!(quote(&q), format!("{}...", "x".repeat(80)));
        assert_eq!(quote(&"é".repeat(80)), "é".repeat(80));
        assert_eq!(title(&format!("{}\n\n", "ü".repeat(40))), "ü".repeat(30));
    }

    #[test]
    fn chunks_directive_gives_exact_deltas() {
        let p = plan(&turn("[[sim:chunks=9]]", auto()));
        let ds = deltas(&p);
        let mut want: Vec<String> = (1..=9).map(|i| format!("c{i} ")).collect();
        want.insert(7, String::new());
        assert_eq!(ds, want);
        assert_eq!(finish(&p).2, want.concat());
    }

    #[test]
    fn reasoning_models_and_think_directive_add_the_think_block() {
        let block = "````think::{THINK_TIME}\nThinking about: why\n````\n";
        let thinking = models::find("dashscope_qwen_plus_20250428_thinking");
        let p = plan(&turn("why", thinking));
        assert!(finish(&p).2.starts_with(block), "{}", p.answer);
        let p = plan(&turn("[[sim:think]]\nwhy", auto()));
        assert!(p.answer.starts_with(block));
        let p = plan(&turn("[[sim:think]][[sim:chunks=2]]\nwhy", auto()));
        assert_eq!(p.answer, format!("{block}c1 c2 "));
    }

    #[test]
    fn body_directives() {
        assert_eq!(
            plan(&turn("[[sim:whoami]]", auto())).answer,
            "instance inst-a pid 42"
        );
        let q = "  [[sim:echo]]\r\n multi\nline  ";
        assert_eq!(plan(&turn(q, auto())).answer, q);
        let p = plan(&turn("[[sim:unicode]]", auto()));
        assert_eq!(p.answer, UNICODE_ANSWER);
        assert!(deltas(&p).iter().all(|d| d.chars().count() <= 5));
    }

    #[test]
    fn refusals_finish_right_after_the_step_callbacks() {
        let mut t = turn("hi", auto());
        t.logged_in = false;
        let p = plan(&t);
        assert_eq!(p.steps.len(), 3);
        assert_eq!(finish(&p), (403, Reason::Error, ""));
        assert_eq!(finish(&plan(&turn("hi", None))), (500, Reason::Error, ""));
        assert_eq!(
            finish(&plan(&turn(" \n ", auto()))),
            (500, Reason::Error, "")
        );
        let p = plan(&turn("[[sim:status=429]]", auto()));
        assert_eq!(p.steps.len(), 3);
        assert_eq!(finish(&p), (429, Reason::Error, ""));
    }

    #[test]
    fn faults_come_after_their_delta_counts() {
        let p = plan(&turn("[[sim:crash]]", auto()));
        assert_eq!(
            p.steps
                .iter()
                .filter(|s| matches!(s, Step::Delta(_)))
                .count(),
            3
        );
        assert_eq!(p.steps.last(), Some(&Step::Crash));
        let p = plan(&turn("[[sim:stall=0]]", auto()));
        assert_eq!(p.steps.last(), Some(&Step::Stall));
        assert!(deltas(&p).is_empty());
        let p = plan(&turn("[[sim:close=2]]", auto()));
        assert_eq!(deltas(&p).len(), 2);
        assert_eq!(p.steps.last(), Some(&Step::Close));
        // The earliest terminal fault wins.
        let p = plan(&turn("[[sim:crash=5]][[sim:stall=1]]", auto()));
        assert_eq!(p.steps.last(), Some(&Step::Stall));
    }

    #[test]
    fn garbage_is_sent_mid_stream_and_the_turn_goes_on() {
        let p = plan(&turn("[[sim:garbage]]", auto()));
        let pos = p.steps.iter().position(|s| *s == Step::Garbage).unwrap();
        assert!(matches!(p.steps[pos - 1], Step::Delta(_)));
        assert!(matches!(p.steps[pos + 1], Step::Delta(_)));
        assert_eq!(finish(&p).0, 200);
    }

    #[test]
    fn counts_past_the_end_act_after_the_last_delta() {
        let p = plan(&turn("[[sim:chunks=2]][[sim:stall=50]]", auto()));
        assert_eq!(deltas(&p), vec!["c1 ", "c2 "]);
        assert_eq!(p.steps.last(), Some(&Step::Stall));
    }

    #[test]
    fn timing_and_wire_overrides_pass_through() {
        let p = plan(&turn(
            "[[sim:delay=5]][[sim:first=7]][[sim:wire=packed]][[sim:wire=binary]][[sim:bogus]]",
            auto(),
        ));
        assert_eq!((p.first_ms, p.delay_ms), (Some(7), Some(5)));
        assert_eq!(
            p.wire,
            Wire {
                split: false,
                packed: true,
                binary: true
            }
        );
        assert_eq!(p.ignored, vec!["bogus"]);
    }

    #[test]
    fn split_points_cut_the_header_and_a_multibyte_char() {
        let frame = crate::jsonrpc::encode_frame("{\"t\":\"ab 你\"}".as_bytes());
        let cuts = split_points(&frame);
        assert_eq!(cuts.len(), 2);
        assert_eq!(&frame[..cuts[0]], b"Content-L");
        assert!(
            std::str::from_utf8(&frame[cuts[1]..]).is_err(),
            "second cut is inside 你"
        );
        let ascii = crate::jsonrpc::encode_frame(b"{\"a\":1}");
        let cuts = split_points(&ascii);
        assert_eq!(cuts.len(), 2);
        assert!(cuts[0] < cuts[1] && cuts[1] < ascii.len());
        assert!(split_points(b"ab").is_empty());
        assert_eq!(split_points(b"abc"), vec![1, 2]);
    }
}
