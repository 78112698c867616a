//! Lingma's own agent-tool path (protocol §5), run by a generator for a
//! `script::Step::Native`: `tool/call/sync` `PENDING`, wait for `tool/call/approve`, `RUNNING`,
//! the `tool/invoke` server request and its reply (or a `tool/invokeResult` notification;
//! an `async: true` invoke, `[[sim:native_async]]`, waits for that one only, as the real
//! server does), then `FINISHED` / `ERROR` (or `CANCELLED`). The client's approvals and
//! results reach the generator through `tool_calls`.

use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use lingma_protocol::jsonrpc::method::{TOOL_CALL_SYNC as SYNC, TOOL_INVOKE as INVOKE};
use serde_json::{json, Value};

use crate::conn::Reply;
use crate::generation::{Generation, Wake};
use crate::outbox::Outbox;
use crate::script::NativeCall;
use crate::tool_calls::{Event, Waiter};

/// How long the generator waits for the approval, and then for the tool's result.
const WAIT: Duration = Duration::from_secs(10);

/// What ended a wait for the client.
enum Got {
    Event(Event),
    Reply(Reply),
    /// The reply channel is done (its one reply was taken).
    NoMoreReplies,
    Timeout,
    Wake(Wake),
}

/// What a native tool call came to: `Ok(text)` is what the answer says about it next;
/// `Err` is a `chat/stop` (after a `CANCELLED` sync) or the connection's end.
type Said = Result<String, Wake>;

impl Generation {
    /// Runs one native tool call.
    pub(crate) fn native(
        &self,
        call: &NativeCall,
        waiter: &Waiter,
        out: &mut Outbox,
    ) -> io::Result<Said> {
        let (id, name) = (&call.tool_call_id, &call.name);
        self.sync(out, call, "PENDING", json!([]), "")?;
        let approval = match self.approval(call, waiter) {
            Ok(approval) => approval,
            Err(wake) => return self.interrupted(out, call, wake),
        };
        if approval != Some(true) {
            let why = match approval {
                Some(_) => "approval=false".to_string(),
                None => format!("no approval within {} s", WAIT.as_secs()),
            };
            self.log(&format!("tool {name} toolCallId={id} not approved ({why})"));
            self.sync(out, call, "CANCELLED", json!([]), "not approved")?;
            return Ok(Ok(format!("Tool {name} was not approved.")));
        }

        self.sync(out, call, "RUNNING", json!([]), "")?;
        let params = json!({
            "requestId": self.request_id,
            "toolCallId": id,
            "name": name,
            "parameters": call.parameters,
            "async": call.asynchronous,
        });
        let (msg, reply) = self.conn.request_awaiting(INVOKE, params);
        out.send(&msg)?;
        out.flush()?;
        self.shared.log.line(&format!(
            "send tool/invoke toolCallId={id} name={name} async={}",
            call.asynchronous
        ));
        let result = match self.result(call, waiter, reply.replies.clone()) {
            Ok(result) => result,
            Err(wake) => return self.interrupted(out, call, wake),
        };
        self.finished(out, call, &result)
    }

    /// Waits for the client's approval: `None` when none came in time.
    fn approval(&self, call: &NativeCall, waiter: &Waiter) -> Result<Option<bool>, Wake> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next(&waiter.events, &crossbeam_channel::never(), deadline) {
                Got::Event(Event::Approve(approval)) => return Ok(Some(approval)),
                Got::Event(Event::Result(_)) => self.log(&format!(
                    "toolCallId={}: result before approval ignored",
                    call.tool_call_id
                )),
                Got::Reply(_) | Got::NoMoreReplies => {}
                Got::Timeout => return Ok(None),
                Got::Wake(wake) => return Err(wake),
            }
        }
    }

    /// Waits for the tool's result: the `tool/invoke` reply or a `tool/invokeResult`, or a
    /// failure made up when neither came in time or the reply was an error. An async invoke
    /// is finished by a `tool/invokeResult` only: its reply, whatever it says, is not
    /// waited for, as the real server does not (protocol §6).
    fn result(
        &self,
        call: &NativeCall,
        waiter: &Waiter,
        mut replies: Receiver<Reply>,
    ) -> Result<Value, Wake> {
        let (id, name) = (&call.tool_call_id, &call.name);
        let failure = |message: String| {
            json!({
                "toolCallId": id,
                "name": name,
                "success": false,
                "errorMessage": message,
                "result": null,
            })
        };
        let line = |msg: String| self.shared.log.line(&msg);
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next(&waiter.events, &replies, deadline) {
                // After an ack only `tool/invokeResult` can come.
                Got::NoMoreReplies => replies = crossbeam_channel::never(),
                Got::Reply(reply) if call.asynchronous => {
                    let said = match reply {
                        Ok(result) => result.to_string(),
                        Err(e) => format!("error: {}", e.message),
                    };
                    line(format!(
                        "recv tool/invoke reply toolCallId={id} ignored (async: waiting for tool/invokeResult): {said}"
                    ));
                }
                Got::Reply(Ok(result)) => match result.get("success") {
                    Some(Value::Bool(success)) => {
                        line(format!(
                            "recv tool/invoke reply toolCallId={id} success={success}"
                        ));
                        return Ok(result);
                    }
                    None if result.is_object() => line(format!(
                        "recv tool/invoke reply toolCallId={id} ack, waiting for tool/invokeResult"
                    )),
                    _ => {
                        line(format!(
                            "recv tool/invoke reply toolCallId={id} invalid: {result}"
                        ));
                        return Ok(failure("invalid tool/invoke reply".into()));
                    }
                },
                Got::Reply(Err(e)) => {
                    line(format!("recv tool/invoke reply toolCallId={id} error: {e}"));
                    return Ok(failure(e.message));
                }
                Got::Event(Event::Result(result)) => return Ok(result),
                Got::Event(Event::Approve(_)) => {}
                Got::Timeout => {
                    let message = format!("no tool/invoke result within {} s", WAIT.as_secs());
                    self.log(&format!("toolCallId={id}: {message}"));
                    return Ok(failure(message));
                }
                Got::Wake(wake) => return Err(wake),
            }
        }
    }

    /// The last `tool/call/sync` (`FINISHED` or `ERROR`) and what the answer says next.
    fn finished(&self, out: &mut Outbox, call: &NativeCall, result: &Value) -> io::Result<Said> {
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
        let mut text = format!("Tool {} finished: success={success}", call.name);
        if !error.is_empty() {
            text.push_str(&format!(" ({error})"));
        }
        Ok(Ok(text))
    }

    /// A stop (after a `CANCELLED` sync) or a closed connection during a wait.
    fn interrupted(&self, out: &mut Outbox, call: &NativeCall, wake: Wake) -> io::Result<Said> {
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
