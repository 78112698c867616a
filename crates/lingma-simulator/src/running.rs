//! The turns being generated, by a key of their own, so that `chat/stop` (from any
//! connection) reaches them by `requestId` or `sessionId`. A turn's entry leaves the table
//! when its `Generation` is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

/// Generations in progress, so that `chat/stop` (from any connection) reaches them.
#[derive(Default)]
pub(crate) struct Running {
    entries: Mutex<HashMap<u64, Entry>>,
    next_key: AtomicU64,
}

struct Entry {
    request_id: String,
    session_id: String,
    stop: Sender<()>,
}

impl Running {
    /// Enters a turn; returns its key and the receiver its `chat/stop` arrives on.
    pub(crate) fn insert(&self, request_id: &str, session_id: &str) -> (u64, Receiver<()>) {
        let (key, entry, stopped) = self.entry(request_id, session_id);
        self.lock().insert(key, entry);
        (key, stopped)
    }

    /// Enters a turn unless a turn of `session_id` is running (then `None`).
    pub(crate) fn insert_alone(
        &self,
        request_id: &str,
        session_id: &str,
    ) -> Option<(u64, Receiver<()>)> {
        let mut entries = self.lock();
        if entries.values().any(|e| e.session_id == session_id) {
            return None;
        }
        let (key, entry, stopped) = self.entry(request_id, session_id);
        entries.insert(key, entry);
        Some((key, stopped))
    }

    fn entry(&self, request_id: &str, session_id: &str) -> (u64, Entry, Receiver<()>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed) + 1;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let entry = Entry {
            request_id: request_id.into(),
            session_id: session_id.into(),
            stop,
        };
        (key, entry, stopped)
    }

    pub(crate) fn remove(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// Stops the generations of `request_id` (or, when that is empty, of `session_id`);
    /// returns how many were told.
    pub(crate) fn stop(&self, request_id: &str, session_id: &str) -> usize {
        let entries = self.lock();
        let matching = entries.values().filter(|e| match request_id {
            "" => !session_id.is_empty() && e.session_id == session_id,
            id => e.request_id == id,
        });
        // A full channel means a stop is already pending.
        matching
            .map(|e| e.stop.try_send(()).is_ok() || e.stop.is_full())
            .filter(|told| *told)
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
