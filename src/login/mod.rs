//! Headless login of a Lingma instance through a real browser.
//!
//! Lingma's login is a web page (its nonce/state in the URL). To log in without a person,
//! the gateway drives a real Chromium through chromedriver over the W3C WebDriver protocol
//! (plain HTTP on 127.0.0.1, spoken with `ureq`; no async runtime, no Selenium):
//!
//! 1. [`Chromedriver::spawn`] starts `chromedriver --port=N` on a free local port, in its
//!    own process group, and waits until `GET /status` reports `ready`. Dropping it stops
//!    it (SIGTERM, then SIGKILL), sweeps its process group and reaps it.
//! 2. [`log_in`] opens a [`Session`] (a Chromium with a fresh temporary profile, headless
//!    by default), opens the login URL, waits for the user name field, types the user name
//!    and password, clicks submit, then waits until the page either shows an error element
//!    ([`LoginError::Rejected`] with its text) or leaves the login form (`Ok`). Dropping the
//!    session closes the browser and removes the profile.
//! 3. The caller then polls Lingma's `auth/status` to confirm the login took.
//!
//! Which elements make up the form is configurable with [`Selectors`]; the defaults fit the
//! Lingma simulator's login page and common real forms. The password never reaches a log
//! line or an error message, and the login URL is logged beyond host and path only at debug.

pub(crate) mod browser;
pub(crate) mod webdriver;

pub use browser::{log_in, Selectors};
pub use webdriver::{Chromedriver, LoginError, Session, PROFILE_DIR_PREFIX};
