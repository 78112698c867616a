//! Recent `/v1/responses` conversations, so a request naming a `previous_response_id`
//! continues where that response left off. Each response keeps its conversation as a chain
//! of shared segments (each turn's new input plus its answer), so a long conversation is
//! held once however many of its responses are remembered. Scoped by API key, expiring
//! (`responses_store_ttl_sec`) and bounded twice, least recently used dropped first: in
//! count (`responses_store_max_entries`) and in bytes (`responses_store_max_bytes`), each
//! shared segment counted once, while some entry still holds it, plus each entry's response
//! object. A response that alone would take more than the byte bound is not stored (a
//! `previous_response_id` naming it gets the same 400 as an unknown one). Used by worker
//! threads; the lock covers bookkeeping only.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::model::{Message, ToolCall, ToolResult};

/// A response's conversation: its segments in order.
#[derive(Debug, Default)]
pub struct Stored {
    segments: Vec<Arc<Segment>>,
    /// The response object, as `GET /v1/responses/{id}` returns it.
    pub response: Value,
}

/// One turn of a conversation (its new input and the answer), shared by every later
/// response of the conversation.
#[derive(Debug)]
struct Segment {
    messages: Vec<Message>,
    /// What it takes in memory, measured once.
    bytes: usize,
}

impl Stored {
    /// The conversation's messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.segments.iter().flat_map(|s| s.messages.iter())
    }
}

/// Bookkeeping of one entry beyond its measured parts (map slots, the use index, the `Arc`
/// headers), an estimate.
const ENTRY_OVERHEAD: usize = 256;

type Key = (String, String);

struct Entry {
    stored: Arc<Stored>,
    at: Instant,
    used: u64,
    /// What the entry holds besides its segments: the response object, its key, the list of
    /// segments.
    own: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// The entries by last use, least recent first.
    by_use: BTreeMap<u64, Key>,
    /// How many entries hold each segment (by address: an entry's `Arc` keeps it alive, so
    /// no other segment can have that address meanwhile).
    holders: HashMap<usize, usize>,
    bytes: usize,
    tick: u64,
}

impl Inner {
    fn next_use(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn add(&mut self, key: Key, entry: Entry) {
        self.remove(&key);
        for s in &entry.stored.segments {
            let holders = self.holders.entry(address(s)).or_insert(0);
            if *holders == 0 {
                self.bytes += s.bytes;
            }
            *holders += 1;
        }
        self.bytes += entry.own;
        self.by_use.insert(entry.used, key.clone());
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.by_use.remove(&entry.used);
        self.bytes -= entry.own;
        for s in &entry.stored.segments {
            let at = address(s);
            let holders = self
                .holders
                .get_mut(&at)
                .expect("a held segment is counted");
            *holders -= 1;
            if *holders == 0 {
                self.holders.remove(&at);
                self.bytes -= s.bytes;
            }
        }
        Some(entry)
    }

    /// Drops expired entries, then the least recently used, until both bounds hold.
    fn shrink_to(&mut self, max_entries: usize, max_bytes: usize, ttl: Duration) {
        let over = |i: &Inner| i.entries.len() > max_entries || i.bytes > max_bytes;
        if !over(self) {
            return;
        }
        let expired: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.at.elapsed() >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.remove(k);
        }
        while over(self) {
            let Some((_, oldest)) = self.by_use.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            self.remove(&oldest);
        }
    }
}

fn address(s: &Arc<Segment>) -> usize {
    Arc::as_ptr(s) as usize
}

pub struct ResponseStore {
    max_entries: usize,
    max_bytes: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl ResponseStore {
    pub fn new(max_entries: usize, max_bytes: usize, ttl: Duration) -> Self {
        ResponseStore {
            max_entries,
            max_bytes,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The conversation up to and including response `id`, if this API key (`scope`) made
    /// it and it is still remembered. It counts as a use.
    pub fn get(&self, scope: &str, id: &str) -> Option<Arc<Stored>> {
        let key = (scope.to_string(), id.to_string());
        let mut inner = self.lock();
        let entry = inner.entries.get(&key)?;
        if entry.at.elapsed() >= self.ttl {
            inner.remove(&key);
            return None;
        }
        let old = entry.used;
        let used = inner.next_use();
        inner.by_use.remove(&old);
        inner.by_use.insert(used, key.clone());
        let entry = inner.entries.get_mut(&key).expect("found above");
        entry.used = used;
        Some(Arc::clone(&entry.stored))
    }

    /// Remembers response `id` (its object is `response`): the conversation of `previous`
    /// (if any), then `turn` (this request's new input and the answer). Entries used least
    /// recently make room; a response that alone would take more than the byte bound is not
    /// stored.
    pub fn insert(
        &self,
        scope: &str,
        id: &str,
        previous: Option<&Stored>,
        turn: Vec<Message>,
        response: Value,
    ) {
        if self.max_entries == 0 || self.max_bytes == 0 {
            return;
        }
        let mut segments = previous.map(|p| p.segments.clone()).unwrap_or_default();
        segments.push(Arc::new(Segment {
            bytes: messages_bytes(&turn),
            messages: turn,
        }));
        let key = (scope.to_string(), id.to_string());
        let own = ENTRY_OVERHEAD
            + size_of::<Stored>()
            + value_bytes(&response)
            + key.0.capacity()
            + key.1.capacity()
            + segments.capacity() * size_of::<Arc<Segment>>();
        let alone = own + segments.iter().map(|s| s.bytes).sum::<usize>();
        if alone > self.max_bytes {
            log::debug!(
                "response {id} not stored: its conversation takes about {alone} bytes, over responses_store_max_bytes ({})",
                self.max_bytes
            );
            return;
        }
        let mut inner = self.lock();
        let used = inner.next_use();
        let entry = Entry {
            stored: Arc::new(Stored { segments, response }),
            at: Instant::now(),
            used,
            own,
        };
        inner.add(key, entry);
        inner.shrink_to(self.max_entries, self.max_bytes, self.ttl);
    }

    /// Forgets response `id`; whether this API key had it.
    pub fn remove(&self, scope: &str, id: &str) -> bool {
        self.lock()
            .remove(&(scope.to_string(), id.to_string()))
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how many bytes the store holds (never more than `responses_store_max_bytes`).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// About what `messages` take in memory, measured from their lengths and capacities.
fn messages_bytes(messages: &Vec<Message>) -> usize {
    size_of::<Vec<Message>>()
        + messages.capacity() * size_of::<Message>()
        + messages.iter().map(message_heap).sum::<usize>()
}

fn message_heap(m: &Message) -> usize {
    let calls = m
        .tool_calls
        .iter()
        .map(|c| c.id.capacity() + c.name.capacity() + value_bytes(&c.arguments));
    let results = m
        .tool_results
        .iter()
        .map(|r| r.call_id.capacity() + r.name.capacity() + r.content.capacity());
    m.text.capacity()
        + m.tool_calls.capacity() * size_of::<ToolCall>()
        + m.tool_results.capacity() * size_of::<ToolResult>()
        + calls.sum::<usize>()
        + results.sum::<usize>()
}

/// A B-tree node of a JSON object: eleven keys and values, and a little bookkeeping.
const OBJECT_NODE: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16;

/// About what a JSON value holds on the heap (its own inline size is its parent's).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.capacity(),
        Value::Array(a) => {
            a.capacity() * size_of::<Value>() + a.iter().map(value_bytes).sum::<usize>()
        }
        Value::Object(o) if o.is_empty() => 0,
        Value::Object(o) => {
            (o.len() / 11 + 1) * OBJECT_NODE
                + o.iter()
                    .map(|(k, v)| k.capacity() + value_bytes(v))
                    .sum::<usize>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use serde_json::json;

    fn texts(s: &Stored) -> Vec<&str> {
        s.messages().map(|m| m.text.as_str()).collect()
    }

    fn turn(u: &str, a: &str) -> Vec<Message> {
        vec![
            Message::new(Role::User, u),
            Message::new(Role::Assistant, a),
        ]
    }

    fn bounded(max_bytes: usize) -> ResponseStore {
        ResponseStore::new(10, max_bytes, Duration::from_secs(60))
    }

    #[test]
    fn a_chain_of_responses_rebuilds_the_conversation_per_api_key() {
        let store = bounded(1 << 20);
        store.insert("k", "resp_1", None, turn("hi", "hello"), Value::Null);
        let first = store.get("k", "resp_1").unwrap();
        store.insert(
            "k",
            "resp_2",
            Some(&first),
            turn("more", "sure"),
            json!({"id": "resp_2"}),
        );
        let second = store.get("k", "resp_2").unwrap();
        assert_eq!(texts(&second), ["hi", "hello", "more", "sure"]);
        assert_eq!(
            texts(&first),
            ["hi", "hello"],
            "earlier responses keep their own end"
        );
        assert!(
            store.get("other-key", "resp_1").is_none(),
            "never across API keys"
        );
        assert!(store.get("k", "resp_3").is_none());
        assert_eq!(store.len(), 2);
        assert_eq!(second.response["id"], "resp_2");
        assert!(!store.remove("other-key", "resp_2"));
        assert!(store.remove("k", "resp_2"));
        assert!(store.get("k", "resp_2").is_none());
    }

    #[test]
    fn a_shared_turn_is_counted_once_while_any_response_holds_it() {
        let store = bounded(64 << 20);
        let big = "x".repeat(1 << 20);
        store.insert("k", "r1", None, turn(&big, "ok"), Value::Null);
        let one = store.bytes();
        assert!(
            (1 << 20..(1 << 20) + 4096).contains(&one),
            "a 1 MiB turn takes about 1 MiB: {one}"
        );
        let first = store.get("k", "r1").unwrap();
        store.insert("k", "r2", Some(&first), turn("more", "sure"), Value::Null);
        let two = store.bytes();
        assert!(
            two - one < 4096,
            "the continuation adds its own turn only: {one} then {two}"
        );
        store.remove("k", "r1");
        assert!(
            store.bytes() > 1 << 20,
            "r2 still holds the first turn: {}",
            store.bytes()
        );
        store.remove("k", "r2");
        assert_eq!(store.bytes(), 0);
        assert!(store.is_empty());
    }

    #[test]
    fn the_least_recently_used_make_room_within_the_byte_bound() {
        let mb = "x".repeat(1 << 20);
        let store = bounded(3 << 20);
        for id in ["r1", "r2", "r3"] {
            store.insert("k", id, None, turn(&mb, id), Value::Null);
        }
        assert!(
            store.get("k", "r1").is_none(),
            "three 1 MiB turns do not fit in 3 MiB"
        );
        assert!(store.get("k", "r2").is_some(), "a get counts as a use");
        store.insert("k", "r4", None, turn(&mb, "r4"), Value::Null);
        assert!(store.get("k", "r3").is_none(), "r3 was used least recently");
        assert!(store.get("k", "r2").is_some() && store.get("k", "r4").is_some());
        assert!(store.bytes() <= 3 << 20, "{}", store.bytes());

        let huge = "x".repeat(3 << 20);
        store.insert("k", "r5", None, turn(&huge, "r5"), Value::Null);
        assert!(
            store.get("k", "r5").is_none(),
            "larger than the bound: not stored"
        );
        assert!(
            store.get("k", "r2").is_some() && store.get("k", "r4").is_some(),
            "and nothing was dropped for it"
        );
        let r4 = store.get("k", "r4").unwrap();
        store.insert("k", "r6", Some(&r4), turn(&mb, "r6"), Value::Null);
        assert!(
            store.get("k", "r6").is_some() && store.get("k", "r4").is_some(),
            "r6 shares r4's turn: 2 MiB for both"
        );
        assert!(store.get("k", "r2").is_none());
        let r6 = store.get("k", "r6").unwrap();
        let half = "y".repeat(1 << 19);
        store.insert("k", "r7", Some(&r6), turn(&half, "r7"), Value::Null);
        assert!(store.get("k", "r7").is_some(), "2.5 MiB held in all");
        let most = "z".repeat(900 << 10);
        store.insert("k", "r8", Some(&r6), turn(&most, "r8"), Value::Null);
        let r8 = store
            .get("k", "r8")
            .expect("the newest stays: 2.9 MiB alone");
        assert_eq!(texts(&r8).len(), 6, "with its whole conversation");
        assert!(
            store.get("k", "r7").is_none(),
            "r4 and r6 went first, but their turns stayed held by r8: r7 had to go too"
        );
        assert_eq!(store.len(), 1);
        assert!(store.bytes() <= 3 << 20, "{}", store.bytes());
    }

    #[test]
    fn the_count_bound_and_expiry_still_hold() {
        let store = ResponseStore::new(2, 1 << 20, Duration::from_secs(60));
        for id in ["r1", "r2", "r3"] {
            store.insert("k", id, None, turn("a", "b"), Value::Null);
        }
        assert_eq!(store.len(), 2);
        assert!(store.get("k", "r1").is_none());
        let expired = ResponseStore::new(10, 1 << 20, Duration::ZERO);
        expired.insert("k", "r1", None, turn("a", "b"), Value::Null);
        assert!(expired.get("k", "r1").is_none());
        assert_eq!(expired.bytes(), 0, "an expired entry found is dropped");
        for none in [
            ResponseStore::new(0, 1 << 20, Duration::from_secs(60)),
            bounded(0),
        ] {
            none.insert("k", "r1", None, turn("a", "b"), Value::Null);
            assert!(none.is_empty());
        }
    }

    /// The running total equals a count from scratch after any sequence of operations.
    #[test]
    fn the_byte_count_matches_what_the_entries_hold() {
        crate::fuzz::check(
            "the_byte_count_matches_what_the_entries_hold",
            100,
            |rng| {
                (0..rng.range(1, 60))
                    .map(|_| {
                        (
                            rng.below(4),
                            rng.below(8),
                            rng.below(8),
                            rng.range(0, 20_000),
                        )
                    })
                    .collect::<Vec<_>>()
            },
            |ops| {
                let store = ResponseStore::new(6, 60_000, Duration::from_secs(60));
                for &(op, id, prev, len) in ops {
                    let id = format!("r{id}");
                    match op {
                        0 | 1 => {
                            let previous = store.get("k", &format!("r{prev}"));
                            let t = turn(&"x".repeat(len), "a");
                            store.insert("k", &id, previous.as_deref(), t, json!({"id": id}));
                        }
                        2 => {
                            store.get("k", &id);
                        }
                        _ => {
                            store.remove("k", &id);
                        }
                    }
                    let inner = store.lock();
                    let mut seen = std::collections::HashSet::new();
                    let mut want = 0;
                    for e in inner.entries.values() {
                        want += e.own;
                        for s in &e.stored.segments {
                            if seen.insert(address(s)) {
                                want += s.bytes;
                            }
                        }
                    }
                    if inner.bytes != want || want > 60_000 || inner.entries.len() > 6 {
                        return Err(format!(
                            "counted {}, held {want} in {} entries",
                            inner.bytes,
                            inner.entries.len()
                        ));
                    }
                    if inner.by_use.len() != inner.entries.len() {
                        return Err("the use index and the entries disagree".into());
                    }
                }
                Ok(())
            },
        );
    }
}
