//! Lingma's own agent-tool path (protocol §5), run by a generator for a
//! `script::Step::Native`: `tool/call/sync` `PENDING`, wait for `tool/call/approve`, `RUNNING`,
//! the `tool/invoke` server request and its reply (or a `tool/invokeResult` notification),
//! then `FINISHED` / `ERROR` (or `CANCELLED`). Also the table through which the connection
//! threads hand the client's approvals and results to the waiting generator.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use serde_json::{json, Value};

use super::chat::{Generation, Wake};
use super::outbox::Outbox;
use super::script::NativeCall;
use super::server::Reply;

pub(super) use lingma_protocol::jsonrpc::method::{
    TOOL_CALL_APPROVE as APPROVE, TOOL_CALL_SYNC as SYNC, TOOL_INVOKE as INVOKE,
    TOOL_INVOKE_RESULT as INVOKE_RESULT,
};

/// How long the generator waits for the approval, and then for the tool's result.
const WAIT: Duration = Duration::from_secs(10);

/// What a client sent about a tool call.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Event {
    /// `tool/call/approve`.
    Approve(bool),
    /// `tool/invokeResult` (the params: `toolCallId`, `name`, `success`, `errorMessage`, ...).
    Result(Value),
}

/// Tool calls waiting for the client, by `toolCallId`; shared by all connections.
#[derive(Default)]
pub(super) struct Calls {
    waiting: Mutex<HashMap<String, Sender<Event>>>,
    next: AtomicU64,
}

impl Calls {
    /// A fresh `toolCallId`.
    pub fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("sim-toolcall-{n}")
    }

    /// Starts taking events for `tool_call_id` (before anyone can know the id, so none is
    /// lost); they stop when the `Waiter` is dropped.
    pub fn register(&self, tool_call_id: &str) -> Waiter<'_> {
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
    pub fn receive(&self, method: &str, params: &Value) -> Result<bool, String> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sender<Event>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One registered tool call's events; unregisters when dropped.
pub(super) struct Waiter<'a> {
    calls: &'a Calls,
    tool_call_id: String,
    events: Receiver<Event>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.tool_call_id);
    }
}

/// What ended a wait for the client.
enum Got {
    Event(Event),
    Reply(Reply),
    /// The reply channel is done (its one reply was taken).
    NoMoreReplies,
    Timeout,
    Wake(Wake),
}

impl Generation {
    /// Runs one native tool call. `Ok(text)` is what the answer says about it next; `Err` is a
    /// `chat/stop` (after a `CANCELLED` sync) or the connection's end.
    pub(super) fn native(
        &self,
        call: &NativeCall,
        waiter: &Waiter,
        out: &mut Outbox,
    ) -> io::Result<Result<String, Wake>> {
        let (id, name) = (&call.tool_call_id, &call.name);
        let log = |msg: String| {
            self.shared
                .log
                .line(&format!("requestId={}: {msg}", self.request_id))
        };
        self.sync(out, call, "PENDING", json!([]), "")?;

        let deadline = Instant::now() + WAIT;
        let approval = loop {
            match self.next(&waiter.events, &crossbeam_channel::never(), deadline) {
                Got::Event(Event::Approve(approval)) => break Some(approval),
                Got::Event(Event::Result(_)) => {
                    log(format!("toolCallId={id}: result before approval ignored"))
                }
                Got::Reply(_) | Got::NoMoreReplies => {}
                Got::Timeout => break None,
                Got::Wake(wake) => return self.interrupted(out, call, wake),
            }
        };
        if approval != Some(true) {
            let why = match approval {
                Some(_) => "approval=false".to_string(),
                None => format!("no approval within {} s", WAIT.as_secs()),
            };
            log(format!("tool {name} toolCallId={id} not approved ({why})"));
            self.sync(out, call, "CANCELLED", json!([]), "not approved")?;
            return Ok(Ok(format!("Tool {name} was not approved.")));
        }

        self.sync(out, call, "RUNNING", json!([]), "")?;
        let params = json!({
            "requestId": self.request_id,
            "toolCallId": id,
            "name": name,
            "parameters": call.parameters,
            "async": false,
        });
        let (msg, reply) = self.conn.request_awaiting(INVOKE, params);
        out.send(&msg)?;
        out.flush()?;
        self.shared
            .log
            .line(&format!("send tool/invoke toolCallId={id} name={name}"));

        let failure = |message: String| {
            json!({
                "toolCallId": id,
                "name": name,
                "success": false,
                "errorMessage": message,
                "result": null,
            })
        };
        let deadline = Instant::now() + WAIT;
        let mut replies = reply.replies.clone();
        let result = loop {
            match self.next(&waiter.events, &replies, deadline) {
                // After an ack only `tool/invokeResult` can come.
                Got::NoMoreReplies => replies = crossbeam_channel::never(),
                Got::Reply(Ok(result)) => match result.get("success") {
                    Some(Value::Bool(success)) => {
                        self.shared.log.line(&format!(
                            "recv tool/invoke reply toolCallId={id} success={success}"
                        ));
                        break result;
                    }
                    None if result.is_object() => self.shared.log.line(&format!(
                        "recv tool/invoke reply toolCallId={id} ack, waiting for tool/invokeResult"
                    )),
                    _ => {
                        self.shared.log.line(&format!(
                            "recv tool/invoke reply toolCallId={id} invalid: {result}"
                        ));
                        break failure("invalid tool/invoke reply".into());
                    }
                },
                Got::Reply(Err(e)) => {
                    self.shared.log.line(&format!(
                        "recv tool/invoke reply toolCallId={id} error: {e}"
                    ));
                    break failure(e.message);
                }
                Got::Event(Event::Result(result)) => break result,
                Got::Event(Event::Approve(_)) => {}
                Got::Timeout => {
                    let message = format!("no tool/invoke result within {} s", WAIT.as_secs());
                    log(format!("toolCallId={id}: {message}"));
                    break failure(message);
                }
                Got::Wake(wake) => return self.interrupted(out, call, wake),
            }
        };
        let success = result.get("success") == Some(&Value::Bool(true));
        let error = result
            .get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (status, error_msg) = match (success, error.is_empty()) {
            (true, _) => ("FINISHED", ""),
            (false, true) => ("ERROR", "tool failed"),
            (false, false) => ("ERROR", error.as_str()),
        };
        self.sync(out, call, status, json!([result]), error_msg)?;
        let mut text = format!("Tool {name} finished: success={success}");
        if !error.is_empty() {
            text.push_str(&format!(" ({error})"));
        }
        Ok(Ok(text))
    }

    /// A stop (after a `CANCELLED` sync) or a closed connection during a wait.
    fn interrupted(
        &self,
        out: &mut Outbox,
        call: &NativeCall,
        wake: Wake,
    ) -> io::Result<Result<String, Wake>> {
        if matches!(wake, Wake::Stop) {
            self.sync(out, call, "CANCELLED", json!([]), "stopped")?;
        }
        Ok(Err(wake))
    }

    /// Sends one `tool/call/sync` (at once, even when packing) and logs it.
    fn sync(
        &self,
        out: &mut Outbox,
        call: &NativeCall,
        status: &str,
        results: Value,
        error: &str,
    ) -> io::Result<()> {
        let params = self.event(json!({
            "projectPath": "",
            "toolCallId": call.tool_call_id,
            "toolCallStatus": status,
            "parameters": call.parameters,
            "results": results,
            "errorCode": "",
            "errorMsg": error,
        }));
        out.request(SYNC, params)?;
        out.flush()?;
        self.shared.log.line(&format!(
            "send tool/call/sync toolCallId={} status={status}",
            call.tool_call_id
        ));
        Ok(())
    }

    /// Waits until `deadline` for a client event, a reply, a stop or the connection's end.
    fn next(&self, events: &Receiver<Event>, replies: &Receiver<Reply>, deadline: Instant) -> Got {
        let closed = self.conn.closed();
        let left = deadline.saturating_duration_since(Instant::now());
        select! {
            recv(self.stopped) -> _ => Got::Wake(Wake::Stop),
            recv(closed) -> _ => Got::Wake(Wake::Closed),
            recv(events) -> event => event.map_or(Got::Timeout, Got::Event),
            recv(replies) -> reply => reply.map_or(Got::NoMoreReplies, Got::Reply),
            default(left) => Got::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
