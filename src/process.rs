//! Process lifecycle of `lingma-gateway serve`: configuration, logging, the Lingma pool, the
//! HTTP listener, and an orderly shutdown on SIGTERM/SIGINT (stop accepting, let in-flight
//! requests finish within `shutdown_grace_sec`, stop Lingma, reap it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::accounts::Logins;
use crate::cli::ServeArgs;
use crate::config::{self, Config};
use crate::http::{routes::HttpState, Workers};
use crate::service::ChatService;
use crate::upstream::cleanup::Cleanup;
use crate::upstream::pool::{Pool, PoolConfig};
use crate::upstream::process::LaunchCommand;

/// Loads and validates the configuration the way `serve` does.
pub(crate) fn load_config(args: &ServeArgs) -> Result<(Config, config::RawConfig), String> {
    let path = config::config_path(args.config.as_deref());
    let mut raw =
        config::load(path.as_deref(), config::process_env()).map_err(|e| e.to_string())?;
    args.apply(&mut raw).map_err(|e| e.to_string())?;
    let cfg = raw.build().map_err(|e| e.to_string())?;
    Ok((cfg, raw))
}

pub fn check_config(args: &ServeArgs) -> i32 {
    match load_config(args) {
        Ok((cfg, raw)) => {
            println!(
                "# configuration OK (from {})",
                cfg.source
                    .as_ref()
                    .map_or("defaults".into(), |p| p.display().to_string())
            );
            for (key, value, origin) in raw.redacted() {
                println!("{key} = {value}    ; {origin}");
            }
            0
        }
        Err(e) => {
            eprintln!("lingma-gateway: configuration error: {e}");
            2
        }
    }
}

/// `login-url`: asks the gateway running with this configuration for an instance's login
/// URL (`GET /internal/login-url`, with the admin token or the first API key) and prints it.
pub fn login_url(args: &ServeArgs, instance: &str) -> i32 {
    let cfg = match load_config(args) {
        Ok((cfg, _)) => cfg,
        Err(e) => {
            eprintln!("lingma-gateway: configuration error: {e}");
            return 2;
        }
    };
    let host = if cfg.host.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        cfg.host.to_string()
    };
    let base = format!(
        "http://{}",
        SocketAddr::new(host.parse().unwrap_or(cfg.host), cfg.port)
    );
    let url = format!("{base}/internal/login-url?instance={instance}");
    let mut req = ureq::get(&url);
    if let Some(token) = cfg.admin_token.as_ref().or(cfg.api_keys.first()) {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    let answer = req
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(|e| e.to_string())
        .and_then(|mut r| {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
            Ok((status, body))
        });
    match answer {
        Ok((200, body)) => {
            let link = body["login_url"].as_str().unwrap_or("");
            println!("{link}");
            eprintln!(
                "Open this URL in a browser on this machine (Lingma's login callback listens on its \
                 127.0.0.1; from elsewhere, forward that port). When the page says you are logged in, \
                 {instance} serves chats."
            );
            0
        }
        Ok((status, body)) => {
            let msg = body["error"]["message"].as_str().unwrap_or("no message");
            eprintln!("lingma-gateway: the gateway at {base} answered {status}: {msg}");
            1
        }
        Err(e) => {
            eprintln!(
                "lingma-gateway: no gateway answers at {base} ({e}); start it first (lingma-gateway serve), then run this again"
            );
            1
        }
    }
}

/// The log: one record per line, no secret in any (see `logging`).
fn init_logging(cfg: &Config) {
    crate::logging::init(cfg.log_level, &cfg.secrets());
}

/// How to start Lingma; `None` when every instance attaches to a running one (no binary).
fn launch_command(cfg: &Config) -> Result<Option<LaunchCommand>, String> {
    if cfg.simulator {
        if !cfg!(feature = "simulator") {
            return Err(format!(
                "simulator = true (or --simulator), but {}; or set lingma_bin to a real Lingma",
                crate::cli::NO_SIMULATOR
            ));
        }
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot locate my own binary for the simulator: {e}"))?;
        return Ok(Some(LaunchCommand {
            program: exe,
            prefix_args: vec![
                "simulate".into(),
                "--first-token-ms".into(),
                cfg.simulator_first_token_ms.to_string(),
                "--chunk-ms".into(),
                cfg.simulator_chunk_ms.to_string(),
            ],
        }));
    }
    let Some(bin) = cfg.lingma_bin.clone() else {
        return Ok(None);
    };
    if !bin.is_file() {
        return Err(format!(
            "lingma_bin {} does not exist or is not a file",
            bin.display()
        ));
    }
    Ok(Some(LaunchCommand {
        program: bin,
        prefix_args: Vec::new(),
    }))
}

fn warn_posture(cfg: &Config) {
    if cfg.simulator {
        log::warn!("**************************************************************************");
        log::warn!(
            "*** USING THE BUNDLED LINGMA SIMULATOR: answers are synthetic, not a model ***"
        );
        log::warn!(
            "*** (simulator = true / --simulator). Point lingma_bin at a real Lingma.   ***"
        );
        log::warn!("**************************************************************************");
    }
    if cfg.api_keys.is_empty() {
        log::warn!("NO API KEYS CONFIGURED: anyone who can reach this port can use the Lingma account (set api_keys)");
        if !cfg.host.is_loopback() {
            log::warn!("LISTENING BEYOND LOOPBACK ({}) WITHOUT API KEYS: the Lingma account is open to the network", cfg.host);
        }
    }
    match (cfg.admin_token.is_some(), cfg.api_keys.is_empty()) {
        (true, _) => {}
        (false, false) => log::warn!(
            "NO ADMIN TOKEN CONFIGURED: /internal/* accepts the client API keys, so every client can read stats, config and recent request bodies (set admin_token)"
        ),
        (false, true) if cfg.host.is_loopback() => log::warn!(
            "NO ADMIN TOKEN AND NO API KEYS: /internal/* and /metrics are open to anyone on this machine (set admin_token)"
        ),
        (false, true) => log::warn!(
            "NO ADMIN TOKEN AND NO API KEYS while listening beyond loopback: /internal/* and /metrics refuse every request (403) until admin_token is set"
        ),
    }
    if cfg.metrics_public {
        log::warn!("METRICS ARE PUBLIC (metrics_public = true): anyone who can reach this port can read /metrics");
    }
    if cfg.max_in_flight >= cfg.max_workers {
        log::warn!(
            "gateway_max_in_flight ({}) is not below max_workers ({}): requests beyond max_workers get 503 instead of waiting in the queue",
            cfg.max_in_flight,
            cfg.max_workers
        );
    }
}

/// Binds the listener with TCP_NODELAY, which accepted sockets inherit on Linux: without it
/// Nagle's algorithm holds each small SSE event until the client's delayed ACK (~40 ms).
/// Bound early, so a taken port stops startup before Lingma is spawned; connections wait in
/// the backlog until `http_server` starts accepting.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    if let Err(e) = rustix::net::sockopt::set_tcp_nodelay(&listener, true) {
        log::warn!("cannot set TCP_NODELAY on the listener ({e}); streamed events may be delayed");
    }
    Ok(listener)
}

/// The HTTP server on `listener`, with every client-facing bound from the configuration:
/// connections (`max_connections`), the wait for a request (`client_timeout_sec`), its head
/// and body (`client_header_timeout_sec`, `client_body_timeout_sec`), the memory bodies may
/// hold (`max_buffered_body_bytes`) and the time a client may take to read each stretch of
/// its answer (`client_send_timeout_sec`). Its body policy is the route table's: a body is
/// read (before any worker sees the request) only for a request the gateway will handle.
fn http_server(
    listener: std::net::TcpListener,
    app: &Arc<HttpState>,
) -> Result<tiny_http::Server, String> {
    let cfg = &app.gw.cfg;
    let policy_app = Arc::clone(app);
    let options = tiny_http::ServerOptions {
        max_connections: cfg.max_connections,
        idle_timeout: cfg.client_timeout,
        head_timeout: cfg.client_header_timeout,
        body_timeout: cfg.client_body_timeout,
        send_timeout: cfg.client_send_timeout,
        max_buffered_body_bytes: cfg.max_buffered_body_bytes,
        body_policy: Arc::new(move |rq: &tiny_http::Request| {
            crate::http::routes::body_policy(&policy_app, rq)
        }),
        ..tiny_http::ServerOptions::default()
    };
    tiny_http::Server::from_listener(listener, options).map_err(|e| e.to_string())
}

/// Runs the gateway until a signal; returns the process exit code.
pub fn serve(args: &ServeArgs) -> i32 {
    let (cfg, raw) = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lingma-gateway: configuration error: {e}");
            return 2;
        }
    };
    let tuning = crate::malloc::tune(cfg.malloc_tuning);
    init_logging(&cfg);
    crate::malloc::log(&tuning);
    let launch = match launch_command(&cfg) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    let addr = SocketAddr::new(cfg.host, cfg.port);
    raise_file_limit(cfg.max_connections);
    let listener = match bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {addr}: {e}");
            return 1;
        }
    };
    let signals = match SignalWatch::install() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    warn_posture(&cfg);
    let pool_cfg = pool_config(&cfg, launch);
    if let Err(e) = crate::accounts::install_bundles(&cfg, &pool_cfg.work_dir) {
        log::error!("{e}");
        return 2;
    }
    let (grace, max_workers) = (cfg.shutdown_grace, cfg.max_workers);
    let services = Services::start(cfg, pool_cfg, &raw);
    let server = match http_server(listener, &services.app) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error!("cannot serve HTTP on {addr}: {e}");
            return 1;
        }
    };
    let shown = server
        .server_addr()
        .to_ip()
        .map_or_else(|| addr.to_string(), |a| a.to_string());
    log::info!(
        "lingma-gateway {} listening on http://{shown}",
        env!("CARGO_PKG_VERSION")
    );

    let stopping = Arc::new(AtomicBool::new(false));
    let app = Arc::clone(&services.app);
    let workers = Workers::start(server, app, max_workers, Arc::clone(&stopping));
    signals.wait();
    // New requests now get 503 from the workers while those in progress finish.
    stopping.store(true, Ordering::SeqCst);
    services.shut_down(workers, grace);
    drop(signals);
    log::info!("stopped");
    0
}

/// What serves requests once the listener is bound: the Lingma pool, the auto-login, the
/// chat service and the HTTP state around it.
struct Services {
    app: Arc<HttpState>,
    pool: Arc<Pool>,
    logins: Arc<Logins>,
    sessions: Option<Arc<crate::sessions::SessionCache>>,
    /// Joined before the pool stops, so the last deletes reach Lingma.
    cleanup: Option<Arc<Cleanup>>,
}

impl Services {
    /// Starts the pool (instances become ready in the background) and builds the rest.
    fn start(cfg: Config, pool_cfg: PoolConfig, raw: &config::RawConfig) -> Services {
        let work_dir = pool_cfg.work_dir.clone();
        let rpc_timeout = pool_cfg.rpc_timeout;
        let pool = Pool::start(pool_cfg);
        let cleanup = cfg
            .lingma_delete_sessions
            .then(|| Cleanup::start(Arc::clone(&pool), rpc_timeout));
        let sessions = cfg.session_reuse.then(|| {
            Arc::new(crate::sessions::SessionCache::new(
                cfg.session_cache_max_entries,
                cfg.session_cache_ttl,
                cleanup.clone(),
            ))
        });
        if let (Some(cache), Some(cleanup)) = (&sessions, &cleanup) {
            cache.sweep_on(cleanup);
        }
        let logins = Logins::new(&cfg, Arc::clone(&pool), work_dir, sessions.clone());
        let gw = Arc::new(ChatService {
            cfg,
            pool: Arc::clone(&pool),
            logins: Arc::clone(&logins),
            sessions: sessions.clone(),
            cleanup: cleanup.clone(),
            context_sizes: Default::default(),
            started: SystemTime::now(),
        });
        Services {
            app: Arc::new(HttpState::new(gw, raw)),
            pool,
            logins,
            sessions,
            cleanup,
        }
    }

    /// The orderly end once no new request is taken: requests in progress get `grace` to
    /// finish, then the workers close, the logins stop, and Lingma stops.
    fn shut_down(&self, workers: Workers, grace: Duration) {
        let left = workers.drain(grace);
        if left > 0 {
            log::warn!(
                "{left} request(s) still running after {}s; closing them",
                grace.as_secs()
            );
        }
        workers.close();
        self.logins.shutdown();
        // The conversations still cached can never be continued by another process: their
        // sessions are deleted (within the cleanup's shutdown budget) while Lingma runs.
        if let Some(sessions) = &self.sessions {
            sessions.close();
        }
        if let Some(cleanup) = &self.cleanup {
            cleanup.shutdown();
        }
        // Stopping Lingma fails the chats still running: their clients get the protocol's
        // error (an error event mid-stream) before the process ends.
        self.pool.shutdown();
        let left = match left {
            0 => 0,
            _ => workers.drain(CUT_GRACE),
        };
        if left == 0 {
            workers.join();
        } else {
            log::warn!("{left} request(s) did not end after their upstream was closed");
        }
    }
}

/// After the shutdown grace, how long requests cut by closing their upstream get to send
/// their error to the client.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// The pool's settings. Lingma runs with its own directory as the working directory, so a
/// relative workDir would land somewhere else: it is anchored at ours.
fn pool_config(cfg: &Config, launch: Option<LaunchCommand>) -> PoolConfig {
    let relative: std::path::PathBuf = cfg
        .lingma_work_dir
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let work_dir = match std::env::current_dir() {
        Ok(cwd) => cwd.join(relative),
        Err(_) => cfg.lingma_work_dir.clone(),
    };
    log::info!("Lingma workDirs under {}", work_dir.display());
    PoolConfig {
        launch,
        work_dir,
        instance_count: cfg.instance_count,
        attach_port: cfg.lingma_socket_port,
        attach_dirs: cfg.lingma_attach_dirs.clone(),
        ws_path: cfg.lingma_ws_path.clone(),
        ws_header: cfg.lingma_ws_header.clone(),
        startup_timeout: cfg.lingma_startup_timeout,
        rpc_timeout: cfg.lingma_rpc_timeout,
        write_timeout: cfg.lingma_write_timeout,
        kill_grace: cfg.lingma_kill_grace,
        dialect: cfg.lingma_dialect,
    }
}

/// SIGTERM/SIGINT, caught on a thread of their own (`signals`) that this value owns.
struct SignalWatch {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    got: crossbeam_channel::Receiver<()>,
}

impl SignalWatch {
    fn install() -> std::io::Result<Self> {
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let handle = signals.handle();
        let (tx, got) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    log::info!("received signal {sig}; shutting down");
                    let _ = tx.send(());
                }
            })?;
        Ok(SignalWatch {
            handle,
            thread: Some(thread),
            got,
        })
    }

    /// Blocks until the first signal.
    fn wait(&self) {
        let _ = self.got.recv();
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Each client connection holds three descriptors (tiny_http's read and write halves, and
/// the handle the connection cap shuts down); Lingma sockets, pipes and logs need some more.
/// Raises the soft limit towards the hard one as far as `max_connections` needs, and warns
/// when even the hard limit is too low.
fn raise_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let needed = max_connections as u64 * 3 + 256;
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    limit.current = Some(needed.min(hard));
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        log::warn!("cannot raise the open-file limit from {soft} ({e}); max_connections = {max_connections} needs about {needed}");
    } else if hard < needed {
        log::warn!("the open-file limit is {hard} (hard); max_connections = {max_connections} needs about {needed}: lower max_connections or raise the limit (LimitNOFILE= in systemd)");
    } else {
        log::debug!("raised the open-file limit from {soft} to {needed}");
    }
}
