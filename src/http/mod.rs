//! The HTTP front. tiny_http accepts connections and parses requests on its own threads;
//! our worker threads (`workers.rs`) take them from its queue. A panic inside a handler
//! becomes a 500 in the route's protocol. Every request ends with one access log line.

pub mod admin;
pub mod admission;
pub mod api;
pub mod auth;
pub mod chat;
pub mod debug_ring;
pub mod exchange;
pub mod gate;
pub mod limits;
pub mod origin;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod state;
pub mod stream;
pub mod workers;

pub use workers::Workers;
