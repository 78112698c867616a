//! The simulator process's lifecycle, on its main thread: `main` runs the command line's
//! command; `start` binds the listeners, writes its discovery file(s), starts the named threads
//! (`sim-signals`, `sim-parent`, `sim-accept`, `sim-http`), waits for a reason to stop
//! (SIGTERM/SIGINT or the parent process gone) and joins them.

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::accept::Acceptor;
use crate::cli::{self, Command, SimOptions, StartOptions};
use crate::conn::Clients;
use crate::dialect::Dialect;
use crate::http::{self, HttpServer};
use crate::running::Running;
use crate::shared::{Shared, VERSION};
use crate::simlog::SimLog;
use crate::upgrade::{self, InfoFile, Upgrade};
use crate::{account, acp_sessions, login, session, tool_calls};

const PARENT_POLL: Duration = Duration::from_millis(500);

/// Entry point for `lingma-gateway simulate ...`; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("lingma-gateway simulate: {e}\n\n{}", cli::USAGE);
            return 2;
        }
    };
    match cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            0
        }
        Command::Version => {
            println!("version: {VERSION}");
            0
        }
        Command::Status { work_dir, json } => {
            let account = account::load(&work_dir);
            if json {
                println!("{}", account::status_json(account.as_ref(), VERSION));
            } else {
                match account {
                    Some(a) => println!(
                        "logged in as {} ({}), version {VERSION}",
                        a.name, a.user_type
                    ),
                    None => println!("not logged in, version {VERSION}"),
                }
            }
            0
        }
        Command::Start(opts) => {
            let settings = match Settings::from(cli.sim) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("lingma-gateway simulate: {e}");
                    return 2;
                }
            };
            match run(&opts, &settings, &cli.ignored) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("lingma-gateway simulate: {e}");
                    1
                }
            }
        }
    }
}

/// Simulator options after the environment fallbacks.
struct Settings {
    first_token_ms: u64,
    chunk_ms: u64,
    logged_out: bool,
    /// Keep the workDir's login as it is, none included (like the real server): no test
    /// account is created.
    keep_login: bool,
    credentials: login::Credentials,
    info_file: InfoFile,
    ws_path: Option<String>,
    ws_token_header: Option<String>,
    dialect: Dialect,
}

impl Settings {
    fn from(sim: SimOptions) -> Result<Settings, String> {
        fn env_ms(key: &str) -> Result<Option<u64>, String> {
            match std::env::var(key) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{key} wants milliseconds, got {v:?}")),
                _ => Ok(None),
            }
        }
        fn env_str(key: &str) -> Option<String> {
            std::env::var(key).ok().filter(|v| !v.is_empty())
        }
        let env_logged_out =
            std::env::var("LINGMA_SIM_LOGGED_OUT").is_ok_and(|v| v == "1" || v == "true");
        let defaults = login::Credentials::default();
        let env_dialect = match env_str("LINGMA_SIM_DIALECT") {
            Some(v) => Some(cli::dialect(&v).map_err(|e| format!("LINGMA_SIM_DIALECT: {e}"))?),
            None => None,
        };
        Ok(Settings {
            dialect: sim.dialect.or(env_dialect).unwrap_or_default(),
            first_token_ms: sim
                .first_token_ms
                .or(env_ms("LINGMA_SIM_FIRST_TOKEN_MS")?)
                .unwrap_or(0),
            chunk_ms: sim.chunk_ms.or(env_ms("LINGMA_SIM_CHUNK_MS")?).unwrap_or(0),
            logged_out: sim.logged_out || env_logged_out,
            keep_login: std::env::var("LINGMA_SIM_KEEP_LOGIN")
                .is_ok_and(|v| v == "1" || v == "true"),
            credentials: login::Credentials {
                user: sim
                    .login_user
                    .or_else(|| env_str("LINGMA_SIM_LOGIN_USER"))
                    .unwrap_or(defaults.user),
                password: sim
                    .login_password
                    .or_else(|| env_str("LINGMA_SIM_LOGIN_PASSWORD"))
                    .unwrap_or(defaults.password),
            },
            info_file: match sim.info_file {
                Some(kind) => kind,
                None => env_str("LINGMA_SIM_INFO_FILE")
                    .map(|v| cli::info_file(&v).map_err(|e| format!("LINGMA_SIM_INFO_FILE: {e}")))
                    .transpose()?
                    .unwrap_or_default(),
            },
            ws_path: match sim.ws_path {
                Some(p) => Some(p),
                None => env_str("LINGMA_SIM_WS_PATH")
                    .map(|v| cli::ws_path(&v).map_err(|e| format!("LINGMA_SIM_WS_PATH: {e}")))
                    .transpose()?,
            },
            ws_token_header: sim
                .ws_token_header
                .or_else(|| env_str("LINGMA_SIM_WS_TOKEN_HEADER")),
        })
    }
}

/// `start`: serves until a signal or the parent's death, then cleans up.
fn run(opts: &StartOptions, settings: &Settings, ignored: &[String]) -> io::Result<()> {
    let pid = std::process::id();
    let parent = std::os::unix::process::parent_id();
    std::fs::create_dir_all(&opts.work_dir)?;
    let work_dir = opts.work_dir.canonicalize()?;
    let log = SimLog::open(&work_dir)?;
    eprintln!(
        "Lingma SIMULATOR {VERSION} (lingma-gateway simulate; NOT a real Lingma server), \
         pid {pid}, workDir {}",
        work_dir.display()
    );
    log.line(&format!("Lingma simulator {VERSION} starting, pid {pid}"));
    for flag in ignored {
        log.line(&format!("ignoring unsupported flag {flag}"));
    }
    log.line(&format!("dialect: {}", settings.dialect.as_str()));
    // Registered before `.info` exists, so a SIGTERM sent right after it appears is not lost.
    let signals = Signals::new([SIGTERM, SIGINT])?;
    prepare_login(settings, &work_dir, &log)?;
    let listener = TcpListener::bind(("127.0.0.1", opts.socket_port))?;
    let ws_port = listener.local_addr()?.port();
    let (http_server, http_port) = http::bind(opts.http_port)?;
    // Logged before `.info` appears, so whoever waited for `.info` finds the line too.
    log.line(&format!(
        "Communication servers ready - WebSocket: {ws_port}, HTTP: {http_port}"
    ));
    log.line(&format!(
        "login page: http://127.0.0.1:{http_port}/login (user {})",
        login::loggable(&settings.credentials.user)
    ));
    let upgrade = upgrade_rules(settings, &work_dir, &log)?;
    let info = settings
        .info_file
        .files(ws_port, pid, &work_dir.join(".ipc.sock"));
    write_info(&work_dir, &info)?;

    let shared = Arc::new(Shared {
        instance: work_dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        work_dir: work_dir.clone(),
        pid,
        first_token_ms: settings.first_token_ms,
        chunk_ms: settings.chunk_ms,
        log,
        sessions: session::Store::default(),
        endpoint: Mutex::new(opts.endpoint.clone()),
        tokens: account::Tokens::generate(),
        running: Running::default(),
        tool_calls: tool_calls::Calls::default(),
        account_cache: Mutex::new(None),
        http_port,
        credentials: settings.credentials.clone(),
        logins: login::Logins::default(),
        clients: Clients::default(),
        dialect: settings.dialect,
        acp_models: acp_sessions::Models::default(),
    });
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<String>(4);
    let services = Services::start(
        &shared,
        (listener, upgrade),
        http_server,
        signals,
        parent,
        stop_tx,
    );
    let services = services.inspect_err(|_| remove_info(&work_dir, &info))?;
    let reason = stop_rx
        .recv()
        .unwrap_or_else(|_| "watcher threads ended".into());
    shared.log.line(&format!("shutting down: {reason}"));
    remove_info(&work_dir, &info);
    drop(services);
    shared.log.line("stopped");
    Ok(())
}

/// The simulator's long-running threads. Dropping it stops and joins them all, the listeners
/// (and with them every connection and generator) first.
struct Services {
    http: Option<HttpServer>,
    acceptor: Option<Acceptor>,
    signals: Option<(signal_hook::iterator::Handle, JoinHandle<()>)>,
    /// Dropping the sender ends the parent watcher.
    parent: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Services {
    fn start(
        shared: &Arc<Shared>,
        (listener, upgrade): (TcpListener, Upgrade),
        http_server: tiny_http::Server,
        signals: Signals,
        parent: u32,
        stop: Sender<String>,
    ) -> io::Result<Services> {
        let mut services = Services {
            http: None,
            acceptor: None,
            signals: None,
            parent: None,
        };
        let handle = signals.handle();
        let stop_on_signal = stop.clone();
        let thread = spawn("sim-signals", move || signal_loop(signals, &stop_on_signal))?;
        services.signals = Some((handle, thread));
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread = spawn("sim-parent", move || {
            parent_watch_loop(parent, &done, &stop)
        })?;
        services.parent = Some((done_tx, thread));
        services.acceptor = Some(Acceptor::spawn(listener, Arc::clone(shared), upgrade)?);
        services.http = Some(HttpServer::spawn(http_server, Arc::clone(shared))?);
        Ok(services)
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        drop(self.http.take());
        drop(self.acceptor.take());
        if let Some((handle, thread)) = self.signals.take() {
            handle.close();
            let _ = thread.join();
        }
        if let Some((done, thread)) = self.parent.take() {
            drop(done);
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.into()).spawn(body)
}

fn signal_loop(mut signals: Signals, stop: &Sender<String>) {
    for signal in signals.forever() {
        let name = if signal == SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        let _ = stop.try_send(format!("received {name}"));
    }
}

/// Stops the simulator when its parent dies (it is re-parented), so a gateway killed with
/// SIGKILL does not leak simulator processes. Ends when `done` is dropped.
fn parent_watch_loop(parent: u32, done: &Receiver<()>, stop: &Sender<String>) {
    while let Err(RecvTimeoutError::Timeout) = done.recv_timeout(PARENT_POLL) {
        if std::os::unix::process::parent_id() != parent {
            let _ = stop.try_send(format!("parent process {parent} exited"));
            return;
        }
    }
}

/// The workDir's login as `settings` want it: kept, removed, or the test account.
fn prepare_login(settings: &Settings, work_dir: &Path, log: &SimLog) -> io::Result<()> {
    if settings.keep_login {
        log.line("keeping the workDir's login as it is (LINGMA_SIM_KEEP_LOGIN)");
    } else if settings.logged_out {
        account::remove(work_dir)?;
    } else if !account::user_file(work_dir).exists() {
        account::store(work_dir, &account::Account::test_account())?;
    }
    Ok(())
}

/// What WebSocket upgrades must carry (`--ws-path`, `--ws-token-header`), logged.
fn upgrade_rules(settings: &Settings, work_dir: &Path, log: &SimLog) -> io::Result<Upgrade> {
    let header = match &settings.ws_token_header {
        Some(name) => Some((name.clone(), upgrade::machine_token(work_dir)?)),
        None => None,
    };
    let rules = Upgrade {
        path: settings.ws_path.clone(),
        header,
    };
    if rules != Upgrade::default() {
        log.line(&format!(
            "WebSocket upgrades need path {} and header {} (the token of {})",
            rules.path.as_deref().unwrap_or("(any)"),
            rules.header.as_ref().map_or("(none)", |(n, _)| n.as_str()),
            upgrade::token_file(work_dir).display()
        ));
    }
    Ok(rules)
}

/// Writes each discovery file through a temp file and a rename, so a reader never sees half
/// of one.
fn write_info(work_dir: &Path, files: &[(&str, String)]) -> io::Result<()> {
    for (name, contents) in files {
        let tmp = work_dir.join(format!("{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, work_dir.join(name))?;
    }
    Ok(())
}

/// Removes the discovery files unless another instance has replaced them meanwhile.
fn remove_info(work_dir: &Path, files: &[(&str, String)]) {
    for (name, contents) in files {
        let path = work_dir.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|c| c == *contents) {
            let _ = std::fs::remove_file(path);
        }
    }
}
