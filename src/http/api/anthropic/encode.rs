//! Anthropic Messages answers: internal events → the named SSE events (`message_start` …
//! `message_stop`), or, in `Form::Body`, the same events folded into one `message` as a
//! client folds them. Pure.

use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use super::decode::MessagesOptions;
use crate::error::GatewayError;
use crate::http::api::encoder::{Encoder, Form, Frame};
use crate::http::api::errors;
use crate::model::{Event, StopReason, Usage};

pub(crate) fn stop_reason(reason: &StopReason) -> (&'static str, Option<&str>) {
    match reason {
        StopReason::EndTurn => ("end_turn", None),
        StopReason::StopSequence(s) => ("stop_sequence", Some(s.as_str())),
        StopReason::Length => ("max_tokens", None),
        StopReason::ToolUse => ("tool_use", None),
        StopReason::ContentFilter => ("refusal", None),
    }
}

/// A thinking block's signature. Lingma signs nothing; this lets a client that checks for
/// one find it (the gateway ignores signatures it gets back).
fn signature(thinking: &str) -> String {
    let digest = Sha1::digest(thinking.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("lingma-gateway-{hex}")
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
}

/// Internal events → Anthropic's named SSE events, or the message they fold into.
pub(crate) struct MessagesEncoder {
    id: String,
    model: String,
    input_tokens: u64,
    thinking: bool,
    index: usize,
    open: Option<Open>,
    thought: String,
    /// `Form::Body`: the message the events so far add up to.
    folded: Option<Folded>,
}

/// A message being folded from its events.
#[derive(Default)]
struct Folded {
    message: Value,
    /// The open tool_use block's `input_json_delta`s, parsed when the block stops.
    partial_json: String,
    finished: bool,
}

impl Folded {
    fn add(&mut self, name: &str, data: &Value) {
        let index = data["index"].as_u64().unwrap_or(0) as usize;
        match name {
            "message_start" => self.message = data["message"].clone(),
            "content_block_start" => {
                if let Some(content) = self.message["content"].as_array_mut() {
                    content.push(data["content_block"].clone());
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                let block = &mut self.message["content"][index];
                let (key, more) = match delta["type"].as_str() {
                    Some("text_delta") => ("text", &delta["text"]),
                    Some("thinking_delta") => ("thinking", &delta["thinking"]),
                    Some("signature_delta") => {
                        block["signature"] = delta["signature"].clone();
                        return;
                    }
                    Some("input_json_delta") => {
                        let more = delta["partial_json"].as_str().unwrap_or("");
                        self.partial_json.push_str(more);
                        return;
                    }
                    _ => return,
                };
                if let Value::String(so_far) = &mut block[key] {
                    so_far.push_str(more.as_str().unwrap_or(""));
                }
            }
            "content_block_stop" if !self.partial_json.is_empty() => {
                let json = std::mem::take(&mut self.partial_json);
                self.message["content"][index]["input"] =
                    serde_json::from_str(&json).unwrap_or(Value::String(json));
            }
            "message_delta" => {
                for key in ["stop_reason", "stop_sequence"] {
                    self.message[key] = data["delta"][key].clone();
                }
                self.message["usage"] = data["usage"].clone();
                self.finished = true;
            }
            _ => {}
        }
    }
}

impl MessagesEncoder {
    pub(crate) fn new(
        id: String,
        model: String,
        input_tokens: u64,
        opts: &MessagesOptions,
        form: Form,
    ) -> Self {
        MessagesEncoder {
            id,
            model,
            input_tokens,
            thinking: opts.thinking,
            index: 0,
            open: None,
            thought: String::new(),
            folded: (form == Form::Body).then(Folded::default),
        }
    }

    /// One event: sent, or folded into the message.
    fn ev(&mut self, out: &mut Vec<Frame>, name: &'static str, data: Value) {
        match &mut self.folded {
            Some(f) => f.add(name, &data),
            None => out.push(Frame::Event {
                name: Some(name),
                data: data.to_string(),
            }),
        }
    }

    fn close(&mut self, out: &mut Vec<Frame>) {
        let Some(open) = self.open.take() else {
            return;
        };
        if open == Open::Thinking {
            let sig = signature(&std::mem::take(&mut self.thought));
            self.ev(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.index, "delta": {"type": "signature_delta", "signature": sig}}),
            );
        }
        self.ev(
            out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.index}),
        );
        self.index += 1;
    }

    fn open(&mut self, out: &mut Vec<Frame>, kind: Open) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let block = match kind {
            Open::Text => json!({"type": "text", "text": ""}),
            Open::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
        };
        self.ev(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = Some(kind);
    }

    /// A delta of the open block.
    fn delta(&mut self, out: &mut Vec<Frame>, delta: Value) {
        self.ev(
            out,
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        );
    }

    /// A whole block: start, the deltas, stop.
    fn block(&mut self, out: &mut Vec<Frame>, start: Value, delta: Option<Value>) {
        self.close(out);
        self.ev(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": start}),
        );
        if let Some(d) = delta {
            self.delta(out, d);
        }
        self.ev(
            out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.index}),
        );
        self.index += 1;
    }

    fn finish(&mut self, out: &mut Vec<Frame>, reason: &StopReason, usage: &Usage) {
        self.close(out);
        let (reason, sequence) = stop_reason(reason);
        self.ev(
            out,
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_json(usage)}),
        );
        self.ev(out, "message_stop", json!({"type": "message_stop"}));
    }
}

impl Encoder for MessagesEncoder {
    fn start(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        let usage = usage_json(&Usage {
            input_tokens: self.input_tokens,
            output_tokens: 0,
        });
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
        });
        self.ev(
            &mut out,
            "message_start",
            json!({"type": "message_start", "message": message}),
        );
        out
    }

    fn encode(&mut self, ev: &Event) -> Vec<Frame> {
        let mut out = Vec::new();
        match ev {
            Event::Text(t) => {
                self.open(&mut out, Open::Text);
                self.delta(&mut out, json!({"type": "text_delta", "text": t}));
            }
            Event::Reasoning(r) if self.thinking => {
                self.open(&mut out, Open::Thinking);
                self.thought.push_str(r);
                self.delta(&mut out, json!({"type": "thinking_delta", "thinking": r}));
            }
            Event::Reasoning(_) => {}
            Event::ToolCall(c) => self.block(
                &mut out,
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
                Some(json!({"type": "input_json_delta", "partial_json": c.arguments.to_string()})),
            ),
            // Lingma's own tool run: its call and its result, as a server tool's blocks.
            Event::NativeTool(t) => {
                self.block(
                    &mut out,
                    json!({"type": "tool_use", "id": t.id, "name": t.name, "input": {}}),
                    Some(json!({"type": "input_json_delta", "partial_json": t.input.to_string()})),
                );
                self.block(
                    &mut out,
                    json!({"type": "tool_result", "tool_use_id": t.id, "content": t.output, "is_error": t.is_error}),
                    None,
                );
            }
            Event::Finish { reason, usage } => self.finish(&mut out, reason, usage),
        }
        out
    }

    fn keepalive(&self) -> Frame {
        Frame::Event {
            name: Some("ping"),
            data: json!({"type": "ping"}).to_string(),
        }
    }

    fn error(&mut self, e: &GatewayError) -> Vec<Frame> {
        vec![Frame::Event {
            name: Some("error"),
            data: errors::anthropic_body(e).to_string(),
        }]
    }

    /// The `message`; an answer that never finished ends as `end_turn`, no usage.
    fn body(&mut self) -> Value {
        if self.folded.as_ref().is_some_and(|f| !f.finished) {
            let mut out = Vec::new();
            self.finish(&mut out, &StopReason::EndTurn, &Usage::default());
        }
        self.folded.take().unwrap_or_default().message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::api::encoder::fold;
    use crate::model::ToolCall;

    #[test]
    fn stream_blocks_open_and_close_in_order() {
        let opts = MessagesOptions {
            thinking: true,
            ..Default::default()
        };
        let mut enc = MessagesEncoder::new("msg_1".into(), "m".into(), 9, &opts, Form::Stream);
        let mut frames = enc.start();
        for ev in [
            Event::Reasoning("think".into()),
            Event::Text("a".into()),
            Event::Text("b".into()),
            Event::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "Bash".into(),
                arguments: json!({"command": "ls"}),
            }),
            Event::Finish {
                reason: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 9,
                    output_tokens: 4,
                },
            },
        ] {
            frames.extend(enc.encode(&ev));
        }
        let names: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Frame::Event { name, data } => {
                    let v: Value = serde_json::from_str(data).unwrap();
                    let d = v["delta"]["type"]
                        .as_str()
                        .map(|t| format!(":{t}"))
                        .unwrap_or_default();
                    format!("{}{d}@{}", name.unwrap(), v["index"])
                }
                Frame::Comment(_) => "comment".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "message_start@null",
                "content_block_start@0",
                "content_block_delta:thinking_delta@0",
                "content_block_delta:signature_delta@0",
                "content_block_stop@0",
                "content_block_start@1",
                "content_block_delta:text_delta@1",
                "content_block_delta:text_delta@1",
                "content_block_stop@1",
                "content_block_start@2",
                "content_block_delta:input_json_delta@2",
                "content_block_stop@2",
                "message_delta@null",
                "message_stop@null",
            ]
        );
    }

    #[test]
    fn folds_into_a_message() {
        let events = vec![
            Event::Reasoning("r".into()),
            Event::Text("a".into()),
            Event::Text("b".into()),
            Event::Finish {
                reason: StopReason::StopSequence("END".into()),
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                },
            },
        ];
        let opts = MessagesOptions::default();
        let mut enc = MessagesEncoder::new("msg".into(), "m".into(), 1, &opts, Form::Body);
        let v = fold(&mut enc, &events);
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "ab"}]),
            "no thinking unless enabled"
        );
        assert_eq!(v["stop_reason"], "stop_sequence");
        assert_eq!(v["stop_sequence"], "END");
        assert_eq!(v["usage"]["output_tokens"], 2);
    }
}
