//! OpenAI Responses answers: internal events → the typed `response.*` SSE events with
//! their `sequence_number`, and the `response` object they add up to, which is the
//! `response.completed` payload and, in `Form::Body`, the non-stream body. The finished
//! answer is handed to `on_finish` (the route stores it for `previous_response_id`) before
//! the last event is written. Pure.

use serde_json::{json, Map, Value};

use super::decode::ResponsesOptions;
use super::tools::WireTools;
use crate::error::GatewayError;
use crate::http::api::encoder::{Encoder, Form, Frame};
use crate::http::api::errors;
use crate::model::{estimate_tokens, Event, Message, Role, StopReason, ToolCall, Usage};

mod ev {
    pub(super) const CREATED: &str = "response.created";
    pub(super) const IN_PROGRESS: &str = "response.in_progress";
    pub(super) const COMPLETED: &str = "response.completed";
    pub(super) const INCOMPLETE: &str = "response.incomplete";
    pub(super) const FAILED: &str = "response.failed";
    pub(super) const ITEM_ADDED: &str = "response.output_item.added";
    pub(super) const ITEM_DONE: &str = "response.output_item.done";
    pub(super) const PART_ADDED: &str = "response.content_part.added";
    pub(super) const PART_DONE: &str = "response.content_part.done";
    pub(super) const TEXT_DELTA: &str = "response.output_text.delta";
    pub(super) const TEXT_DONE: &str = "response.output_text.done";
    pub(super) const ARGS_DELTA: &str = "response.function_call_arguments.delta";
    pub(super) const ARGS_DONE: &str = "response.function_call_arguments.done";
    pub(super) const INPUT_DELTA: &str = "response.custom_tool_call_input.delta";
    pub(super) const INPUT_DONE: &str = "response.custom_tool_call_input.done";
    pub(super) const SUMMARY_PART_ADDED: &str = "response.reasoning_summary_part.added";
    pub(super) const SUMMARY_PART_DONE: &str = "response.reasoning_summary_part.done";
    pub(super) const SUMMARY_DELTA: &str = "response.reasoning_summary_text.delta";
    pub(super) const SUMMARY_DONE: &str = "response.reasoning_summary_text.done";
}

/// The output item being written.
enum Open {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

type OnFinish = Box<dyn FnOnce(&Message, &Value) + Send>;
type ItemIds = Box<dyn FnMut(&str) -> String + Send>;

/// Turns internal events into Responses stream events, and keeps the response object they
/// add up to (the `response.completed` payload, and the non-stream body).
pub(crate) struct ResponsesEncoder {
    id: String,
    created_at: u64,
    model: String,
    echo: Map<String, Value>,
    wire: WireTools,
    form: Form,
    seq: u64,
    output: Vec<Value>,
    open: Option<Open>,
    reasoning_tokens: u64,
    /// The answer as the conversation's next turn will hold it.
    answer: Message,
    end: Option<(StopReason, Usage)>,
    /// Runs with the answer when the response finishes, before its last event is written
    /// (so a follow-up sent the moment the client sees it finds it stored).
    on_finish: Option<OnFinish>,
    /// Makes an output item's id from its prefix (random; fixed in golden tests).
    item_ids: ItemIds,
}

impl ResponsesEncoder {
    pub(crate) fn new(
        id: String,
        created_at: u64,
        model: String,
        opts: &ResponsesOptions,
        form: Form,
    ) -> Self {
        ResponsesEncoder {
            form,
            id,
            created_at,
            model,
            echo: opts.echo.clone(),
            wire: opts.wire_tools.clone(),
            seq: 0,
            output: Vec::new(),
            open: None,
            reasoning_tokens: 0,
            answer: Message::new(Role::Assistant, ""),
            end: None,
            on_finish: None,
            item_ids: Box::new(new_id),
        }
    }

    /// Output item ids from `f` instead of random ones, for transcripts that must not change.
    #[cfg(test)]
    pub(crate) fn with_item_ids(mut self, f: impl FnMut(&str) -> String + Send + 'static) -> Self {
        self.item_ids = Box::new(f);
        self
    }

    /// Sets what runs with the answer and the finished response object.
    pub(crate) fn on_finish(&mut self, f: impl FnOnce(&Message, &Value) + Send + 'static) {
        self.on_finish = Some(Box::new(f));
    }

    /// The answer as an assistant message, once the response has finished.
    #[cfg(test)]
    fn answer(&self) -> Option<&Message> {
        self.end.as_ref().map(|_| &self.answer)
    }

    /// One event, numbered; a `Form::Body` encoder keeps only what it adds to the response.
    fn emit(&mut self, out: &mut Vec<Frame>, name: &'static str, mut data: Value) {
        let seq = self.seq;
        self.seq += 1;
        if self.form == Form::Body {
            return;
        }
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        out.push(Frame::Event {
            name: Some(name),
            data: data.to_string(),
        });
    }

    /// The response object as it stands: `status` is `in_progress` until the finish.
    pub(crate) fn response(&self, failed: Option<&GatewayError>) -> Value {
        let (status, incomplete, usage) = match (&self.end, failed) {
            (_, Some(_)) => ("failed", Value::Null, Value::Null),
            (None, None) => ("in_progress", Value::Null, Value::Null),
            (Some((reason, usage)), None) => {
                let incomplete = match reason {
                    StopReason::Length => json!({"reason": "max_output_tokens"}),
                    StopReason::ContentFilter => json!({"reason": "content_filter"}),
                    _ => Value::Null,
                };
                let status = if incomplete.is_null() {
                    "completed"
                } else {
                    "incomplete"
                };
                (status, incomplete, self.usage_json(usage))
            }
        };
        let error = failed.map_or(Value::Null, errors::response_error);
        let mut r = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": self.output,
            "usage": usage,
        });
        let o = r.as_object_mut().expect("an object");
        for (k, v) in &self.echo {
            o.insert(k.clone(), v.clone());
        }
        r
    }

    fn usage_json(&self, u: &Usage) -> Value {
        json!({
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens.min(u.output_tokens)},
            "total_tokens": u.input_tokens + u.output_tokens,
        })
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Ends the item being written (its `.done` events), if any.
    fn close(&mut self, status: &str, out: &mut Vec<Frame>) {
        let index = self.index();
        match self.open.take() {
            None => {}
            Some(Open::Reasoning { id, text }) => {
                let part = json!({"type": "summary_text", "text": text});
                self.emit(
                    out,
                    ev::SUMMARY_DONE,
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    ev::SUMMARY_PART_DONE,
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part}),
                );
                let item = json!({"id": id, "type": "reasoning", "summary": [part]});
                self.emit(
                    out,
                    ev::ITEM_DONE,
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
            Some(Open::Message { id, text }) => {
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.emit(out, ev::TEXT_DONE, json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(
                    out,
                    ev::PART_DONE,
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                let item = json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": [part]});
                self.emit(
                    out,
                    ev::ITEM_DONE,
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
        }
    }

    fn reasoning(&mut self, r: &str, out: &mut Vec<Frame>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close("completed", out);
            let id = (self.item_ids)("rs");
            let index = self.index();
            self.emit(out, ev::ITEM_ADDED, json!({"output_index": index, "item": {"id": id, "type": "reasoning", "summary": []}}));
            self.emit(out, ev::SUMMARY_PART_ADDED, json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        self.reasoning_tokens += estimate_tokens(r);
        let index = self.index();
        let Some(Open::Reasoning { id, text }) = self.open.as_mut() else {
            return;
        };
        text.push_str(r);
        let data = json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": r});
        self.emit(out, ev::SUMMARY_DELTA, data);
    }

    fn text(&mut self, t: &str, out: &mut Vec<Frame>) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close("completed", out);
            let id = (self.item_ids)("msg");
            let index = self.index();
            self.emit(out, ev::ITEM_ADDED, json!({"output_index": index, "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}));
            self.emit(out, ev::PART_ADDED, json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            self.open = Some(Open::Message {
                id,
                text: String::new(),
            });
        }
        self.answer.text.push_str(t);
        let index = self.index();
        let Some(Open::Message { id, text }) = self.open.as_mut() else {
            return;
        };
        text.push_str(t);
        let data = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []});
        self.emit(out, ev::TEXT_DELTA, data);
    }

    fn call(&mut self, c: &ToolCall, out: &mut Vec<Frame>) {
        self.close("completed", out);
        self.answer.tool_calls.push(c.clone());
        let index = self.index();
        let wire = self.wire.get(&c.name).cloned();
        let name = wire.as_ref().map_or(c.name.as_str(), |w| w.name.as_str());
        let namespace = wire.as_ref().and_then(|w| w.namespace.clone());
        let custom = wire.as_ref().is_some_and(|w| w.custom);
        let (id, kind, body_key, body, delta_ev, done_ev) = if custom {
            let input = c
                .arguments
                .get("input")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (
                (self.item_ids)("ctc"),
                "custom_tool_call",
                "input",
                input,
                ev::INPUT_DELTA,
                ev::INPUT_DONE,
            )
        } else {
            (
                (self.item_ids)("fc"),
                "function_call",
                "arguments",
                c.arguments.to_string(),
                ev::ARGS_DELTA,
                ev::ARGS_DONE,
            )
        };
        let mut item = json!({"id": id, "type": kind, "status": "in_progress", "call_id": c.id, "name": name, body_key: ""});
        if let Some(ns) = namespace {
            item["namespace"] = json!(ns);
        }
        self.emit(
            out,
            ev::ITEM_ADDED,
            json!({"output_index": index, "item": item}),
        );
        self.emit(
            out,
            delta_ev,
            json!({"item_id": id, "output_index": index, "delta": body}),
        );
        let mut done = json!({"item_id": id, "output_index": index, body_key: body});
        if !custom {
            done["name"] = json!(name);
        }
        self.emit(out, done_ev, done);
        item["status"] = json!("completed");
        item[body_key] = json!(body);
        self.emit(
            out,
            ev::ITEM_DONE,
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
    }
}

impl Encoder for ResponsesEncoder {
    fn start(&mut self) -> Vec<Frame> {
        let r = self.response(None);
        let mut out = Vec::new();
        self.emit(&mut out, ev::CREATED, json!({"response": r}));
        self.emit(&mut out, ev::IN_PROGRESS, json!({"response": r}));
        out
    }

    fn encode(&mut self, e: &Event) -> Vec<Frame> {
        let mut out = Vec::new();
        match e {
            Event::Reasoning(r) => self.reasoning(r, &mut out),
            Event::Text(t) => self.text(t, &mut out),
            Event::ToolCall(c) => self.call(c, &mut out),
            // Lingma's own tool runs have no place among a Responses client's items.
            Event::NativeTool(t) => {
                log::debug!("native tool {} not reported on /v1/responses", t.name)
            }
            Event::Finish { reason, usage } => {
                let status = if matches!(reason, StopReason::Length | StopReason::ContentFilter) {
                    "incomplete"
                } else {
                    "completed"
                };
                self.close(status, &mut out);
                self.end = Some((reason.clone(), *usage));
                let r = self.response(None);
                if let Some(f) = self.on_finish.take() {
                    f(&self.answer, &r);
                }
                let name = if status == "completed" {
                    ev::COMPLETED
                } else {
                    ev::INCOMPLETE
                };
                self.emit(&mut out, name, json!({"response": r}));
            }
        }
        out
    }

    fn error(&mut self, e: &GatewayError) -> Vec<Frame> {
        let r = self.response(Some(e));
        let mut out = Vec::new();
        self.emit(&mut out, ev::FAILED, json!({"response": r}));
        out
    }

    /// The `response` as the events so far leave it (`completed` once finished).
    fn body(&mut self) -> Value {
        self.response(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::http::api::encoder::fold;
    use crate::http::api::responses::decode::parse_responses;

    #[test]
    fn calls_are_encoded_in_their_wire_shape() {
        let (_, opts) = parse_responses(&json!({"model": "m", "input": "x", "tools": [
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "spawn"}]},
            {"type": "custom", "name": "apply_patch"}]}))
        .unwrap();
        let mut enc = ResponsesEncoder::new("resp_1".into(), 1, "m".into(), &opts, Form::Body);
        let call = |name: &str, arguments: Value| {
            Event::ToolCall(ToolCall {
                id: format!("call_{name}"),
                name: name.into(),
                arguments,
            })
        };
        let r = fold(
            &mut enc,
            &[
                Event::Text("a".into()),
                call("ns__spawn", json!({"task": "t"})),
                call("apply_patch", json!({"input": "patch"})),
                Event::Finish {
                    reason: StopReason::ToolUse,
                    usage: Usage::default(),
                },
            ],
        );
        assert_eq!(r["status"], "completed");
        let out = r["output"].as_array().unwrap();
        assert_eq!(out[0]["type"], "message");
        assert_eq!(out[1]["type"], "function_call");
        assert_eq!(out[1]["name"], "spawn");
        assert_eq!(out[1]["namespace"], "ns");
        assert_eq!(out[1]["arguments"], "{\"task\":\"t\"}");
        assert_eq!(out[2]["type"], "custom_tool_call");
        assert_eq!(out[2]["input"], "patch");
        let answer = enc.answer().unwrap();
        assert_eq!(answer.text, "a");
        assert_eq!(answer.tool_calls.len(), 2);
    }

    #[test]
    fn a_failure_is_a_failed_response() {
        let mut enc = ResponsesEncoder::new(
            "resp_1".into(),
            1,
            "m".into(),
            &Default::default(),
            Form::Stream,
        );
        let start = enc.start();
        let frames = enc.error(&GatewayError::new(ErrorKind::Upstream, "boom"));
        assert_eq!(start.len(), 2);
        let Frame::Event { name, data } = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(*name, Some("response.failed"));
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["sequence_number"], 2);
        assert_eq!(v["response"]["status"], "failed");
        assert_eq!(v["response"]["error"]["message"], "boom");
        assert!(enc.answer().is_none(), "a failed response is not stored");
    }
}
