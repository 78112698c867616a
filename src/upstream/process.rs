//! Spawning a Lingma process (real or simulator — the same code path), finding its port
//! through its workDir's discovery file (`discovery`), draining its output into the log,
//! and stopping it: SIGTERM, then SIGKILL after a grace period, always reaped. Runs on the
//! instance's supervisor thread; the two drain threads are owned (joined) by
//! `LingmaProcess`.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::discovery;

/// How to start Lingma: `program [prefix_args...] start --workDir DIR`.
#[derive(Debug, Clone)]
pub struct LaunchCommand {
    pub program: PathBuf,
    /// Arguments before `start` (`simulate --chunk-ms 5` for the simulator; empty for Lingma).
    pub prefix_args: Vec<String>,
}

pub struct LingmaProcess {
    child: Child,
    drains: Vec<JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl LingmaProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns Lingma and waits until its discovery file names a port that accepts connections,
    /// giving up early when `cancelled` says so.
    pub fn spawn(
        cmd: &LaunchCommand,
        work_dir: &Path,
        timeout: Duration,
        name: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(Self, u16), String> {
        std::fs::create_dir_all(work_dir)
            .map_err(|e| format!("cannot create workDir {}: {e}", work_dir.display()))?;
        // A stale .info from an earlier run would hand us a dead port.
        for stale in [discovery::INFO, discovery::INFO_JSON] {
            let _ = std::fs::remove_file(work_dir.join(stale));
        }
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.prefix_args)
            .arg("start")
            .arg("--workDir")
            .arg(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the gateway's terminal reaches only the
            // gateway, which then stops Lingma in order.
            .process_group(0);
        crate::malloc::clean_child(&mut command);
        if let Some(dir) = cmd.program.parent().filter(|d| !d.as_os_str().is_empty()) {
            command.current_dir(dir);
        }
        log::info!(
            "[{name}] spawning {} {:?} start --workDir {}",
            cmd.program.display(),
            cmd.prefix_args,
            work_dir.display()
        );
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cmd.program.display()))?;
        let mut drains = Vec::new();
        if let Some(out) = child.stdout.take() {
            drains.push(drain(out, format!("{name}-out")));
        }
        if let Some(err) = child.stderr.take() {
            drains.push(drain(err, format!("{name}-err")));
        }
        let mut proc = LingmaProcess {
            child,
            drains,
            exited: None,
        };
        match proc.wait_for_port(work_dir, timeout, cancelled) {
            Ok(port) => Ok((proc, port)),
            Err(e) => {
                proc.terminate(Duration::from_secs(1));
                Err(e)
            }
        }
    }

    fn wait_for_port(
        &mut self,
        work_dir: &Path,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<u16, String> {
        let deadline = Instant::now() + timeout;
        let mut port = None;
        let mut why = String::new();
        loop {
            if port.is_none() {
                match discovery::read(work_dir) {
                    Ok(found) => port = Some(found.runtime.port),
                    Err(e) => why = e,
                }
            }
            if let Some(p) = port.filter(|p| port_open(*p, Duration::from_millis(300))) {
                return Ok(p);
            }
            if let Some(status) = self.try_exited() {
                return Err(format!("Lingma exited during startup ({status})"));
            }
            if cancelled() {
                return Err("startup abandoned: the gateway is stopping".into());
            }
            if Instant::now() >= deadline {
                return Err(match port {
                    None => format!("after {}s: {why}", timeout.as_secs()),
                    Some(p) => {
                        format!("Lingma port {p} not accepting after {}s", timeout.as_secs())
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `Some(status)` once the process has exited (and been reaped).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps the child and joins the drains.
    pub fn terminate(&mut self, grace: Duration) {
        if self.try_exited().is_none() {
            let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + grace;
            while self.try_exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.try_exited().is_none() {
                log::warn!(
                    "Lingma pid {} ignored SIGTERM for {}s; killing it",
                    self.child.id(),
                    grace.as_secs()
                );
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
            }
        }
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
    }
}

impl Drop for LingmaProcess {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(3));
    }
}

/// Copies a child's output into the debug log line by line until the pipe closes.
fn drain(pipe: impl Read + Send + 'static, name: String) -> JoinHandle<()> {
    let thread_name = format!("drain-{name}");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let reader = BufReader::new(pipe);
            for line in reader.split(b'\n') {
                match line {
                    Ok(l) => log::debug!(target: "lingma::child", "[{name}] {}", String::from_utf8_lossy(&l).trim_end()),
                    Err(_) => break,
                }
            }
        })
        .expect("spawn drain thread")
}

pub fn port_open(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}
