//! Recent `/v1/responses` conversations, so a request naming a `previous_response_id`
//! continues where that response left off. Each response keeps its conversation as a chain
//! of shared segments (each turn's new input plus its answer), so a long conversation is
//! held once however many of its responses are remembered. Scoped by API key, bounded
//! (`responses_store_max_entries`, least recently used dropped first) and expiring
//! (`responses_store_ttl_sec`). Used by worker threads.

use std::sync::Arc;
use std::time::Duration;

use crate::lru::TtlLru;
use crate::model::Message;

/// A response's conversation: its segments in order.
#[derive(Debug, Default)]
pub struct Stored {
    segments: Vec<Arc<Vec<Message>>>,
    /// The response object, as `GET /v1/responses/{id}` returns it.
    pub response: serde_json::Value,
}

impl Stored {
    /// The conversation's messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.segments.iter().flat_map(|s| s.iter())
    }
}

pub struct ResponseStore {
    entries: TtlLru<(String, String), Arc<Stored>>,
}

impl ResponseStore {
    pub fn new(max: usize, ttl: Duration) -> Self {
        ResponseStore {
            entries: TtlLru::new(max, ttl),
        }
    }

    /// The conversation up to and including response `id`, if this API key (`scope`) made
    /// it and it is still remembered.
    pub fn get(&self, scope: &str, id: &str) -> Option<Arc<Stored>> {
        self.entries.get(&(scope.to_string(), id.to_string()))
    }

    /// Remembers response `id` (its object is `response`): the conversation of `previous`
    /// (if any), then `turn` (this request's new input and the answer).
    pub fn insert(
        &self,
        scope: &str,
        id: &str,
        previous: Option<&Stored>,
        turn: Vec<Message>,
        response: serde_json::Value,
    ) {
        let mut segments = previous.map(|p| p.segments.clone()).unwrap_or_default();
        segments.push(Arc::new(turn));
        self.entries.insert(
            (scope.to_string(), id.to_string()),
            Arc::new(Stored { segments, response }),
        );
    }

    /// Forgets response `id`; whether this API key had it.
    pub fn remove(&self, scope: &str, id: &str) -> bool {
        self.entries
            .remove(&(scope.to_string(), id.to_string()))
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use serde_json::{json, Value};

    fn texts(s: &Stored) -> Vec<&str> {
        s.messages().map(|m| m.text.as_str()).collect()
    }

    #[test]
    fn a_chain_of_responses_rebuilds_the_conversation_per_api_key() {
        let store = ResponseStore::new(10, Duration::from_secs(60));
        let turn = |u: &str, a: &str| {
            vec![
                Message::new(Role::User, u),
                Message::new(Role::Assistant, a),
            ]
        };
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
}
