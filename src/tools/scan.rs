//! Finds tool calls in the model's answer as it streams. Text passes straight through; only
//! what may be the start of a call is held back: a fence line (```` ```json action ````,
//! ```` ```json ````, ```` ``` ````, ...), a `<tool_call>` tag (Qwen's own format) or a line
//! that opens a JSON object. A held block becomes a call only when it parses into calls of
//! declared tools, spelled exactly, with every required argument; otherwise it is released
//! as the text it was. Lingma's UI cards (```` ```toolCall::name::id::INIT ````) are dropped.

use crate::model::{ToolCall, ToolSpec};

use super::calls::{parse_calls, Reject};

/// What the scanner lets out, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    Call(ToolCall),
}

/// A held block longer than this is released as text (a runaway fence, not a call).
const MAX_HELD: usize = 4 << 20;
/// A line start longer than this without a newline is not an opener.
const MAX_OPENER: usize = 200;
const TAG_OPEN: &str = "<tool_call>";
const TAG_CLOSE: &str = "</tool_call>";
const CARD: &str = "toolCall::";
/// Fence info strings whose block may hold a call.
const CALL_FENCES: &[&str] = &["json action", "action", "json", "tool_call", "tool", ""];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Prose; `line_start` says whether `buf` starts at the beginning of a line.
    Text,
    /// Inside a code fence that cannot hold a call: text until the closing fence.
    Code,
    /// Holding a fence that may hold a call; `body` is where its content starts in `buf`.
    Fence { body: usize },
    /// Holding `<tool_call>` ... `</tool_call>`.
    Tag,
    /// Holding a JSON object that starts a line.
    Bare,
    /// Swallowing a Lingma tool card up to its closing fence.
    Card,
}

#[derive(Debug)]
pub(crate) struct ToolScanner {
    tools: Vec<ToolSpec>,
    /// Client tools are looked for only when the request has some (and allows calls).
    active: bool,
    buf: String,
    mode: Mode,
    line_start: bool,
    /// How far `buf` has been searched for the held block's end.
    scanned: usize,
    json: JsonDepth,
    calls: usize,
    /// Text after a call: sent only if another call follows (it would be the model
    /// narrating, or worse, inventing the tool's result).
    after_call: String,
}

impl ToolScanner {
    pub(crate) fn new(tools: Vec<ToolSpec>, active: bool) -> Self {
        ToolScanner {
            tools,
            active,
            buf: String::new(),
            mode: Mode::Text,
            line_start: true,
            scanned: 0,
            json: JsonDepth::default(),
            calls: 0,
            after_call: String::new(),
        }
    }

    pub(crate) fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// Calls found so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls
    }

    pub(crate) fn push(&mut self, delta: &str) -> Vec<Piece> {
        // Without client tools only Lingma's tool cards (a fence) are looked for: text with
        // no backtick, arriving at no held state, passes as it is.
        if !self.active
            && self.mode == Mode::Text
            && self.buf.is_empty()
            && self.calls == 0
            && !delta.contains('`')
        {
            if !delta.is_empty() {
                self.line_start = delta.ends_with('\n');
            }
            return if delta.is_empty() {
                Vec::new()
            } else {
                vec![Piece::Text(delta.to_string())]
            };
        }
        self.buf.push_str(delta);
        let mut out = Vec::new();
        while !self.buf.is_empty() && self.step(&mut out, false) {}
        merge(out)
    }

    /// The end of the answer: a block still held is decided on what arrived (an action
    /// block whose closing fence never came still counts).
    pub(crate) fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        while !self.buf.is_empty() && self.step(&mut out, true) {}
        let rest = std::mem::take(&mut self.buf);
        match self.mode {
            Mode::Card => {}
            Mode::Fence { body } => {
                // The closing fence may be the last line, with no newline after it.
                let content = &rest[body.min(rest.len())..];
                let last = content.rfind('\n').map_or(0, |i| i + 1);
                let t = content[last..].trim();
                let content = if t.starts_with("```") && t[3..].trim().is_empty() {
                    &content[..last]
                } else {
                    content
                };
                self.decide(&rest, content, &mut out)
            }
            Mode::Tag => {
                let body = rest
                    .find(TAG_OPEN)
                    .map_or("", |i| &rest[i + TAG_OPEN.len()..]);
                self.decide(&rest, body, &mut out)
            }
            Mode::Bare => self.decide(&rest, &rest, &mut out),
            Mode::Text | Mode::Code => self.text(rest, &mut out),
        }
        self.mode = Mode::Text;
        if !self.after_call.trim().is_empty() {
            log::debug!(
                "dropped {} characters the model wrote after its tool call",
                self.after_call.len()
            );
        }
        self.after_call.clear();
        merge(out)
    }

    /// One step; false when more input is needed.
    fn step(&mut self, out: &mut Vec<Piece>, at_end: bool) -> bool {
        match self.mode {
            Mode::Text | Mode::Code if self.line_start => self.line_opening(out, at_end),
            Mode::Text | Mode::Code => {
                self.take_line(out);
                true
            }
            Mode::Fence { body } => {
                let from = self.scanned.max(body);
                match find_fence_close(&self.buf, from) {
                    Ok(end) => {
                        let block: String = self.buf.drain(..end).collect();
                        let close = block[body..].rfind("```").unwrap_or(block.len() - body);
                        self.mode = Mode::Text;
                        self.line_start = true;
                        self.scanned = 0;
                        self.decide(&block, &block[body..body + close], out);
                        true
                    }
                    Err(last_line) => {
                        self.scanned = last_line;
                        self.keep_holding(out, Mode::Code)
                    }
                }
            }
            Mode::Tag => match self.buf[self.scanned..].find(TAG_CLOSE) {
                Some(i) => {
                    let end = self.scanned + i + TAG_CLOSE.len();
                    let block: String = self.buf.drain(..end).collect();
                    let start = block.find(TAG_OPEN).map_or(0, |i| i + TAG_OPEN.len());
                    self.mode = Mode::Text;
                    self.line_start = false;
                    self.scanned = 0;
                    self.decide(&block, &block[start..block.len() - TAG_CLOSE.len()], out);
                    true
                }
                None => {
                    let mut at = self.buf.len().saturating_sub(TAG_CLOSE.len());
                    while !self.buf.is_char_boundary(at) {
                        at -= 1;
                    }
                    self.scanned = at;
                    self.keep_holding(out, Mode::Text)
                }
            },
            Mode::Bare => match self.json.feed(&self.buf, &mut self.scanned) {
                Some(end) => {
                    let block: String = self.buf.drain(..end).collect();
                    self.mode = Mode::Text;
                    self.line_start = false;
                    self.scanned = 0;
                    self.json = JsonDepth::default();
                    self.decide(&block, &block, out);
                    true
                }
                None => self.keep_holding(out, Mode::Text),
            },
            Mode::Card => match self.buf.find('\n') {
                Some(i) => {
                    let line: String = self.buf.drain(..=i).collect();
                    if line.trim().starts_with("```") {
                        self.mode = Mode::Text;
                        self.line_start = true;
                    }
                    true
                }
                None => false,
            },
        }
    }

    /// At the start of a line: decide whether it opens (or, in code, closes) something.
    fn line_opening(&mut self, out: &mut Vec<Piece>, at_end: bool) -> bool {
        let line_end = self.buf.find('\n');
        let line = &self.buf[..line_end.unwrap_or(self.buf.len())];
        let trimmed = line.trim_start_matches([' ', '\t']);
        let complete = line_end.is_some() || at_end;
        if !complete && line.len() <= MAX_OPENER && self.may_open(trimmed) {
            return false;
        }
        if self.mode == Mode::Code {
            if trimmed.starts_with("```") && trimmed[3..].trim().is_empty() && complete {
                self.mode = Mode::Text;
            }
            self.take_line(out);
            return true;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            if !complete {
                self.take_line(out);
                return true;
            }
            let info = info.trim();
            if info.starts_with(CARD) {
                let one_line = info.ends_with("```");
                let end = line_end.map_or(self.buf.len(), |i| i + 1);
                self.buf.drain(..end);
                if !one_line {
                    self.mode = Mode::Card;
                }
                return true;
            }
            let lower = info.to_ascii_lowercase();
            if self.active && CALL_FENCES.contains(&lower.as_str()) {
                let body = line_end.map_or(self.buf.len(), |i| i + 1);
                self.mode = Mode::Fence { body };
                self.scanned = body;
                return true;
            }
            self.take_line(out);
            self.mode = Mode::Code;
            return true;
        }
        if self.active && trimmed.starts_with(TAG_OPEN) {
            self.mode = Mode::Tag;
            self.scanned = 0;
            return true;
        }
        if self.active && trimmed.starts_with('{') {
            // Only an object whose first key names a tool is held; other braces are prose.
            let from = line.len() - trimmed.len();
            match bare_start(&self.buf[from..]) {
                None if !at_end && self.buf.len() - from <= MAX_OPENER => return false,
                Some(true) => {
                    self.mode = Mode::Bare;
                    self.scanned = 0;
                    self.json = JsonDepth::default();
                    return true;
                }
                _ => {}
            }
        }
        self.take_line(out);
        true
    }

    /// Whether an incomplete line start may still become an opener.
    fn may_open(&self, trimmed: &str) -> bool {
        if trimmed.is_empty() || "```".starts_with(trimmed) || trimmed.starts_with("```") {
            return true;
        }
        self.active
            && (TAG_OPEN.starts_with(trimmed)
                || (trimmed.starts_with('{') && bare_start(trimmed) != Some(false)))
    }

    /// Passes text up to and including the next newline (or all of it).
    fn take_line(&mut self, out: &mut Vec<Piece>) {
        let (end, line_start) = match self.buf.find('\n') {
            Some(i) => (i + 1, true),
            None => (self.buf.len(), false),
        };
        let text: String = self.buf.drain(..end).collect();
        self.line_start = line_start;
        self.text(text, out);
    }

    /// A held block with no end yet: wait, unless it has grown past any plausible call.
    fn keep_holding(&mut self, out: &mut Vec<Piece>, then: Mode) -> bool {
        if self.buf.len() <= MAX_HELD {
            return false;
        }
        log::debug!("released a {} byte block that never closed", self.buf.len());
        let text = std::mem::take(&mut self.buf);
        self.line_start = text.ends_with('\n');
        self.mode = then;
        self.scanned = 0;
        self.text(text, out);
        true
    }

    /// A complete held block: calls if `body` parses into valid ones, else its text.
    fn decide(&mut self, block: &str, body: &str, out: &mut Vec<Piece>) {
        match parse_calls(body, &self.tools) {
            Ok(calls) => {
                let narration = std::mem::take(&mut self.after_call);
                if !narration.trim().is_empty() {
                    out.push(Piece::Text(narration));
                }
                for call in calls {
                    self.calls += 1;
                    out.push(Piece::Call(call));
                }
            }
            Err(why) => {
                if why != Reject::NotACall {
                    log::info!("kept a tool call as text: {}", why.describe());
                }
                self.text(block.to_string(), out);
            }
        }
    }

    fn text(&mut self, text: String, out: &mut Vec<Piece>) {
        if text.is_empty() {
            return;
        }
        if self.calls > 0 {
            self.after_call.push_str(&text);
        } else {
            out.push(Piece::Text(text));
        }
    }
}

/// Keys a bare JSON call may start with.
const CALL_KEYS: &[&str] = &["tool", "name", "tool_name", "function"];

/// Whether text starting with `{` opens a bare call: `Some(true)` when its first key names a
/// tool, `Some(false)` when it cannot, `None` while undecided.
fn bare_start(s: &str) -> Option<bool> {
    let rest = s.strip_prefix('{').unwrap_or(s).trim_start();
    if rest.is_empty() {
        return None;
    }
    let Some(key) = rest.strip_prefix('"') else {
        return Some(false);
    };
    match key.find('"') {
        Some(i) => Some(CALL_KEYS.contains(&&key[..i])),
        None if key.len() > 16 => Some(false),
        None => None,
    }
}

/// The end (after its newline) of the first closing fence line at or after `from` (a line
/// start); else where the last, incomplete line starts, to resume from there.
fn find_fence_close(buf: &str, from: usize) -> Result<usize, usize> {
    let mut at = from;
    loop {
        let Some(e) = buf[at..].find('\n').map(|i| at + i) else {
            return Err(at);
        };
        let t = buf[at..e].trim();
        if t.starts_with("```") && t[3..].trim().is_empty() {
            return Ok(e + 1);
        }
        at = e + 1;
    }
}

/// Tracks brace depth through a JSON text, strings and escapes included.
#[derive(Debug, Default)]
struct JsonDepth {
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
}

impl JsonDepth {
    /// Advances from `*pos`; the end (exclusive) of the object once it closes.
    fn feed(&mut self, buf: &str, pos: &mut usize) -> Option<usize> {
        let bytes = buf.as_bytes();
        while *pos < bytes.len() {
            let b = bytes[*pos];
            *pos += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.started = true;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.started && self.depth == 0 {
                        return Some(*pos);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match (out.last_mut(), p) {
            (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests;
