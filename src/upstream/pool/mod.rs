//! The pool of Lingma instances. One mutex guards the bookkeeping of every instance (state,
//! connection, load, affinity); it is never held across I/O. Each instance has a supervisor
//! thread (`lingma-sup-<n>`) that spawns or attaches, connects, initializes, watches the
//! connection, and re-establishes it with exponential backoff (1 s → 30 s). The pool owns
//! the supervisors: dropping their stop senders ends them, and `shutdown` joins them.
//!
//! `slots` is the shared bookkeeping, `affinity` remembers conversations, `supervisor`
//! keeps one instance alive; here are the pool, how it places a request, and its leases.

mod affinity;
mod slots;
mod supervisor;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::json;

use self::slots::{Shared, Slots};
use super::connection::{Connection, UpstreamError};
use super::models::ModelList;
use crate::jsonrpc::method;

pub use self::slots::InstanceStatus;
pub(crate) use self::slots::{PoolConfig, State};

/// An affinity hit is kept unless its instance has this many more requests in flight than
/// the least loaded one.
const AFFINITY_SLACK: usize = 2;
/// How long model lists are reused before asking Lingma again.
const MODELS_TTL: Duration = Duration::from_secs(60);

pub(crate) struct Pool {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<(Sender<()>, JoinHandle<()>)>>,
}

/// Why no instance could be leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseError {
    /// Nothing became ready within the wait; carries a summary of the states.
    NotReady(String),
    ShuttingDown,
}

/// Why a named instance could not be leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NamedLeaseError {
    Unknown,
    /// Carries its state.
    NotReady(&'static str),
}

impl Pool {
    /// Leases the instance called `name` if it is ready, without waiting (admin endpoints).
    pub(crate) fn lease_named(&self, name: &str) -> Result<Lease, NamedLeaseError> {
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
    pub(crate) fn start(cfg: PoolConfig) -> Arc<Pool> {
        let shared = Arc::new(Shared::new(cfg));
        let mut supervisors = Vec::new();
        for i in 0..shared.cfg.instance_count {
            supervisors.push(supervisor::spawn(Arc::clone(&shared), i));
        }
        Arc::new(Pool {
            shared,
            supervisors: Mutex::new(supervisors),
        })
    }

    /// The connection of the instance called `name` if it is ready, without a lease (the
    /// session cleanup: its calls take no chat slot).
    pub(crate) fn connection(&self, name: &str) -> Option<Arc<Connection>> {
        let g = self.shared.lock();
        let slot = g.list.iter().find(|s| s.status.name == name)?;
        slot.usable().then(|| slot.conn.clone()).flatten()
    }

    /// How often the instance called `name` was re-established (its generation).
    pub(crate) fn restarts(&self, name: &str) -> Option<u64> {
        self.shared
            .lock()
            .list
            .iter()
            .find(|s| s.status.name == name)
            .map(|s| s.status.restarts)
    }

    pub(crate) fn statuses(&self) -> Vec<InstanceStatus> {
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
    pub(crate) fn lease(&self, affinity: Option<u64>, wait: Duration) -> Result<Lease, LeaseError> {
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
    pub(crate) fn lease_other(
        &self,
        affinity: Option<u64>,
        not: &str,
    ) -> Result<Lease, LeaseError> {
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
    pub(crate) fn shutdown(&self) {
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

/// Which ready instance (other than `skip`) a request goes to: the one its conversation
/// last used, unless that one is much busier than the rest; else the least loaded, ties
/// taken in turn.
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
pub(crate) struct Lease {
    shared: Arc<Shared>,
    index: usize,
    pub(crate) name: String,
    pub(crate) conn: Arc<Connection>,
}

impl Lease {
    /// The instance's model list, from a cache refreshed every minute.
    pub(crate) fn models(&self, timeout: Duration) -> Result<Arc<ModelList>, UpstreamError> {
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
    pub(crate) fn raw_models(&self, timeout: Duration) -> Result<serde_json::Value, UpstreamError> {
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
