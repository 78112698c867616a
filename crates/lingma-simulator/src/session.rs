//! Chat sessions of one simulator process, shared by all its connections: allocates session
//! ids and keeps each session's history, as the real server keeps every session it started
//! until `chat/deleteSessionById` removes it (tests read how many there are: `count`, logged
//! as `sessions=N`). Locked by connection and generator threads; the lock only covers map
//! updates.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub(crate) request_id: String,
    pub(crate) question: String,
    pub(crate) answer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Session {
    pub(crate) session_id: String,
    pub(crate) session_title: String,
    pub(crate) chat_records: Vec<Record>,
}

/// `chat/listAllSessions` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub(crate) session_id: String,
    pub(crate) session_title: String,
}

/// Where a new turn goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) session_id: String,
    pub(crate) new_session: bool,
    /// 1-based position of the turn in its session.
    pub(crate) turn: usize,
    /// Bytes of the session's earlier questions and answers (the context the turn adds to).
    pub(crate) history_bytes: usize,
}

#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Session ids in creation order, for listings.
    order: Vec<String>,
    sessions: HashMap<String, Session>,
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Continues the session `hint` if it exists; otherwise (empty or unknown id) creates a new
    /// one with a fresh id and `title`.
    pub(crate) fn place(&self, hint: &str, title: &str) -> Placement {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get(hint) {
            let turn = s.chat_records.len() + 1;
            let history_bytes = s
                .chat_records
                .iter()
                .map(|r| r.question.len() + r.answer.len())
                .sum();
            return Placement {
                session_id: hint.to_string(),
                new_session: false,
                turn,
                history_bytes,
            };
        }
        let session_id = uuid::Uuid::new_v4().to_string();
        let session = Session {
            session_id: session_id.clone(),
            session_title: title.to_string(),
            chat_records: Vec::new(),
        };
        inner.order.push(session_id.clone());
        inner.sessions.insert(session_id.clone(), session);
        Placement {
            session_id,
            new_session: true,
            turn: 1,
            history_bytes: 0,
        }
    }

    /// How many sessions it keeps.
    pub(crate) fn count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Appends a finished turn; a session deleted meanwhile stays deleted.
    pub(crate) fn record(&self, session_id: &str, record: Record) {
        if let Some(s) = self.lock().sessions.get_mut(session_id) {
            s.chat_records.push(record);
        }
    }

    pub(crate) fn delete(&self, session_id: &str) -> bool {
        let mut inner = self.lock();
        inner.order.retain(|id| id != session_id);
        inner.sessions.remove(session_id).is_some()
    }

    /// How many turns `session_id` holds (0 for an unknown one).
    pub(crate) fn turns(&self, session_id: &str) -> usize {
        self.lock()
            .sessions
            .get(session_id)
            .map_or(0, |s| s.chat_records.len())
    }

    pub(crate) fn contains(&self, session_id: &str) -> bool {
        self.lock().sessions.contains_key(session_id)
    }

    pub(crate) fn list(&self) -> Vec<Summary> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|id| inner.sessions.get(id))
            .map(|s| Summary {
                session_id: s.session_id.clone(),
                session_title: s.session_title.clone(),
            })
            .collect()
    }

    pub(crate) fn get(&self, session_id: &str) -> Option<Session> {
        self.lock().sessions.get(session_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            request_id: id.into(),
            question: "q".into(),
            answer: "a".into(),
        }
    }

    #[test]
    fn unknown_or_empty_hint_opens_a_new_session() {
        let store = Store::default();
        let a = store.place("", "title a");
        assert!(a.new_session && a.turn == 1 && !a.session_id.is_empty());
        let b = store.place("no-such-session", "title b");
        assert!(b.new_session);
        assert_ne!(a.session_id, b.session_id);
        assert_ne!(b.session_id, "no-such-session");
    }

    #[test]
    fn known_session_continues_and_counts_turns() {
        let store = Store::default();
        let a = store.place("", "t");
        store.record(&a.session_id, record("r1"));
        let next = store.place(&a.session_id, "ignored");
        assert_eq!(
            next,
            Placement {
                session_id: a.session_id.clone(),
                new_session: false,
                turn: 2,
                history_bytes: 2,
            }
        );
        let s = store.get(&a.session_id).unwrap();
        assert_eq!(s.session_title, "t");
        assert_eq!(s.chat_records, vec![record("r1")]);
    }

    #[test]
    fn list_and_delete() {
        let store = Store::default();
        let a = store.place("", "one");
        let b = store.place("", "two");
        let titles: Vec<String> = store.list().into_iter().map(|s| s.session_title).collect();
        assert_eq!(titles, vec!["one", "two"]);
        assert_eq!(store.count(), 2);
        assert!(store.delete(&a.session_id));
        assert!(!store.delete(&a.session_id));
        assert_eq!(store.count(), 1);
        store.record(&a.session_id, record("late"));
        assert!(store.get(&a.session_id).is_none());
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.list()[0].session_id, b.session_id);
    }
}
