//! The chromedriver process: started on a free loopback port in its own process group,
//! stopped and reaped (with whatever it left in its group) when dropped.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::LoginError;
use super::wire::agent;

/// How long chromedriver gets to answer `GET /status` with `ready: true`.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long chromedriver gets to exit after SIGTERM before SIGKILL.
const DRIVER_STOP_GRACE: Duration = Duration::from_secs(3);

/// A running chromedriver on `127.0.0.1:<free port>`. Dropping it stops it (SIGTERM, then
/// SIGKILL) and reaps it, together with any browser it left behind in its process group.
pub struct Chromedriver {
    child: Child,
    exited: Option<ExitStatus>,
    port: u16,
    url: String,
}

impl Chromedriver {
    /// Starts `bin --port=N` on a free port and waits until `GET /status` says `ready`.
    pub fn spawn(bin: &Path) -> Result<Chromedriver, LoginError> {
        if !bin.is_file() {
            return Err(LoginError::DriverMissing {
                path: bin.to_path_buf(),
            });
        }
        // The port is free when we look, but another process may take it before chromedriver
        // binds it; chromedriver then exits at once and we try another.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::spawn_once(bin)? {
                Ok(driver) => return Ok(driver),
                Err(why) => last = why,
            }
        }
        Err(LoginError::DriverStart(last))
    }

    /// `Err(_)` for failures that stop at once; `Ok(Err(why))` when chromedriver exited early
    /// (possibly a lost race for the port) and another attempt may succeed.
    fn spawn_once(bin: &Path) -> Result<Result<Chromedriver, String>, LoginError> {
        let port =
            free_port().map_err(|e| LoginError::DriverStart(format!("no free local port: {e}")))?;
        let mut command = Command::new(bin);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the gateway's terminal does not reach it, and
            // on drop the whole group (chromedriver and any browser it leaves) can be killed.
            .process_group(0);
        log::debug!("auto-login: starting {} --port={port}", bin.display());
        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoginError::DriverMissing {
                path: bin.to_path_buf(),
            },
            _ => LoginError::DriverStart(format!("cannot run {}: {e}", bin.display())),
        })?;
        // The drains end when the last writer closes the pipe; they are not joined, because
        // a browser that inherited the pipe may outlive chromedriver for a moment.
        if let Some(out) = child.stdout.take() {
            drain(out, "chromedriver-out");
        }
        if let Some(err) = child.stderr.take() {
            drain(err, "chromedriver-err");
        }
        let mut driver = Chromedriver {
            child,
            exited: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        let agent = agent(Duration::from_secs(1));
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if driver.is_ready(&agent) {
                log::debug!("auto-login: chromedriver ready on port {port}");
                return Ok(Ok(driver));
            }
            if let Some(status) = driver.try_exited() {
                return Ok(Err(format!(
                    "{} exited during startup ({status})",
                    bin.display()
                )));
            }
            if Instant::now() >= deadline {
                // `driver` is dropped here: terminated and reaped.
                return Err(LoginError::DriverStart(format!(
                    "{} not ready on port {port} after {}s",
                    bin.display(),
                    DRIVER_START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self, agent: &ureq::Agent) -> bool {
        let Ok(mut resp) = agent.get(format!("{}/status", self.url)).call() else {
            return false;
        };
        resp.body_mut()
            .read_json::<Value>()
            .ok()
            .and_then(|v| v.pointer("/value/ready").and_then(Value::as_bool))
            .unwrap_or(false)
    }

    /// `http://127.0.0.1:<port>`, for `Session::new`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether chromedriver has exited, without reaping it: while it is an unreaped zombie
    /// its pid (and so its process-group id) cannot be reused by another process.
    fn exited_unreaped(&self) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) else {
            return true;
        };
        use rustix::process::WaitIdOptions as W;
        !matches!(
            rustix::process::waitid(
                rustix::process::WaitId::Pid(pid),
                W::EXITED | W::NOHANG | W::NOWAIT
            ),
            Ok(None)
        )
    }

    /// SIGTERM, up to `DRIVER_STOP_GRACE`, SIGKILL; then SIGKILL to whatever is left in its
    /// process group (a browser it failed to stop) while its zombie still holds the group id;
    /// then reaps it.
    fn terminate(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        let wait_exit = |d: &Self, grace: Duration| {
            let deadline = Instant::now() + grace;
            while !d.exited_unreaped() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            d.exited_unreaped()
        };
        if !self.exited_unreaped() {
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            if !wait_exit(self, DRIVER_STOP_GRACE) {
                log::warn!(
                    "auto-login: chromedriver pid {} ignored SIGTERM; killing it",
                    self.child.id()
                );
                let _ = self.child.kill();
                wait_exit(self, Duration::from_secs(2));
            }
        }
        if let Some(pid) = pid.filter(|_| self.exited_unreaped()) {
            if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_ok() {
                log::trace!("auto-login: swept chromedriver's process group");
            }
        }
        self.exited = self.child.wait().ok();
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        self.terminate();
        log::debug!("auto-login: chromedriver stopped ({:?})", self.exited);
    }
}

impl fmt::Debug for Chromedriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chromedriver")
            .field("pid", &self.child.id())
            .field("url", &self.url)
            .finish()
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Copies a child's output into the debug log line by line until the pipe closes.
fn drain(pipe: impl Read + Send + 'static, name: &'static str) {
    let spawned = std::thread::Builder::new()
        .name(format!("drain-{name}"))
        .spawn(move || {
            for line in BufReader::new(pipe).split(b'\n') {
                match line {
                    Ok(l) => log::debug!(
                        target: "lingma::chromedriver",
                        "[{name}] {}",
                        String::from_utf8_lossy(&l).trim_end()
                    ),
                    Err(_) => break,
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("auto-login: cannot start a thread for {name}: {e}");
    }
}
