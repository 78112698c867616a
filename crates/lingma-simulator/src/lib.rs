//! The bundled Lingma simulator (`lingma-gateway simulate ...`): a fake of the real `Lingma`
//! server binary for tests and demos, with the same command line, `.info` file, WebSocket
//! protocol and login page. Built into the gateway's binary by its default feature
//! `simulator`; it shares only the wire (`lingma_protocol`) with the gateway.
//!
//! It speaks both of Lingma's dialects on one socket, or one of them (`--dialect cosy|acp|both`,
//! `LINGMA_SIM_DIALECT`, default `both`): cosy's `chat/ask` and ACP's `session/*`. A method of
//! a dialect not spoken is an unknown method (-32601), and `initialize` has `protocolVersion`
//! and `agentCapabilities` only when ACP is spoken. An ACP prompt runs the same plan a
//! `chat/ask` does, in the same session store; only its events are written differently.
//!
//! Its API is `main` (the `simulate` command) and `prompt` (public so that the gateway's
//! tests check it reads what the gateway renders). Modules, from the process down:
//! `process` (lifecycle) → `accept`, `http` (threads) → `dispatch` (a connection's
//! messages) → `chat` (`chat/ask`), `acp` (`session/*`) → `execute`, `native` (a turn's
//! steps) → `generation`, `outbox` (with `acp_outbox` for ACP turns) → `conn`, `shared`
//! (state) → the tables (`running`, `tool_calls`, `session`, `acp_sessions`, `login`,
//! `account`) and the pure parts (`script`, `prompt`, `models`, `cli`, `dialect`, `upgrade`).
#![forbid(unsafe_code)]

mod accept;
mod account;
mod acp;
mod acp_outbox;
mod acp_sessions;
mod chat;
mod cli;
mod conn;
mod dialect;
mod dispatch;
mod execute;
mod generation;
mod http;
mod login;
mod models;
mod native;
mod outbox;
mod process;
pub mod prompt;
mod running;
mod script;
mod session;
mod shared;
mod simlog;
mod tool_calls;
mod upgrade;

pub use process::main;
