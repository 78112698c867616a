//! Everything about talking to Lingma: processes, the WebSocket connection with its reader
//! and writer threads, chat turns, the model catalogue and the pool of instances.

pub mod chat;
pub mod connection;
mod mailbox;
pub mod models;
pub mod pool;
pub mod process;
mod writer;

pub use connection::UpstreamError;
