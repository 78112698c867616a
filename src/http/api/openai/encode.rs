//! OpenAI Chat Completions answers: internal events → `chat.completion.chunk` payloads (the
//! `data:` of each SSE event; the last is `[DONE]`), or, in `Form::Body`, the same chunks
//! folded into one `chat.completion` as a client folds them. Pure.

use serde_json::{json, Value};

use super::decode::ChatOptions;
use crate::error::GatewayError;
use crate::http::api::encoder::{Encoder, Form, Frame};
use crate::http::api::errors;
use crate::model::{Event, NativeTool, StopReason, Usage};

pub(crate) fn finish_reason(reason: &StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence(_) => "stop",
        StopReason::Length => "length",
        StopReason::ContentFilter => "content_filter",
        StopReason::ToolUse => "tool_calls",
    }
}

/// A Lingma-side tool call, as the gateway's `lingma_tool_events` extension reports it.
fn native_tool_json(t: &NativeTool) -> Value {
    json!({"id": t.id, "name": t.name, "input": t.input, "status": t.status, "output": t.output, "is_error": t.is_error})
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// Turns internal events into `chat.completion.chunk` payloads, or folds them.
pub(crate) struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    sent_role: bool,
    calls: usize,
    /// `Form::Body`: the completion the chunks so far add up to.
    folded: Option<Completion>,
}

/// The chunks' deltas, folded.
#[derive(Default)]
struct Completion {
    role: String,
    content: String,
    reasoning: String,
    tool_calls: Vec<Value>,
    native: Vec<Value>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

impl Completion {
    fn add(&mut self, delta: &Value, finish_reason: Option<&str>) {
        let text = |key: &str| delta.get(key).and_then(Value::as_str);
        if let Some(role) = text("role") {
            self.role = role.to_string();
        }
        self.content.push_str(text("content").unwrap_or(""));
        self.reasoning
            .push_str(text("reasoning_content").unwrap_or(""));
        // A call's first delta opens it (id, name, arguments so far); later ones add to its
        // arguments.
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap_or(0) as usize;
            let more = call.pointer("/function/arguments").and_then(Value::as_str);
            match self.tool_calls.get_mut(index) {
                None => {
                    let mut opened = call.clone();
                    opened.as_object_mut().map(|c| c.remove("index"));
                    self.tool_calls.push(opened);
                }
                Some(so_far) => {
                    if let Some(Value::String(args)) = so_far.pointer_mut("/function/arguments") {
                        args.push_str(more.unwrap_or(""));
                    }
                }
            }
        }
        if let Some(events) = delta.get("lingma_tool_events").and_then(Value::as_array) {
            self.native.extend(events.iter().cloned());
        }
        if let Some(reason) = finish_reason {
            self.finish_reason = Some(reason.to_string());
        }
    }
}

impl ChunkEncoder {
    pub(crate) fn new(
        id: String,
        created: u64,
        model: String,
        opts: &ChatOptions,
        form: Form,
    ) -> Self {
        ChunkEncoder {
            id,
            created,
            model,
            include_usage: opts.include_usage,
            sent_role: false,
            calls: 0,
            folded: (form == Form::Body).then(Completion::default),
        }
    }

    /// One chunk: sent, or folded into the completion.
    fn chunk(&mut self, out: &mut Vec<Frame>, delta: Value, finish: Option<&str>) {
        if let Some(c) = &mut self.folded {
            c.add(&delta, finish);
            return;
        }
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        out.push(data(c.to_string()));
    }

    /// The last chunks: the usage (when asked for; a body always has it), then `[DONE]`.
    fn end(&mut self, out: &mut Vec<Frame>, usage: &Usage) {
        if let Some(c) = &mut self.folded {
            c.usage = Some(usage_json(usage));
            return;
        }
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": usage_json(usage),
            });
            out.push(data(chunk.to_string()));
        }
        out.push(data("[DONE]".to_string()));
    }
}

fn data(data: String) -> Frame {
    Frame::Event { name: None, data }
}

impl Encoder for ChunkEncoder {
    fn encode(&mut self, ev: &Event) -> Vec<Frame> {
        let mut out = Vec::new();
        if !self.sent_role {
            self.sent_role = true;
            self.chunk(&mut out, json!({"role": "assistant", "content": ""}), None);
        }
        match ev {
            Event::Text(t) => self.chunk(&mut out, json!({"content": t}), None),
            Event::Reasoning(r) => self.chunk(&mut out, json!({"reasoning_content": r}), None),
            Event::ToolCall(c) => {
                let index = self.calls;
                self.calls += 1;
                self.chunk(
                    &mut out,
                    json!({"tool_calls": [{"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    None,
                );
                self.chunk(
                    &mut out,
                    json!({"tool_calls": [{"index": index, "function": {"arguments": c.arguments.to_string()}}]}),
                    None,
                );
            }
            Event::NativeTool(t) => self.chunk(
                &mut out,
                json!({"lingma_tool_events": [native_tool_json(t)]}),
                None,
            ),
            Event::Finish { reason, usage } => {
                self.chunk(&mut out, json!({}), Some(finish_reason(reason)));
                self.end(&mut out, usage);
            }
        }
        out
    }

    fn error(&mut self, e: &GatewayError) -> Vec<Frame> {
        vec![data(errors::openai_body(e).to_string())]
    }

    /// The `chat.completion`; an answer that never finished ends as `stop`, no usage.
    fn body(&mut self) -> Value {
        if self
            .folded
            .as_ref()
            .is_some_and(|c| c.finish_reason.is_none())
        {
            self.encode(&Event::Finish {
                reason: StopReason::EndTurn,
                usage: Usage::default(),
            });
        }
        let c = self.folded.take().unwrap_or_default();
        let content = if c.content.is_empty() && !c.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(c.content)
        };
        let mut message = json!({"role": c.role, "content": content, "refusal": null});
        if !c.tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(c.tool_calls);
        }
        if !c.native.is_empty() {
            message["lingma_tool_events"] = Value::Array(c.native);
        }
        if !c.reasoning.is_empty() {
            message["reasoning_content"] = Value::String(c.reasoning);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": c.finish_reason}],
            "usage": c.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::api::encoder::fold;

    #[test]
    fn stream_chunks_follow_openai_shape() {
        let opts = ChatOptions {
            include_usage: true,
            prompt_cache_key: None,
        };
        let mut enc = ChunkEncoder::new("chatcmpl-1".into(), 7, "m".into(), &opts, Form::Stream);
        let mut payloads = |ev: Event| -> Vec<String> {
            enc.encode(&ev)
                .into_iter()
                .map(|f| match f {
                    Frame::Event { data, .. } => data,
                    Frame::Comment(c) => c.to_string(),
                })
                .collect()
        };
        let first = payloads(Event::Text("Hi".into()));
        assert_eq!(first.len(), 2);
        let role: Value = serde_json::from_str(&first[0]).unwrap();
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert!(role["usage"].is_null() && role.get("usage").is_some());
        let text: Value = serde_json::from_str(&first[1]).unwrap();
        assert_eq!(text["choices"][0]["delta"]["content"], "Hi");
        let r: Value = serde_json::from_str(&payloads(Event::Reasoning("hmm".into()))[0]).unwrap();
        assert_eq!(r["choices"][0]["delta"]["reasoning_content"], "hmm");
        let end = payloads(Event::Finish {
            reason: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
            },
        });
        let fin: Value = serde_json::from_str(&end[0]).unwrap();
        assert_eq!(fin["choices"][0]["finish_reason"], "stop");
        let usage: Value = serde_json::from_str(&end[1]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 7);
        assert_eq!(end[2], "[DONE]");
    }

    #[test]
    fn folds_events_into_a_completion() {
        let events = vec![
            Event::Reasoning("r".into()),
            Event::Text("a".into()),
            Event::Text("b".into()),
            Event::Finish {
                reason: StopReason::ContentFilter,
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                },
            },
        ];
        let mut enc =
            ChunkEncoder::new("id".into(), 1, "m".into(), &Default::default(), Form::Body);
        let v = fold(&mut enc, &events);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "ab");
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], "r");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(
            v["usage"]["completion_tokens"], 2,
            "with or without include_usage"
        );
    }

    #[test]
    fn an_unfinished_body_ends_as_stop() {
        let mut enc =
            ChunkEncoder::new("id".into(), 1, "m".into(), &Default::default(), Form::Body);
        let v = fold(&mut enc, &[Event::Text("a".into())]);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 0);
    }
}
