//! The debug ring behind `/internal/debug/requests`: the last chat request bodies, each
//! through `redact::debug_copy` before it is kept, so the endpoint shows no secret.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::exchange::Exchange;
use crate::redact;

/// Request bodies kept for `/internal/debug/requests`.
pub(crate) const DEBUG_RING: usize = 100;
/// A stored body larger than this (after redaction) keeps only its beginning.
const MAX_DEBUG_ENTRY: usize = 256 * 1024;

/// The last `DEBUG_RING` chat request bodies, redacted, newest first. Each is at most about
/// `MAX_DEBUG_ENTRY` bytes, and recording one copies no more than that.
pub(crate) struct DebugRing {
    entries: Mutex<VecDeque<Value>>,
    /// Configured secrets, replaced wherever they show up in a body.
    known: redact::Known,
}

impl DebugRing {
    pub(crate) fn new(known: Vec<String>) -> Self {
        DebugRing {
            entries: Mutex::new(VecDeque::with_capacity(DEBUG_RING)),
            known: redact::Known::new(known),
        }
    }

    pub(crate) fn record(&self, ex: &Exchange, body: &Value) {
        let entry = json!({
            "timestamp": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "request_id": ex.id,
            "protocol": ex.protocol.name(),
            "path": ex.path,
            "body": self.redacted(body).value.unwrap_or_else(too_large),
        });
        let mut g = self.lock();
        if g.len() >= DEBUG_RING {
            g.pop_back();
        }
        g.push_front(entry);
    }

    /// The redacted copy of a body, given up once it passes `MAX_DEBUG_ENTRY`.
    fn redacted(&self, body: &Value) -> redact::DebugCopy {
        redact::debug_copy(body, &self.known, MAX_DEBUG_ENTRY)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Value>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(super) fn latest(&self, n: usize) -> Vec<Value> {
        self.lock().iter().take(n).cloned().collect()
    }
}

/// What the ring keeps of a body too large to keep.
fn too_large() -> Value {
    json!({"truncated": format!("more than {MAX_DEBUG_ENTRY} bytes after redaction; not kept")})
}
