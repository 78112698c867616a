//! Deletes Lingma sessions the gateway no longer needs (`chat/deleteSessionById`): Lingma
//! keeps every session it was asked to start in its local database, forever, so each
//! conversation that leaves the session cache (evicted, expired, its instance restarted) or
//! that can never be continued (a one-shot answer) is deleted upstream. Off the request
//! path: callers put the session into a bounded queue without waiting (full: dropped,
//! counted, logged at debug), and one thread per pool (`lingma-cleanup`, owned and joined by
//! `Cleanup::shutdown`) sends the deletes one at a time, each bounded by the RPC timeout. At
//! shutdown what is queued gets `SHUTDOWN_BUDGET` to go out; the rest is dropped. While the
//! queue is quiet the thread runs its tick every `TICK` (the session cache sweeps out the
//! conversations that expired, whose sessions then come back through the queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::json;

use super::pool::Pool;
use crate::jsonrpc::method;

/// Sessions waiting to be deleted, at most.
const QUEUE: usize = 4096;
/// How long the deletes queued at shutdown may take in all.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(2);
/// How often the tick runs (at most; a busy queue runs it between deletes).
const TICK: Duration = Duration::from_secs(1);

/// What the thread runs every `TICK`.
type Tick = Box<dyn Fn() + Send>;

/// A Lingma session to delete, and the instance it lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Doomed {
    instance: String,
    session_id: String,
}

#[derive(Default)]
struct Counts {
    deleted: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

pub(crate) struct Cleanup {
    queue: Mutex<Option<Sender<Doomed>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counts: Arc<Counts>,
    /// Set at shutdown: deletes still queued past it are dropped.
    deadline: Arc<Mutex<Option<Instant>>>,
    tick: Arc<Mutex<Option<Tick>>>,
}

impl Cleanup {
    /// Starts the cleanup thread of `pool`; each delete waits at most `timeout`.
    pub(crate) fn start(pool: Arc<Pool>, timeout: Duration) -> Arc<Cleanup> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let counts = Arc::new(Counts::default());
        let deadline = Arc::new(Mutex::new(None));
        let tick = Arc::new(Mutex::new(None));
        let worker = Worker {
            pool,
            timeout,
            counts: Arc::clone(&counts),
            deadline: Arc::clone(&deadline),
            tick: Arc::clone(&tick),
        };
        let thread = std::thread::Builder::new()
            .name("lingma-cleanup".into())
            .spawn(move || worker.run(rx))
            .expect("spawn the session cleanup thread");
        Arc::new(Cleanup {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            counts,
            deadline,
            tick,
        })
    }

    /// Runs `tick` on the cleanup thread about every second (it must not wait on anything).
    pub(crate) fn on_tick(&self, tick: Tick) {
        *self.tick.lock().unwrap_or_else(|p| p.into_inner()) = Some(tick);
    }

    /// What it did so far, for `/internal/stats`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let c = &self.counts;
        json!({
            "deleted": c.deleted.load(Ordering::Relaxed),
            "failed": c.failed.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
        })
    }

    /// Queues `session_id` of `instance` for deletion; never waits.
    pub(crate) fn delete(&self, instance: &str, session_id: &str) {
        if session_id.is_empty() {
            return;
        }
        let doomed = Doomed {
            instance: instance.to_string(),
            session_id: session_id.to_string(),
        };
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match queue.as_ref() {
            Some(tx) => tx.try_send(doomed),
            None => Err(TrySendError::Disconnected(doomed)),
        };
        if let Err(e) = sent {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "session cleanup: {} on {} not deleted (queue {})",
                e.into_inner().session_id,
                instance,
                "full or closed"
            );
        }
    }

    /// Lets what is queued go out within `SHUTDOWN_BUDGET`, then joins the thread. Call it
    /// before the pool stops its instances.
    pub(crate) fn shutdown(&self) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + SHUTDOWN_BUDGET);
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
            let c = &self.counts;
            log::info!(
                "session cleanup: {} Lingma session(s) deleted, {} failed, {} dropped",
                c.deleted.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed)
            );
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The cleanup thread's state.
struct Worker {
    pool: Arc<Pool>,
    timeout: Duration,
    counts: Arc<Counts>,
    deadline: Arc<Mutex<Option<Instant>>>,
    tick: Arc<Mutex<Option<Tick>>>,
}

impl Worker {
    /// Deletes what comes until the queue's sender is dropped and the queue is empty; runs
    /// the tick in between.
    fn run(self, rx: Receiver<Doomed>) {
        let mut ticked = Instant::now();
        loop {
            let wait = TICK.saturating_sub(ticked.elapsed());
            let doomed = match rx.recv_timeout(wait) {
                Ok(doomed) => Some(doomed),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if ticked.elapsed() >= TICK {
                ticked = Instant::now();
                if let Some(tick) = &*self.tick.lock().unwrap_or_else(|p| p.into_inner()) {
                    tick();
                }
            }
            let Some(doomed) = doomed else {
                continue;
            };
            let past = self
                .deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|d| Instant::now() >= d);
            if past {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.delete(&doomed);
        }
    }

    fn delete(&self, d: &Doomed) {
        // No lease: a delete takes no chat slot and counts as no request served.
        let Some(conn) = self.pool.connection(&d.instance) else {
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "session cleanup: {} not deleted: {} is not ready",
                d.session_id,
                d.instance
            );
            return;
        };
        let params = json!({"sessionId": d.session_id});
        match conn.call(method::CHAT_DELETE_SESSION, params, self.timeout) {
            Ok(_) => {
                self.counts.deleted.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "session cleanup: deleted {} on {}",
                    d.session_id,
                    d.instance
                );
            }
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "session cleanup: {} on {} not deleted: {e}",
                    d.session_id,
                    d.instance
                );
            }
        }
    }
}
