//! Accounts and logins. Every chat, model list and raw model query passes the auth gate: the
//! leased instance's `auth/status` must show a logged-in account (a non-empty `id`; a
//! positive answer is trusted for `auth_recheck_sec`). A logged-out instance is logged in by
//! auto-login when it is enabled and its account has a user name and password: one login
//! thread per instance at a time drives a headless Chromium through Lingma's login page
//! (`login::browser`), then waits for `auth/status` to confirm; failures are retried
//! `auto_login_max_retry` times. Otherwise the client gets a 401 saying how to log in.
//! Session bundles move logins: an account's bundle is unpacked into its instances'
//! workDirs before Lingma starts, and a logged-in instance's workDir can be exported.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::bundle;
use crate::config::{Account, Config, LoginConfig};
use crate::error::{ErrorKind, GatewayError, NamedLease};
use crate::jsonrpc::method;
use crate::login::browser;
use crate::login::webdriver::Chromedriver;
use crate::sessions::SessionCache;
use crate::upstream::pool::{Lease, NamedLeaseError, Pool};
use crate::upstream::UpstreamError;

/// How often auto-login asks `auth/status` after the browser is done.
const CONFIRM_POLL: Duration = Duration::from_millis(300);

/// Where one instance's login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Running,
    LoggedIn,
    Failed,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::LoggedIn => "logged_in",
            Phase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct InstanceLogin {
    phase: Phase,
    attempts: u32,
    last_error: String,
    started: Option<SystemTime>,
    finished: Option<SystemTime>,
    /// When `auth/status` last said "logged in".
    confirmed: Option<Instant>,
}

/// The logins of every instance.
pub(crate) struct Logins {
    cfg: LoginConfig,
    rpc_timeout: Duration,
    /// The account owning each instance (`None`: no accounts configured).
    owners: Vec<Option<Account>>,
    work_dir: PathBuf,
    pool: Arc<Pool>,
    table: Mutex<Vec<InstanceLogin>>,
    changed: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    /// Reusable sessions die with a login: a new login starts from scratch.
    sessions: Option<Arc<SessionCache>>,
}

fn ms(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

fn instance_index(name: &str) -> Option<usize> {
    name.strip_prefix("lingma-")?.parse().ok()
}

fn logged_in(status: &Value) -> bool {
    status
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty())
}

impl Logins {
    pub(crate) fn new(
        cfg: &Config,
        pool: Arc<Pool>,
        work_dir: PathBuf,
        sessions: Option<Arc<SessionCache>>,
    ) -> Arc<Logins> {
        let owners: Vec<Option<Account>> = if cfg.accounts.is_empty() {
            vec![None; cfg.instance_count]
        } else {
            cfg.instance_accounts()
                .into_iter()
                .map(|a| Some(a.clone()))
                .collect()
        };
        let fresh = InstanceLogin {
            phase: Phase::Idle,
            attempts: 0,
            last_error: String::new(),
            started: None,
            finished: None,
            confirmed: None,
        };
        Arc::new(Logins {
            cfg: cfg.login.clone(),
            rpc_timeout: cfg.lingma_rpc_timeout,
            table: Mutex::new(vec![fresh; owners.len()]),
            owners,
            work_dir,
            pool,
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            sessions,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<InstanceLogin>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn account(&self, index: usize) -> Option<&Account> {
        self.owners.get(index).and_then(Option::as_ref)
    }

    /// The auth gate: `Ok` when the leased instance is logged in (after auto-login, if it
    /// had to and may), else the error the client gets.
    pub(crate) fn gate(self: &Arc<Self>, lease: &Lease) -> Result<(), GatewayError> {
        let Some(index) = instance_index(&lease.name) else {
            return Ok(());
        };
        if self.lock()[index]
            .confirmed
            .is_some_and(|at| at.elapsed() < self.cfg.recheck)
        {
            return Ok(());
        }
        let status = lease
            .conn
            .call(method::AUTH_STATUS, json!({}), self.rpc_timeout)
            .map_err(|e| unready(&lease.name, &e))?;
        if logged_in(&status) {
            self.confirm(index);
            return Ok(());
        }
        {
            let mut t = self.lock();
            t[index].confirmed = None;
            if t[index].phase == Phase::LoggedIn {
                t[index].phase = Phase::Idle;
            }
        }
        let name = &lease.name;
        if !self.cfg.auto {
            return Err(not_logged_in(
                name,
                "auto-login is off (auto_login_enabled = false)",
            ));
        }
        if !self.account(index).is_some_and(Account::can_log_in) {
            return Err(not_logged_in(
                name,
                "auto-login needs its account's username and password, and none are configured",
            ));
        }
        self.start(index);
        let phase = self.wait(index, self.cfg.timeout + Duration::from_secs(5));
        match phase {
            Phase::LoggedIn => Ok(()),
            Phase::Running | Phase::Idle => Err(GatewayError::new(
                ErrorKind::Unavailable,
                format!("Lingma instance {name} is being logged in (auto-login); retry shortly."),
            )
            .retry_after(10)),
            Phase::Failed => {
                let why = self.lock()[index].last_error.clone();
                Err(not_logged_in(name, &format!("auto-login failed: {why}")))
            }
        }
    }

    /// Instances whose login was confirmed and not found gone since.
    pub(crate) fn logged_in_instances(&self) -> Vec<String> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, l)| l.phase == Phase::LoggedIn)
            .map(|(i, _)| format!("lingma-{i}"))
            .collect()
    }

    fn confirm(&self, index: usize) {
        let mut t = self.lock();
        t[index].confirmed = Some(Instant::now());
        if t[index].phase != Phase::Running {
            t[index].phase = Phase::LoggedIn;
        }
    }

    /// Starts auto-login for the instance unless it is already running; `false` when it was.
    pub(crate) fn start(self: &Arc<Self>, index: usize) -> bool {
        {
            let mut t = self.lock();
            if t[index].phase == Phase::Running || self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            t[index] = InstanceLogin {
                phase: Phase::Running,
                attempts: 0,
                last_error: String::new(),
                started: Some(SystemTime::now()),
                finished: None,
                confirmed: None,
            };
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("login-{index}"))
            .spawn(move || me.run(index));
        match spawned {
            Ok(handle) => {
                let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
                threads.retain(|h| !h.is_finished());
                threads.push(handle);
                true
            }
            Err(e) => {
                self.finish(index, Phase::Failed, format!("cannot start a thread: {e}"));
                false
            }
        }
    }

    /// Starts auto-login for the instance called `name`; the state it is in afterwards.
    pub(crate) fn start_named(self: &Arc<Self>, name: &str) -> Result<Value, GatewayError> {
        let index = self.index_of(name)?;
        if !self.account(index).is_some_and(Account::can_log_in) {
            return Err(GatewayError::invalid(
                "instance",
                format!(
                    "Instance {name} has no account with a username and password to log in with."
                ),
            ));
        }
        let started = self.start(index);
        let mut v = self.status_of(index);
        v["started"] = json!(started);
        Ok(v)
    }

    fn index_of(&self, name: &str) -> Result<usize, GatewayError> {
        instance_index(name)
            .filter(|i| *i < self.owners.len())
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorKind::NotFound,
                    format!("There is no Lingma instance named `{name}`; /healthz lists them."),
                )
            })
    }

    fn wait(&self, index: usize, timeout: Duration) -> Phase {
        let deadline = Instant::now() + timeout;
        let mut t = self.lock();
        while t[index].phase == Phase::Running {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        t[index].phase
    }

    fn finish(&self, index: usize, phase: Phase, error: String) {
        let mut t = self.lock();
        t[index].phase = phase;
        t[index].last_error = error;
        t[index].finished = Some(SystemTime::now());
        if phase == Phase::LoggedIn {
            t[index].confirmed = Some(Instant::now());
        }
        drop(t);
        self.changed.notify_all();
    }

    /// The login thread: attempts until one succeeds or the retries run out.
    fn run(self: Arc<Self>, index: usize) {
        let name = format!("lingma-{index}");
        let attempts = 1 + self.cfg.max_retry;
        let mut last = String::new();
        for attempt in 1..=attempts {
            if self.stopping.load(Ordering::SeqCst) {
                last = "the gateway is shutting down".into();
                break;
            }
            self.lock()[index].attempts = attempt;
            log::info!("auto-login {name}: attempt {attempt} of {attempts}");
            match self.attempt(index, &name) {
                Ok(who) => {
                    log::info!("auto-login {name}: logged in as {who}");
                    if let Some(cache) = &self.sessions {
                        cache.forget_instance(&name);
                    }
                    self.finish(index, Phase::LoggedIn, String::new());
                    return;
                }
                Err(e) => {
                    log::warn!("auto-login {name}: attempt {attempt} failed: {e}");
                    last = e;
                }
            }
        }
        log::warn!("auto-login {name}: gave up after {attempts} attempt(s): {last}");
        self.finish(index, Phase::Failed, last);
    }

    /// One attempt: endpoint switch, login URL, browser, confirmation. Returns the account
    /// name Lingma reports.
    fn attempt(&self, index: usize, name: &str) -> Result<String, String> {
        let account = self.account(index).ok_or("no account")?.clone();
        let lease = self.pool.lease_named(name).map_err(|e| match e {
            NamedLeaseError::Unknown => "unknown instance".to_string(),
            NamedLeaseError::NotReady(state) => format!("the instance is {state}, not ready"),
        })?;
        let call = |m: &str, p: Value| {
            lease
                .conn
                .call(m, p, self.rpc_timeout)
                .map_err(|e| format!("{m}: {e}"))
        };
        let status = call(method::AUTH_STATUS, json!({}))?;
        if logged_in(&status) {
            return Ok(account_name(&status));
        }
        if let Some(endpoint) = &self.cfg.dedicated_domain_url {
            let current = call(method::GET_ENDPOINT, json!({}))?;
            if current.get("endpoint").and_then(Value::as_str) != Some(endpoint.as_str()) {
                log::info!("auto-login {name}: switching Lingma to the dedicated endpoint");
                call(method::UPDATE_ENDPOINT, json!({"endpoint": endpoint}))?;
            }
        }
        let generated = call(method::LOGIN_GENERATE_URL, json!({}))?;
        let url = login_url(&generated).ok_or_else(|| {
            format!(
                "login/generateUrl returned no URL ({})",
                generated
                    .get("errorMsg")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
            )
        })?;
        let deadline = Instant::now() + self.cfg.timeout;
        let driver = Chromedriver::spawn(&self.cfg.chromedriver_bin).map_err(|e| e.to_string())?;
        browser::log_in(
            &driver,
            Some(&self.cfg.chromium_bin),
            self.cfg.headless,
            &url,
            &account.username,
            &account.password,
            &self.cfg.selectors,
            self.cfg.timeout,
        )
        .map_err(|e| e.to_string())?;
        drop(driver);
        log::info!(
            "auto-login {name}: the login page accepted the account; waiting for Lingma to confirm"
        );
        loop {
            let status = call(method::AUTH_STATUS, json!({}))?;
            if logged_in(&status) {
                return Ok(account_name(&status));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the login page accepted the account, but Lingma reported no login within {}s",
                    self.cfg.timeout.as_secs()
                ));
            }
            std::thread::sleep(CONFIRM_POLL);
        }
    }

    /// `GET /internal/auto-login/status`: every instance (no secrets).
    pub(crate) fn status(&self) -> Value {
        let items: Vec<Value> = (0..self.owners.len()).map(|i| self.status_of(i)).collect();
        json!({"ok": true, "auto_login_enabled": self.cfg.auto, "instances": items})
    }

    fn status_of(&self, index: usize) -> Value {
        let t = self.lock()[index].clone();
        let account = self.account(index);
        json!({
            "instance": format!("lingma-{index}"),
            "account": account.map(|a| a.name.as_str()),
            "can_auto_login": account.is_some_and(Account::can_log_in),
            "phase": t.phase.as_str(),
            "attempts": t.attempts,
            "last_error": t.last_error,
            "started_at_ms": ms(t.started),
            "finished_at_ms": ms(t.finished),
        })
    }

    /// `GET /internal/login-url`: a login URL for a person to open.
    pub(crate) fn login_url(&self, name: &str) -> Result<String, GatewayError> {
        let lease = self
            .pool
            .lease_named(name)
            .map_err(|error| NamedLease { name, error })?;
        let generated = lease
            .conn
            .call(method::LOGIN_GENERATE_URL, json!({}), self.rpc_timeout)
            .map_err(|e| unready(name, &e))?;
        login_url(&generated)
            .ok_or_else(|| GatewayError::new(ErrorKind::Upstream, "Lingma returned no login URL"))
    }

    /// `POST /internal/session/export`: the instance's workDir as a session bundle.
    pub(crate) fn export(&self, name: &str) -> Result<Value, GatewayError> {
        let index = self.index_of(name)?;
        let lease = self
            .pool
            .lease_named(name)
            .map_err(|error| NamedLease { name, error })?;
        let status = lease
            .conn
            .call(method::AUTH_STATUS, json!({}), self.rpc_timeout)
            .map_err(|e| unready(name, &e))?;
        if !logged_in(&status) {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("Lingma instance {name} is not logged in: there is no login to export."),
            ));
        }
        let dir = self.work_dir.join(format!("instance-{index}"));
        let raw = bundle::pack(&dir).map_err(|e| {
            GatewayError::new(
                ErrorKind::Internal,
                format!("cannot pack {name}'s workDir: {e}"),
            )
        })?;
        log::info!("session bundle exported from {name} ({} bytes)", raw.len());
        Ok(json!({
            "instance": name,
            "account": self.account(index).map_or(account_name(&status), |a| a.name.clone()),
            "raw_bytes": raw.len(),
            "bundle_b64": bundle::encode(&raw),
        }))
    }

    /// Stops starting logins and waits for running ones (each ends within its timeout).
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn unready(name: &str, e: &UpstreamError) -> GatewayError {
    GatewayError::new(
        ErrorKind::Unavailable,
        format!("Lingma instance {name} did not answer auth/status: {e}"),
    )
    .retry_after(5)
}

fn not_logged_in(name: &str, why: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Authentication,
        format!(
            "Lingma instance {name} is not logged in to an Alibaba Lingma account ({why}). To log it in: \
             run `lingma-gateway login-url --instance {name}` and open the URL in a browser; \
             or give its [account.NAME] a username and password and set auto_login_enabled = true; \
             or give the account a session_bundle exported from a logged-in gateway."
        ),
    )
    .with_code("lingma_not_logged_in")
}

fn login_url(generated: &Value) -> Option<String> {
    match generated {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => ["loginUrl", "url", "login_url"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(String::from),
        _ => None,
    }
}

fn account_name(status: &Value) -> String {
    ["name", "email", "accountId"]
        .iter()
        .find_map(|k| status.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .unwrap_or("(unnamed)")
        .to_string()
}

/// Unpacks each account's session bundle into its instances' workDirs, before Lingma starts.
pub(crate) fn install_bundles(cfg: &Config, work_dir: &Path) -> Result<(), String> {
    for (index, account) in cfg.instance_accounts().into_iter().enumerate() {
        let (b64, key) = match (&account.session_bundle, &account.session_bundle_file) {
            (Some(b), _) => (b.clone(), "session_bundle"),
            (None, Some(path)) => (
                std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "account.{}.session_bundle_file: cannot read {}: {e}",
                        account.name,
                        path.display()
                    )
                })?,
                "session_bundle_file",
            ),
            (None, None) => continue,
        };
        let fail = |e: &dyn std::fmt::Display| format!("account.{}.{key}: {e}", account.name);
        let raw = bundle::decode(&b64).map_err(|e| fail(&e))?;
        let dir = work_dir.join(format!("instance-{index}"));
        std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
        let done = bundle::unpack(&raw, &dir).map_err(|e| fail(&e))?;
        log::info!(
            "account {}: session bundle unpacked into {} ({} files)",
            account.name,
            dir.display(),
            done.files
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_urls_and_names_are_read_from_every_shape() {
        assert_eq!(
            login_url(&json!({"loginUrl": "http://x/login", "success": true})).as_deref(),
            Some("http://x/login")
        );
        assert_eq!(login_url(&json!("http://y")).as_deref(), Some("http://y"));
        assert_eq!(login_url(&json!({"loginUrl": "", "success": false})), None);
        assert!(logged_in(&json!({"id": "u1", "status": 2})));
        assert!(!logged_in(&json!({"id": "", "status": 1})));
        assert_eq!(account_name(&json!({"name": "alice"})), "alice");
        assert_eq!(instance_index("lingma-3"), Some(3));
        assert_eq!(instance_index("other"), None);
    }

    #[test]
    fn not_logged_in_says_how_to_log_in() {
        let e = not_logged_in("lingma-0", "auto-login is off");
        assert_eq!(e.status(), 401);
        assert!(e.message.contains("login-url --instance lingma-0"));
        assert!(e.message.contains("auto_login_enabled"));
        assert!(e.message.contains("session_bundle"));
    }
}
