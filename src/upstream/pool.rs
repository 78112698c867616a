//! The pool of Lingma instances. One mutex guards the bookkeeping of every instance (state,
//! connection, load, affinity); it is never held across I/O. Each instance has a supervisor
//! thread (`lingma-sup-<n>`) that spawns or attaches, connects, initializes, watches the
//! connection, and re-establishes it with exponential backoff (1 s → 30 s). The pool owns
//! the supervisors: dropping their stop senders ends them, and `shutdown` joins them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde_json::json;

use super::connection::{Connection, Ended, UpstreamError};
use super::models::ModelList;
use super::process::{port_open, LaunchCommand, LingmaProcess};
use crate::jsonrpc::method;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub launch: LaunchCommand,
    pub work_dir: PathBuf,
    pub instance_count: usize,
    /// When > 0 and open, instance 0 attaches to this port instead of spawning.
    pub attach_port: u16,
    pub startup_timeout: Duration,
    pub rpc_timeout: Duration,
    /// Longest one write to Lingma may take before its connection is given up as stuck.
    pub write_timeout: Duration,
    pub kill_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Ready,
    Reconnecting,
    /// Several attempts in a row failed; still retrying at the backoff cap.
    Failed,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Reconnecting => "reconnecting",
            State::Failed => "failed",
            State::Closed => "closed",
        }
    }
}

/// A snapshot of one instance for `/healthz` and logs.
#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub name: String,
    pub state: State,
    pub in_flight: usize,
    pub served: u64,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub attached: bool,
    pub restarts: u64,
    pub last_error: String,
}

struct Slot {
    status: InstanceStatus,
    conn: Option<Arc<Connection>>,
    models: Option<(Instant, Arc<ModelList>)>,
}

impl Slot {
    /// Ready, and its connection has not died under it in the meantime.
    fn usable(&self) -> bool {
        self.status.state == State::Ready && self.conn.as_ref().is_some_and(|c| c.is_alive())
    }
}

struct Slots {
    list: Vec<Slot>,
    /// Affinity key → index of the instance it last used.
    affinity: Affinity,
    /// Rotates ties between equally loaded instances.
    next: usize,
    closing: bool,
}

struct Shared {
    slots: Mutex<Slots>,
    changed: Condvar,
    cfg: PoolConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut Slot)) {
        let mut g = self.lock();
        f(&mut g.list[index]);
        drop(g);
        self.changed.notify_all();
    }
}

/// How long model lists are reused before asking Lingma again.
const MODELS_TTL: Duration = Duration::from_secs(60);
/// An affinity hit is kept unless its instance has this many more requests in flight than
/// the least loaded one.
const AFFINITY_SLACK: usize = 2;
/// Affinity keys per generation (see `Affinity`): the last 4096 to 8192 conversations are
/// remembered, in at most two tables of 8192 buckets each (about 140 KiB apiece).
const AFFINITY_GENERATION: usize = 4096;
/// A connection that lived at least this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

pub struct Pool {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<(Sender<()>, JoinHandle<()>)>>,
}

/// Why no instance could be leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// Nothing became ready within the wait; carries a summary of the states.
    NotReady(String),
    ShuttingDown,
}

/// Why a named instance could not be leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedLeaseError {
    Unknown,
    /// Carries its state.
    NotReady(&'static str),
}

impl Pool {
    /// Leases the instance called `name` if it is ready, without waiting (admin endpoints).
    pub fn lease_named(&self, name: &str) -> Result<Lease, NamedLeaseError> {
        let mut g = self.shared.lock();
        let i = g
            .list
            .iter()
            .position(|s| s.status.name == name)
            .ok_or(NamedLeaseError::Unknown)?;
        let slot = &mut g.list[i];
        if !slot.usable() {
            let state = match slot.status.state {
                State::Ready => State::Reconnecting,
                s => s,
            };
            return Err(NamedLeaseError::NotReady(state.as_str()));
        }
        slot.status.in_flight += 1;
        let conn = Arc::clone(slot.conn.as_ref().expect("a ready slot has a connection"));
        Ok(Lease {
            shared: Arc::clone(&self.shared),
            index: i,
            name: slot.status.name.clone(),
            conn,
        })
    }

    /// Starts one supervisor per instance. Returns at once; instances become ready in the
    /// background.
    pub fn start(cfg: PoolConfig) -> Arc<Pool> {
        let list = (0..cfg.instance_count)
            .map(|i| Slot {
                status: InstanceStatus {
                    name: format!("lingma-{i}"),
                    state: State::Starting,
                    in_flight: 0,
                    served: 0,
                    pid: None,
                    port: None,
                    attached: false,
                    restarts: 0,
                    last_error: String::new(),
                },
                conn: None,
                models: None,
            })
            .collect();
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots {
                list,
                affinity: Affinity::default(),
                next: 0,
                closing: false,
            }),
            changed: Condvar::new(),
            cfg,
        });
        let mut supervisors = Vec::new();
        for i in 0..shared.cfg.instance_count {
            let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
            let sh = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("lingma-sup-{i}"))
                .spawn(move || {
                    Supervisor {
                        shared: sh,
                        index: i,
                        stop: stop_rx,
                        process: None,
                    }
                    .run()
                })
                .expect("spawn supervisor thread");
            supervisors.push((stop_tx, handle));
        }
        Arc::new(Pool {
            shared,
            supervisors: Mutex::new(supervisors),
        })
    }

    /// How often the instance called `name` was re-established (its generation).
    pub fn restarts(&self, name: &str) -> Option<u64> {
        self.shared
            .lock()
            .list
            .iter()
            .find(|s| s.status.name == name)
            .map(|s| s.status.restarts)
    }

    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.shared
            .lock()
            .list
            .iter()
            .map(|s| {
                let mut st = s.status.clone();
                if !s.usable() && st.state == State::Ready {
                    st.state = State::Reconnecting; // the supervisor is about to say so
                }
                st
            })
            .collect()
    }

    /// Leases the best ready instance: the one `affinity` last used if it is ready and not
    /// much busier than the rest, else the least loaded (ties rotate). Waits up to `wait`.
    pub fn lease(&self, affinity: Option<u64>, wait: Duration) -> Result<Lease, LeaseError> {
        let deadline = Instant::now() + wait;
        let mut g = self.shared.lock();
        loop {
            if g.closing {
                return Err(LeaseError::ShuttingDown);
            }
            if let Some(i) = choose(&mut g, affinity, None) {
                return Ok(self.take(&mut g, i, affinity));
            }
            let now = Instant::now();
            if now >= deadline {
                let states: Vec<String> = g
                    .list
                    .iter()
                    .map(|s| format!("{} {}", s.status.name, s.status.state.as_str()))
                    .collect();
                return Err(LeaseError::NotReady(states.join(", ")));
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A ready instance other than `not`, without waiting (the retry of a chat whose
    /// instance failed before the first byte). The affinity key moves to it.
    pub fn lease_other(&self, affinity: Option<u64>, not: &str) -> Result<Lease, LeaseError> {
        let mut g = self.shared.lock();
        if g.closing {
            return Err(LeaseError::ShuttingDown);
        }
        let skip = g.list.iter().position(|s| s.status.name == not);
        match choose(&mut g, affinity, skip) {
            Some(i) => Ok(self.take(&mut g, i, affinity)),
            None => Err(LeaseError::NotReady(format!(
                "no instance but {not} is ready"
            ))),
        }
    }

    /// Lends slot `i` (ready) and remembers it for the affinity key.
    fn take(&self, g: &mut Slots, i: usize, affinity: Option<u64>) -> Lease {
        let slot = &mut g.list[i];
        slot.status.in_flight += 1;
        let conn = Arc::clone(slot.conn.as_ref().expect("a ready slot has a connection"));
        let name = slot.status.name.clone();
        if let Some(key) = affinity {
            g.affinity.insert(key, i);
        }
        Lease {
            shared: Arc::clone(&self.shared),
            index: i,
            name,
            conn,
        }
    }

    /// Stops accepting leases, stops every supervisor (each closes its connection and
    /// terminates its Lingma), and joins them.
    pub fn shutdown(&self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        let supervisors: Vec<_> =
            std::mem::take(&mut *self.supervisors.lock().unwrap_or_else(|p| p.into_inner()));
        let mut handles = Vec::new();
        for (stop, handle) in supervisors {
            drop(stop);
            handles.push(handle);
        }
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Which instance each conversation last used, bounded by generations rather than by
/// time: keys go into `current`; when it holds `AFFINITY_GENERATION` keys it becomes
/// `previous` (the older one is forgotten) and `current` starts empty again, reusing its
/// table. A key found only in `previous` moves back into `current` when it is used again.
/// Every conversation (without a client hint: every distinct system prompt or first
/// message) adds a key, so a map that was only cleared at 100,000 keys grew with the
/// traffic for hours, to a few MiB.
#[derive(Default)]
struct Affinity {
    current: HashMap<u64, usize>,
    previous: HashMap<u64, usize>,
}

impl Affinity {
    fn get(&self, key: u64) -> Option<usize> {
        self.current
            .get(&key)
            .or_else(|| self.previous.get(&key))
            .copied()
    }

    fn insert(&mut self, key: u64, instance: usize) {
        if self.current.len() >= AFFINITY_GENERATION && !self.current.contains_key(&key) {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.previous.remove(&key);
        self.current.insert(key, instance);
    }
}

fn choose(g: &mut Slots, affinity: Option<u64>, skip: Option<usize>) -> Option<usize> {
    let ready: Vec<usize> = (0..g.list.len())
        .filter(|&i| g.list[i].usable() && Some(i) != skip)
        .collect();
    let min_load = ready.iter().map(|&i| g.list[i].status.in_flight).min()?;
    if let Some(i) = affinity.and_then(|k| g.affinity.get(k)) {
        if ready.contains(&i) && g.list[i].status.in_flight <= min_load + AFFINITY_SLACK {
            return Some(i);
        }
    }
    let least: Vec<usize> = ready
        .into_iter()
        .filter(|&i| g.list[i].status.in_flight == min_load)
        .collect();
    let pick = least[g.next % least.len()];
    g.next = g.next.wrapping_add(1);
    Some(pick)
}

/// One instance, borrowed for one request; given back on drop.
pub struct Lease {
    shared: Arc<Shared>,
    index: usize,
    pub name: String,
    pub conn: Arc<Connection>,
}

impl Lease {
    /// The instance's model list, from a cache refreshed every minute.
    pub fn models(&self, timeout: Duration) -> Result<Arc<ModelList>, UpstreamError> {
        if let Some((at, list)) = &self.shared.lock().list[self.index].models {
            if at.elapsed() < MODELS_TTL && !list.is_empty() {
                return Ok(Arc::clone(list));
            }
        }
        let raw = self.raw_models(timeout)?;
        let list = Arc::new(ModelList::from_query(&raw));
        self.shared.lock().list[self.index].models = Some((Instant::now(), Arc::clone(&list)));
        Ok(list)
    }
}

impl Lease {
    /// Asks Lingma for its model catalogue (`config/queryModels`), uncached, unparsed.
    pub fn raw_models(&self, timeout: Duration) -> Result<serde_json::Value, UpstreamError> {
        self.conn.call(method::QUERY_MODELS, json!({}), timeout)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.update(self.index, |s| {
            s.status.in_flight -= 1;
            s.status.served += 1;
        });
    }
}

struct Supervisor {
    shared: Arc<Shared>,
    index: usize,
    stop: Receiver<()>,
    /// The Lingma this instance spawned (none when attached to a running one).
    process: Option<(LingmaProcess, u16)>,
}

impl Supervisor {
    fn name(&self) -> String {
        format!("lingma-{}", self.index)
    }

    fn run(mut self) {
        let mut failures: u32 = 0;
        let mut delay = Duration::ZERO;
        // Only a timeout means "go on": the pool stops us by dropping the sender.
        while let Err(RecvTimeoutError::Timeout) = self.stop.recv_timeout(delay) {
            match self.establish() {
                Ok((conn, dead)) => {
                    failures = 0;
                    let ready_at = Instant::now();
                    let ended = select! {
                        recv(self.stop) -> _ => { conn.close(); break; }
                        recv(dead) -> ended => ended.unwrap_or_else(|_| Ended {
                            why: "reader ended".into(),
                            stuck: false,
                        }),
                    };
                    self.lost(&ended.why);
                    conn.close();
                    if ended.stuck {
                        self.stop_stuck_process();
                    }
                    if ready_at.elapsed() >= HEALTHY_AFTER {
                        delay = Duration::ZERO;
                    } else {
                        failures += 1;
                        delay = backoff(failures);
                    }
                }
                Err(e) => {
                    failures += 1;
                    delay = backoff(failures);
                    let state = if failures >= 3 {
                        State::Failed
                    } else {
                        State::Reconnecting
                    };
                    log::warn!(
                        "[{}] Lingma not available: {e}; next attempt in {}s",
                        self.name(),
                        delay.as_secs()
                    );
                    self.shared.update(self.index, |s| {
                        s.status.state = state;
                        s.status.last_error = e;
                    });
                    // A process that could not be talked to is replaced on the next attempt.
                    if let Some((mut p, _)) = self.process.take() {
                        p.terminate(self.shared.cfg.kill_grace);
                    }
                }
            }
        }
        log::info!("[{}] stopping", self.name());
        if let Some((mut p, _)) = self.process.take() {
            p.terminate(self.shared.cfg.kill_grace);
        }
        self.shared.update(self.index, |s| {
            s.status.state = State::Closed;
            s.conn = None;
        });
    }

    /// Spawns (or attaches, or reuses a still-running process), connects and initializes.
    fn establish(&mut self) -> Result<(Arc<Connection>, Receiver<Ended>), String> {
        let cfg = &self.shared.cfg;
        let name = self.name();
        let mut attached = false;
        let port = if self.index == 0
            && cfg.attach_port > 0
            && port_open(cfg.attach_port, Duration::from_millis(300))
        {
            log::info!(
                "[{name}] a Lingma already listens on port {}; attaching instead of spawning",
                cfg.attach_port
            );
            attached = true;
            cfg.attach_port
        } else {
            let reusable = match self.process.as_mut() {
                Some((p, port)) => {
                    p.try_exited().is_none() && port_open(*port, Duration::from_millis(300))
                }
                None => false,
            };
            match self.process.as_ref() {
                Some((_, port)) if reusable => *port,
                _ => {
                    if let Some((mut p, _)) = self.process.take() {
                        if let Some(status) = p.try_exited() {
                            log::warn!(
                                "[{name}] Lingma pid {} exited ({status}); respawning",
                                p.pid()
                            );
                        }
                        p.terminate(cfg.kill_grace);
                    }
                    let work_dir = cfg.work_dir.join(format!("instance-{}", self.index));
                    // The pool stops us by dropping the sender; a slow start must not delay it.
                    let stop = &self.stop;
                    let stopping = || matches!(stop.try_recv(), Err(TryRecvError::Disconnected));
                    let (p, port) = LingmaProcess::spawn(
                        &cfg.launch,
                        &work_dir,
                        cfg.startup_timeout,
                        &name,
                        &stopping,
                    )?;
                    self.process = Some((p, port));
                    port
                }
            }
        };
        let (dead_tx, dead_rx) = crossbeam_channel::bounded(1);
        let conn = Connection::open(&name, port, cfg.rpc_timeout, cfg.write_timeout, dead_tx)?;
        let init = json!({
            "processId": std::process::id(),
            "clientInfo": {"name": "lingma-gateway", "version": env!("CARGO_PKG_VERSION")},
            "rootUri": null,
            "capabilities": {},
            "workspaceFolders": [],
        });
        conn.call(method::INITIALIZE, init, cfg.rpc_timeout)
            .map_err(|e| format!("initialize: {e}"))?;
        conn.notify(method::INITIALIZED, json!({}))
            .map_err(|e| e.to_string())?;
        let pid = self.process.as_ref().map(|(p, _)| p.pid());
        log::info!(
            "[{name}] ready on port {port}{}",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
        let c = Arc::clone(&conn);
        self.shared.update(self.index, move |s| {
            s.status.state = State::Ready;
            s.status.pid = pid;
            s.status.port = Some(port);
            s.status.attached = attached;
            s.conn = Some(c);
            s.models = None;
        });
        Ok((conn, dead_rx))
    }

    /// A Lingma that stopped reading its socket is alive but of no use: the one we spawned
    /// is killed (and reaped) so the next attempt starts a fresh one. One we attached to is
    /// not ours to kill; the next attempt connects to it again.
    fn stop_stuck_process(&mut self) {
        match self.process.take() {
            Some((mut p, _)) => {
                log::warn!(
                    "[{}] Lingma pid {} stopped reading its socket; stopping it to restart the instance",
                    self.name(),
                    p.pid()
                );
                p.terminate(self.shared.cfg.kill_grace);
            }
            None => log::warn!(
                "[{}] the attached Lingma stopped reading its socket; reconnecting to it",
                self.name()
            ),
        }
    }

    fn lost(&self, why: &str) {
        log::warn!("[{}] lost Lingma: {why}; re-establishing", self.name());
        let why = why.to_string();
        self.shared.update(self.index, |s| {
            s.status.state = State::Reconnecting;
            s.status.restarts += 1;
            s.status.last_error = why;
            s.conn = None;
            s.models = None;
        });
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_remembers_recent_conversations_in_bounded_memory() {
        let mut a = Affinity::default();
        let keys = 25 * AFFINITY_GENERATION as u64;
        for k in 0..keys {
            a.insert(k, (k % 3) as usize);
            // One old conversation keeps coming back: it is never forgotten.
            a.insert(u64::MAX, 7);
        }
        let kept = a.current.len() + a.previous.len();
        assert!(kept <= 2 * AFFINITY_GENERATION, "{kept} keys kept");
        let tables = a.current.capacity() + a.previous.capacity();
        assert!(tables <= 4 * AFFINITY_GENERATION, "room for {tables} keys");
        for k in keys - AFFINITY_GENERATION as u64..keys {
            assert_eq!(a.get(k), Some((k % 3) as usize), "recent key {k}");
        }
        assert_eq!(a.get(0), None, "the oldest went");
        assert_eq!(a.get(u64::MAX), Some(7));
        a.insert(keys - 1, 2);
        assert_eq!(a.get(keys - 1), Some(2), "a key moves to its new instance");
    }

    #[test]
    fn backoff_doubles_from_one_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
