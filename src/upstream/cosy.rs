//! Lingma's cosy dialect of a chat turn (the plugin's `chat/*` and `tool/*` methods): the
//! params the gateway sends, and the decoder that turns the events Lingma sends back into
//! dialect-free `ChatEvent`s. Pure: no socket, tested on literal params. Another dialect
//! (ACP's `session/*`) would be a module beside this one.

use serde_json::{json, Value};

use super::turn::{Ask, ChatEvent, Finish, ToolStatus, ToolUpdate};
use crate::config::AskMode;
use crate::jsonrpc::method;

/// Builds the `chat/ask` params (ChatAskParam). The server reads `questionText`; the model is
/// chosen by `extra.modelConfig.key`.
pub(crate) fn ask_params(request_id: &str, ask: &Ask) -> Value {
    let agent = ask.mode == AskMode::Agent;
    let mut params = json!({
        "requestId": request_id,
        "sessionId": ask.session_id,
        "questionText": ask.question,
        "chatTask": "FREE_INPUT",
        "chatContext": {"text": ask.question, "features": [], "preferredLanguage": "en", "localeLang": "en"},
        "codeLanguage": "",
        "isReply": ask.is_reply,
        "source": 1,
        "stream": true,
        "taskDefinitionType": "system",
        "extra": {"modelConfig": {"key": ask.model_key}},
        "sessionType": if agent { "developer" } else { "chat" },
        "mode": ask.mode.as_str(),
        "pluginPayloadConfig": {"isEnableAskAgent": agent},
    });
    if let Some((tools, choice)) = &ask.forward_tools {
        params["tools"] = tools.clone();
        params["tool_choice"] = choice.clone();
    }
    params
}

/// The `chat/stop` params for a turn.
pub(crate) fn stop_params(request_id: &str, session_id: &str) -> Value {
    json!({"requestId": request_id, "sessionId": session_id})
}

/// The `tool/call/approve` params answering a pending tool call.
pub(crate) fn approve_params(
    request_id: &str,
    session_id: &str,
    call: &str,
    approval: bool,
) -> Value {
    json!({
        "sessionId": session_id, "requestId": request_id,
        "toolCallId": call, "approval": approval,
    })
}

/// Decodes one turn's events. Every event may name the session; the last one named is the
/// session the turn runs in.
#[derive(Debug)]
pub(crate) struct Decoder {
    session_id: String,
}

impl Decoder {
    /// For a turn asked in `session_id` (`""`: a new session).
    pub(crate) fn new(session_id: &str) -> Self {
        Decoder {
            session_id: session_id.to_string(),
        }
    }

    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The chat event a routed `method` carries, if any (an empty delta carries none).
    pub(crate) fn decode(&mut self, method: &str, params: &Value) -> Option<ChatEvent> {
        if let Some(sid) = params
            .get("sessionId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.session_id = sid.to_string();
        }
        match method {
            method::CHAT_ANSWER => answer_delta(params)
                .filter(|t| !t.is_empty())
                .map(|t| ChatEvent::Text(t.to_string())),
            method::CHAT_FINISH => Some(ChatEvent::Finish(Finish {
                session_id: self.session_id.clone(),
                status_code: status_code(params),
                reason: text(params, "reason"),
                full_answer: text(params, "fullAnswer"),
            })),
            method::TOOL_CALL_SYNC | method::TOOL_INVOKE => {
                Some(ChatEvent::Tool(tool_update(method, params)))
            }
            method::CONTEXT_USAGE => usage(params),
            other => {
                log::trace!("cosy: {other} carries no chat event");
                None
            }
        }
    }
}

/// A `chat/answer`'s delta: in `text`, or in `content` as some builds send it (protocol §6),
/// read per chunk: a non-empty `text` first, then `content`. `None` when neither is a string.
pub(crate) fn answer_delta(params: &Value) -> Option<&str> {
    let field = |k: &str| params.get(k).and_then(Value::as_str);
    match (field("text"), field("content")) {
        (Some(t), _) if !t.is_empty() => Some(t),
        (t, c) => c.or(t),
    }
}

/// A string field, `""` when absent.
fn text(params: &Value, key: &str) -> String {
    params
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// `context/usage/sync {usedTokens, limitTokens}`: counts as numbers or numeric strings; a
/// report without `usedTokens` carries nothing, a `limitTokens` of 0 means "not said".
fn usage(params: &Value) -> Option<ChatEvent> {
    let count = |key: &str| match params.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Some(ChatEvent::Usage {
        used_tokens: count("usedTokens")?,
        limit_tokens: count("limitTokens").filter(|&n| n > 0),
    })
}

/// One `tool/call/sync`, or a `tool/invoke` (status `Invoke`).
fn tool_update(method: &str, params: &Value) -> ToolUpdate {
    let status = if method == method::TOOL_INVOKE {
        ToolStatus::Invoke
    } else {
        tool_status(&text(params, "toolCallStatus"))
    };
    ToolUpdate {
        tool_call_id: text(params, "toolCallId"),
        name: text(params, "name"),
        status,
        parameters: params.get("parameters").cloned().unwrap_or(Value::Null),
        results: params.get("results").cloned().unwrap_or(Value::Null),
        error: text(params, "errorMsg"),
    }
}

/// `toolCallStatus`, in any case.
fn tool_status(s: &str) -> ToolStatus {
    match s.to_ascii_uppercase().as_str() {
        "INIT" => ToolStatus::Init,
        "PENDING" => ToolStatus::Pending,
        "RUNNING" => ToolStatus::Running,
        "FINISHED" => ToolStatus::Finished,
        "ERROR" => ToolStatus::Error,
        "CANCELLED" => ToolStatus::Cancelled,
        "REQUEST_FINISHED" => ToolStatus::RequestFinished,
        "INVOKE" => ToolStatus::Invoke,
        other => ToolStatus::Other(other.to_string()),
    }
}

/// `chat/finish.statusCode`: a number, or a numeric string from some builds; absent means
/// success. (ACP's `chat_finish` carries the same data.)
pub(super) fn status_code(params: &Value) -> i64 {
    match params.get("statusCode") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(500),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(500),
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_accepts_numbers_and_numeric_strings() {
        assert_eq!(status_code(&json!({"statusCode": 429})), 429);
        assert_eq!(status_code(&json!({"statusCode": "403"})), 403);
        assert_eq!(status_code(&json!({})), 200);
        assert_eq!(status_code(&json!({"statusCode": "weird"})), 500);
    }

    #[test]
    fn ask_params_carry_question_model_and_session() {
        let ask = Ask {
            session_id: String::new(),
            question: "hi".into(),
            model_key: "kmodel".into(),
            is_reply: false,
            mode: AskMode::Chat,
            forward_tools: None,
            approve_tools: true,
        };
        let p = ask_params("r1", &ask);
        assert_eq!(p["questionText"], "hi");
        assert_eq!(p["requestId"], "r1");
        assert_eq!(p["sessionId"], "");
        assert_eq!(p["extra"]["modelConfig"]["key"], "kmodel");
        assert_eq!(p["sessionType"], "chat");
        assert!(p.is_object());
    }

    #[test]
    fn deltas_finish_and_tools_decode_and_the_last_session_named_wins() {
        let mut d = Decoder::new("");
        let answer = |t: &str| json!({"requestId": "r", "sessionId": "s1", "text": t});
        assert_eq!(
            d.decode(method::CHAT_ANSWER, &answer("hi")),
            Some(ChatEvent::Text("hi".into()))
        );
        assert_eq!(d.decode(method::CHAT_ANSWER, &answer("")), None);
        assert_eq!(d.session_id(), "s1");
        assert_eq!(
            d.decode("chat/process_step_callback", &json!({"sessionId": "s2"})),
            None
        );
        let finish = json!({"requestId": "r", "statusCode": "429", "reason": "busy"});
        assert_eq!(
            d.decode(method::CHAT_FINISH, &finish),
            Some(ChatEvent::Finish(Finish {
                session_id: "s2".into(),
                status_code: 429,
                reason: "busy".into(),
                full_answer: String::new(),
            }))
        );
        let sync = json!({"toolCallId": "t1", "name": "read_file", "toolCallStatus": "pending",
            "parameters": {"path": "a"}, "errorMsg": "no"});
        assert_eq!(
            d.decode(method::TOOL_CALL_SYNC, &sync),
            Some(ChatEvent::Tool(ToolUpdate {
                tool_call_id: "t1".into(),
                name: "read_file".into(),
                status: ToolStatus::Pending,
                parameters: json!({"path": "a"}),
                results: Value::Null,
                error: "no".into(),
            }))
        );
        let Some(ChatEvent::Tool(invoke)) = d.decode(method::TOOL_INVOKE, &sync) else {
            panic!("tool/invoke is a tool event");
        };
        assert_eq!(invoke.status, ToolStatus::Invoke);
    }

    #[test]
    fn a_delta_is_read_from_text_or_else_from_content_per_chunk() {
        let mut d = Decoder::new("s");
        let mut answer = |p: Value| d.decode(method::CHAT_ANSWER, &p);
        let said = |t: &str| Some(ChatEvent::Text(t.into()));
        assert_eq!(answer(json!({"content": "a"})), said("a"));
        assert_eq!(answer(json!({"text": "b", "content": "x"})), said("b"));
        assert_eq!(answer(json!({"text": "", "content": "c"})), said("c"));
        assert_eq!(answer(json!({"text": null, "content": "d"})), said("d"));
        assert_eq!(answer(json!({"text": "e", "content": null})), said("e"));
        assert_eq!(answer(json!({"text": "", "content": ""})), None);
        assert_eq!(answer(json!({"content": 5})), None);
        assert_eq!(answer_delta(&json!({"text": ""})), Some(""));
        assert_eq!(answer_delta(&json!({})), None);
    }

    #[test]
    fn context_usage_decodes_numbers_and_numeric_strings() {
        let mut d = Decoder::new("s");
        let mut usage = |p: Value| d.decode(method::CONTEXT_USAGE, &p);
        assert_eq!(
            usage(json!({"requestId": "r", "usedTokens": 1200, "limitTokens": 131072})),
            Some(ChatEvent::Usage {
                used_tokens: 1200,
                limit_tokens: Some(131_072)
            })
        );
        assert_eq!(
            usage(json!({"usedTokens": "7", "limitTokens": 0})),
            Some(ChatEvent::Usage {
                used_tokens: 7,
                limit_tokens: None
            })
        );
        assert_eq!(usage(json!({"limitTokens": 10})), None);
        assert_eq!(usage(json!({"usedTokens": -1})), None);
    }

    #[test]
    fn tool_statuses_are_read_in_any_case_and_unknown_ones_kept() {
        assert_eq!(tool_status("Finished"), ToolStatus::Finished);
        assert_eq!(tool_status("request_finished"), ToolStatus::RequestFinished);
        assert_eq!(tool_status("cancelled"), ToolStatus::Cancelled);
        assert_eq!(tool_status("paused"), ToolStatus::Other("PAUSED".into()));
        assert_eq!(tool_status(""), ToolStatus::Other(String::new()));
        assert_eq!(ToolStatus::Other("PAUSED".into()).as_str(), "PAUSED");
        assert!(ToolStatus::Error.is_end() && !ToolStatus::Running.is_end());
    }
}
