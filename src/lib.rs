//! lingma-gateway: OpenAI- and Anthropic-compatible HTTP APIs in front of a local Alibaba
//! Tongyi Lingma server, plus a simulator of that server. See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod jsonrpc;
pub mod simulator;
pub mod wsio;
