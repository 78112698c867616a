//! A minimal synchronous W3C WebDriver client over `ureq`, and the `chromedriver` process it
//! talks to. Only what the auto-login needs: one session, navigation, finding elements by CSS,
//! typing, clicking and reading text and the current URL.
//!
//! Nothing here logs request bodies: `send_keys` carries the password.
//!
//! `driver` runs the chromedriver process, `session` is one browser, `wire` is one
//! WebDriver call and what its errors mean.

mod driver;
mod error;
mod session;
#[cfg(test)]
mod tests;
mod wire;

pub use driver::Chromedriver;
pub use error::LoginError;
pub(crate) use session::ElementId;
pub use session::{Session, PROFILE_DIR_PREFIX};
pub(crate) use wire::first_line;
