//! What a turn's plan is made of: the `Step`s the generator executes in order, the `Plan`
//! that holds them with the turn's timing and wire overrides, and the `Turn` it is made for.

use serde_json::Value;

use super::directives::{Deaf, Wire};
use crate::models::Model;

/// The WebSocket text message `[[sim:garbage]]` sends: not an LSP frame.
pub(crate) const GARBAGE: &str = "this is not a frame";

/// How a turn ended, as `chat/finish.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Success,
    Cancelled,
    Error,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Success => "success",
            Reason::Cancelled => "cancelled",
            Reason::Error => "error",
        }
    }
}

/// Lingma's own agent-tool path for one tool (protocol §5): the generator sends the
/// `tool/call/sync` and `tool/invoke` requests, waits for the client's approval and result,
/// and streams the outcome as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NativeCall {
    pub(crate) name: String,
    pub(crate) tool_call_id: String,
    pub(crate) parameters: Value,
    /// `tool/invoke` with `async: true`: the reply does not finish it, only a
    /// `tool/invokeResult` does.
    pub(crate) asynchronous: bool,
}

/// One thing the generator does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `chat/process_step_callback` with this `step` and status `done`.
    Progress(&'static str),
    /// `session/title/update` (new sessions only).
    Title(String),
    /// One `chat/answer` delta; the generator waits the first-token or chunk delay before it.
    Delta(String),
    /// A WebSocket text message that is not an LSP frame.
    Garbage,
    /// An LSP frame header declaring a body over `jsonrpc::MAX_FRAME_BYTES`.
    Oversize,
    /// Run a native tool call; its outcome is streamed as more deltas.
    Native(NativeCall),
    /// `context/usage/sync`; `by_session`: without a `requestId`.
    Usage {
        used: u64,
        limit: u64,
        by_session: bool,
    },
    /// `chat/finish`, whose `fullAnswer` is every delta sent; ends the plan.
    Finish { status: u16, reason: Reason },
    /// Send nothing more until `chat/stop` (then finish `cancelled`) or the connection ends.
    Stall,
    /// Shut this connection's socket down.
    Close,
    /// Exit the whole process with code 101.
    Crash,
}

/// Everything one turn sends, plus its per-request timing and wire overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) first_ms: Option<u64>,
    pub(crate) delay_ms: Option<u64>,
    pub(crate) wire: Wire,
    /// `[[sim:content=N]]`: every N-th delta (counting every one the turn sends) goes in
    /// `content` instead of `text`.
    pub(crate) content_every: Option<usize>,
    /// `[[sim:deaf]]`: the connection stops reading once the turn has started.
    pub(crate) deaf: Option<Deaf>,
    /// Directives that were not understood (or name a tool the prompt does not declare),
    /// for the log.
    pub(crate) ignored: Vec<String>,
    /// How the turn read the prompt and what it answers with, for the log; `None` for a
    /// plain question without tools.
    pub(crate) note: Option<String>,
    /// The turn's answer when it completes (stored in the session history); a native tool
    /// step adds its outcome to it at run time.
    pub(crate) answer: String,
}

impl Plan {
    /// The field the `n`-th delta of the turn (1-based) carries its text in.
    pub(crate) fn delta_field(&self, n: usize) -> &'static str {
        match self.content_every {
            Some(every) if n % every == 0 => "content",
            _ => "text",
        }
    }
}

/// What the plan depends on besides the question.
#[derive(Debug, Clone)]
pub(crate) struct Turn<'a> {
    pub(crate) question: &'a str,
    /// `None`: the requested model key is unknown.
    pub(crate) model: Option<&'a Model>,
    pub(crate) logged_in: bool,
    pub(crate) session_id: &'a str,
    pub(crate) new_session: bool,
    /// 1-based position of this turn in its session.
    pub(crate) number: usize,
    /// Bytes of the session's earlier questions and answers.
    pub(crate) history_bytes: usize,
    /// Basename of the workDir (`[[sim:whoami]]`).
    pub(crate) instance: &'a str,
    pub(crate) pid: u32,
    /// The `toolCallId` a native tool call of this turn gets.
    pub(crate) tool_call_id: &'a str,
}
