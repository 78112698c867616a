//! What the gateway knows of the runtime behind one connection once its handshake ran
//! (`dialect.rs` decides it; the connection keeps it; a chat turn reads it): the dialect it
//! speaks, its version, and what the ACP dialect remembers per session.

use super::acp::SessionModels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `chat/ask` → `chat/answer` … `chat/finish`.
    Cosy,
    /// `session/new`, `session/prompt` → `session/update` … `chat_finish`.
    Acp,
}

impl Dialect {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dialect::Cosy => "cosy",
            Dialect::Acp => "acp",
        }
    }
}

/// What the handshake learnt of the runtime behind one connection.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) dialect: Dialect,
    /// `serverInfo.version` (`""` when it names none).
    pub(crate) version: String,
    /// The directory ACP sessions are rooted at.
    pub(crate) cwd: String,
    /// The model each ACP session was last set to.
    pub(crate) models: SessionModels,
}
