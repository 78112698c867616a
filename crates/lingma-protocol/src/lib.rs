//! The Lingma wire, shared by lingma-gateway's client and by its simulator's server: LSP
//! base-protocol framing and JSON-RPC message shapes (`jsonrpc`, pure code), and the
//! WebSocket settings and split socket (`wsio`). Neither side's logic lives here, only what
//! the two must agree on byte for byte.
#![forbid(unsafe_code)]

pub mod jsonrpc;
pub mod wsio;
