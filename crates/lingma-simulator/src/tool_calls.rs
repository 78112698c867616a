//! The native tool calls waiting for the client, by `toolCallId`, shared by all
//! connections: the connection threads hand the client's `tool/call/approve` and
//! `tool/invokeResult` to the generator waiting for that call (see `native`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

pub(crate) use lingma_protocol::jsonrpc::method::{
    TOOL_CALL_APPROVE as APPROVE, TOOL_INVOKE_RESULT as INVOKE_RESULT,
};

/// What a client sent about a tool call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// `tool/call/approve`.
    Approve(bool),
    /// `tool/invokeResult` (the params: `toolCallId`, `name`, `success`, `errorMessage`, ...).
    Result(Value),
}

/// Tool calls waiting for the client, by `toolCallId`; shared by all connections.
#[derive(Default)]
pub(crate) struct Calls {
    waiting: Mutex<HashMap<String, Sender<Event>>>,
    next: AtomicU64,
}

impl Calls {
    /// A fresh `toolCallId`.
    pub(crate) fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("sim-toolcall-{n}")
    }

    /// Starts taking events for `tool_call_id` (before anyone can know the id, so none is
    /// lost); they stop when the `Waiter` is dropped.
    pub(crate) fn register(&self, tool_call_id: &str) -> Waiter<'_> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.lock().insert(tool_call_id.to_string(), tx);
        Waiter {
            calls: self,
            tool_call_id: tool_call_id.to_string(),
            events: rx,
        }
    }

    /// Checks the params of a `tool/call/approve` or `tool/invokeResult` and hands the event to
    /// the generator waiting for its `toolCallId`; `Ok(false)` when none waits.
    pub(crate) fn receive(&self, method: &str, params: &Value) -> Result<bool, String> {
        let id = params
            .get("toolCallId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or("toolCallId must be a non-empty string")?;
        let event = if method == APPROVE {
            let approval = params.get("approval").and_then(Value::as_bool);
            Event::Approve(approval.ok_or("approval must be a boolean")?)
        } else {
            if !params.get("success").is_some_and(Value::is_boolean) {
                return Err("success must be a boolean".into());
            }
            Event::Result(params.clone())
        };
        Ok(self.lock().get(id).is_some_and(|tx| tx.send(event).is_ok()))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Sender<Event>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One registered tool call's events; unregisters when dropped.
pub(crate) struct Waiter<'a> {
    calls: &'a Calls,
    tool_call_id: String,
    pub(crate) events: Receiver<Event>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.tool_call_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_reach_the_registered_call_only() {
        let calls = Calls::default();
        let (a, b) = (calls.next_id(), calls.next_id());
        assert_ne!(a, b);
        let waiter = calls.register(&a);
        let approve =
            json!({"sessionId": "s", "requestId": "r", "toolCallId": a, "approval": true});
        assert_eq!(calls.receive(APPROVE, &approve), Ok(true));
        assert_eq!(waiter.events.try_recv(), Ok(Event::Approve(true)));
        let result =
            json!({"toolCallId": a, "name": "read_file", "success": false, "errorMessage": "x"});
        assert_eq!(calls.receive(INVOKE_RESULT, &result), Ok(true));
        assert_eq!(waiter.events.try_recv(), Ok(Event::Result(result)));
        let other = json!({"toolCallId": b, "approval": false});
        assert_eq!(calls.receive(APPROVE, &other), Ok(false));
        drop(waiter);
        assert_eq!(calls.receive(APPROVE, &approve), Ok(false));
    }

    #[test]
    fn malformed_events_are_refused() {
        let calls = Calls::default();
        let bad = |method: &str, params: Value| calls.receive(method, &params).unwrap_err();
        assert_eq!(
            bad(APPROVE, json!({"approval": true})),
            "toolCallId must be a non-empty string"
        );
        assert_eq!(
            bad(APPROVE, json!({"toolCallId": "", "approval": true})),
            "toolCallId must be a non-empty string"
        );
        assert_eq!(
            bad(APPROVE, json!({"toolCallId": "t", "approval": "yes"})),
            "approval must be a boolean"
        );
        assert_eq!(
            bad(INVOKE_RESULT, json!({"toolCallId": "t"})),
            "success must be a boolean"
        );
    }
}
