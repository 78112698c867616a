//! Session reuse. Lingma keeps a conversation's history per `sessionId` (and its KV cache
//! stays warm), so when a conversation goes on, the gateway sends only the new turn on the
//! same upstream session instead of the whole transcript again.
//!
//! Key: a digest of the API key, the model, the system text and tools, and the conversation
//! *prefix* — every message up to and including the last assistant message. After each
//! answer, the key of the conversation *including* that answer is stored with the instance
//! and the session Lingma reported, so the client's next turn (which echoes the answer back)
//! finds it. A hit takes the entry out (two requests never continue one session at once);
//! entries expire (`session_cache_ttl_sec`), are evicted least-recently-used beyond
//! `session_cache_max_entries`, and die with their instance (a restart changes its restart
//! count). A miss is never an error: the request goes as a whole on a new session.
//!
//! Lingma keeps every session in its local database: a conversation that leaves the cache
//! other than by a hit (evicted, expired, replaced, its instance restarted, or still held at
//! shutdown) can never be continued, so its session goes to the cleanup
//! (`upstream::cleanup`), which deletes it upstream, when `lingma_delete_sessions` is on;
//! the cleanup thread also sweeps out the expired entries every second.
//!
//! An entry is the same size however long the conversation: a 20-byte digest and where the
//! session lives (the instance's name and the session id Lingma chose), about 250 bytes with
//! the map's own, so `session_cache_max_entries` bounds its memory too (the default 10,000,
//! about 2.5 MB). Nothing in it comes from the client's text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::lru::TtlLru;
use crate::model::{ChatRequest, Message, Role, ToolCall};
use crate::upstream::cleanup::Cleanup;

pub(crate) type Key = [u8; 20];

/// Where a conversation lives upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) instance: String,
    pub(crate) session_id: String,
    /// The instance's restart count when the entry was stored.
    pub(crate) restarts: u64,
}

pub(crate) struct SessionCache {
    entries: TtlLru<Key, Place>,
    /// Where the sessions of conversations that left go (`None`: they stay in Lingma).
    cleanup: Option<Arc<Cleanup>>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

impl SessionCache {
    pub(crate) fn new(max: usize, ttl: Duration, cleanup: Option<Arc<Cleanup>>) -> Self {
        SessionCache {
            entries: TtlLru::new(max, ttl),
            cleanup,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes the entry for `key` if it is fresh and `alive` says its instance is still the
    /// one that stored it. Counts a hit or a miss. An entry that expired, or whose instance
    /// restarted, left the cache: its session is deleted.
    pub(crate) fn take(&self, key: &Key, alive: impl FnOnce(&Place) -> bool) -> Option<Place> {
        let mut gone = Vec::new();
        let found = self.entries.take(key, &mut gone);
        let found = match found {
            Some(place) if alive(&place) => Some(place),
            Some(place) => {
                gone.push(place);
                None
            }
            None => None,
        };
        self.clean_up(gone);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: Key, place: Place) {
        let mut gone = Vec::new();
        self.entries.insert(key, place.clone(), &mut gone);
        // The same conversation stored again on the same session keeps it.
        gone.retain(|p| p.session_id != place.session_id || p.instance != place.instance);
        self.clean_up(gone);
    }

    /// Forgets every entry of an instance (it restarted or logged in anew).
    pub(crate) fn forget_instance(&self, instance: &str) {
        let mut gone = Vec::new();
        self.entries.retain(|p| p.instance != instance, &mut gone);
        self.clean_up(gone);
    }

    /// Has the cleanup sweep out the expired entries every second, so their sessions go
    /// even while no request comes (it holds the cache weakly: no cycle).
    pub(crate) fn sweep_on(self: &Arc<Self>, cleanup: &Cleanup) {
        let cache = Arc::downgrade(self);
        cleanup.on_tick(Box::new(move || {
            if let Some(cache) = cache.upgrade() {
                let mut gone = Vec::new();
                cache.entries.sweep(&mut gone);
                cache.clean_up(gone);
            }
        }));
    }

    /// Empties the cache at shutdown: every session in it goes to the cleanup.
    pub(crate) fn close(&self) {
        let gone = self.entries.drain();
        self.clean_up(gone);
    }

    fn clean_up(&self, gone: Vec<Place>) {
        let Some(cleanup) = &self.cleanup else {
            return;
        };
        for place in gone {
            cleanup.delete(&place.instance, &place.session_id);
        }
    }
}

/// A running digest of a conversation, in the canonical form both the request that stores a
/// key and the request that looks it up produce.
#[derive(Clone)]
pub(crate) struct Conversation(Sha1);

impl Conversation {
    /// Starts with what scopes a conversation: the client's key, the model, the system text
    /// and the tools.
    pub(crate) fn new(scope: &str, req: &ChatRequest) -> Self {
        let mut h = Sha1::new();
        field(&mut h, b"scope", scope.as_bytes());
        field(&mut h, b"model", req.model.as_bytes());
        for t in &req.tools {
            field(&mut h, b"tool", t.name.as_bytes());
            field(&mut h, b"desc", t.description.as_bytes());
            field(&mut h, b"schema", t.schema.to_string().as_bytes());
        }
        Conversation(h)
    }

    pub(crate) fn push(&mut self, m: &Message) {
        let h = &mut self.0;
        field(h, b"role", m.role.as_str().as_bytes());
        field(h, b"text", m.text.trim().as_bytes());
        for c in &m.tool_calls {
            call(h, c);
        }
        for r in &m.tool_results {
            field(h, b"result", r.content.as_bytes());
            field(h, b"error", &[r.is_error as u8]);
        }
    }

    /// The answer as the client will send it back: an assistant message with its text and
    /// calls.
    pub(crate) fn push_answer(&mut self, text: &str, calls: &[ToolCall]) {
        let mut m = Message::new(Role::Assistant, text);
        m.tool_calls = calls.to_vec();
        self.push(&m);
    }

    pub(crate) fn key(&self) -> Key {
        self.0.clone().finalize().into()
    }
}

fn field(h: &mut Sha1, tag: &[u8], value: &[u8]) {
    h.update(tag);
    h.update((value.len() as u64).to_le_bytes());
    h.update(value);
}

fn call(h: &mut Sha1, c: &ToolCall) {
    field(h, b"call", c.name.as_bytes());
    field(h, b"args", c.arguments.to_string().as_bytes());
}

/// Where the conversation's new part starts: right after its last assistant message. `None`
/// for a first turn (nothing to continue).
pub(crate) fn new_part(messages: &[Message]) -> Option<usize> {
    let last = messages.iter().rposition(|m| m.role == Role::Assistant)?;
    let rest = &messages[last + 1..];
    (!rest.is_empty() && rest.iter().all(|m| m.role != Role::Assistant)).then_some(last + 1)
}

/// The digest of the whole conversation, and the key of its prefix (everything up to its
/// last assistant message) with where the new part starts, when it has one: one pass gives
/// both the key to continue a session by and the digest to store once the answer is in.
pub(crate) fn digest(req: &ChatRequest) -> (Conversation, Option<(Key, usize)>) {
    let mut conv = Conversation::new(&req.scope, req);
    let start = new_part(&req.messages);
    let split = start.unwrap_or(0);
    for m in &req.messages[..split] {
        conv.push(m);
    }
    let prefix = start.map(|start| (conv.key(), start));
    for m in &req.messages[split..] {
        conv.push(m);
    }
    (conv, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(role: Role, text: &str) -> Message {
        Message::new(role, text)
    }

    fn req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "auto".into(),
            messages,
            ..Default::default()
        }
    }

    #[test]
    fn the_stored_answer_key_is_the_next_turns_prefix_key() {
        let turn1 = req(vec![msg(Role::System, "S"), msg(Role::User, "hi")]);
        let mut after = Conversation::new("k", &turn1);
        for m in &turn1.messages {
            after.push(m);
        }
        let call = ToolCall {
            id: "call_x".into(),
            name: "Bash".into(),
            arguments: json!({"command": "ls"}),
        };
        after.push_answer("Hello ", std::slice::from_ref(&call));
        let mut echoed = msg(Role::Assistant, "Hello");
        echoed.tool_calls.push(ToolCall {
            id: "call_other_id".into(),
            ..call
        });
        let turn2 = req(vec![
            msg(Role::System, "S"),
            msg(Role::User, "hi"),
            echoed,
            msg(Role::User, "more"),
        ]);
        let start = new_part(&turn2.messages).unwrap();
        assert_eq!(start, 3);
        let mut prefix = Conversation::new("k", &turn2);
        for m in &turn2.messages[..start] {
            prefix.push(m);
        }
        assert_eq!(
            prefix.key(),
            after.key(),
            "ids and surrounding blanks do not matter"
        );
        let mut other_key = Conversation::new("other", &turn2);
        for m in &turn2.messages[..start] {
            other_key.push(m);
        }
        assert_ne!(
            other_key.key(),
            after.key(),
            "another API key never matches"
        );
        let mut edited = Conversation::new("k", &turn2);
        edited.push(&msg(Role::System, "S"));
        edited.push(&msg(Role::User, "hi (edited)"));
        assert_ne!(edited.key(), after.key());
    }

    #[test]
    fn first_turns_have_no_prefix() {
        assert_eq!(new_part(&[msg(Role::User, "a")]), None);
        assert_eq!(
            new_part(&[msg(Role::User, "a"), msg(Role::Assistant, "b")]),
            None
        );
    }

    #[test]
    fn hits_are_taken_entries_expire_and_die_with_their_instance() {
        let c = SessionCache::new(2, Duration::from_secs(60), None);
        let place = |i: &str| Place {
            instance: i.into(),
            session_id: "s".into(),
            restarts: 0,
        };
        c.insert([1; 20], place("lingma-0"));
        assert_eq!(c.take(&[1; 20], |_| true), Some(place("lingma-0")));
        assert_eq!(c.take(&[1; 20], |_| true), None, "taken");
        c.insert([2; 20], place("lingma-0"));
        assert_eq!(c.take(&[2; 20], |p| p.restarts == 1), None, "restarted");
        c.insert([3; 20], place("a"));
        c.insert([4; 20], place("b"));
        c.insert([5; 20], place("c"));
        assert_eq!(c.len(), 2, "least recently used evicted");
        assert!(c.take(&[3; 20], |_| true).is_none());
        let big = SessionCache::new(100, Duration::from_secs(60), None);
        for i in 0..=100u8 {
            big.insert([i; 20], place("x"));
        }
        assert_eq!(big.len(), 91, "a tenth made room at once");
        assert!(big.take(&[0; 20], |_| true).is_none(), "the oldest went");
        assert!(
            big.take(&[100; 20], |_| true).is_some(),
            "the newest stayed"
        );
        c.forget_instance("c");
        assert!(c.take(&[5; 20], |_| true).is_none());
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
        let expired = SessionCache::new(10, Duration::ZERO, None);
        expired.insert([9; 20], place("x"));
        assert!(expired.take(&[9; 20], |_| true).is_none());
    }
}
