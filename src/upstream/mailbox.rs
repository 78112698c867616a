//! One waiter's mailbox in the pending-request table: what the reader thread routes to a
//! reply or a chat, waiting for its consumer. The reader never waits on it, so it must hold
//! what a slow consumer leaves behind without growing with the number of events: a text
//! delta (cosy's `chat/answer`, ACP's text chunk) that arrives while the one before it is
//! still waiting is appended to it, so a chat whose client reads slowly holds its text, not
//! a parsed frame per delta (a 100,000-delta answer behind a slow client took 170 MB that
//! way). What is held is bounded
//! all the same (`MAX_HELD_BYTES`): past it the chat fails, as a chat whose client stopped
//! reading must.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::Value;

use crate::jsonrpc::{method, RpcError};

/// The most answer text (and other event bytes) one waiter may have waiting: sixteen
/// times a long answer (64k tokens are about 256 KB of text); with `gateway_max_in_flight`
/// chats at once (64), at most 256 MiB in all.
pub(crate) const MAX_HELD_BYTES: usize = 4 * 1024 * 1024;

/// Deltas are joined up to this much text: the one event a slow consumer then takes stays
/// small to copy and to write.
const MAX_JOINED: usize = 64 * 1024;

/// Bytes an event other than a merged delta counts for, besides its text.
const EVENT_COST: usize = 512;

/// What the reader hands to a waiter.
#[derive(Debug)]
pub enum Routed {
    Response(Result<Value, RpcError>),
    Event { method: String, params: Value },
}

#[derive(Default)]
struct Held {
    queue: VecDeque<Routed>,
    bytes: usize,
    /// The connection ended (or the waiter left the table): nothing more will come.
    closed: bool,
    /// More than `MAX_HELD_BYTES` waited: the waiter is told so and nothing more is kept.
    overflowed: bool,
}

#[derive(Default)]
pub(crate) struct Mailbox {
    held: Mutex<Held>,
    arrived: Condvar,
}

/// Why a mailbox gave nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Empty {
    Timeout,
    /// Closed: the connection ended.
    Closed,
    /// Its waiter fell more than `MAX_HELD_BYTES` behind.
    Overflowed,
}

impl From<Empty> for RecvTimeoutError {
    fn from(e: Empty) -> Self {
        match e {
            Empty::Timeout => RecvTimeoutError::Timeout,
            Empty::Closed | Empty::Overflowed => RecvTimeoutError::Disconnected,
        }
    }
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds what the reader routed; never waits. False once nothing more is taken (closed,
    /// or over the bound).
    pub(crate) fn put(&self, msg: Routed) -> bool {
        let mut held = self.lock();
        if held.closed || held.overflowed {
            return false;
        }
        let unmerged = match held.queue.back_mut() {
            Some(last) => merge(last, msg),
            None => Err(msg),
        };
        match unmerged {
            Ok(added) => held.bytes += added,
            Err(msg) => {
                held.bytes += cost(&msg);
                held.queue.push_back(msg);
            }
        }
        if held.bytes > MAX_HELD_BYTES {
            held.overflowed = true;
            held.queue.clear();
            held.bytes = 0;
        }
        drop(held);
        self.arrived.notify_one();
        true
    }

    /// Nothing more will come (the connection ended): a waiter wakes at once.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    /// Whether it fell too far behind.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The next thing routed, waiting up to `timeout`.
    pub(crate) fn take(&self, timeout: Duration) -> Result<Routed, Empty> {
        let deadline = Instant::now() + timeout;
        let mut held = self.lock();
        loop {
            if held.overflowed {
                return Err(Empty::Overflowed);
            }
            if let Some(msg) = held.queue.pop_front() {
                held.bytes = held.bytes.saturating_sub(cost(&msg));
                return Ok(msg);
            }
            if held.closed {
                return Err(Empty::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Empty::Timeout);
            }
            held = self
                .arrived
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn cost(msg: &Routed) -> usize {
    match msg {
        Routed::Event { params, .. } => {
            EVENT_COST
                + text(params)
                    .or_else(|| acp_text(params))
                    .map_or(0, str::len)
        }
        Routed::Response(_) => EVENT_COST,
    }
}

/// A delta's text, read as the decoder reads it (`text`, else `content`).
fn text(params: &Value) -> Option<&str> {
    super::cosy::answer_delta(params)
}

/// A plain text delta, the kind that can be appended to the one before it: not an
/// overwrite, not filtered.
fn is_plain_delta(method: &str, params: &Value) -> bool {
    method == method::CHAT_ANSWER
        && text(params).is_some()
        && params.get("overwrite").and_then(Value::as_bool) != Some(true)
        && params.get("isFiltered").and_then(Value::as_bool) != Some(true)
}

/// Appends `next` to `last` when both are plain deltas of one session; returns the bytes it
/// added, or `next` back.
fn merge(last: &mut Routed, next: Routed) -> Result<usize, Routed> {
    let (
        Routed::Event {
            method: m1,
            params: p1,
        },
        Routed::Event {
            method: m2,
            params: p2,
        },
    ) = (&mut *last, &next)
    else {
        return Err(next);
    };
    if m1 == method::SESSION_UPDATE && m2 == method::SESSION_UPDATE {
        return merge_acp(p1, p2).ok_or(next);
    }
    if !is_plain_delta(m1, p1)
        || !is_plain_delta(m2, p2)
        || p1.get("sessionId") != p2.get("sessionId")
    {
        return Err(next);
    }
    let add = text(p2).unwrap_or("");
    // The joined delta goes in `text`, which the decoder reads first: one that came in
    // `content` moves there before anything is appended.
    if p1
        .get("text")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let first = text(p1).unwrap_or("").to_string();
        p1["text"] = Value::String(first);
        if let Some(fields) = p1.as_object_mut() {
            fields.remove("content");
        }
    }
    match p1.get_mut("text") {
        Some(Value::String(t)) if t.len() + add.len() <= MAX_JOINED => {
            t.push_str(add);
            Ok(add.len())
        }
        _ => Err(next),
    }
}

/// The text of an ACP chunk (`agent_message_chunk`, `agent_thought_chunk`) whose content is
/// one text block.
fn acp_text(params: &Value) -> Option<&str> {
    let update = params.get("update")?;
    let content = update.get("content")?;
    let kind = update.get("sessionUpdate")?.as_str()?;
    let chunk = matches!(kind, "agent_message_chunk" | "agent_thought_chunk");
    (chunk && content.get("type")?.as_str()? == "text")
        .then(|| content.get("text")?.as_str())
        .flatten()
}

/// Appends ACP chunk `p2` to `p1` when both are text chunks of one kind, session and
/// request (cosy's deltas are joined the same way); returns the bytes added.
fn merge_acp(p1: &mut Value, p2: &Value) -> Option<usize> {
    let add = acp_text(p2)?;
    acp_text(p1)?;
    let same = |k: &str| p1.get(k) == p2.get(k);
    let kind = |p: &Value| p.pointer("/update/sessionUpdate").cloned();
    let rid = |p: &Value| super::acp::request_id_of(p).map(str::to_string);
    if !same("sessionId") || kind(p1) != kind(p2) || rid(p1) != rid(p2) {
        return None;
    }
    match p1.pointer_mut("/update/content/text") {
        Some(Value::String(t)) if t.len() + add.len() <= MAX_JOINED => {
            t.push_str(add);
            Some(add.len())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delta(t: &str) -> Routed {
        Routed::Event {
            method: method::CHAT_ANSWER.into(),
            params: json!({"requestId": "r", "sessionId": "s", "text": t, "overwrite": false}),
        }
    }

    fn text_of(r: &Routed) -> String {
        match r {
            Routed::Event { params, .. } => text(params).unwrap_or("").to_string(),
            Routed::Response(_) => "<response>".into(),
        }
    }

    #[test]
    fn deltas_waiting_together_become_one_and_other_events_keep_their_place() {
        let m = Mailbox::default();
        for t in ["a", "b", "c"] {
            assert!(m.put(delta(t)));
        }
        m.put(Routed::Event {
            method: method::TOOL_CALL_SYNC.into(),
            params: json!({"requestId": "r"}),
        });
        m.put(delta("d"));
        let mut overwrite = delta("X");
        if let Routed::Event { params, .. } = &mut overwrite {
            params["overwrite"] = json!(true);
        }
        m.put(overwrite);
        m.put(delta("e"));
        let got: Vec<String> = std::iter::from_fn(|| m.take(Duration::ZERO).ok())
            .map(|r| text_of(&r))
            .collect();
        assert_eq!(got, ["abc", "", "d", "X", "e"]);
        // Taken one by one as they come, nothing is merged.
        m.put(delta("f"));
        assert_eq!(text_of(&m.take(Duration::ZERO).unwrap()), "f");
        m.put(delta("g"));
        assert_eq!(text_of(&m.take(Duration::ZERO).unwrap()), "g");
    }

    #[test]
    fn deltas_in_content_are_joined_as_their_text_is() {
        let m = Mailbox::default();
        let content = |fields: Value| Routed::Event {
            method: method::CHAT_ANSWER.into(),
            params: fields,
        };
        m.put(content(json!({"sessionId": "s", "content": "a"})));
        m.put(delta("b"));
        m.put(content(
            json!({"sessionId": "s", "text": "", "content": "c"}),
        ));
        m.put(content(json!({"sessionId": "s", "content": "d"})));
        let got = m.take(Duration::ZERO).unwrap();
        assert_eq!(text_of(&got), "abcd");
        let Routed::Event { params, .. } = got else {
            panic!("an event");
        };
        assert_eq!(params["text"], "abcd");
        assert_eq!(params.get("content"), None);
        assert_eq!(m.lock().bytes, 0);
    }

    #[test]
    fn a_hundred_thousand_waiting_deltas_hold_their_text_only() {
        let m = Mailbox::default();
        for i in 0..100_000 {
            m.put(delta(&format!("c{i} ")));
        }
        let held = m.lock().bytes;
        assert!(held < 1024 * 1024, "{held} bytes held");
        let events: Vec<String> = std::iter::from_fn(|| m.take(Duration::ZERO).ok())
            .map(|r| text_of(&r))
            .collect();
        assert!(events.len() < 20, "{} events", events.len());
        assert!(events.iter().all(|e| e.len() <= MAX_JOINED));
        let all = events.concat();
        assert!(all.starts_with("c0 c1 ") && all.ends_with("c99999 "));
        assert_eq!(all.matches(' ').count(), 100_000);
    }

    fn acp_chunk(kind: &str, t: &str) -> Routed {
        Routed::Event {
            method: method::SESSION_UPDATE.into(),
            params: json!({"sessionId": "s", "_meta": {"ai-coding/request-id": "r"},
                "update": {"sessionUpdate": kind, "content": {"type": "text", "text": t}}}),
        }
    }

    fn acp_text_of(r: &Routed) -> String {
        match r {
            Routed::Event { params, .. } => acp_text(params).unwrap_or("").to_string(),
            Routed::Response(_) => "<response>".into(),
        }
    }

    #[test]
    fn acp_chunks_waiting_together_are_joined_by_kind_and_hold_their_text_only() {
        let m = Mailbox::default();
        for t in ["a", "b"] {
            m.put(acp_chunk("agent_thought_chunk", t));
        }
        for t in ["c", "d"] {
            m.put(acp_chunk("agent_message_chunk", t));
        }
        m.put(acp_chunk("tool_call", "x"));
        m.put(acp_chunk("agent_message_chunk", "e"));
        let got: Vec<String> = std::iter::from_fn(|| m.take(Duration::ZERO).ok())
            .map(|r| acp_text_of(&r))
            .collect();
        assert_eq!(got, ["ab", "cd", "", "e"]);
        for i in 0..100_000 {
            m.put(acp_chunk("agent_message_chunk", &format!("c{i} ")));
        }
        let held = m.lock().bytes;
        assert!(held < 1024 * 1024, "{held} bytes held");
        let all: String = std::iter::from_fn(|| m.take(Duration::ZERO).ok())
            .map(|r| acp_text_of(&r))
            .collect();
        assert_eq!(all.matches(' ').count(), 100_000);
    }

    #[test]
    fn past_the_bound_the_waiter_is_told_and_nothing_more_is_kept() {
        let m = Mailbox::default();
        let big = "x".repeat(1024 * 1024);
        let mut n = 0;
        while m.put(delta(&big)) {
            n += 1;
            assert!(n <= 5, "never bounded");
        }
        assert!(m.overflowed());
        assert_eq!(m.take(Duration::ZERO).unwrap_err(), Empty::Overflowed);
    }

    #[test]
    fn closing_wakes_a_waiter_after_what_was_held() {
        let m = std::sync::Arc::new(Mailbox::default());
        m.put(delta("last"));
        m.close();
        assert!(!m.put(delta("late")));
        assert_eq!(text_of(&m.take(Duration::from_secs(5)).unwrap()), "last");
        let started = Instant::now();
        assert_eq!(m.take(Duration::from_secs(5)).unwrap_err(), Empty::Closed);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
