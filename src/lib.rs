//! lingma-gateway: OpenAI- and Anthropic-compatible HTTP APIs in front of a local Alibaba
//! Tongyi Lingma server. Its simulator of that server is the `lingma-simulator` crate, built into
//! the binary by the default feature `simulator`. See ARCHITECTURE.md.
#![forbid(unsafe_code)]

// The binary (`cli`, `process`) and the tests (`http::routes::route_table`, `login`,
// `jsonrpc`) are this library's only users: everything else is private to the crate, so the
// dead-code lint sees every item.

mod accounts;
mod bundle;
pub mod cli;
mod config;
mod error;
#[cfg(test)]
mod fuzz;
pub mod http;
mod logging;
pub mod login;
mod lru;
mod malloc;
mod metrics;
mod model;
mod pipeline;
pub mod process;
mod prompt;
mod redact;
mod response_store;
mod service;
mod sessions;
#[cfg(all(test, feature = "simulator"))]
mod simulator_reads;
mod tools;
mod upstream;

/// The Lingma wire, shared with the simulator: `crate::jsonrpc` and `crate::wsio` as before.
pub use lingma_protocol::{jsonrpc, wsio};
