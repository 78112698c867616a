//! The model each ACP session was given with `session/set_model`, shared by all connections
//! (the sessions themselves, their ids and histories, are `session::Store`'s). Locked by the
//! connection threads; the lock covers map updates only.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub(crate) struct Models {
    by_session: Mutex<HashMap<String, String>>,
}

impl Models {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, session_id: &str, model: &str) {
        self.lock()
            .insert(session_id.to_string(), model.to_string());
    }

    pub(crate) fn get(&self, session_id: &str) -> Option<String> {
        self.lock().get(session_id).cloned()
    }

    /// Forgets the sessions `live` says are gone (deleted), so the table stays as small as
    /// the session store.
    pub(crate) fn retain(&self, live: impl Fn(&str) -> bool) {
        self.lock().retain(|id, _| live(id));
    }
}
