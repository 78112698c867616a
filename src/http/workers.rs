//! The worker threads (`http-worker-N`). Each takes requests straight from tiny_http's queue
//! and serves them, so a request changes threads only once on its way in. The pool grows on
//! demand so that one thread is always waiting for the next request, up to `max_workers`
//! busy plus that one: a request arriving while `max_workers` are busy gets 503 (one such
//! request at a time waits up to 200 ms for a slot first; see `take_slot`).
//! Threads idle for a minute retire (one always stays). The `Workers` value owns them all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::exchange::Exchange;
use super::serve::{finish, serve_one};
use super::state::HttpState;
use crate::error::{ErrorKind, GatewayError};

pub(crate) const SHUTTING_DOWN: &str =
    "The gateway is shutting down; retry against another instance.";

/// How long a request waits for a busy worker's slot before it gets 503.
const SLOT_GRACE: Duration = Duration::from_millis(200);

/// A waiting thread beyond the first retires after this long without a request.
const IDLE_RETIRE: Duration = Duration::from_secs(60);

pub(crate) struct Workers {
    shared: Arc<Shared>,
}

struct Shared {
    server: Arc<tiny_http::Server>,
    app: Arc<HttpState>,
    max: usize,
    /// Set on SIGTERM: new requests get 503 while those in progress finish.
    stopping: Arc<AtomicBool>,
    /// Set once draining is over: threads end.
    closed: AtomicBool,
    /// Threads inside `recv`.
    idle: AtomicUsize,
    /// Threads alive.
    live: AtomicUsize,
    /// Requests being served.
    busy: Mutex<usize>,
    drained: Condvar,
    /// Notified each time a slot is given back.
    freed: Condvar,
    /// A request is waiting for a slot (at most one does).
    slot_waiter: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    names: AtomicUsize,
}

impl Workers {
    /// Starts the first worker; more follow as requests arrive.
    pub(crate) fn start(
        server: Arc<tiny_http::Server>,
        app: Arc<HttpState>,
        max: usize,
        stopping: Arc<AtomicBool>,
    ) -> Workers {
        let shared = Arc::new(Shared {
            server,
            app,
            max,
            stopping,
            closed: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            busy: Mutex::new(0),
            drained: Condvar::new(),
            freed: Condvar::new(),
            slot_waiter: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            names: AtomicUsize::new(0),
        });
        Shared::spawn(&shared);
        Workers { shared }
    }

    /// Ends the threads: every one waiting for a request is woken and ends, a busy one ends
    /// after its request. Until then (while `drain` waits) they answer new requests with 503.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        for _ in 0..self.shared.live.load(Ordering::SeqCst) {
            self.shared.server.unblock();
        }
    }

    /// Waits up to `grace` for requests in progress; returns how many are left.
    pub(crate) fn drain(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut busy = self.shared.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            busy = self
                .shared
                .drained
                .wait_timeout(busy, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *busy
    }

    /// Joins every worker (after `close`, and a `drain` that reported zero).
    pub(crate) fn join(self) {
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn spawn(self: &Arc<Self>) {
        // `max` serving, one waiting for a slot and one receiving is all that is ever useful.
        if self.live.load(Ordering::SeqCst) > self.max + 1 {
            return;
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        let me = Arc::clone(self);
        let n = self.names.fetch_add(1, Ordering::Relaxed) + 1;
        match std::thread::Builder::new()
            .name(format!("http-worker-{n}"))
            .spawn(move || me.worker_loop())
        {
            Ok(handle) => {
                let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
                // Reap retired threads while we are here.
                let (done, running): (Vec<_>, Vec<_>) =
                    threads.drain(..).partition(|t| t.is_finished());
                *threads = running;
                threads.push(handle);
                drop(threads);
                for t in done {
                    let _ = t.join();
                }
            }
            Err(e) => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                log::error!("cannot start a worker thread: {e}");
            }
        }
    }

    fn worker_loop(self: Arc<Self>) {
        while !self.closed.load(Ordering::SeqCst) {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let got = self.server.recv_timeout(IDLE_RETIRE);
            let others_idle = self.idle.fetch_sub(1, Ordering::SeqCst) - 1;
            match got {
                Ok(Some(request)) => {
                    if others_idle == 0 {
                        self.spawn(); // keep one thread waiting for the next request
                    }
                    self.serve(request);
                }
                // A timeout, or `unblock` from `close`.
                Ok(None) => {
                    if others_idle > 0 {
                        break; // surplus: retire
                    }
                }
                Err(e) => {
                    // tiny_http reports accept() failures (out of file descriptors, ...) here.
                    log::warn!("accepting a connection failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    fn serve(&self, request: tiny_http::Request) {
        if !self.take_slot() {
            let message = if self.stopping.load(Ordering::SeqCst) {
                SHUTTING_DOWN.to_string()
            } else {
                format!(
                    "The gateway is handling its maximum of {} requests; retry shortly.",
                    self.max
                )
            };
            refuse(&self.app, request, &message);
            return;
        }
        let ex = serve_one(&self.app, request);
        // The answer is out, and its client may send the next request at once: the slot is
        // free before the access line and metrics are written.
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            *busy -= 1;
            if *busy == 0 {
                self.drained.notify_all();
            }
            self.freed.notify_one();
        }
        finish(&self.app, &ex);
    }

    /// Takes one of the `max` slots. A worker that has just sent its answer gives its slot
    /// back a moment after its client can already send the next request; so when all are
    /// taken, one request at a time waits up to `SLOT_GRACE` for a slot, and any other is
    /// refused at once (a flood gets its 503s without delay). False: refuse (all busy, or
    /// shutting down).
    fn take_slot(&self) -> bool {
        let deadline = Instant::now() + SLOT_GRACE;
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mut waiting = false;
        let taken = loop {
            if self.stopping.load(Ordering::SeqCst) {
                break false;
            }
            if *busy < self.max {
                *busy += 1;
                break true;
            }
            let now = Instant::now();
            if now >= deadline || (!waiting && self.slot_waiter.swap(true, Ordering::SeqCst)) {
                break false;
            }
            waiting = true;
            busy = self
                .freed
                .wait_timeout(busy, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        if waiting {
            self.slot_waiter.store(false, Ordering::SeqCst);
        }
        taken
    }
}

/// Answers 503 at once (no body read, no Lingma involved).
pub(crate) fn refuse(app: &HttpState, request: tiny_http::Request, message: &str) {
    let mut ex = Exchange::new(request);
    ex.error(&GatewayError::new(ErrorKind::Unavailable, message).retry_after(1));
    finish(app, &ex);
}
