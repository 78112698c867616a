//! Redaction of secrets in anything that may reach a log line or a debug endpoint: Lingma's
//! `auth/status` carries session tokens, later login calls carry passwords, client request
//! bodies may carry anything. Structured values lose their secret-named fields; text (a
//! log line, a prompt, a chat message) loses the configured secrets, secret-named fields
//! written out in it (`"password":"…"`, at any level of JSON-in-JSON escaping) and inline
//! `data:` URLs. Pure.
//!
//! `fields` redacts structured values by field name, `text` redacts text, `debug` makes the
//! bounded copy of a request body the debug ring keeps.

mod debug;
mod fields;
#[cfg(test)]
mod tests;
mod text;

#[cfg(test)]
pub(crate) use debug::redact_debug;
pub(crate) use debug::{debug_copy, DebugCopy};
pub(crate) use fields::{frame_for_log, redact_json};
pub(crate) use text::redact_text;
pub use text::Known;
