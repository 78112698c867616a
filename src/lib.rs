//! lingma-gateway: OpenAI- and Anthropic-compatible HTTP APIs in front of a local Alibaba
//! Tongyi Lingma server. Its simulator of that server is the `lingma-simulator` crate, built into
//! the binary by the default feature `simulator`. See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod logging;
pub mod login;
pub mod lru;
pub mod malloc;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod process;
pub mod prompt;
pub mod redact;
pub mod response_store;
pub mod service;
pub mod sessions;
#[cfg(all(test, feature = "simulator"))]
mod simulator_reads;
pub mod tools;
pub mod upstream;

/// The Lingma wire, shared with the simulator: `crate::jsonrpc` and `crate::wsio` as before.
pub use lingma_protocol::{jsonrpc, wsio};
