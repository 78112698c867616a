//! The bookkeeping every instance shares under the pool's one mutex: its state, connection,
//! load and cached models, and the affinity table. No I/O happens under the lock.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::affinity::Affinity;
use crate::upstream::connection::Connection;
use crate::upstream::models::ModelList;
use crate::upstream::process::LaunchCommand;

#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    /// `None` when every instance attaches (`attach_dirs`): nothing is spawned.
    pub(crate) launch: Option<LaunchCommand>,
    pub(crate) work_dir: PathBuf,
    pub(crate) instance_count: usize,
    /// When > 0 and open, instance 0 attaches to this port instead of spawning.
    pub(crate) attach_port: u16,
    /// Instance N attaches to the runtime `attach_dirs[N]`'s discovery file names, never
    /// spawning one.
    pub(crate) attach_dirs: Vec<PathBuf>,
    /// The WebSocket upgrade's path and extra header.
    pub(crate) ws_path: String,
    pub(crate) ws_header: Option<crate::config::WsHeader>,
    pub(crate) startup_timeout: Duration,
    pub(crate) rpc_timeout: Duration,
    /// Longest one write to Lingma may take before its connection is given up as stuck.
    pub(crate) write_timeout: Duration,
    pub(crate) kill_grace: Duration,
    /// `lingma_dialect`: which dialect each connection speaks, or how to decide.
    pub(crate) dialect: crate::config::DialectChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Starting,
    Ready,
    Reconnecting,
    /// Several attempts in a row failed; still retrying at the backoff cap.
    Failed,
    Closed,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) name: String,
    pub(crate) state: State,
    pub(crate) in_flight: usize,
    pub(crate) served: u64,
    pub(crate) pid: Option<u32>,
    pub(crate) port: Option<u16>,
    pub(crate) attached: bool,
    pub(crate) restarts: u64,
    pub(crate) last_error: String,
    /// The dialect its last connection chose (`None` before the first).
    pub(crate) dialect: Option<&'static str>,
    /// Its runtime's `serverInfo.version`, as its last connection was told.
    pub(crate) runtime_version: String,
}

pub(super) struct Slot {
    pub(super) status: InstanceStatus,
    pub(super) conn: Option<Arc<Connection>>,
    pub(super) models: Option<(Instant, Arc<ModelList>)>,
}

impl Slot {
    /// Ready, and its connection has not died under it in the meantime.
    pub(super) fn usable(&self) -> bool {
        self.status.state == State::Ready && self.conn.as_ref().is_some_and(|c| c.is_alive())
    }
}

pub(super) struct Slots {
    pub(super) list: Vec<Slot>,
    /// Affinity key → index of the instance it last used.
    pub(super) affinity: Affinity,
    /// Rotates ties between equally loaded instances.
    pub(super) next: usize,
    pub(super) closing: bool,
}

pub(super) struct Shared {
    pub(super) slots: Mutex<Slots>,
    pub(super) changed: Condvar,
    pub(super) cfg: PoolConfig,
}

impl Shared {
    /// Every instance starting, none leased.
    pub(super) fn new(cfg: PoolConfig) -> Shared {
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
                    dialect: None,
                    runtime_version: String::new(),
                },
                conn: None,
                models: None,
            })
            .collect();
        Shared {
            slots: Mutex::new(Slots {
                list,
                affinity: Affinity::default(),
                next: 0,
                closing: false,
            }),
            changed: Condvar::new(),
            cfg,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn update(&self, index: usize, f: impl FnOnce(&mut Slot)) {
        let mut g = self.lock();
        f(&mut g.list[index]);
        drop(g);
        self.changed.notify_all();
    }
}
