//! Everything about talking to Lingma: processes, the WebSocket connection and its reader
//! thread, chat turns, the model catalogue and the pool of instances.

pub mod chat;
pub mod connection;
pub mod models;
pub mod pool;
pub mod process;

pub use connection::UpstreamError;
