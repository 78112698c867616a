//! lingma-gateway patch: limits on client connections (see PATCHED.md, item 6).
//!
//! Upstream tiny_http gives every connection a thread for as long as the client keeps it
//! open, with no bound on how many and no deadline on a request head or body beyond the
//! socket's per-read timeout. So a few hundred clients that connect and say nothing, or send
//! a byte every few seconds ("slowloris"), could hold the server. Here:
//!
//! - a request head must be complete within `head_timeout` of its first byte, and a request
//!   body within `body_timeout` of its head: past that, the connection's read side is shut
//!   down and the client gets `408 Request Timeout`;
//! - at most `max_connections` are open: a new one beyond that closes the oldest connection
//!   that is not serving a request (idle between requests, or still sending a head), and when
//!   every connection is serving one, the new one gets `503` and is closed.
//!
//! A connection's state lives in a `Tracked`, shared by its connection thread and the writer
//! of each request it has handed out; the registry holds weak references, so an entry goes
//! away when the last of those does. One reaper thread checks the deadlines.

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Bounds on client connections; `Default` is upstream's behaviour (none).
#[derive(Debug, Clone, Default)]
pub struct ConnectionLimits {
    /// Open connections at most (0: no limit).
    pub max_connections: usize,
    /// Longest time from a request head's first byte to its end.
    pub head_timeout: Option<Duration>,
    /// Longest time from the end of a request head to the end of its body.
    pub body_timeout: Option<Duration>,
}

impl ConnectionLimits {
    fn any(&self) -> bool {
        self.max_connections > 0 || self.head_timeout.is_some() || self.body_timeout.is_some()
    }
}

/// How often the reaper looks at the deadlines.
const REAP_EVERY: Duration = Duration::from_millis(100);

/// What a connection refused at the cap gets before it is closed. The body has both the
/// OpenAI (`error.message`, `error.type`) and the Anthropic (`type: error`) fields.
const REFUSAL_BODY: &str = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"The server has its maximum of open connections, all serving requests; retry shortly.\"}}";

pub(crate) struct Registry {
    limits: ConnectionLimits,
    conns: Mutex<HashMap<u64, Weak<Tracked>>>,
    next_id: AtomicU64,
}

pub(crate) struct Tracked {
    id: u64,
    registry: Weak<Registry>,
    /// A handle on the socket, to shut it down from the reaper or the accept thread.
    socket: Mutex<Option<Connection>>,
    state: Mutex<State>,
    /// Set when a deadline or the cap ended this connection: a `Cut` as a number.
    cut: AtomicU8,
}

/// Why a connection was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cut {
    None = 0,
    /// Its request head was past its deadline.
    Head = 1,
    /// Its request body was past its deadline.
    Body = 2,
    /// Closed to make room at the connection cap.
    Evicted = 3,
}

struct State {
    /// When the head being read got its first byte.
    head_since: Option<Instant>,
    /// When the body being read started (its head ended).
    body_since: Option<Instant>,
    /// Requests handed out whose response is not finished.
    outstanding: usize,
    /// Since when nothing has been going on (for picking whom to close at the cap).
    idle_since: Instant,
}

impl Registry {
    /// `None` when there are no limits (upstream's behaviour, no tracking at all).
    pub(crate) fn start(limits: ConnectionLimits, close: Arc<AtomicBool>) -> Option<Arc<Self>> {
        if !limits.any() {
            return None;
        }
        let registry = Arc::new(Registry {
            limits,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        if registry.limits.head_timeout.is_some() || registry.limits.body_timeout.is_some() {
            let weak = Arc::downgrade(&registry);
            let spawned = thread::Builder::new()
                .name("http-reaper".into())
                .spawn(move || reap(weak, close));
            if let Err(e) = spawned {
                log::error!("cannot start the connection reaper: {}", e);
            }
        }
        Some(registry)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<Tracked>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, making room at the cap by closing the oldest one that is
    /// not serving a request. `None`: every connection is serving one; the new one was told
    /// so and should be dropped.
    pub(crate) fn admit(self: &Arc<Self>, socket: &mut Connection) -> Option<Arc<Tracked>> {
        let max = self.limits.max_connections;
        if max > 0 {
            // Upgraded outside the lock: dropping the last reference to a `Tracked` takes it.
            let weak: Vec<Weak<Tracked>> = self.lock().values().cloned().collect();
            let live: Vec<Arc<Tracked>> = weak
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|t| !t.expired())
                .collect();
            if live.len() >= max {
                let victim = live
                    .iter()
                    .filter_map(|t| {
                        let s = t.lock();
                        (s.outstanding == 0).then(|| (s.head_since.unwrap_or(s.idle_since), t))
                    })
                    .min_by_key(|(since, _)| *since)
                    .map(|(_, t)| Arc::clone(t));
                match victim {
                    Some(v) => {
                        log::warn!(
                            "{} connections open: closing the longest-waiting one that serves no request",
                            live.len()
                        );
                        v.expire(Cut::Evicted);
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
            socket: Mutex::new(socket.try_clone().ok()),
            state: Mutex::new(State {
                head_since: None,
                body_since: None,
                outstanding: 0,
                idle_since: Instant::now(),
            }),
            cut: AtomicU8::new(Cut::None as u8),
        });
        self.lock().insert(id, Arc::downgrade(&tracked));
        Some(tracked)
    }
}

fn refuse(socket: &mut Connection) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        REFUSAL_BODY.len(),
        REFUSAL_BODY
    );
    let _ = socket.write_all(response.as_bytes());
    let _ = socket.flush();
    let _ = socket.shutdown(Shutdown::Both);
}

/// The reaper: ends connections past their head or body deadline, until the server closes
/// or goes away.
fn reap(registry: Weak<Registry>, close: Arc<AtomicBool>) {
    while !close.load(Ordering::Relaxed) {
        thread::sleep(REAP_EVERY);
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let now = Instant::now();
        let late = |since: Option<Instant>, limit: Option<Duration>| match (since, limit) {
            (Some(since), Some(limit)) => now.duration_since(since) > limit,
            _ => false,
        };
        let live: Vec<Arc<Tracked>> = registry.lock().values().filter_map(Weak::upgrade).collect();
        for t in live {
            if t.expired() {
                continue;
            }
            let (head, body) = {
                let s = t.lock();
                (s.head_since, s.body_since)
            };
            if late(head, registry.limits.head_timeout) {
                log::info!("a client took too long to send its request head; closing");
                t.expire(Cut::Head);
            } else if late(body, registry.limits.body_timeout) {
                log::info!("a client took too long to send its request body; closing");
                t.expire(Cut::Body);
            }
        }
    }
}

impl Tracked {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the connection: its reads see the end of the stream, and the one reading a head
    /// or body cut by its deadline answers 408.
    fn expire(&self, why: Cut) {
        let why = match why {
            Cut::Evicted if self.lock().head_since.is_some() => Cut::Head,
            why => why,
        };
        self.cut.store(why as u8, Ordering::SeqCst);
        if let Some(s) = self
            .socket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    pub(crate) fn expired(&self) -> bool {
        self.cut.load(Ordering::SeqCst) != Cut::None as u8
    }

    /// Whether the connection was ended for this reason.
    pub(crate) fn cut(&self, why: Cut) -> bool {
        self.cut.load(Ordering::SeqCst) == why as u8
    }

    /// The first byte of a request head arrived.
    pub(crate) fn head_started(&self) {
        let mut s = self.lock();
        if s.head_since.is_none() {
            s.head_since = Some(Instant::now());
        }
    }

    /// A head was read and its request handed out; its body (if any) comes next.
    pub(crate) fn request_started(&self, has_body: bool) {
        let mut s = self.lock();
        s.head_since = None;
        s.body_since = has_body.then(Instant::now);
        s.outstanding += 1;
    }

    /// The body of the current request was read to its end (or its reading failed).
    pub(crate) fn body_done(&self) {
        self.lock().body_since = None;
    }

    /// A request's response is finished (its writer dropped).
    pub(crate) fn response_done(&self) {
        let mut s = self.lock();
        s.body_since = None;
        s.outstanding = s.outstanding.saturating_sub(1);
        if s.outstanding == 0 {
            s.idle_since = Instant::now();
        }
    }

    /// A head that failed to parse or arrive: nothing is under way any more.
    pub(crate) fn head_abandoned(&self) {
        self.lock().head_since = None;
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().remove(&self.id);
        }
    }
}

/// A request's response writer that reports when the response is finished.
pub(crate) struct TrackedWriter<W: Write> {
    pub(crate) inner: W,
    pub(crate) tracked: Arc<Tracked>,
}

impl<W: Write> Write for TrackedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for TrackedWriter<W> {
    fn drop(&mut self) {
        self.tracked.response_done();
    }
}

/// A request's body reader that reports the end of the body, and turns the end of stream
/// caused by the body deadline into a `TimedOut` error.
pub(crate) struct TrackedReader<R> {
    pub(crate) inner: R,
    pub(crate) tracked: Arc<Tracked>,
}

impl<R: std::io::Read> std::io::Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.tracked.body_done();
                if self.tracked.cut(Cut::Body) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body did not arrive in time",
                    ));
                }
                Ok(0)
            }
            Err(e) => {
                self.tracked.body_done();
                if self.tracked.cut(Cut::Body) {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, e));
                }
                Err(e)
            }
            ok => ok,
        }
    }
}
