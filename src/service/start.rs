//! The start of a placed chat: the prompt it sends (only the new turn when it continues a
//! session; the forced tool choice's stronger second question, when it may need one), and
//! the first `chat/ask` with the fold and the driver set up around its stream.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::Config;
use crate::error::GatewayError;
use crate::model::{estimate_tokens, ChatRequest, ToolChoice};
use crate::prompt;
use crate::upstream::chat::{ChatStream, Deadlines};
use crate::upstream::models::ModelInfo;
use crate::upstream::Ask;

use super::answer::{Answer, Failed, Retry, SessionNote};
use super::fold::{AnswerFold, Setup};
use super::placement::Placed;

/// What a chat asks.
pub(super) struct Prompt {
    question: String,
    /// The Lingma session it continues (`""`: a new one).
    session_id: String,
    /// A forced tool choice's second question, if the answer makes no call: the whole
    /// conversation with the stronger instruction.
    retry: Option<String>,
}

impl Prompt {
    /// Renders the question for a placed chat, within `max_prompt_bytes`.
    pub(super) fn render(
        req: &ChatRequest,
        placed: &Placed,
        max_prompt_bytes: usize,
    ) -> Result<Prompt, GatewayError> {
        let (question, session_id) = match &placed.reused {
            Some((place, start)) => (prompt::question_from(req, *start), place.session_id.clone()),
            // Rendered only here: a continued session never needs the whole prompt (unless
            // a forced tool choice has to retry, below).
            None => (prompt::question(req), String::new()),
        };
        prompt::check_size(&question, max_prompt_bytes)?;
        let retry = (req.tools_active() && req.tool_choice.is_forced()).then(|| {
            let full = match placed.reused {
                Some(_) => prompt::question(req),
                None => question.clone(),
            };
            prompt::with_retry_instruction(&full, &req.tool_choice)
        });
        // A continued session's whole conversation may be over the limit its new turn was
        // under: then there is no retry, and the answer goes as it is.
        let retry = retry.filter(|q| {
            let fits = prompt::check_size(q, max_prompt_bytes).is_ok();
            if !fits {
                log::debug!(
                    "no forced-tool retry: the whole conversation is over max_prompt_bytes"
                );
            }
            fits
        });
        Ok(Prompt {
            question,
            session_id,
            retry,
        })
    }
}

/// Sends `chat/ask` for a placed, rendered chat and returns its answer (not yet waited on).
pub(super) fn start(
    cfg: &Config,
    req: &ChatRequest,
    placed: Placed,
    prompt: Prompt,
    model: ModelInfo,
    session: Option<SessionNote>,
) -> Result<Answer, Failed> {
    let Placed { lease, reused } = placed;
    let policy = &cfg.tools;
    let forward_tools = (policy.forward && !req.tools.is_empty()).then(|| forwarded_tools(req));
    let ask = Ask {
        session_id: prompt.session_id,
        question: prompt.question,
        model_key: model.key.clone(),
        is_reply: reused.is_some(),
        mode: cfg.default_ask_mode,
        forward_tools,
        approve_tools: policy.auto_approve,
    };
    let deadlines = Deadlines {
        first_token: cfg.first_token_timeout,
        idle: cfg.idle_timeout,
        rpc: cfg.lingma_rpc_timeout,
    };
    let as_request = cfg.chat_ask_as_request;
    let stream = ChatStream::start(Arc::clone(&lease.conn), &ask, as_request, deadlines)
        .map_err(|e| Failed::upstream(e, &lease.name))?;
    log::debug!(
        "chat {} on {} model {} ({} tools, choice {:?})",
        stream.request_id(),
        lease.name,
        model.key,
        req.tools.len(),
        req.tool_choice
    );
    let setup = Setup {
        instance: lease.name.clone(),
        input_tokens: estimate_tokens(&ask.question),
        retry: prompt.retry.is_some(),
        remember: session.is_some(),
        policy: policy.clone(),
    };
    // The retry is a new session, with the whole conversation.
    let retry = prompt.retry.map(|question| Retry {
        ask: Ask {
            session_id: String::new(),
            is_reply: false,
            question,
            ..ask
        },
        as_request,
        deadlines,
    });
    let fold = AnswerFold::new(req, setup);
    Ok(Answer::new(stream, lease, model, fold, retry, session))
}

/// The client's tools as `chat/ask` would carry them (OpenAI's function-tool shape).
fn forwarded_tools(req: &ChatRequest) -> (Value, Value) {
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema}}))
        .collect();
    let choice = match &req.tool_choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Any => json!("required"),
        ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
    };
    (Value::Array(tools), choice)
}
