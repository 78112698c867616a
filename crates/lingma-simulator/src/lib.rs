//! The bundled Lingma simulator (`lingma-gateway simulate ...`): a fake of the real `Lingma`
//! server binary for tests and demos, with the same command line, `.info` file, WebSocket
//! protocol and login page. Built into the gateway's binary by its default feature
//! `simulator`; it shares only the wire (`lingma_protocol`) with the gateway.
//!
//! Its API is `main` (the `simulate` command) and `prompt` (public so that the gateway's
//! tests check it reads what the gateway renders). Modules, from the process down:
//! `process` (lifecycle) → `accept`, `http` (threads) → `dispatch` (a connection's
//! messages) → `chat` (`chat/ask`) → `execute`, `native` (a turn's steps) → `generation`,
//! `outbox` → `conn`, `shared` (state) → the tables (`running`, `tool_calls`, `session`,
//! `login`, `account`) and the pure parts (`script`, `prompt`, `models`, `cli`, `upgrade`).
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
