//! Executes one turn's `script::Plan` step by step, on its generator thread (or on the
//! connection thread for a turn that never waits): the first-token and chunk delays, the
//! events of each step, the faults that end a turn early, and `chat/finish` with the answer
//! so far when a `chat/stop` cuts it short. Native tool steps are run by `native`.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lingma_protocol::jsonrpc::method;
use serde_json::{json, Value};

use crate::generation::{Generation, Wake};
use crate::outbox::Outbox;
use crate::script::{self, Plan, Reason, Step};
use crate::session::Record;

/// How executing a plan ended.
enum Outcome {
    Done,
    /// `chat/stop` arrived: finish `cancelled` with the text so far.
    Cancelled(String),
    /// The connection is gone (or this turn closed it): send nothing more.
    Gone,
}

impl Generation {
    /// Executes `plan` to its end (or until a stop or the connection's end).
    pub(crate) fn run(self, plan: Plan) {
        let mut out = Outbox::new(&self.conn, plan.wire).dialect(self.acp.as_ref(), &plan.steps);
        let outcome = self.execute(&plan, &mut out).and_then(|outcome| {
            if let Outcome::Cancelled(text) = &outcome {
                self.record(text);
                self.finish(&mut out, 200, Reason::Cancelled, text)?;
            }
            if !matches!(outcome, Outcome::Gone) {
                if let Some(answer) = out.take_answer() {
                    self.leave();
                    out.send(&answer)?;
                }
                out.flush()?;
            }
            Ok(())
        });
        if let Err(e) = outcome {
            log::debug!(
                "simulator: requestId={}: connection lost: {e}",
                self.request_id
            );
        }
    }

    fn execute(&self, plan: &Plan, out: &mut Outbox) -> io::Result<Outcome> {
        let first = Duration::from_millis(plan.first_ms.unwrap_or(self.shared.first_token_ms));
        let chunk = Duration::from_millis(plan.delay_ms.unwrap_or(self.shared.chunk_ms));
        // Registered before the tool card goes out, so an early approval is not lost.
        let waiter = plan.steps.iter().find_map(|s| match s {
            Step::Native(call) => Some(self.shared.tool_calls.register(&call.tool_call_id)),
            _ => None,
        });
        let mut text = String::new();
        let mut deltas_sent = 0;
        for step in &plan.steps {
            // Every step first looks for a stop or a dead connection, even without a delay.
            let pause = match step {
                Step::Delta(_) if deltas_sent == 0 => first,
                Step::Delta(_) => chunk,
                _ => Duration::ZERO,
            };
            if let Some(outcome) = self.pause(pause, &text) {
                return Ok(outcome);
            }
            match step {
                Step::Stall | Step::Close | Step::Crash => return self.fault(step, out, text),
                Step::Delta(delta) => {
                    text.push_str(delta);
                    deltas_sent += 1;
                }
                Step::Native(call) => {
                    let Some(waiter) = &waiter else {
                        continue;
                    };
                    if self.acp.is_some() {
                        self.approve_self(call);
                    }
                    let said = match self.native(call, waiter, out)? {
                        Ok(said) => said,
                        Err(Wake::Stop) => return Ok(Outcome::Cancelled(text)),
                        Err(_) => return Ok(Outcome::Gone),
                    };
                    for delta in script::split_deltas(&said) {
                        let pause = if deltas_sent == 0 { first } else { chunk };
                        if let Some(outcome) = self.pause(pause, &text) {
                            return Ok(outcome);
                        }
                        text.push_str(&delta);
                        deltas_sent += 1;
                        let event = self.answer_event(&delta, plan.delta_field(deltas_sent));
                        out.request(method::CHAT_ANSWER, event)?;
                    }
                    continue;
                }
                _ => {}
            }
            self.send_step(step, out, &text, plan.delta_field(deltas_sent))?;
        }
        Ok(Outcome::Done)
    }

    /// Waits `pause` unless a stop or the connection's end comes first; `text` is the answer
    /// so far.
    fn pause(&self, pause: Duration, text: &str) -> Option<Outcome> {
        match self.wait(Some(pause)) {
            Wake::Elapsed => None,
            Wake::Stop => Some(Outcome::Cancelled(text.to_string())),
            Wake::Closed => Some(Outcome::Gone),
        }
    }

    /// Sends the events of one non-terminal step; `text` is every delta sent so far, and a
    /// delta goes in the field `delta_field`.
    fn send_step(
        &self,
        step: &Step,
        out: &mut Outbox,
        text: &str,
        delta_field: &str,
    ) -> io::Result<()> {
        match step {
            Step::Progress(name) => out.notify(
                method::CHAT_STEP,
                self.event(json!({"step": name, "status": "done"})),
            ),
            Step::Title(title) => out.notify(
                method::TITLE_UPDATE,
                self.event(json!({"sessionTitle": title})),
            ),
            Step::Delta(delta) => {
                out.request(method::CHAT_ANSWER, self.answer_event(delta, delta_field))
            }
            Step::Garbage => out.garbage(),
            Step::Oversize => out.oversize(),
            Step::Usage {
                used,
                limit,
                by_session,
            } => {
                self.log(&format!(
                    "context/usage/sync usedTokens={used} limitTokens={limit}"
                ));
                let mut params = self.event(json!({"usedTokens": used, "limitTokens": limit}));
                if *by_session {
                    params.as_object_mut().map(|p| p.remove("requestId"));
                }
                out.notify(method::CONTEXT_USAGE, params)
            }
            Step::Finish { status, reason } => {
                // Recorded first: a client that has seen the finish may ask the next turn.
                if *reason == Reason::Success {
                    self.record(text);
                }
                self.finish(out, *status, *reason, text)
            }
            Step::Native(_) | Step::Stall | Step::Close | Step::Crash => {
                unreachable!("run by execute")
            }
        }
    }

    /// Carries out a terminal fault directive; `text` is the answer sent so far.
    fn fault(&self, step: &Step, out: &mut Outbox, text: String) -> io::Result<Outcome> {
        let id = &self.request_id;
        match step {
            Step::Stall => {
                self.shared
                    .log
                    .line(&format!("requestId={id}: stalling until chat/stop"));
                Ok(match self.wait(None) {
                    Wake::Stop => Outcome::Cancelled(text),
                    _ => Outcome::Gone,
                })
            }
            Step::Close => {
                out.flush()?;
                let n = self.conn.number;
                self.shared
                    .log
                    .line(&format!("requestId={id}: closing connection {n}"));
                self.conn.shutdown();
                Ok(Outcome::Gone)
            }
            _ => {
                self.shared
                    .log
                    .line(&format!("requestId={id}: crash directive, exit code 101"));
                std::process::exit(101);
            }
        }
    }

    fn finish(
        &self,
        out: &mut Outbox,
        status: u16,
        reason: Reason,
        full_answer: &str,
    ) -> io::Result<()> {
        let params = self.event(json!({
            "reason": reason.as_str(),
            "statusCode": status,
            "fullAnswer": full_answer,
            "extra": {"sessionType": self.session_type},
        }));
        out.request(method::CHAT_FINISH, params)
    }

    fn record(&self, answer: &str) {
        let record = Record {
            request_id: self.request_id.clone(),
            question: self.question.clone(),
            answer: answer.to_string(),
        };
        self.shared.sessions.record(&self.session_id, record);
    }

    /// One `chat/answer`, its delta in `field` (`text`, or `content` as some builds send it).
    fn answer_event(&self, delta: &str, field: &str) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.event(json!({
            field: delta,
            "overwrite": false,
            "isFiltered": false,
            "timestamp": timestamp,
            "extra": {"sessionType": self.session_type},
        }))
    }
}
