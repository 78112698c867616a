//! One chat turn as the gateway sees it, whichever Lingma dialect carries it: what it asks,
//! and the events that come back (answer text, updates of Lingma's own agent tools, the
//! finish). A dialect's codec (`cosy.rs`, `acp.rs`) translates both on the worker thread; `service`'s
//! fold consumes the events.

use serde_json::Value;

use crate::config::AskMode;

/// What the gateway asks.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// `""` for a new session.
    pub(crate) session_id: String,
    pub(crate) question: String,
    pub(crate) model_key: String,
    pub(crate) is_reply: bool,
    pub(crate) mode: AskMode,
    /// The client's tools and tool choice, forwarded as `tools` / `tool_choice` when
    /// `tool_forward_enabled` is set.
    pub(crate) forward_tools: Option<(Value, Value)>,
    /// How to answer Lingma's own pending tool calls: approve (true) or refuse (false).
    pub(crate) approve_tools: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChatEvent {
    /// A delta of answer text (never empty).
    Text(String),
    /// A delta of reasoning a dialect carries apart from the answer (ACP's
    /// `agent_thought_chunk`; cosy's think blocks ride in the text instead). Never empty.
    Reasoning(String),
    /// News of one of Lingma's own agent tools.
    Tool(ToolUpdate),
    /// Lingma's count of the context the turn uses (`usedTokens`), and the model's context
    /// size (`limitTokens`) when it says.
    Usage {
        used_tokens: u64,
        limit_tokens: Option<u64>,
    },
    /// The turn is over, well or not: nothing follows it.
    Finish(Finish),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finish {
    /// The session the turn ran in (the one to continue, which may differ from the one asked).
    pub(crate) session_id: String,
    /// 200 for an answer; 406 and 601 for one the content filter ended; anything else failed.
    pub(crate) status_code: i64,
    pub(crate) reason: String,
    /// The whole answer, when Lingma sends it (often empty: the deltas are the answer).
    pub(crate) full_answer: String,
}

/// One update of a Lingma agent tool call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolUpdate {
    pub(crate) tool_call_id: String,
    pub(crate) name: String,
    pub(crate) status: ToolStatus,
    pub(crate) parameters: Value,
    pub(crate) results: Value,
    pub(crate) error: String,
}

/// Where a Lingma agent tool call is. The usual course is `Init`/`Pending` → `Running` →
/// `Finished`, `Error` or `Cancelled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolStatus {
    Init,
    /// Waiting for the client's approval.
    Pending,
    Running,
    Finished,
    Error,
    Cancelled,
    /// The turn's tools are all done.
    RequestFinished,
    /// Lingma asks the client (an IDE) to run the tool and waits for its result.
    Invoke,
    /// A status this gateway does not know, as Lingma spelled it (upper-cased).
    Other(String),
}

impl ToolStatus {
    /// The name Lingma gives the status (what a reported tool's `status` says).
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ToolStatus::Init => "INIT",
            ToolStatus::Pending => "PENDING",
            ToolStatus::Running => "RUNNING",
            ToolStatus::Finished => "FINISHED",
            ToolStatus::Error => "ERROR",
            ToolStatus::Cancelled => "CANCELLED",
            ToolStatus::RequestFinished => "REQUEST_FINISHED",
            ToolStatus::Invoke => "INVOKE",
            ToolStatus::Other(s) => s,
        }
    }

    /// Whether the call has ended (with a result or an error).
    pub(crate) fn is_end(&self) -> bool {
        matches!(
            self,
            ToolStatus::Finished | ToolStatus::Error | ToolStatus::Cancelled
        )
    }
}
