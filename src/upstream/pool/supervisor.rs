//! `lingma-sup-<n>`: one thread per instance that spawns or attaches, connects,
//! initializes, waits for the connection to die, and starts again with backoff. An
//! instance attached through a directory reads its discovery file again on every attempt
//! (a restarted runtime has a new port) and never stops that runtime.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::slots::{Shared, State};
use crate::upstream::connection::{Connection, Ended};
use crate::upstream::dialect;
use crate::upstream::discovery;
use crate::upstream::endpoint::Endpoint;
use crate::upstream::process::{port_open, LingmaProcess};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender, TryRecvError};

/// A connection that lived at least this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Starts the supervisor of instance `index`; dropping the returned sender stops it.
pub(super) fn spawn(shared: Arc<Shared>, index: usize) -> (Sender<()>, JoinHandle<()>) {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let handle = std::thread::Builder::new()
        .name(format!("lingma-sup-{index}"))
        .spawn(move || {
            Supervisor {
                shared,
                index,
                stop: stop_rx,
                process: None,
            }
            .run()
        })
        .expect("spawn supervisor thread");
    (stop_tx, handle)
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

    /// Finds the runtime (attaches through its directory or port, reuses a still-running
    /// process, or spawns one), connects and initializes.
    fn establish(&mut self) -> Result<(Arc<Connection>, Receiver<Ended>), String> {
        let name = self.name();
        let Located {
            port,
            pid,
            attached,
        } = self.locate()?;
        let cfg = &self.shared.cfg;
        let (dead_tx, dead_rx) = crossbeam_channel::bounded(1);
        let target = self.endpoint(port);
        let conn = Connection::open(&name, &target, cfg.rpc_timeout, cfg.write_timeout, dead_tx)?;
        dialect::handshake(&conn, &name, cfg.dialect, cfg.rpc_timeout, self.cwd())?;
        let runtime = conn
            .runtime()
            .map(|r| (r.dialect.as_str(), r.version.clone()));
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
            if let Some((dialect, version)) = runtime {
                s.status.dialect = Some(dialect);
                s.status.runtime_version = version;
            }
            s.conn = Some(c);
            s.models = None;
        });
        Ok((conn, dead_rx))
    }

    /// Where the runtime listens: the one the instance's attach directory names, one
    /// already on `attach_port`, the process spawned before if it still listens, or a new one.
    fn locate(&mut self) -> Result<Located, String> {
        let cfg = &self.shared.cfg;
        let name = self.name();
        if let Some(dir) = cfg.attach_dirs.get(self.index) {
            let (port, pid) = attach_through(&name, dir)?;
            return Ok(Located {
                port,
                pid,
                attached: true,
            });
        }
        if self.index == 0
            && cfg.attach_port > 0
            && port_open(cfg.attach_port, Duration::from_millis(300))
        {
            log::info!(
                "[{name}] a Lingma already listens on port {}; attaching instead of spawning",
                cfg.attach_port
            );
            return Ok(Located {
                port: cfg.attach_port,
                pid: None,
                attached: true,
            });
        }
        let reusable = match self.process.as_mut() {
            Some((p, port)) => {
                p.try_exited().is_none() && port_open(*port, Duration::from_millis(300))
            }
            None => false,
        };
        if let (true, Some((p, port))) = (reusable, self.process.as_ref()) {
            return Ok(Located::spawned(*port, p));
        }
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
        let launch = cfg.launch.as_ref().ok_or("no Lingma binary to start")?;
        let (p, port) =
            LingmaProcess::spawn(launch, &work_dir, cfg.startup_timeout, &name, &stopping)?;
        let located = Located::spawned(port, &p);
        self.process = Some((p, port));
        Ok(located)
    }

    /// Where to connect: `port`, with the configured path and header (a header file read
    /// again now: a runtime may have renewed its token).
    fn endpoint(&self, port: u16) -> Endpoint {
        let cfg = &self.shared.cfg;
        let header = cfg.ws_header.as_ref().map(|h| {
            let (value, unreadable) = h.current();
            if let Some(why) = unreadable {
                log::warn!(
                    "[{}] {why}; sending the {} value read before",
                    self.name(),
                    h.name
                );
            }
            (h.name.clone(), value)
        });
        Endpoint {
            port,
            path: cfg.ws_path.clone(),
            header,
        }
    }

    /// Where ACP sessions are rooted: the instance's own directory (ours when attached).
    fn cwd(&self) -> String {
        let cfg = &self.shared.cfg;
        let dir = match &self.process {
            Some(_) => cfg.work_dir.join(format!("instance-{}", self.index)),
            None => std::env::current_dir().unwrap_or_else(|_| cfg.work_dir.clone()),
        };
        dir.display().to_string()
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

/// Where an instance's runtime listens, and whether the gateway started it.
struct Located {
    port: u16,
    pid: Option<u32>,
    /// Not started by the gateway: never stopped by it.
    attached: bool,
}

impl Located {
    fn spawned(port: u16, p: &LingmaProcess) -> Located {
        Located {
            port,
            pid: Some(p.pid()),
            attached: false,
        }
    }
}

/// The port (and pid) of the runtime `dir`'s discovery file names, read now: a runtime
/// that restarted has written a new one. Logged loudly, since the gateway then talks to a
/// process it did not start and must never stop.
fn attach_through(name: &str, dir: &Path) -> Result<(u16, Option<u32>), String> {
    let found = discovery::read(dir)?;
    let rt = &found.runtime;
    if !port_open(rt.port, Duration::from_millis(300)) {
        return Err(format!(
            "{} names port {}, which takes no connection (is the runtime restarting?)",
            found.file.display(),
            rt.port
        ));
    }
    log::info!(
        "[{name}] ATTACHING to the running Lingma that {} names: port {}{}{} (not started by the gateway, never stopped by it)",
        found.file.display(),
        rt.port,
        rt.pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
        rt.ipc.as_ref().map(|i| format!(", IPC {i}")).unwrap_or_default(),
    );
    Ok((rt.port, rt.pid))
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
