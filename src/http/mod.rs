//! The HTTP front. tiny_http accepts connections and parses requests on its own threads;
//! our worker threads (`workers.rs`) take them from its queue. A panic inside a handler
//! becomes a 500 in the route's protocol. Every request ends with one access log line.

pub(crate) mod admin;
pub(crate) mod admission;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod chat;
pub(crate) mod debug_ring;
pub(crate) mod exchange;
pub(crate) mod gate;
pub(crate) mod limits;
pub(crate) mod origin;
pub mod routes;
pub(crate) mod serve;
pub(crate) mod sse;
pub(crate) mod state;
pub(crate) mod stream;
pub(crate) mod workers;

pub(crate) use workers::Workers;
