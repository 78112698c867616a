//! `LoginError`: why an automated login failed.

use std::fmt;
use std::path::PathBuf;

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
