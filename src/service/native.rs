//! Lingma's own agent tool calls in one answer, merged across their updates: what the
//! client is told of one (`Event::NativeTool`) once it has ended, when the operator's policy
//! reports it. Pure bookkeeping for the fold.

use serde_json::{json, Value};

use crate::model::NativeTool;
use crate::tools::ToolPolicy;
use crate::upstream::{ToolStatus, ToolUpdate};

pub(super) struct NativeTools {
    policy: ToolPolicy,
    calls: Vec<Call>,
    /// Ids already reported: a call is reported once, however many ends it announces.
    reported: Vec<String>,
}

struct Call {
    tool: NativeTool,
    /// The last status heard (a `tool/invoke` is not one); `None` before the first.
    status: Option<ToolStatus>,
}

impl NativeTools {
    pub(super) fn new(policy: ToolPolicy) -> Self {
        NativeTools {
            policy,
            calls: Vec::new(),
            reported: Vec::new(),
        }
    }

    /// Merges one update; returns the call once it has ended, if it is to be reported.
    pub(super) fn update(&mut self, u: ToolUpdate) -> Option<NativeTool> {
        if u.tool_call_id.is_empty() {
            log::debug!(
                "native tool event without a toolCallId ({})",
                u.status.as_str()
            );
            return None;
        }
        let call = self.call(&u.tool_call_id);
        if !u.name.is_empty() {
            call.tool.name = u.name.clone();
        }
        if u.parameters.as_object().is_some_and(|o| !o.is_empty()) {
            call.tool.input = u.parameters.clone();
        }
        if u.status == ToolStatus::Invoke {
            log::info!(
                "Lingma asked the gateway to run its IDE tool {} ({}); answered that it cannot",
                call.tool.name,
                call.tool.id
            );
            return None;
        }
        call.tool.status = u.status.as_str().to_string();
        call.status = Some(u.status.clone());
        if !u.status.is_end() {
            return None;
        }
        let tool = &mut call.tool;
        tool.is_error = u.status != ToolStatus::Finished;
        tool.output = output(&u.results);
        if tool.is_error && !u.error.is_empty() && !tool.output.contains(&u.error) {
            if !tool.output.is_empty() {
                tool.output.push('\n');
            }
            tool.output.push_str(&u.error);
        }
        log::info!(
            "Lingma's tool {} ({}) ended {}",
            tool.name,
            tool.id,
            tool.status
        );
        let tool = tool.clone();
        let report = self.policy.report_native
            && !self.reported.contains(&tool.id)
            && (self.policy.allowlist.is_empty() || self.policy.allows(&tool.name));
        if report {
            self.reported.push(tool.id.clone());
            return Some(tool);
        }
        None
    }

    /// The call with this id, new if it is the first word of it.
    fn call(&mut self, id: &str) -> &mut Call {
        let i = match self.calls.iter().position(|c| c.tool.id == id) {
            Some(i) => i,
            None => {
                self.calls.push(Call {
                    tool: NativeTool {
                        id: id.to_string(),
                        name: String::new(),
                        input: json!({}),
                        status: String::new(),
                        output: String::new(),
                        is_error: false,
                    },
                    status: None,
                });
                self.calls.len() - 1
            }
        };
        &mut self.calls[i]
    }

    /// Logs the calls the answer ended with that had not ended themselves.
    pub(super) fn log_unfinished(&self) {
        for c in &self.calls {
            let Some(status) = c.status.as_ref() else {
                continue;
            };
            if !status.is_end() && !status.as_str().is_empty() {
                let (name, id) = (&c.tool.name, &c.tool.id);
                log::info!("Lingma's tool {name} ({id}) was left {}", status.as_str());
            }
        }
    }
}

/// A tool's results as text: a string as it is; a list as `tool/invokeResult` shapes its
/// items, the result, else the error message, one per line.
fn output(results: &Value) -> String {
    match results {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|r| match (r.get("result"), r.get("errorMessage")) {
                (Some(Value::String(s)), _) => s.clone(),
                (Some(v), _) if !v.is_null() => v.to_string(),
                (_, Some(Value::String(e))) => e.clone(),
                _ => r.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}
