//! A minimal synchronous W3C WebDriver client over `ureq`, and the `chromedriver` process it
//! talks to. Only what the auto-login needs: one session, navigation, finding elements by CSS,
//! typing, clicking and reading text and the current URL.
//!
//! Nothing here logs request bodies: `send_keys` carries the password.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Debian's `chromium-driver` package installs chromedriver.
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Debian's `chromium` package installs the browser.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C "web element identifier": the key of an element reference in a WebDriver
/// response (<https://www.w3.org/TR/webdriver2/#elements>).
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Browser profiles live in `$TMPDIR/<prefix><gateway pid>-<uuid>` and are removed when the
/// session ends.
pub const PROFILE_DIR_PREFIX: &str = "lingma-login-";

/// How long chromedriver gets to answer `GET /status` with `ready: true`.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long chromedriver gets to exit after SIGTERM before SIGKILL.
const DRIVER_STOP_GRACE: Duration = Duration::from_secs(3);
/// Headroom over the page-load timeout for a WebDriver HTTP call (chromedriver answers a
/// navigation that ran out of time with its own `timeout` error; ours is the backstop).
const CALL_MARGIN: Duration = Duration::from_secs(10);
/// Bound on `DELETE /session` when a session is dropped.
const QUIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest message (from chromedriver or a login page) kept in an error.
const MAX_MESSAGE: usize = 300;

/// Why an automated login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// No chromedriver binary at the configured path.
    DriverMissing { path: PathBuf },
    /// No browser binary at the configured path.
    BrowserMissing { path: PathBuf },
    /// chromedriver exists but did not come up.
    DriverStart(String),
    /// The WebDriver conversation failed (no session, browser crashed, protocol error).
    Browser(String),
    /// The login page showed an error (wrong credentials after submitting, or an expired
    /// login link instead of the form): its text.
    Rejected(String),
    /// Waited too long for the named thing.
    Timeout(&'static str),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::DriverMissing { path } => write!(
                f,
                "chromedriver not found at {}: install Debian's chromium-driver or set chromedriver_bin",
                path.display()
            ),
            LoginError::BrowserMissing { path } => write!(
                f,
                "chromium not found at {}: install Debian's chromium or set chromium_bin",
                path.display()
            ),
            LoginError::DriverStart(why) => write!(
                f,
                "chromedriver did not start: {why} (run it by hand with --port=9515 to see why)"
            ),
            LoginError::Browser(why) => write!(f, "browser automation failed: {why}"),
            LoginError::Rejected(msg) => {
                write!(f, "the login page refused the login: {msg}")
            }
            LoginError::Timeout(what) => write!(f, "auto-login timed out waiting for {what}"),
        }
    }
}

impl std::error::Error for LoginError {}

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

/// Plain-HTTP agent for chromedriver on loopback: no proxy (an `http_proxy` in the
/// environment must not capture 127.0.0.1), error statuses returned as responses (W3C puts
/// the error in the body), and a bound on every call.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A reference to an element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementId(pub String);

/// A WebDriver error from the remote end (`{"value":{"error":..,"message":..}}`) or a failure
/// to talk to it at all.
enum CallError {
    Remote { error: String, message: String },
    Local(LoginError),
}

impl CallError {
    fn into_login(self, what: &str) -> LoginError {
        match self {
            CallError::Local(e) => e,
            CallError::Remote { error, message } if error == "timeout" => {
                log::debug!("auto-login: {what}: chromedriver timeout: {message}");
                LoginError::Timeout("the page to load")
            }
            CallError::Remote { error, message } => {
                // chromedriver's messages usually repeat the error code first.
                let message = message
                    .strip_prefix(error.as_str())
                    .and_then(|m| m.strip_prefix(": "))
                    .unwrap_or(&message);
                LoginError::Browser(format!("{what}: {error}: {}", first_line(message)))
            }
        }
    }
}

/// One W3C WebDriver session (one browser with a fresh, temporary profile). Dropping it ends
/// the session (`DELETE /session/{id}`, best effort), which closes the browser, and removes
/// the profile directory.
pub struct Session {
    agent: ureq::Agent,
    /// `<driver>/session/<id>`
    base: String,
    id: String,
    profile: PathBuf,
}

impl Session {
    /// Starts a browser through the chromedriver at `driver_url`. `timeout` bounds page loads
    /// and every WebDriver call (plus a margin, so chromedriver reports a slow page itself).
    pub fn new(
        driver_url: &str,
        chromium_bin: Option<&Path>,
        headless: bool,
        timeout: Duration,
    ) -> Result<Session, LoginError> {
        if let Some(bin) = chromium_bin.filter(|b| !b.is_file()) {
            return Err(LoginError::BrowserMissing {
                path: bin.to_path_buf(),
            });
        }
        let profile = std::env::temp_dir().join(format!(
            "{PROFILE_DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&profile).map_err(|e| {
            LoginError::Browser(format!(
                "cannot create a browser profile in {}: {e}",
                profile.display()
            ))
        })?;
        let mut args = Vec::new();
        if headless {
            args.push("--headless=new".to_string());
        }
        args.extend(
            [
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                // No desktop keyring prompt for the saved-password store (visible mode).
                "--password-store=basic",
            ]
            .map(String::from),
        );
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut options = json!({ "args": args });
        if let Some(bin) = chromium_bin {
            options["binary"] = json!(bin.to_string_lossy());
        }
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                    "timeouts": { "pageLoad": millis, "script": millis, "implicit": 0 },
                }
            }
        });
        let agent = agent(timeout + CALL_MARGIN);
        let created = call(
            &agent,
            "POST",
            &format!("{}/session", driver_url.trim_end_matches('/')),
            Some(&caps),
        );
        let value = match created {
            Ok(v) => v,
            Err(e) => {
                remove_profile(&profile);
                return Err(match e {
                    CallError::Remote { error, message } if error == "session not created" => {
                        LoginError::Browser(format!(
                            "chromedriver could not start the browser (are chromium and \
                             chromedriver the same version?): {}",
                            first_line(&message)
                        ))
                    }
                    e => e.into_login("starting the browser"),
                });
            }
        };
        let Some(id) = value.get("sessionId").and_then(Value::as_str) else {
            remove_profile(&profile);
            return Err(LoginError::Browser(
                "chromedriver answered POST /session without a sessionId".into(),
            ));
        };
        log::debug!(
            "auto-login: browser session {id} ({} {})",
            value
                .pointer("/capabilities/browserName")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            value
                .pointer("/capabilities/browserVersion")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        Ok(Session {
            agent,
            base: format!("{}/session/{id}", driver_url.trim_end_matches('/')),
            id: id.to_string(),
            profile,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        call(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    /// Opens `url` and waits for the page to load.
    pub fn navigate(&self, url: &str) -> Result<(), LoginError> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
            .map_err(|e| e.into_login("opening the page"))
    }

    /// The first element matching the CSS selector (group), or `None` if there is none.
    pub fn find(&self, css: &str) -> Result<Option<ElementId>, LoginError> {
        let body = json!({ "using": "css selector", "value": css });
        match self.cmd("POST", "/element", Some(&body)) {
            Ok(v) => match v.get(ELEMENT_KEY).and_then(Value::as_str) {
                Some(id) => Ok(Some(ElementId(id.to_string()))),
                None => Err(LoginError::Browser(
                    "chromedriver answered find element without an element".into(),
                )),
            },
            Err(CallError::Remote { error, .. }) if error == "no such element" => Ok(None),
            Err(e) => Err(e.into_login("finding an element")),
        }
    }

    /// Empties an input field.
    pub fn clear(&self, el: &ElementId) -> Result<(), LoginError> {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", el.0),
            Some(&json!({})),
        )
        .map(drop)
        .map_err(|e| e.into_login("clearing a field"))
    }

    /// Types `text` into the element. The text is never logged nor put into an error.
    pub fn send_keys(&self, el: &ElementId, text: &str) -> Result<(), LoginError> {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(&json!({ "text": text })),
        )
        .map(drop)
        .map_err(|e| e.into_login("typing into a field"))
    }

    /// Clicks the element (and waits for a navigation it starts).
    pub fn click(&self, el: &ElementId) -> Result<(), LoginError> {
        self.cmd(
            "POST",
            &format!("/element/{}/click", el.0),
            Some(&json!({})),
        )
        .map(drop)
        .map_err(|e| e.into_login("clicking"))
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> Result<String, LoginError> {
        self.cmd("GET", "/url", None)
            .map_err(|e| e.into_login("reading the URL"))?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                LoginError::Browser("chromedriver answered GET /url without a URL".into())
            })
    }

    /// The element's rendered text (empty when it is hidden).
    pub fn text(&self, el: &ElementId) -> Result<String, LoginError> {
        Ok(self
            .cmd("GET", &format!("/element/{}/text", el.0), None)
            .map_err(|e| e.into_login("reading text"))?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let quit = agent(QUIT_TIMEOUT);
        match call(&quit, "DELETE", &self.base, None) {
            Ok(_) => log::debug!("auto-login: browser session {} closed", self.id),
            Err(e) => log::debug!(
                "auto-login: closing browser session {}: {}",
                self.id,
                e.into_login("closing the browser")
            ),
        }
        remove_profile(&self.profile);
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

/// Removes a browser profile; a browser still exiting may add files meanwhile, so retry.
fn remove_profile(dir: &Path) {
    for attempt in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == 4 => {
                log::warn!(
                    "auto-login: cannot remove browser profile {}: {e}",
                    dir.display()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One WebDriver command: returns the response's `value`. Logs method and path only.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, CallError> {
    log::trace!("auto-login: webdriver {method} {}", path_of(url));
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, Some(b)) => agent.post(url).send_json(b),
        (_, None) => agent.post(url).send_empty(),
    };
    let mut resp = result.map_err(|e| {
        CallError::Local(match e {
            ureq::Error::Timeout(_) => LoginError::Timeout("chromedriver to answer"),
            e => LoginError::Browser(format!(
                "cannot talk to chromedriver ({method} {}): {e}",
                path_of(url)
            )),
        })
    })?;
    let status = resp.status().as_u16();
    let mut v: Value = resp.body_mut().read_json().map_err(|e| {
        CallError::Local(LoginError::Browser(format!(
            "chromedriver sent a non-JSON answer (HTTP {status}) to {method} {}: {e}",
            path_of(url)
        )))
    })?;
    let value = v.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(CallError::Remote {
            error: error.to_string(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(CallError::Remote {
            error: format!("HTTP {status}"),
            message: String::new(),
        });
    }
    Ok(value)
}

/// The part of a chromedriver URL after the host, with the session id left in (not secret).
fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}

/// The first line of a message, bounded (chromedriver appends stack traces and session info).
pub(crate) fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_and_paths_extracted() {
        assert_eq!(first_line("a\nb"), "a");
        assert_eq!(first_line(&"x".repeat(400)).len(), MAX_MESSAGE + 3);
        assert_eq!(
            path_of("http://127.0.0.1:9/session/1/url"),
            "/session/1/url"
        );
    }

    #[test]
    fn missing_driver_is_reported_with_its_path() {
        let err = Chromedriver::spawn(Path::new("/nonexistent/chromedriver")).unwrap_err();
        assert!(matches!(err, LoginError::DriverMissing { .. }));
        assert!(err.to_string().contains("/nonexistent/chromedriver"));
        assert!(err.to_string().contains("chromium-driver"));
    }
}
