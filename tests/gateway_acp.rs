//! The chat suites of `tests/gateway/` again, on Lingma's ACP dialect: the simulator speaks
//! only ACP (`LINGMA_SIM_DIALECT=acp`) and the gateway is told to speak it, so every chat
//! these tests make goes through `session/new`, `session/prompt` and `session/update`. The
//! suites are the same files as in the `gateway` target: what they assert holds on both.
//! Only `native_approval.rs` stays cosy's: ACP has no approval step (Lingma's own tools on
//! ACP are in `gateway/acp.rs`).
// The harness serves the whole suite; this target runs a part of it.
#![allow(dead_code)]

pub const DIALECT_ENV: &[(&str, &str)] = &[
    ("LINGMA_SIM_DIALECT", "acp"),
    ("LINGMA_GATEWAY_LINGMA_DIALECT", "acp"),
];

#[path = "gateway/harness.rs"]
mod harness;

#[path = "gateway/anthropic.rs"]
mod anthropic;
#[path = "gateway/faults.rs"]
mod faults;
#[path = "gateway/openai_chat.rs"]
mod openai_chat;
#[path = "gateway/resilience.rs"]
mod resilience;
#[path = "gateway/responses.rs"]
mod responses;
#[path = "gateway/sessions.rs"]
mod sessions;
#[path = "gateway/startup.rs"]
mod startup;
#[path = "gateway/tools.rs"]
mod tools;
