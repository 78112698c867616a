//! Everything about talking to Lingma: processes, the WebSocket connection with its reader
//! and writer threads, chat turns (`turn`: what a turn asks and hears, in no dialect's
//! terms; `cosy`: that dialect's codec; `chat`: the stream with its deadlines), the model
//! catalogue and the pool of instances.

pub(crate) mod chat;
pub mod connection;
mod cosy;
pub(crate) mod discovery;
pub(crate) mod endpoint;
mod mailbox;
pub mod models;
pub mod pool;
pub mod process;
pub(crate) mod turn;
mod writer;

pub use connection::UpstreamError;
pub(crate) use turn::{Ask, ChatEvent, Finish, ToolStatus, ToolUpdate};
