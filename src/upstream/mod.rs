//! Everything about talking to Lingma: processes, the WebSocket connection with its reader
//! and writer threads, chat turns (`turn`: what a turn asks and hears, in no dialect's
//! terms; `cosy` and `acp`: the two dialects' codecs; `dialect`: which one a connection
//! speaks; `chat`: the stream with its deadlines), the model catalogue, the pool of
//! instances, and the cleanup of sessions no longer needed.

mod acp;
pub(crate) mod chat;
pub(crate) mod cleanup;
pub mod connection;
mod cosy;
pub(crate) mod dialect;
pub(crate) mod discovery;
pub(crate) mod endpoint;
mod mailbox;
pub mod models;
pub mod pool;
pub mod process;
mod runtime;
pub(crate) mod turn;
mod writer;

pub use connection::UpstreamError;
pub(crate) use turn::{Ask, ChatEvent, Finish, ToolStatus, ToolUpdate};
