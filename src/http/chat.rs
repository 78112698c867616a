//! The chat routes, written once: read the body, decode it in the route's protocol, finish
//! the request (its affinity hint; for Responses the previous response's conversation),
//! apply the tool policy, wait for a chat slot, start the chat, then stream the answer
//! through the protocol's encoder or fold the same encoder's events into one body. What a
//! protocol adds is its `ChatApi`. Runs on a worker thread.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::api::anthropic::decode::{parse_messages, MessagesOptions};
use super::api::anthropic::encode::MessagesEncoder;
use super::api::encoder::{fold, Encoder, Form};
use super::api::openai::decode::{parse_chat, ChatOptions};
use super::api::openai::encode::ChunkEncoder;
use super::api::responses::decode::{parse_responses, unknown_previous, ResponsesOptions};
use super::api::responses::encode::ResponsesEncoder;
use super::auth;
use super::exchange::Exchange;
use super::gate::Permit;
use super::state::HttpState;
use super::stream::stream_answer;
use crate::error::GatewayError;
use crate::model::{ChatRequest, Event, Message, Role, ToolChoice};
use crate::response_store::Stored;
use crate::service::Answer;

/// What one wire protocol adds to the chat route.
pub(crate) trait ChatApi {
    /// What the decoder gives besides the request.
    type Options;
    /// What `prepare` keeps for the encoder.
    type Prepared;
    type Encoder: Encoder;
    /// The answer id's prefix.
    const ID_PREFIX: &'static str;

    fn decode(body: &Value) -> Result<(ChatRequest, Self::Options), GatewayError>;
    /// Completes the request before it starts (affinity hint, earlier conversation).
    fn prepare(
        app: &HttpState,
        ex: &Exchange,
        req: &mut ChatRequest,
        opts: Self::Options,
    ) -> Result<Self::Prepared, GatewayError>;
    fn encoder(
        app: &HttpState,
        prepared: Self::Prepared,
        head: AnswerStart,
        form: Form,
    ) -> Self::Encoder;
}

/// What every protocol's encoder is made with.
pub(crate) struct AnswerStart {
    /// The answer's id: the protocol's prefix and a random part.
    id: String,
    /// When the answer started, in seconds since the epoch.
    created: u64,
    /// The model the answer names: the client's, or the Lingma key it resolved to.
    model: String,
    input_tokens: u64,
}

/// Serves one chat request in protocol `A`.
pub(crate) fn serve<A: ChatApi>(app: &HttpState, ex: &mut Exchange) -> Result<(), GatewayError> {
    let body = ex.read_json()?;
    app.debug.record(ex, &body);
    let (mut req, opts) = A::decode(&body)?;
    drop(body);
    let prepared = A::prepare(app, ex, &mut req, opts)?;
    // The slot is declared before the answer, so it is given back after the answer's
    // chat/stop is on the wire.
    let (_slot, mut answer, model) = start(app, ex, &mut req)?;
    let head = AnswerStart {
        id: format!("{}{}", A::ID_PREFIX, uuid::Uuid::new_v4().simple()),
        created: now(),
        model,
        input_tokens: answer.usage.input_tokens,
    };
    let form = if req.stream { Form::Stream } else { Form::Body };
    let mut enc = A::encoder(app, prepared, head, form);
    if form == Form::Body {
        let events = collect(ex, &mut answer)?;
        ex.json(200, &fold(&mut enc, &events));
        return Ok(());
    }
    stream_answer(ex, answer, &mut enc, app.gw.cfg.stream_keepalive)
}

/// `/v1/chat/completions`.
pub(crate) struct Completions;

impl ChatApi for Completions {
    type Options = ChatOptions;
    type Prepared = ChatOptions;
    type Encoder = ChunkEncoder;
    const ID_PREFIX: &'static str = "chatcmpl-";

    fn decode(body: &Value) -> Result<(ChatRequest, ChatOptions), GatewayError> {
        parse_chat(body)
    }

    fn prepare(
        _: &HttpState,
        ex: &Exchange,
        req: &mut ChatRequest,
        opts: ChatOptions,
    ) -> Result<ChatOptions, GatewayError> {
        let user = req.affinity.take();
        req.affinity = affinity_hint(ex, None, [user, opts.prompt_cache_key.clone()]);
        Ok(opts)
    }

    fn encoder(_: &HttpState, opts: ChatOptions, head: AnswerStart, form: Form) -> ChunkEncoder {
        ChunkEncoder::new(head.id, head.created, head.model, &opts, form)
    }
}

/// `/v1/messages`.
pub(crate) struct Messages;

impl ChatApi for Messages {
    type Options = MessagesOptions;
    type Prepared = MessagesOptions;
    type Encoder = MessagesEncoder;
    const ID_PREFIX: &'static str = "msg_";

    fn decode(body: &Value) -> Result<(ChatRequest, MessagesOptions), GatewayError> {
        parse_messages(body, false)
    }

    fn prepare(
        _: &HttpState,
        ex: &Exchange,
        req: &mut ChatRequest,
        opts: MessagesOptions,
    ) -> Result<MessagesOptions, GatewayError> {
        req.affinity = affinity_hint(ex, opts.user_id.clone(), [None, None]);
        Ok(opts)
    }

    fn encoder(
        _: &HttpState,
        opts: MessagesOptions,
        head: AnswerStart,
        form: Form,
    ) -> MessagesEncoder {
        MessagesEncoder::new(head.id, head.model, head.input_tokens, &opts, form)
    }
}

/// `/v1/responses`.
pub(crate) struct Responses;

/// A Responses request on its way: what its answer is stored with.
pub(crate) struct Turn {
    opts: ResponsesOptions,
    /// The new input (the stored turn is it and the answer).
    input: Vec<Message>,
    previous: Option<Arc<Stored>>,
    scope: String,
}

impl ChatApi for Responses {
    type Options = ResponsesOptions;
    type Prepared = Turn;
    type Encoder = ResponsesEncoder;
    const ID_PREFIX: &'static str = "resp_";

    fn decode(body: &Value) -> Result<(ChatRequest, ResponsesOptions), GatewayError> {
        parse_responses(body)
    }

    /// A previous response's conversation goes between the instructions (never carried
    /// over) and the new input.
    fn prepare(
        app: &HttpState,
        ex: &Exchange,
        req: &mut ChatRequest,
        opts: ResponsesOptions,
    ) -> Result<Turn, GatewayError> {
        let scope = auth::scope(ex);
        let previous = match &opts.previous_response_id {
            Some(id) => Some(
                app.responses
                    .get(&scope, id)
                    .ok_or_else(|| unknown_previous(id))?,
            ),
            None => None,
        };
        let input = std::mem::take(&mut req.messages);
        let instructions = opts.instructions.iter().filter(|i| !i.trim().is_empty());
        req.messages = instructions
            .map(|i| Message::new(Role::System, i.clone()))
            .chain(previous.iter().flat_map(|p| p.messages().cloned()))
            .chain(input.iter().cloned())
            .collect();
        if req.messages.iter().all(Message::is_empty) {
            return Err(GatewayError::invalid(
                "input",
                "The input contains no text to send.",
            ));
        }
        req.affinity = affinity_hint(ex, None, opts.hints.clone());
        Ok(Turn {
            opts,
            input,
            previous,
            scope,
        })
    }

    /// With `store`, the finished answer is kept for a later `previous_response_id`.
    fn encoder(app: &HttpState, turn: Turn, head: AnswerStart, form: Form) -> ResponsesEncoder {
        let id = head.id.clone();
        let mut enc = ResponsesEncoder::new(head.id, head.created, head.model, &turn.opts, form);
        if turn.opts.store {
            let store = Arc::clone(&app.responses);
            let Turn {
                input,
                previous,
                scope,
                ..
            } = turn;
            enc.on_finish(move |answer, response| {
                let mut turn = input;
                turn.push(answer.clone());
                store.insert(&scope, &id, previous.as_deref(), turn, response.clone());
            });
        }
        enc
    }
}

/// The key that keeps a conversation on one instance, from the client's session hints in
/// this order: `X-Claude-Code-Session-Id`, Anthropic `metadata.user_id`, Codex's `session_id`
/// / `Session-Id` headers, `X-Session-Affinity`, OpenAI `user`, `prompt_cache_key`. Without
/// any, the request is placed by a hash of its system prompt or first message.
fn affinity_hint(
    ex: &Exchange,
    metadata_user_id: Option<String>,
    after_headers: [Option<String>; 2],
) -> Option<String> {
    let header = |name: &str| {
        ex.header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    header("x-claude-code-session-id")
        .or(metadata_user_id)
        .or_else(|| header("session_id"))
        .or_else(|| header("session-id"))
        .or_else(|| header("x-session-affinity"))
        .or_else(|| after_headers.into_iter().flatten().next())
}

/// Drops client tools the operator's allowlist does not name; a forced choice of a dropped
/// tool is refused.
pub(super) fn apply_tool_policy(
    app: &HttpState,
    req: &mut ChatRequest,
) -> Result<(), GatewayError> {
    let policy = &app.gw.cfg.tools;
    if policy.allowlist.is_empty() || req.tools.is_empty() {
        return Ok(());
    }
    req.tools = policy.filter(std::mem::take(&mut req.tools));
    if let ToolChoice::Named(n) = &req.tool_choice {
        if req.tool(n).is_none() {
            return Err(GatewayError::invalid(
                "tool_choice",
                format!("The tool '{n}' is not allowed by this gateway's tool_allowlist."),
            ));
        }
    }
    if req.tools.is_empty() {
        req.tool_choice = ToolChoice::Auto;
    }
    Ok(())
}

/// Applies the tool policy, waits for a slot under `gateway_max_in_flight` and starts the
/// chat; returns the slot (hold it until the answer is done), the answer and the model name
/// the response carries (the client's, or the Lingma key it resolved to).
fn start<'a>(
    app: &'a HttpState,
    ex: &mut Exchange,
    req: &mut ChatRequest,
) -> Result<(Permit<'a>, Answer, String), GatewayError> {
    apply_tool_policy(app, req)?;
    req.scope = auth::scope(ex);
    ex.model = req.model.clone();
    ex.stream = req.stream;
    let slot = enter(app)?;
    let answer = app.gw.start_chat(req)?;
    ex.instance = answer.instance().to_string();
    let model = if req.model.is_empty() {
        answer.model.key.clone()
    } else {
        req.model.clone()
    };
    Ok((slot, answer, model))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A chat slot (backpressure); a refusal is counted.
fn enter(app: &HttpState) -> Result<Permit<'_>, GatewayError> {
    app.gate
        .enter()
        .inspect_err(|_| app.metrics.queue_rejected())
}

/// Drains an answer for a non-streaming response; notes what it measured.
fn collect(ex: &mut Exchange, answer: &mut Answer) -> Result<Vec<Event>, GatewayError> {
    let mut events = Vec::new();
    let mut failed = None;
    while let Some(item) = answer.next_event() {
        match item {
            Ok(ev) => events.push(ev),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    ex.answer = Some(answer.stats(ex.started));
    match failed {
        Some(e) => Err(e),
        None => Ok(events),
    }
}
