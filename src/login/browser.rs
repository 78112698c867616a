//! Filling in a login form in a real browser: open the page, wait for the form, type the
//! user name and password, submit, and tell a rejection (the page shows an error) from a
//! success (the browser left the form).

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::webdriver::{first_line, Chromedriver, ElementId, LoginError, Session};

/// How often the page is looked at while waiting.
const POLL: Duration = Duration::from_millis(200);

/// CSS selector groups (comma-separated alternatives, first match wins in document order)
/// for the parts of a login form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selectors {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) submit: String,
    /// An element whose (visible, non-empty) text says the login failed.
    pub(crate) error: String,
}

impl Default for Selectors {
    /// Fits the Lingma simulator's login page (`#username`, `#password`, `#login-submit`,
    /// `#login-error`) and common real login forms.
    fn default() -> Self {
        Selectors {
            username: "#username, input[name=username], input[name=loginId], #fm-login-id, \
                       input[type=email]"
                .into(),
            password: "#password, input[type=password]".into(),
            submit: "#login-submit, button[type=submit], input[type=submit]".into(),
            error: "#login-error, .error, .login-error".into(),
        }
    }
}

/// Logs in through the login page at `url` with a browser driven by `driver`.
///
/// `Ok(())` means the browser left the login form after submitting (the URL changed to one
/// without `/login`, or the password field is gone); the caller confirms with Lingma's
/// `auth/status`. `Err(Rejected(text))` when the page showed an error element instead.
/// `timeout` bounds each wait (the form to appear, the answer to the submission) and each
/// page load. The password is never logged; the URL (it carries a nonce) only at debug.
#[allow(clippy::too_many_arguments)]
pub fn log_in(
    driver: &Chromedriver,
    chromium: Option<&Path>,
    headless: bool,
    url: &str,
    user: &str,
    password: &str,
    sel: &Selectors,
    timeout: Duration,
) -> Result<(), LoginError> {
    let started = Instant::now();
    log::info!("auto-login: starting the browser");
    let session = Session::new(driver.url(), chromium, headless, timeout)?;

    log::info!("auto-login: opening the login page {}", host_and_path(url));
    log::debug!("auto-login: login URL {url}");
    session.navigate(url)?;

    log::info!("auto-login: waiting for the login form");
    let deadline = Instant::now() + timeout;
    // A page that shows only an error (an expired login link) fails at once with its text.
    let username = wait_for(
        &session,
        &sel.username,
        Some(&sel.error),
        deadline,
        "the user name field",
    )?;
    type_into(&session, &username, user)?;
    log::debug!("auto-login: typed the user name {user:?}");
    // Some forms show the password field only after the user name (two-step login).
    let password_field = wait_for(
        &session,
        &sel.password,
        Some(&sel.error),
        deadline,
        "the password field",
    )?;
    type_into(&session, &password_field, password)?;

    log::info!("auto-login: submitting");
    let form_url = session.current_url()?;
    match session.find(&sel.submit)? {
        Some(button) => session.click(&button)?,
        None => {
            log::debug!("auto-login: no submit button; pressing Enter in the password field");
            session.send_keys(&password_field, "\u{E007}")?;
        }
    }

    log::info!("auto-login: waiting for the answer");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(message) = error_text(&session, &sel.error)? {
            log::info!("auto-login: the login page rejected the credentials: {message}");
            return Err(LoginError::Rejected(message));
        }
        let now_url = session.current_url()?;
        let left_url = now_url != form_url && !url_path(&now_url).contains("/login");
        if left_url || session.find(&sel.password)?.is_none() {
            log::info!(
                "auto-login: left the login form (now at {}) after {:.1}s",
                host_and_path(&now_url),
                started.elapsed().as_secs_f64()
            );
            log::debug!("auto-login: landed on {now_url}");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LoginError::Timeout(
                "the login page to accept or reject the credentials",
            ));
        }
        sleep(POLL);
    }
}

/// Polls for the first element matching `css` until `deadline`; gives up early with
/// `Rejected` when the page shows an error (matching `error`) instead.
fn wait_for(
    session: &Session,
    css: &str,
    error: Option<&str>,
    deadline: Instant,
    what: &'static str,
) -> Result<ElementId, LoginError> {
    loop {
        if let Some(el) = session.find(css)? {
            return Ok(el);
        }
        if let Some(message) = error.map(|e| error_text(session, e)).transpose()?.flatten() {
            log::info!("auto-login: the login page shows an error instead of {what}: {message}");
            return Err(LoginError::Rejected(message));
        }
        if Instant::now() >= deadline {
            return Err(LoginError::Timeout(what));
        }
        sleep(POLL);
    }
}

/// Replaces a field's content (a browser may have pre-filled it).
fn type_into(session: &Session, el: &ElementId, text: &str) -> Result<(), LoginError> {
    if let Err(e) = session.clear(el) {
        log::debug!("auto-login: could not clear a field ({e}); typing anyway");
    }
    session.send_keys(el, text)
}

/// The visible text of the error element, if there is one with text. An element replaced
/// by a navigation under our feet (stale) counts as none: the next poll sees the new page.
fn error_text(session: &Session, css: &str) -> Result<Option<String>, LoginError> {
    let Some(el) = session.find(css)? else {
        return Ok(None);
    };
    let text = session.text(&el).unwrap_or_default();
    let text = first_line(text.trim());
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// `scheme://host/path` without query or fragment (they carry the login nonce/state).
fn host_and_path(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The path of a URL (after the host, before any query or fragment).
fn url_path(url: &str) -> &str {
    let no_query = host_and_path(url);
    match no_query.find("://") {
        Some(i) => no_query[i + 3..]
            .find('/')
            .map_or("", |j| &no_query[i + 3 + j..]),
        None => no_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_query_in_logs() {
        assert_eq!(
            host_and_path("https://a.example/login?state=s3cr3t#x"),
            "https://a.example/login"
        );
        assert_eq!(host_and_path("http://h/p#frag"), "http://h/p");
        assert_eq!(url_path("http://h:1/login/x?a=/login"), "/login/x");
        assert_eq!(url_path("http://h:1/done?next=/login"), "/done");
        assert_eq!(url_path("http://h:1"), "");
    }
}
