//! Tools: the contract that puts client-declared tools into Lingma's prompt, the scanner that
//! finds the model's calls in its answer (and `calls`, which says what JSON is one), and the
//! policy for which tools pass.

mod calls;
pub(crate) mod contract;
pub(crate) mod scan;

use crate::model::ToolSpec;

/// What the operator allows (config `tool_allowlist`, `tool_forward_enabled`,
/// `tool_auto_approve`, `tool_report_native`).
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    /// Tool names that may pass; empty allows every client tool.
    pub(crate) allowlist: Vec<String>,
    /// Also send the declared tools in `chat/ask` (`tools`, `tool_choice`).
    pub(crate) forward: bool,
    /// Approve Lingma's own pending tool calls.
    pub(crate) auto_approve: bool,
    /// Report Lingma's own tool calls in the answer (allowlisted names only, when the
    /// allowlist is set).
    pub(crate) report_native: bool,
}

impl ToolPolicy {
    pub(crate) fn allows(&self, name: &str) -> bool {
        self.allowlist.is_empty() || self.allowlist.iter().any(|a| a == name || a == "*")
    }

    /// Drops client tools the allowlist does not name (logged once per request).
    pub(crate) fn filter(&self, tools: Vec<ToolSpec>) -> Vec<ToolSpec> {
        let (kept, dropped): (Vec<_>, Vec<_>) =
            tools.into_iter().partition(|t| self.allows(&t.name));
        if !dropped.is_empty() {
            let names: Vec<&str> = dropped.iter().map(|t| t.name.as_str()).collect();
            log::info!("tool_allowlist dropped the client's tools {names:?}");
        }
        kept
    }
}
