//! The chat service: runs one internal `ChatRequest` against the pool of Lingma instances
//! and gives back its answer as the internal event stream (think blocks split out, tool
//! calls found, stop sequences and `max_tokens` applied, usage estimated) that every
//! protocol's stream and non-stream answers are built from. Runs on the worker thread.
//!
//! A chat is placed (`placement`: a continued session, a lease, the auth gate), its prompt
//! rendered and its first `chat/ask` sent (`start`); then the answer's driver (`answer`)
//! pulls the upstream events through the pure fold (`fold`, with Lingma's own tools in
//! `native`).

mod answer;
mod fold;
mod native;
mod placement;
mod start;

use std::sync::Arc;

use serde_json::Value;

use crate::accounts::Logins;
use crate::config::Config;
use crate::error::{ErrorKind, GatewayError};
use crate::model::ChatRequest;
use crate::sessions::{self, SessionCache};
use crate::upstream::cleanup::Cleanup;
use crate::upstream::models::{ContextSizes, ModelInfo, ModelList};
use crate::upstream::pool::{Lease, Pool};

pub use answer::{Answer, Poll};
pub(crate) use placement::lease_named;

use answer::{Failed, SessionNote};
use placement::Placer;
use start::Prompt;

/// The gateway's shared state, one per process.
pub struct ChatService {
    pub(crate) cfg: Config,
    pub(crate) pool: Arc<Pool>,
    /// The auth gate and auto-login.
    pub(crate) logins: Arc<Logins>,
    /// Conversations to continue on their Lingma session (`None`: reuse is off).
    pub(crate) sessions: Option<Arc<SessionCache>>,
    /// Deletes Lingma sessions no conversation can continue (`None`: they stay).
    pub(crate) cleanup: Option<Arc<Cleanup>>,
    /// The context size each model's turns reported (`limitTokens`).
    pub(crate) context_sizes: Arc<ContextSizes>,
    pub(crate) started: std::time::SystemTime,
}

impl ChatService {
    /// Leases an instance for a request that is not a chat (`/v1/models`), through the auth
    /// gate.
    pub(crate) fn lease_any(&self) -> Result<Lease, GatewayError> {
        let lease = self.pool.lease(None, self.cfg.pool_wait)?;
        self.placer().through_gate(lease)
    }

    /// The leased instance's models. An empty list means Lingma is not logged in, which no
    /// request can get past.
    pub(crate) fn models(&self, lease: &Lease) -> Result<Arc<ModelList>, GatewayError> {
        let list = lease.models(self.cfg.lingma_rpc_timeout)?;
        if list.is_empty() {
            return Err(GatewayError::new(
                ErrorKind::Unavailable,
                format!(
                    "Lingma instance {} offers no models; it is probably not logged in",
                    lease.name
                ),
            ));
        }
        Ok(list)
    }

    /// What `start_chat` refuses before it asks Lingma anything (no text to send, a model
    /// the catalogue lacks, no ready or logged-in instance), with the same errors, without
    /// starting a chat: `count_tokens` refuses what `/v1/messages` refuses. Returns the
    /// instance whose catalogue was read.
    pub(crate) fn check_chat(&self, req: &ChatRequest) -> Result<String, GatewayError> {
        check_text(req)?;
        let lease = self.lease_any()?;
        let models = self.models(&lease)?;
        self.resolve_model(&models, &req.model)?;
        Ok(lease.name.clone())
    }

    /// Starts a chat and waits for its first event, so that every error here happens
    /// before any byte reaches the client. When the instance itself fails before that
    /// (Lingma died, closed its socket, sent garbage), the chat is tried once more on
    /// another ready instance, with the whole conversation.
    pub(crate) fn start_chat(&self, req: &ChatRequest) -> Result<Answer, GatewayError> {
        let (error, broken) = match self.attempt(req, None) {
            Ok(answer) => return Ok(answer),
            Err(Failed {
                error,
                broken: Some(name),
            }) => (error, name),
            Err(Failed { error, .. }) => return Err(error),
        };
        let Ok(other) = self.pool.lease_other(Some(req.affinity_key()), &broken) else {
            log::warn!(
                "{broken} failed before the answer's first byte ({}); no other instance is ready to retry on",
                error.message
            );
            return Err(error);
        };
        log::warn!(
            "{broken} failed before the answer's first byte ({}); retrying once on {}",
            error.message,
            other.name
        );
        self.attempt(req, Some(other)).map_err(|f| f.error)
    }

    /// Lingma's raw `config/queryModels` answer from the named instance (any ready one when
    /// `None`), secrets redacted: what `/internal/models/raw` shows.
    pub(crate) fn raw_models(
        &self,
        instance: Option<&str>,
    ) -> Result<(String, Value), GatewayError> {
        let lease = match instance {
            None => self.lease_any()?,
            Some(name) => {
                // The instance asked for, or its error: never another one.
                let lease = lease_named(&self.pool, name)?;
                self.logins.gate(&lease)?;
                lease
            }
        };
        let mut raw = lease.raw_models(self.cfg.lingma_rpc_timeout)?;
        crate::redact::redact_json(&mut raw);
        Ok((lease.name.clone(), raw))
    }

    /// One try: start the chat (on `lease` when given) and wait for its first event.
    fn attempt(&self, req: &ChatRequest, lease: Option<Lease>) -> Result<Answer, Failed> {
        let mut answer = self.begin(req, lease)?;
        answer.wait_first()?;
        Ok(answer)
    }

    /// Places the chat, renders its prompt, resolves the model and sends `chat/ask`.
    fn begin(&self, req: &ChatRequest, lease: Option<Lease>) -> Result<Answer, Failed> {
        check_text(req)?;
        let digests = self.sessions.as_ref().map(|_| sessions::digest(req));
        let prefix = digests.as_ref().and_then(|(_, prefix)| *prefix);
        let placed = self.placer().place(req, lease, prefix)?;
        let prompt = Prompt::render(req, &placed, self.cfg.max_prompt_bytes)?;
        let models = self.models(&placed.lease)?;
        let model = self.resolve_model(&models, &req.model)?.clone();
        let session = self
            .sessions
            .as_ref()
            .zip(digests)
            .map(|(cache, (conv, _))| SessionNote {
                cache: Arc::clone(cache),
                conv,
                restarts: self.pool.restarts(&placed.lease.name).unwrap_or(0),
            });
        start::start(&self.cfg, req, placed, prompt, model, session)
            .map(|answer| answer.with_upkeep(self.cleanup.clone(), Arc::clone(&self.context_sizes)))
    }

    fn placer(&self) -> Placer<'_> {
        Placer {
            pool: &self.pool,
            logins: &self.logins,
            sessions: self.sessions.as_deref(),
            pool_wait: self.cfg.pool_wait,
        }
    }

    /// The model a request names, in a leased instance's catalogue, or `model_not_found`.
    fn resolve_model<'m>(
        &self,
        models: &'m ModelList,
        name: &str,
    ) -> Result<&'m ModelInfo, GatewayError> {
        models.resolve(name, &self.cfg.default_model, &self.cfg.model_aliases).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NotFound,
                format!("The model `{name}` does not exist or you do not have access to it. GET /v1/models lists the available models."),
            )
            .with_code("model_not_found")
        })
    }
}

/// A chat needs something to send.
fn check_text(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.messages.iter().all(crate::model::Message::is_empty) {
        return Err(GatewayError::invalid(
            "messages",
            "messages contain no text to send",
        ));
    }
    Ok(())
}
