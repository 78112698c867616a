//! lingma-gateway: the connection registry, for the cap on open connections.
//!
//! Every connection registers a `Tracked` (shared with its connection thread) that says what
//! it is doing. At `max_connections`, a new connection closes the one that has waited
//! longest among those serving no request (lingering after a close first, then idle between
//! requests, then still sending a head, then still sending a body); when every connection is
//! serving a request, the new one gets `503` and is closed. The registry holds weak
//! references, so an entry goes away with its connection. Deadlines are not kept here: each
//! connection thread bounds its own reads, each response writer its own writes.

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::connection::Connection;

/// What a connection is doing, in the order it is chosen for closing at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Draining what the client still sends after a response that closes the connection.
    Lingering,
    /// Waiting for the first byte of a request head.
    Idle,
    /// Receiving a request head.
    Head,
    /// Receiving a request body.
    Body,
    /// Its request is with a handler (or its response is being written): never closed here.
    Serving,
}

/// What a connection refused at the cap gets before it is closed. The body has both the
/// OpenAI (`error.message`, `error.type`) and the Anthropic (`type: error`) fields.
const REFUSAL_BODY: &str = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"The server has its maximum of open connections, all serving requests; retry shortly.\"}}";

pub(crate) struct Registry {
    max_connections: usize,
    conns: Mutex<HashMap<u64, Weak<Tracked>>>,
    next_id: AtomicU64,
}

pub(crate) struct Tracked {
    id: u64,
    registry: Weak<Registry>,
    /// A handle on the socket, to shut it down from the accept thread.
    socket: Option<Connection>,
    state: Mutex<(Phase, Instant)>,
    /// Set when the cap closed this connection.
    evicted: AtomicBool,
}

impl Registry {
    pub(crate) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Registry {
            max_connections,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<Tracked>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self) -> Vec<Arc<Tracked>> {
        // Upgraded outside the lock: dropping the last reference to a `Tracked` takes it.
        let weak: Vec<Weak<Tracked>> = self.lock().values().cloned().collect();
        weak.iter()
            .filter_map(Weak::upgrade)
            .filter(|t| !t.evicted())
            .collect()
    }

    /// Registers a new connection, making room at the cap. `None`: every connection is
    /// serving a request; the new one was told so and should be dropped.
    pub(crate) fn admit(self: &Arc<Self>, socket: &mut Connection) -> Option<Arc<Tracked>> {
        if self.max_connections > 0 {
            let live = self.live();
            if live.len() >= self.max_connections {
                let victim = live
                    .iter()
                    .map(|t| (t.phase_since(), t))
                    .filter(|((phase, _), _)| *phase != Phase::Serving)
                    .min_by_key(|(key, _)| *key)
                    .map(|(_, t)| Arc::clone(t));
                match victim {
                    Some(v) => {
                        log::warn!(
                            "{} connections open: closing the longest-waiting one that serves no request",
                            live.len()
                        );
                        v.evict();
                    }
                    None => {
                        log::warn!(
                            "{} connections open, all serving requests: refusing a new one",
                            live.len()
                        );
                        refuse(socket);
                        return None;
                    }
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            id,
            registry: Arc::downgrade(self),
            socket: socket.try_clone().ok(),
            state: Mutex::new((Phase::Idle, Instant::now())),
            evicted: AtomicBool::new(false),
        });
        self.lock().insert(id, Arc::downgrade(&tracked));
        Some(tracked)
    }

    /// Ends every connection that serves no request (the server is going away); those
    /// serving one finish their response first.
    pub(crate) fn close_waiting(&self) {
        for t in self.live() {
            if t.phase_since().0 != Phase::Serving {
                t.evict();
            }
        }
    }
}

fn refuse(socket: &mut Connection) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        REFUSAL_BODY.len(),
        REFUSAL_BODY
    );
    let _ = socket.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let _ = socket.write_all(response.as_bytes());
    let _ = socket.flush();
    let _ = socket.shutdown(Shutdown::Both);
}

impl Tracked {
    fn lock(&self) -> MutexGuard<'_, (Phase, Instant)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn phase_since(&self) -> (Phase, Instant) {
        *self.lock()
    }

    pub(crate) fn set(&self, phase: Phase) {
        let mut s = self.lock();
        if s.0 != phase {
            *s = (phase, Instant::now());
        }
    }

    /// Ends the connection: its reads see the end of the stream.
    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        if let Some(s) = &self.socket {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    pub(crate) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().remove(&self.id);
        }
    }
}
