//! End-to-end tests: the real gateway binary on an ephemeral port, the bundled simulator
//! behind it, raw HTTP in front. Each test asserts what a client would see.

mod accounts;
mod acp;
mod anthropic;
mod backpressure;
mod bad_input;
mod cleanup;
mod discovery;
mod faults;
mod formats;
mod harness;
mod hostile;
mod native_approval;
mod observability;
mod openai_chat;
mod real_server;
mod resilience;
mod responses;
mod sessions;
mod slow_clients;
mod startup;
mod tools;
mod usage;

/// The simulator and the gateway choose their dialect as configured (`auto` against a
/// simulator that speaks both: cosy). `tests/gateway_acp.rs` runs the chat suites on ACP.
pub const DIALECT_ENV: &[(&str, &str)] = &[];
