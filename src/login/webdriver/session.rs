//! One browser: a W3C WebDriver session with a fresh temporary profile, and the few
//! commands the auto-login needs (navigate, find, clear, type, click, read).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::error::LoginError;
use super::wire::{agent, call, first_line, CallError};

/// The W3C "web element identifier": the key of an element reference in a WebDriver
/// response (<https://www.w3.org/TR/webdriver2/#elements>).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Browser profiles live in `$TMPDIR/<prefix><gateway pid>-<uuid>` and are removed when the
/// session ends.
pub const PROFILE_DIR_PREFIX: &str = "lingma-login-";
/// Headroom over the page-load timeout for a WebDriver HTTP call (chromedriver answers a
/// navigation that ran out of time with its own `timeout` error; ours is the backstop).
const CALL_MARGIN: Duration = Duration::from_secs(10);
/// Bound on `DELETE /session` when a session is dropped.
const QUIT_TIMEOUT: Duration = Duration::from_secs(15);

/// A reference to an element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElementId(pub(crate) String);

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
        let profile = new_profile()?;
        let caps = capabilities(chromium_bin, headless, timeout, &profile);
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
                return Err(not_created(e));
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
    pub(crate) fn find(&self, css: &str) -> Result<Option<ElementId>, LoginError> {
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
    pub(crate) fn clear(&self, el: &ElementId) -> Result<(), LoginError> {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", el.0),
            Some(&json!({})),
        )
        .map(drop)
        .map_err(|e| e.into_login("clearing a field"))
    }

    /// Types `text` into the element. The text is never logged nor put into an error.
    pub(crate) fn send_keys(&self, el: &ElementId, text: &str) -> Result<(), LoginError> {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(&json!({ "text": text })),
        )
        .map(drop)
        .map_err(|e| e.into_login("typing into a field"))
    }

    /// Clicks the element (and waits for a navigation it starts).
    pub(crate) fn click(&self, el: &ElementId) -> Result<(), LoginError> {
        self.cmd(
            "POST",
            &format!("/element/{}/click", el.0),
            Some(&json!({})),
        )
        .map(drop)
        .map_err(|e| e.into_login("clicking"))
    }

    /// The URL of the current page.
    pub(crate) fn current_url(&self) -> Result<String, LoginError> {
        self.cmd("GET", "/url", None)
            .map_err(|e| e.into_login("reading the URL"))?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                LoginError::Browser("chromedriver answered GET /url without a URL".into())
            })
    }

    /// The element's rendered text (empty when it is hidden).
    pub(crate) fn text(&self, el: &ElementId) -> Result<String, LoginError> {
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

/// A fresh, empty browser profile directory under the temp dir.
fn new_profile() -> Result<PathBuf, LoginError> {
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
    Ok(profile)
}

/// The `POST /session` body: Chromium with `profile`, headless or not, and `timeout` for
/// page loads and scripts.
fn capabilities(
    chromium_bin: Option<&Path>,
    headless: bool,
    timeout: Duration,
    profile: &Path,
) -> Value {
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
    json!({
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
                "timeouts": { "pageLoad": millis, "script": millis, "implicit": 0 },
            }
        }
    })
}

/// Why `POST /session` failed, for the operator: a browser chromedriver cannot start is
/// most often a version mismatch between the two.
fn not_created(e: CallError) -> LoginError {
    match e {
        CallError::Remote { error, message } if error == "session not created" => {
            LoginError::Browser(format!(
                "chromedriver could not start the browser (are chromium and \
                 chromedriver the same version?): {}",
                first_line(&message)
            ))
        }
        e => e.into_login("starting the browser"),
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
