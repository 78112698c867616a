//! The HTTP front: tiny_http's accept loop on the main thread hands each request to a worker
//! (`http-worker-N`). Workers are spawned on demand up to `max_workers` and reused; a request
//! arriving while all `max_workers` are busy gets 503 at once. A panic inside a handler
//! becomes a 500 in the route's protocol. Every request ends with one access log line.

pub mod auth;
pub mod exchange;
pub mod openai;
pub mod routes;
pub mod sse;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::{ErrorKind, GatewayError};
use exchange::Exchange;
use routes::App;

/// Idle workers above this age exit, so a burst does not pin its threads forever.
const WORKER_IDLE_EXIT: Duration = Duration::from_secs(60);

struct Counters {
    /// Requests dispatched and not finished.
    active: Mutex<usize>,
    drained: Condvar,
    /// Workers waiting for a job and not yet claimed by the dispatcher.
    idle: AtomicUsize,
}

pub struct Workers {
    tx: Option<Sender<tiny_http::Request>>,
    rx: Receiver<tiny_http::Request>,
    counters: Arc<Counters>,
    max: usize,
    app: Arc<App>,
    handles: Vec<JoinHandle<()>>,
    spawned: usize,
}

impl Workers {
    pub fn new(app: Arc<App>, max: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters {
            active: Mutex::new(0),
            drained: Condvar::new(),
            idle: AtomicUsize::new(0),
        });
        Workers {
            tx: Some(tx),
            rx,
            counters,
            max,
            app,
            handles: Vec::new(),
            spawned: 0,
        }
    }

    /// Gives a request to an idle worker, or a new one, or answers 503 when all are busy.
    pub fn dispatch(&mut self, request: tiny_http::Request) {
        {
            let mut active = self
                .counters
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *active >= self.max {
                drop(active);
                let mut ex = Exchange::new(request);
                let e = GatewayError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "The gateway is handling its maximum of {} requests; retry shortly.",
                        self.max
                    ),
                )
                .retry_after(1);
                ex.error(&e);
                access_log(&ex);
                return;
            }
            *active += 1;
        }
        // Claim an idle worker if there is one; it is then certain to take this job.
        let claimed = self
            .counters
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            self.handles.retain(|h| !h.is_finished());
            let (rx, counters, app) = (
                self.rx.clone(),
                Arc::clone(&self.counters),
                Arc::clone(&self.app),
            );
            self.spawned += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("http-worker-{}", self.spawned))
                .spawn(move || worker_loop(rx, counters, app));
            match spawned {
                Ok(h) => self.handles.push(h),
                Err(e) => log::error!("cannot start a worker thread: {e}"),
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(request);
        }
    }

    /// Waits up to `grace` for in-flight requests to finish; returns how many are left.
    pub fn drain(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut active = self
            .counters
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while *active > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            active = self
                .counters
                .drained
                .wait_timeout(active, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *active
    }

    /// Stops the workers: closes the job queue and joins them (only call after `drain`
    /// reported zero, or busy workers will be waited for).
    pub fn join(mut self) {
        self.tx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker_loop(rx: Receiver<tiny_http::Request>, counters: Arc<Counters>, app: Arc<App>) {
    // The dispatcher spawned this worker for a job it already queued: take it first.
    let mut first = true;
    loop {
        let request = if first {
            first = false;
            match rx.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            counters.idle.fetch_add(1, Ordering::AcqRel);
            match rx.recv_timeout(WORKER_IDLE_EXIT) {
                Ok(r) => r,
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    // Leave only if no dispatcher claimed us in the meantime.
                    if counters
                        .idle
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return;
                    }
                    match rx.recv() {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            }
        };
        serve_one(&app, request);
        let mut active = counters.active.lock().unwrap_or_else(|p| p.into_inner());
        *active -= 1;
        if *active == 0 {
            counters.drained.notify_all();
        }
    }
}

fn serve_one(app: &App, request: tiny_http::Request) {
    let mut ex = Exchange::new(request);
    let outcome = catch_unwind(AssertUnwindSafe(|| routes::handle(app, &mut ex)));
    if outcome.is_err() {
        log::error!("{} handler panicked on {} {}", ex.id, ex.method, ex.path);
        if !ex.responded() {
            ex.error(&GatewayError::new(
                ErrorKind::Internal,
                "Internal gateway error; see the gateway log.",
            ));
        } else {
            ex.status = 500;
        }
    }
    access_log(&ex);
}

fn access_log(ex: &Exchange) {
    log::info!(
        target: "access",
        "{} {} {} {} {}ms model={} stream={} instance={}",
        ex.id,
        ex.method,
        ex.path,
        ex.status,
        ex.started.elapsed().as_millis(),
        if ex.model.is_empty() { "-" } else { &ex.model },
        ex.stream,
        if ex.instance.is_empty() { "-" } else { &ex.instance },
    );
}

/// Runs the accept loop until `stopping` is set and `server.unblock()` is called.
pub fn accept_loop(
    server: &tiny_http::Server,
    workers: &mut Workers,
    stopping: &std::sync::atomic::AtomicBool,
) {
    loop {
        match server.recv() {
            Ok(request) => workers.dispatch(request),
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                // An accept error (out of file descriptors, ...) must not end the server.
                log::warn!("accepting a connection failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// During shutdown: answers every new request with 503 until `refusing` is cleared.
pub fn refuse_loop(server: &tiny_http::Server, refusing: &std::sync::atomic::AtomicBool) {
    while refusing.load(Ordering::SeqCst) {
        if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
            let mut ex = Exchange::new(request);
            ex.error(&GatewayError::new(
                ErrorKind::Unavailable,
                "The gateway is shutting down; retry against another instance.",
            ));
            access_log(&ex);
        }
    }
}
